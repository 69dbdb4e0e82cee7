"""LocalResponseNormalization and GroupNormalization against their references."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from layers import GroupNormalization, LocalResponseNormalization


def _lrn_numpy(x, radius, bias, alpha, beta):
    """b_c = a_c / (k + alpha * sum_{|j-c|<=r} a_j^2)^beta over the last axis, in float64."""
    x = x.astype(np.float64)
    squares = np.square(x)
    sums = np.zeros_like(x)
    channels = x.shape[-1]
    for c in range(channels):
        sums[..., c] = squares[..., max(0, c - radius) : c + radius + 1].sum(axis=-1)
    return x / (bias + alpha * sums) ** beta


@pytest.mark.parametrize("seed", range(6))
def test_lrn_matches_tf_op_over_random_inputs_and_parameters(seed):
    rng = np.random.default_rng(seed)
    radius = int(rng.integers(0, 5))
    bias, alpha, beta = rng.uniform(0.5, 3.0), rng.uniform(1e-4, 0.5), rng.uniform(0.1, 1.5)
    x = rng.normal(scale=rng.uniform(0.1, 20), size=(2, 5, 4, int(rng.integers(1, 20))))
    x = x.astype("float32")
    ours = LocalResponseNormalization(radius, bias, alpha, beta)(x)
    reference = tf.nn.local_response_normalization(x, radius, bias, alpha, beta)
    np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-7)


def test_lrn_defaults_are_alexnet():
    layer = LocalResponseNormalization()
    assert (layer.window_size, layer.bias, layer.alpha, layer.beta) == (5, 2.0, 1e-4, 0.75)
    assert layer.alpha_convention == "sum"


def test_lrn_mean_convention_divides_alpha_by_window_size_like_pytorch():
    x = np.random.default_rng(0).normal(scale=5, size=(2, 3, 3, 7)).astype("float32")
    ours = LocalResponseNormalization(2, 1.0, 0.5, 0.75, alpha_convention="mean")(x)
    # PyTorch/Caffe: alpha / size times the (zero-padded) window sum.
    np.testing.assert_allclose(ours, _lrn_numpy(x, 2, 1.0, 0.5 / 5, 0.75), rtol=1e-5)
    assert not np.allclose(ours, _lrn_numpy(x, 2, 1.0, 0.5, 0.75), rtol=1e-3)


def test_lrn_channels_first_equals_transposed_channels_last():
    x = np.random.default_rng(1).normal(size=(2, 9, 4, 3)).astype("float32")
    first = LocalResponseNormalization(alpha=0.3, data_format="channels_first")(x)
    last = LocalResponseNormalization(alpha=0.3)(np.moveaxis(x, 1, -1))
    np.testing.assert_allclose(first, np.moveaxis(np.asarray(last), -1, 1), rtol=1e-6)


def test_lrn_mixed_precision_does_not_overflow_on_large_activations():
    x = np.full((1, 2, 2, 5), 300.0, "float32")  # 300^2 overflows float16
    output = LocalResponseNormalization(alpha=1e-4, dtype="mixed_float16")(x)
    np.testing.assert_allclose(
        np.asarray(output, np.float32), _lrn_numpy(x, 2, 2.0, 1e-4, 0.75), rtol=2e-3
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"depth_radius": -1}, "depth_radius"),
        ({"depth_radius": 1.5}, "depth_radius"),
        ({"bias": 0}, "bias"),
        ({"alpha": -1.0}, "alpha"),
        ({"beta": -0.5}, "beta"),
        ({"alpha_convention": "caffe"}, "alpha_convention"),
        ({"data_format": "NHWC"}, "data_format"),
    ],
)
def test_lrn_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LocalResponseNormalization(**kwargs)


def _keras_group_norm(ours, x, **kwargs):
    reference = keras.layers.GroupNormalization(**kwargs)
    reference.build(x.shape)
    reference.set_weights(ours.get_weights())
    return reference(x)


@pytest.mark.parametrize(
    ("shape", "groups", "axis"),
    [((4, 6, 5, 12), 3, -1), ((4, 6, 5, 12), 12, -1), ((3, 8, 4, 5), 4, 1), ((2, 7, 6), 2, -1)],
)
def test_group_norm_matches_keras(shape, groups, axis):
    rng = np.random.default_rng(0)
    x = rng.normal(loc=2.0, scale=3.0, size=shape).astype("float32")
    ours = GroupNormalization(groups, axis=axis, epsilon=1e-5)
    ours.build(x.shape)
    ours.set_weights([rng.normal(size=w.shape) for w in ours.get_weights()])
    expected = _keras_group_norm(ours, x, groups=groups, axis=axis, epsilon=1e-5)
    np.testing.assert_allclose(ours(x), expected, rtol=1e-5, atol=1e-5)


def test_group_norm_with_one_group_is_layer_norm_over_chw():
    x = np.random.default_rng(1).normal(size=(3, 4, 5, 6)).astype("float32")
    ours = GroupNormalization(1, epsilon=1e-5)(x)
    layer_norm = keras.layers.LayerNormalization(axis=(1, 2, 3), epsilon=1e-5)(x)
    np.testing.assert_allclose(ours, layer_norm, rtol=1e-5, atol=1e-5)


def test_group_norm_with_one_group_per_channel_is_instance_norm():
    x = np.random.default_rng(2).normal(size=(3, 4, 5, 6))
    mean = x.mean(axis=(1, 2), keepdims=True)
    instance_norm = (x - mean) / np.sqrt(x.var(axis=(1, 2), keepdims=True) + 1e-5)
    ours = GroupNormalization(6, epsilon=1e-5)(x.astype("float32"))
    np.testing.assert_allclose(ours, instance_norm, rtol=1e-4, atol=1e-5)


def test_group_norm_is_accurate_when_the_mean_dwarfs_the_spread():
    x = 1000.0 + np.random.default_rng(3).normal(size=(2, 8, 8, 4))
    centered = x.reshape(2, 64, 2, 2) - x.reshape(2, 64, 2, 2).mean(axis=(1, 3), keepdims=True)
    expected = centered / np.sqrt((centered**2).mean(axis=(1, 3), keepdims=True) + 1e-3)
    ours = GroupNormalization(2)(x.astype("float32"))
    np.testing.assert_allclose(ours, expected.reshape(x.shape), atol=2e-3)


def test_group_norm_without_center_and_scale_has_no_weights():
    layer = GroupNormalization(2, center=False, scale=False)
    layer.build((None, 4, 4, 4))
    assert layer.weights == []


def test_group_norm_rejects_channels_not_divisible_by_groups():
    with pytest.raises(ValueError, match=r"channels \(10.*divisible by groups=4"):
        GroupNormalization(4).build((None, 5, 5, 10))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"groups": 0}, "groups"), ({"epsilon": 0}, "epsilon"), ({"axis": "last"}, "axis")],
)
def test_group_norm_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GroupNormalization(**kwargs)


def test_group_norm_rejects_unknown_channel_count():
    with pytest.raises(ValueError, match="must be known"):
        GroupNormalization(2).build((None, 4, 4, None))
