"""Maxout: both forms against a direct NumPy computation, and its errors."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from layers import Maxout


def _maxout_numpy(values, pieces, axis):
    """Unit i is the max over channels i, i + U, ..., i + (pieces - 1) U (U = C / pieces)."""
    values = np.moveaxis(values, axis, -1)
    units = values.shape[-1] // pieces
    stacked = np.stack([values[..., j * units : (j + 1) * units] for j in range(pieces)])
    return np.moveaxis(stacked.max(axis=0), -1, axis)


@pytest.mark.parametrize(
    ("shape", "pieces", "axis"), [((3, 4, 4, 12), 3, -1), ((3, 6, 2, 5), 2, 1)]
)
def test_channel_wise_form_takes_the_max_over_pieces(shape, pieces, axis):
    x = np.random.default_rng(0).normal(size=shape).astype("float32")
    np.testing.assert_array_equal(Maxout(pieces, axis=axis)(x), _maxout_numpy(x, pieces, axis))


def test_dense_form_is_the_max_over_linear_pieces():
    x = np.random.default_rng(0).normal(size=(5, 7)).astype("float32")
    layer = Maxout(4, units=3, bias_initializer="random_normal")
    output = layer(x)
    pieces = x @ layer.kernel.numpy() + layer.bias.numpy()
    assert layer.kernel.shape == (7, 12)
    np.testing.assert_allclose(output, _maxout_numpy(pieces, 4, -1), rtol=1e-6)


def _input_gradient(function, x, upstream):
    x = tf.constant(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        outputs = function(x)
    return tape.gradient(outputs, x, output_gradients=upstream).numpy()


def _reduce_max_over_pieces(x, pieces, axis):
    """Autodiff reference: the same grouping, as a `reduce_max` over a pieces axis."""
    shape = x.shape
    grouped = tf.reshape(x, (*shape[:axis], pieces, shape[axis] // pieces, *shape[axis + 1 :]))
    return tf.reduce_max(grouped, axis=axis)


@pytest.mark.parametrize("jit_compile", [False, True])
@pytest.mark.parametrize(("shape", "pieces", "axis"), [((3, 4, 12), 3, 2), ((3, 6, 2, 5), 2, 1)])
def test_input_gradient_matches_autodiff_of_reduce_max(shape, pieces, axis, jit_compile):
    rng = np.random.default_rng(1)
    x = rng.normal(size=shape).astype("float32")
    layer = Maxout(pieces, axis=axis)
    upstream = tf.constant(rng.normal(size=layer.compute_output_shape(shape)).astype("float32"))
    # An unknown batch size exercises the dynamic shapes of the hand-written gradient.
    spec = tf.TensorSpec((None, *shape[1:]), tf.float32)

    @tf.function(input_signature=[spec], jit_compile=jit_compile)
    def gradient(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            outputs = layer(x)
        return tape.gradient(outputs, x, output_gradients=upstream)

    expected = _input_gradient(lambda x: _reduce_max_over_pieces(x, pieces, axis), x, upstream)
    np.testing.assert_allclose(gradient(tf.constant(x)), expected, rtol=1e-6)


def test_tied_pieces_share_the_gradient_equally():
    x = np.zeros((2, 6), "float32")  # every unit's 3 pieces tie, as after a ReLU
    upstream = np.arange(4, dtype="float32").reshape(2, 2)
    gradient = _input_gradient(Maxout(3), x, upstream)
    np.testing.assert_allclose(gradient, np.tile(upstream / 3, (1, 3)), rtol=1e-6)


def test_dense_form_without_bias_has_only_a_kernel():
    layer = Maxout(2, units=3, use_bias=False)
    layer.build((None, 4))
    assert [w.path.split("/")[-1] for w in layer.weights] == ["kernel"]


def test_rejects_axis_not_divisible_by_pieces():
    with pytest.raises(ValueError, match=r"axis -1 \(10\) must be divisible by num_pieces=3"):
        Maxout(3).build((None, 4, 4, 10))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_pieces": 0}, "num_pieces"),
        ({"num_pieces": 2, "units": 0}, "units"),
        ({"num_pieces": 2, "units": 4, "axis": 1}, "dense form"),
        ({"num_pieces": 2, "axis": 1.0}, "axis"),
    ],
)
def test_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Maxout(**kwargs)
