"""LocalResponseNormalization, GroupNormalization and InstanceNormalization against references."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from layers import GroupNormalization, InstanceNormalization, LocalResponseNormalization
from tests.conftest import MIXED_POLICIES, half_ulp


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


@pytest.mark.parametrize("policy", MIXED_POLICIES)
def test_group_norm_under_mixed_precision_normalizes_the_float32_input(policy):
    """A float32 input is not rounded to the compute dtype first: 1000 + N(0, 1) in float16
    keeps steps of 0.5, in bfloat16 of 8, which would swamp the spread."""
    x = (1000.0 + np.random.default_rng(3).normal(size=(2, 8, 8, 4))).astype("float32")
    output = GroupNormalization(2, dtype=policy)(x)
    assert output.dtype == policy.removeprefix("mixed_")
    np.testing.assert_allclose(
        np.asarray(tf.cast(output, tf.float32)),
        GroupNormalization(2)(x),
        rtol=half_ulp(policy),
        atol=1e-5,
    )


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


def test_group_norm_groups_minus_one_is_one_group_per_channel_and_matches_keras():
    rng = np.random.default_rng(4)
    x = rng.normal(loc=1.0, scale=2.0, size=(3, 5, 4, 6)).astype("float32")
    ours = GroupNormalization(-1, epsilon=1e-5)
    ours.build(x.shape)
    ours.set_weights([rng.normal(size=w.shape) for w in ours.get_weights()])
    per_channel = GroupNormalization(6, epsilon=1e-5)
    per_channel.build(x.shape)
    per_channel.set_weights(ours.get_weights())
    np.testing.assert_allclose(ours(x), per_channel(x), rtol=1e-6, atol=1e-6)
    expected = _keras_group_norm(ours, x, groups=-1, epsilon=1e-5)
    np.testing.assert_allclose(ours(x), expected, rtol=1e-5, atol=1e-5)
    assert ours.groups == -1 and ours.get_config()["groups"] == -1


@pytest.mark.parametrize("groups", [0, -2, 2.5, True, "2"])
def test_group_norm_groups_message_names_the_instance_norm_sentinel(groups):
    with pytest.raises(ValueError, match=r"integer >= 1, or -1 for one group per channel"):
        GroupNormalization(groups)


def test_group_norm_rejects_the_batch_axis():
    # TensorFlow Addons refused axis=0 at construction; a negative axis that lands on the batch
    # axis is refused when the rank is known.
    with pytest.raises(ValueError, match="batch axis"):
        GroupNormalization(axis=0)
    with pytest.raises(ValueError, match="batch axis"):
        GroupNormalization(groups=1, axis=-3).build((None, 4, 4))


# TensorFlow Addons' expectations (its normalizations_test.py), rewritten.


def _grouped_norm_numpy(x, groups, axis, gamma, beta, epsilon):
    """Each (sample, group of channels) normalized over the group's channels and other axes."""
    x = np.moveaxis(x.astype(np.float64), axis, -1)
    channels = x.shape[-1]
    groups = channels if groups == -1 else groups
    grouped = x.reshape(x.shape[0], -1, groups, channels // groups)
    mean = grouped.mean(axis=(1, 3), keepdims=True)
    variance = grouped.var(axis=(1, 3), keepdims=True)
    normalized = ((grouped - mean) / np.sqrt(variance + epsilon)).reshape(x.shape)
    return np.moveaxis(normalized * gamma + beta, -1, axis)


@pytest.mark.parametrize(("center", "scale"), [(True, True), (True, False), (False, True)])
@pytest.mark.parametrize(
    ("shape", "groups_list"), [((10, 100), (-1, 1, 2, 5)), ((4, 12, 6, 3), (-1, 1, 3))]
)
def test_tfa_case_every_non_batch_axis_and_group_count_matches_the_formula(
    shape, groups_list, center, scale
):
    rng = np.random.default_rng(0)
    x = rng.normal(loc=1.0, scale=3.0, size=shape).astype("float32")
    for groups in groups_list:
        for axis in range(1, len(shape)):
            layer = GroupNormalization(groups, axis=axis, center=center, scale=scale)
            layer.build(x.shape)
            channels = shape[axis]
            gamma = rng.uniform(0.5, 2.0, channels) if scale else np.ones(channels)
            beta = rng.normal(size=channels) if center else np.zeros(channels)
            layer.set_weights([w for w, used in ((gamma, scale), (beta, center)) if used])
            expected = _grouped_norm_numpy(x, groups, axis, gamma, beta, 1e-3)
            np.testing.assert_allclose(layer(x), expected, rtol=1e-4, atol=1e-4)


def test_tfa_case_a_constant_group_normalizes_to_zero():
    x = np.array([[2.0, 2.0, 3.0, 3.0]], "float32")
    layer = GroupNormalization(groups=2, axis=1, center=False, scale=False)
    np.testing.assert_array_equal(layer(x), np.zeros((1, 4)))


@pytest.mark.parametrize(
    ("shape", "axis", "groups", "affine"),
    [
        ((10,), -1, 2, True),
        ((10, 3), 1, 2, True),
        ((10, 3), 1, 1, True),
        ((10, 3), 1, 10, True),
        ((3, 4, 4), 1, 3, True),
        ((3, 4, 4), -1, 2, False),
    ],
)
def test_tfa_case_outputs_have_zero_mean_and_unit_std_per_sample_and_group(
    shape, axis, groups, affine
):
    rng = np.random.default_rng(0x2020)
    x = rng.normal(loc=5.0, scale=10.0, size=(50, *shape)).astype("float32")
    channels = x.shape[axis]
    layer = GroupNormalization(groups, axis=axis, center=affine, scale=affine)
    layer.build(x.shape)
    if affine:
        layer.set_weights([rng.uniform(0.5, 2.0, channels), rng.normal(size=channels)])
    out = np.asarray(layer(x), np.float64)
    if affine:
        broadcast = [1] * x.ndim
        broadcast[axis] = -1
        gamma, beta = (w.reshape(broadcast) for w in layer.get_weights())
        out = (out - beta) / gamma

    def by_group(values):
        return np.moveaxis(values, axis, -1).reshape(50, -1, groups, channels // groups)

    # Unit std up to epsilon: a group of variance s^2 comes out with std s / sqrt(s^2 + eps).
    variance = by_group(x.astype(np.float64)).var(axis=(1, 3))
    np.testing.assert_allclose(by_group(out).mean(axis=(1, 3)), 0.0, atol=1e-4)
    np.testing.assert_allclose(
        by_group(out).std(axis=(1, 3)), np.sqrt(variance / (variance + 1e-3)), rtol=1e-4
    )


def test_tfa_case_weights_follow_center_and_scale():
    layer = GroupNormalization(groups=1, scale=False, center=False)
    layer.build((None, 3, 4))
    assert layer.weights == [] and layer.trainable_weights == []
    for center in (True, False):
        for scale in (True, False):
            layer = GroupNormalization(groups=2, center=center, scale=scale)
            layer(np.zeros((8, 5, 5, 16), "float32"))
            assert len(layer.trainable_variables) == [center, scale].count(True)
            layer = InstanceNormalization(center=center, scale=scale)
            layer.build((8, 5, 5, 16))
            assert len(layer.trainable_variables) == [center, scale].count(True)


def test_tfa_case_regularizers_add_losses_and_constraints_reach_the_variables():
    layer = GroupNormalization(groups=4, axis=2, gamma_regularizer="l1", beta_regularizer="l1")
    layer.build((None, 4, 4))
    assert len(layer.losses) == 2
    max_norm = keras.constraints.MaxNorm(2.0)
    layer = GroupNormalization(groups=2, gamma_constraint=max_norm, beta_constraint=max_norm)
    layer.build((None, 3, 4))
    assert layer.gamma.constraint is max_norm and layer.beta.constraint is max_norm


@pytest.mark.parametrize(
    "make_layer",
    [
        lambda: GroupNormalization(
            groups=-1,
            axis=1,
            beta_initializer="random_normal",
            gamma_initializer="random_normal",
            beta_constraint="non_neg",
            gamma_constraint="non_neg",
        ),
        lambda: InstanceNormalization(axis=1, beta_constraint="non_neg"),
        lambda: GroupNormalization(groups=5, axis=1),
        lambda: GroupNormalization(groups=1, axis=1),
    ],
)
def test_tfa_case_trains_in_a_conv_net_and_keeps_constraints(make_layer):
    keras.utils.set_random_seed(0)
    norm = make_layer()
    model = keras.Sequential(
        [
            keras.Input((20, 20, 3)),
            norm,
            keras.layers.Conv2D(5, 1),
            keras.layers.Flatten(),
            keras.layers.Dense(1),
        ]
    )
    model.compile(keras.optimizers.RMSprop(0.01), "mse")
    rng = np.random.default_rng(0x2020)
    x = rng.integers(1000, size=(10, 20, 20, 3)).astype("float32")
    history = model.fit(x, rng.normal(size=(10, 1)), epochs=2, batch_size=5, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    for weight, constraint in (
        (norm.gamma, norm.gamma_constraint),
        (norm.beta, norm.beta_constraint),
    ):
        if constraint is not None:
            assert np.all(weight.numpy() >= 0.0)


def test_tfa_case_instance_norm_is_group_norm_with_groups_minus_one():
    layer = InstanceNormalization()
    assert isinstance(layer, GroupNormalization)
    assert layer.groups == -1
    layer.build((None, 3, 4))
    assert layer.groups == -1 and len(layer.trainable_weights) == 2
    assert "groups" not in layer.get_config()


@pytest.mark.parametrize(("shape", "axis"), [((3, 5, 4, 6), -1), ((3, 6, 5, 4), 1)])
def test_instance_norm_normalizes_each_channel_of_each_sample(shape, axis):
    rng = np.random.default_rng(5)
    x = rng.normal(loc=-2.0, scale=4.0, size=shape)
    layer = InstanceNormalization(axis=axis, epsilon=1e-5)
    layer.build(shape)
    gamma, beta = rng.uniform(0.5, 2.0, shape[axis]), rng.normal(size=shape[axis])
    layer.set_weights([gamma, beta])
    reduce = tuple(a for a in range(1, len(shape)) if a != axis % len(shape))
    broadcast = [1] * len(shape)
    broadcast[axis] = -1
    mean, variance = x.mean(axis=reduce, keepdims=True), x.var(axis=reduce, keepdims=True)
    expected = (x - mean) / np.sqrt(variance + 1e-5) * gamma.reshape(broadcast)
    expected += beta.reshape(broadcast)
    np.testing.assert_allclose(layer(x.astype("float32")), expected, rtol=1e-4, atol=1e-4)
    # Per sample: another batch around a sample changes nothing.
    alone = layer(x[:1].astype("float32"))
    np.testing.assert_allclose(alone, expected[:1], rtol=1e-4, atol=1e-4)


def test_instance_norm_of_one_value_per_channel_is_beta():
    # On (batch, features) every channel is a group of one value: it normalizes to 0.
    layer = InstanceNormalization(beta_initializer="random_normal")
    x = np.random.default_rng(0).normal(size=(4, 6)).astype("float32")
    np.testing.assert_allclose(layer(x), np.tile(layer.beta.numpy(), (4, 1)), atol=1e-6)


def test_instance_norm_defaults_are_tfa_defaults():
    config = InstanceNormalization().get_config()
    assert (config["axis"], config["epsilon"], config["center"], config["scale"]) == (
        -1,
        1e-3,
        True,
        True,
    )


@pytest.mark.parametrize("groups", [2, 1, True])
def test_instance_norm_refuses_groups_other_than_minus_one(groups):
    # TensorFlow Addons warned and replaced them with -1.
    with pytest.raises(ValueError, match="`groups` must be -1 or left out"):
        InstanceNormalization(groups=groups)
    assert InstanceNormalization(groups=-1).groups == -1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"epsilon": 0}, "epsilon"), ({"axis": 0}, "axis"), ({"axis": "last"}, "axis")],
)
def test_instance_norm_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        InstanceNormalization(**kwargs)
