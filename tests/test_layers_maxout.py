"""Maxout: both forms and both groupings against direct NumPy computations, and its errors."""

from __future__ import annotations

import keras
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
        ({}, "either `num_pieces`"),
        ({"num_pieces": 2, "num_units": 3}, "either `num_pieces`"),
        ({"num_units": 0}, "num_units"),
        ({"num_units": 2, "units": 4}, "channel-wise form"),
        ({"num_pieces": 2, "grouping": "interleaved"}, "grouping"),
    ],
)
def test_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Maxout(**kwargs)


# TensorFlow Addons' Maxout(num_units, axis), rewritten from its formula: it viewed the `C`
# channels of `axis` as (C // num_units, num_units), pieces first, and took the max over the
# pieces, so unit i is the max of channels i, i + num_units, ... -- this layer's default grouping.


def _tfa_maxout_numpy(values, num_units, axis):
    axis %= values.ndim
    shape = values.shape
    pieces_first = (*shape[:axis], shape[axis] // num_units, num_units, *shape[axis + 1 :])
    return values.reshape(pieces_first).max(axis=axis)


def _contrib_maxout_numpy(values, num_units, axis):
    """tf.contrib.layers.maxout's grouping: (num_units, C // num_units), adjacent channels."""
    axis %= values.ndim
    shape = values.shape
    units_first = (*shape[:axis], num_units, shape[axis] // num_units, *shape[axis + 1 :])
    return values.reshape(units_first).max(axis=axis + 1)


@pytest.mark.parametrize(
    ("shape", "num_units", "axis"),
    [((5, 4, 2, 18), 3, -1), ((2, 20, 3, 6), 4, 1), ((2, 20, 3, 6), 4, -3), ((6, 12), 12, -1)],
)
def test_tfa_num_units_matches_tfa_maxout(shape, num_units, axis):
    x = np.random.default_rng(0).normal(size=shape).astype("float32")
    layer = Maxout(num_units=num_units, axis=axis)
    expected = _tfa_maxout_numpy(x, num_units, axis)
    np.testing.assert_array_equal(layer(x), expected)
    assert layer.compute_output_shape(shape) == expected.shape
    # The same thing by pieces: num_units=U is num_pieces=C/U with the default grouping.
    np.testing.assert_array_equal(Maxout(shape[axis] // num_units, axis=axis)(x), expected)


def test_tfa_dense_outputs_grouped_tfas_way_match_exactly():
    """A Dense layer feeding TFA's Maxout(num_units=4): our layer gives TFA's numbers."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(16, 7)).astype("float32")
    dense = keras.layers.Dense(12, bias_initializer="random_normal")
    model = keras.Sequential([keras.Input((7,)), dense, Maxout(num_units=4)])
    pieces = x @ dense.kernel.numpy() + dense.bias.numpy()
    np.testing.assert_allclose(model(x), _tfa_maxout_numpy(pieces, 4, -1), rtol=1e-6)
    # The dense form with the same weights is the same layer.
    fused = Maxout(3, units=4)
    fused.build(x.shape)
    fused.set_weights(dense.get_weights())
    np.testing.assert_allclose(fused(x), model(x), rtol=1e-6)


@pytest.mark.parametrize(("shape", "num_units", "axis"), [((5, 4, 18), 3, -1), ((2, 12, 5), 4, 1)])
def test_adjacent_grouping_matches_contrib_maxout(shape, num_units, axis):
    x = np.random.default_rng(2).normal(size=shape).astype("float32")
    expected = _contrib_maxout_numpy(x, num_units, axis)
    adjacent = Maxout(num_units=num_units, axis=axis, grouping="adjacent")
    np.testing.assert_array_equal(adjacent(x), expected)
    pieces = shape[axis] // num_units
    by_pieces = Maxout(pieces, axis=axis, grouping="adjacent")
    np.testing.assert_array_equal(by_pieces(x), expected)
    assert not np.array_equal(Maxout(pieces, axis=axis)(x), expected)


def test_groupings_differ_by_a_permutation_of_the_kernel_columns():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(8, 5)).astype("float32")
    strided = Maxout(3, units=4, bias_initializer="random_normal")
    strided.build(x.shape)
    adjacent = Maxout(3, units=4, grouping="adjacent")
    adjacent.build(x.shape)
    # Strided column j * 4 + i (piece j of unit i) is adjacent column i * 3 + j.
    order = [j * 4 + i for i in range(4) for j in range(3)]
    adjacent.set_weights([w[..., order] for w in strided.get_weights()])
    np.testing.assert_allclose(adjacent(x), strided(x), rtol=1e-6)


@pytest.mark.parametrize("grouping", ["strided", "adjacent"])
def test_tfa_case_channel_count_known_only_when_called(grouping):
    x = np.random.default_rng(4).random((5, 4, 2, 18)).astype("float32")
    layer = Maxout(num_units=3, grouping=grouping)
    reference = _tfa_maxout_numpy if grouping == "strided" else _contrib_maxout_numpy
    for shape in [(4, 2, None), (None, None, None)]:
        inputs = keras.Input(shape)
        model = keras.Model(inputs, layer(inputs))
        assert model.output.shape[-1] == 3
        np.testing.assert_array_equal(model.predict(x, verbose=0), reference(x, 3, -1))
    spec = tf.TensorSpec((None, None, None, None), tf.float32)
    compiled = tf.function(layer, input_signature=[spec], jit_compile=True)
    np.testing.assert_array_equal(compiled(x), reference(x, 3, -1))


@pytest.mark.parametrize("grouping", ["strided", "adjacent"])
def test_adjacent_and_unknown_size_gradients_match_autodiff_of_the_formula(grouping):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(3, 4, 12)).astype("float32")
    x[0, 0, :3] = 0.0  # ties
    upstream = tf.constant(rng.normal(size=(3, 4, 4)).astype("float32"))
    layer = Maxout(num_units=4, grouping=grouping)
    spec = tf.TensorSpec((None, None, None), tf.float32)

    @tf.function(input_signature=[spec])
    def gradient(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            outputs = layer(x)
        return tape.gradient(outputs, x, output_gradients=upstream)

    def reference(x):
        grouped = (3, 4) if grouping == "strided" else (4, 3)
        over = 2 if grouping == "strided" else 3
        return tf.reduce_max(tf.reshape(x, (3, 4, *grouped)), axis=over)

    expected = _input_gradient(reference, x, upstream)
    np.testing.assert_allclose(gradient(tf.constant(x)), expected, rtol=1e-6)


def test_tfa_case_num_units_not_dividing_the_channels_is_refused():
    with pytest.raises(ValueError, match=r"axis -1 \(7\) must be divisible by num_units=3"):
        Maxout(num_units=3).build((5, 4, 2, 7))


def test_config_keeps_num_units_and_grouping(tmp_path):
    x = np.random.default_rng(6).normal(size=(2, 3, 12)).astype("float32")
    model = keras.Sequential(
        [keras.Input((3, 12)), Maxout(num_units=4, axis=-1, grouping="adjacent")]
    )
    model.save(tmp_path / "maxout.keras")
    restored = keras.models.load_model(tmp_path / "maxout.keras")
    layer = restored.layers[0]
    assert (layer.num_units, layer.num_pieces, layer.grouping) == (4, None, "adjacent")
    np.testing.assert_array_equal(restored(x), model(x))
