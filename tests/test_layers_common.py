"""Checks every layer in `layers` must pass: shapes, config, save/load, gradients, XLA,
mixed precision and training. Layer-specific numerics live in the other test_layers_* files."""

from __future__ import annotations

import copy

import keras
import numpy as np
import pytest
import tensorflow as tf

from layers import (
    GroupNormalization,
    InstanceNormalization,
    LocallyConnected1D,
    LocallyConnected2D,
    LocalResponseNormalization,
    Maxout,
    MeanImageSubtraction,
    PCAColorJitter,
    WeightNormalization,
    ZCAWhitening,
)
from tests.conftest import MIXED_POLICIES, SCALE_TOLERANCE, half_ulp


def _weight_norm(inner):
    return lambda dtype: WeightNormalization(inner(dtype), dtype=dtype)


# name -> (factory(dtype) -> unbuilt layer, input shape without batch, adapts, trainable)
CASES = {
    "lrn": (lambda d: LocalResponseNormalization(alpha=0.05, dtype=d), (5, 5, 8), False, False),
    "lrn_mean_channels_first": (
        lambda d: LocalResponseNormalization(
            depth_radius=1,
            alpha=0.2,
            alpha_convention="mean",
            data_format="channels_first",
            dtype=d,
        ),
        (6, 4, 4),
        False,
        False,
    ),
    "group": (lambda d: GroupNormalization(groups=4, dtype=d), (5, 5, 8), False, True),
    "group_channels_first": (
        lambda d: GroupNormalization(groups=2, axis=1, dtype=d),
        (4, 3, 5),
        False,
        True,
    ),
    "group_instance": (lambda d: GroupNormalization(groups=-1, dtype=d), (4, 3, 6), False, True),
    "instance": (lambda d: InstanceNormalization(dtype=d), (5, 4, 3), False, True),
    "instance_channels_first": (
        lambda d: InstanceNormalization(axis=1, epsilon=1e-5, dtype=d),
        (3, 4, 5),
        False,
        True,
    ),
    "weight_dense": (_weight_norm(lambda d: keras.layers.Dense(6, dtype=d)), (7,), False, True),
    "weight_conv1d": (
        _weight_norm(lambda d: keras.layers.Conv1D(3, 3, activation="tanh", dtype=d)),
        (8, 2),
        False,
        True,
    ),
    "weight_conv2d": (
        _weight_norm(lambda d: keras.layers.Conv2D(4, 3, dtype=d)),
        (6, 6, 3),
        False,
        True,
    ),
    "weight_conv3d": (
        _weight_norm(lambda d: keras.layers.Conv3D(2, 2, data_format="channels_first", dtype=d)),
        (2, 4, 4, 4),
        False,
        True,
    ),
    "weight_conv2d_transpose": (
        _weight_norm(lambda d: keras.layers.Conv2DTranspose(3, 3, strides=2, dtype=d)),
        (4, 4, 2),
        False,
        True,
    ),
    "weight_lstm": (
        _weight_norm(lambda d: keras.layers.LSTM(3, return_sequences=True, dtype=d)),
        (5, 2),
        False,
        True,
    ),
    "weight_gru": (_weight_norm(lambda d: keras.layers.GRU(2, dtype=d)), (4, 3), False, True),
    "maxout_dense": (lambda d: Maxout(3, units=4, dtype=d), (6,), False, True),
    "maxout_channels": (lambda d: Maxout(2, dtype=d), (4, 4, 8), False, False),
    "maxout_num_units": (lambda d: Maxout(num_units=3, axis=1, dtype=d), (6, 4), False, False),
    "maxout_adjacent_dense": (
        lambda d: Maxout(2, units=3, grouping="adjacent", dtype=d),
        (5,),
        False,
        True,
    ),
    "locally_connected_1d": (
        lambda d: LocallyConnected1D(3, 3, strides=2, padding="same", dtype=d),
        (7, 2),
        False,
        True,
    ),
    "locally_connected_2d": (
        lambda d: LocallyConnected2D(3, (2, 3), strides=(1, 2), activation="relu", dtype=d),
        (5, 6, 2),
        False,
        True,
    ),
    "locally_connected_2d_channels_first": (
        lambda d: LocallyConnected2D(2, 2, padding="same", data_format="channels_first", dtype=d),
        (2, 4, 5),
        False,
        True,
    ),
    "mean_image": (lambda d: MeanImageSubtraction(dtype=d), (4, 4, 3), True, False),
    "zca": (lambda d: ZCAWhitening(epsilon=0.1, dtype=d), (3, 3, 2), True, False),
    "pca": (lambda d: ZCAWhitening(method="pca", epsilon=0.1, dtype=d), (3, 3, 2), True, False),
    "pca_color_jitter": (lambda d: PCAColorJitter(seed=3, dtype=d), (4, 4, 3), True, False),
}
TRAINABLE = [name for name, case in CASES.items() if case[3]]


def _inputs(shape, batch=3, seed=0, dtype="float32"):
    return np.random.default_rng(seed).normal(size=(batch, *shape)).astype(dtype)


def _built(name, dtype="float32", batch=3):
    factory, shape, adapts, _ = CASES[name]
    # Seeded weights: a case must not depend on which tests ran before it in the process (a
    # weight-normalized unit whose first batch barely varies makes the data init ill-conditioned).
    keras.utils.set_random_seed(0)
    layer = factory(dtype)
    x = _inputs(shape, batch=batch, dtype="float64" if dtype == "float64" else "float32")
    if adapts:
        layer.adapt(_inputs(shape, batch=40, seed=1))
    else:
        layer.build(x.shape)
    return layer, x


@pytest.mark.parametrize("name", CASES)
def test_compute_output_shape_matches_call(name):
    layer, x = _built(name)
    assert tuple(layer.compute_output_shape(x.shape)) == tuple(layer(x).shape)
    symbolic = layer(keras.Input(x.shape[1:]))
    assert tuple(symbolic.shape) == (None, *layer(x).shape[1:])


@pytest.mark.parametrize("name", CASES)
def test_config_round_trip(name):
    layer, _ = _built(name)
    config = layer.get_config()
    clone = type(layer).from_config(copy.deepcopy(config))
    assert clone.get_config() == config


@pytest.mark.parametrize("name", CASES)
def test_save_load_round_trip_gives_identical_outputs(name, tmp_path):
    layer, x = _built(name)
    model = keras.Sequential([keras.Input(x.shape[1:]), layer])
    path = tmp_path / f"{name}.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    assert type(restored.layers[0]) is type(layer)
    np.testing.assert_array_equal(restored.predict(x, verbose=0), model.predict(x, verbose=0))


@pytest.mark.parametrize("name", CASES)
def test_tf_function_and_xla_match_eager(name):
    layer, x = _built(name)
    eager = layer(x)
    np.testing.assert_allclose(tf.function(layer)(x), eager, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(tf.function(layer, jit_compile=True)(x), eager, rtol=1e-4, atol=1e-5)


# Mixed precision. The layers that compute in float32 whatever the policy (statistics, squared
# sums, whitening) round only their output: every element is within half a unit in the last
# place of the compute dtype of the float32 output. The others compute in the compute dtype, as
# Keras' Dense and Conv do; their largest error is `SCALE_TOLERANCE` of the output's largest
# magnitude (about ten units in the last place), gradients' twice that.
FLOAT32_INSIDE = (
    GroupNormalization,
    LocalResponseNormalization,
    MeanImageSubtraction,
    ZCAWhitening,
    PCAColorJitter,
)


def _mixed_and_reference(name, policy):
    """The layer under `policy` and in float32, with the same weights, and an input."""
    reference, x = _built(name)
    mixed, _ = _built(name, dtype=policy)
    mixed.set_weights(reference.get_weights())
    return mixed, reference, x


def _float32(tensor):
    return np.asarray(tf.cast(tensor, tf.float32))


@pytest.mark.parametrize("policy", MIXED_POLICIES)
@pytest.mark.parametrize("name", CASES)
def test_mixed_precision_output_is_close_to_float32(name, policy):
    mixed, reference, x = _mixed_and_reference(name, policy)
    output = mixed(x)
    expected = np.asarray(reference(x))
    assert output.dtype == mixed.compute_dtype == policy.removeprefix("mixed_")
    assert all(v.dtype == "float32" for v in mixed.weights if v.dtype != "bool")
    if isinstance(mixed, FLOAT32_INSIDE):
        np.testing.assert_allclose(_float32(output), expected, rtol=half_ulp(policy), atol=1e-6)
    else:
        error = np.max(np.abs(_float32(output) - expected))
        assert error <= SCALE_TOLERANCE[policy] * np.max(np.abs(expected))


@pytest.mark.parametrize("policy", MIXED_POLICIES)
@pytest.mark.parametrize("name", TRAINABLE)
def test_mixed_precision_gradients_are_finite_float32_and_close(name, policy):
    mixed, reference, x = _mixed_and_reference(name, policy)
    probe = tf.constant(np.random.default_rng(5).normal(size=reference(x).shape), tf.float32)

    def gradients(layer):
        inputs = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            loss = tf.reduce_sum(tf.cast(layer(inputs, training=True), tf.float32) * probe)
        return tape.gradient(loss, [inputs, *layer.trainable_variables])

    for got, expected in zip(gradients(mixed), gradients(reference), strict=True):
        assert got.dtype == tf.float32
        got, expected = np.asarray(got), np.asarray(expected)
        assert np.isfinite(got).all()
        error = np.max(np.abs(got - expected))
        assert error <= 2 * SCALE_TOLERANCE[policy] * np.max(np.abs(expected))


@pytest.mark.parametrize("policy", MIXED_POLICIES)
@pytest.mark.parametrize("name", CASES)
def test_mixed_precision_policy_survives_save_and_load(name, policy, tmp_path):
    mixed, _, x = _mixed_and_reference(name, policy)
    model = keras.Sequential([keras.Input(x.shape[1:]), mixed])
    model.save(tmp_path / f"{name}.keras")
    restored = keras.models.load_model(tmp_path / f"{name}.keras").layers[0]
    assert restored.dtype_policy.name == policy
    if isinstance(restored, WeightNormalization):
        assert restored.layer.dtype_policy.name == policy
    assert all(v.dtype == "float32" for v in restored.weights if v.dtype != "bool")
    np.testing.assert_array_equal(_float32(restored(x)), _float32(mixed(x)))


@pytest.mark.parametrize("name", TRAINABLE)
def test_gradients_match_finite_differences(name):
    layer, x = _built(name, dtype="float64")
    x = tf.constant(x)
    probe = tf.constant(np.random.default_rng(5).normal(size=layer(x).shape))

    def loss():
        return tf.reduce_sum(layer(x) * probe)

    with tf.GradientTape() as tape:
        tape.watch(x)
        value = loss()
    variables = [v.value for v in layer.trainable_variables]
    analytic = tape.gradient(value, [x, *variables])
    rng = np.random.default_rng(7)
    step = 1e-6

    def numeric(read, write, index):
        original = read()
        bumped = original.copy()
        bumped.flat[index] += step
        write(bumped)
        upper = float(loss())
        bumped.flat[index] -= 2 * step
        write(bumped)
        lower = float(loss())
        write(original)
        return (upper - lower) / (2 * step)

    x_holder = {"x": x.numpy()}

    def write_x(value):
        nonlocal x
        x_holder["x"] = value
        x = tf.constant(value)

    targets = [(lambda: x_holder["x"].copy(), write_x)]
    targets += [(lambda v=v: v.numpy().copy(), v.assign) for v in layer.trainable_variables]
    for (read, write), gradient in zip(targets, analytic, strict=True):
        gradient = np.asarray(gradient)
        for index in rng.choice(gradient.size, size=min(6, gradient.size), replace=False):
            np.testing.assert_allclose(
                gradient.flat[index], numeric(read, write, index), rtol=1e-5, atol=1e-7
            )


@pytest.mark.slow
@pytest.mark.parametrize("name", CASES)
def test_training_a_tiny_model_with_the_layer_reduces_the_loss(name):
    keras.utils.set_random_seed(0)
    layer, x = _built(name, batch=32)
    target = np.random.default_rng(2).normal(size=(32, 1)).astype("float32")
    model = keras.Sequential(
        [keras.Input(x.shape[1:]), layer, keras.layers.Flatten(), keras.layers.Dense(1)]
    )
    model.compile(keras.optimizers.Adam(0.02), "mse", jit_compile=True)
    before = model.evaluate(x, target, verbose=0)
    model.fit(x, target, epochs=20, batch_size=32, verbose=0)
    assert model.evaluate(x, target, verbose=0) < 0.8 * before
