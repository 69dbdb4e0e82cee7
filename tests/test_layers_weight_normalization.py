"""WeightNormalization: the reparameterization, data-dependent init, training and saving."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from layers import WeightNormalization


def _effective_kernel(wrapper):
    v = wrapper.layer.kernel.numpy()
    axes = tuple(a for a in range(v.ndim) if a != wrapper._unit_axis % v.ndim)
    g = wrapper.g.numpy().reshape([-1 if a not in axes else 1 for a in range(v.ndim)])
    return g * v / np.sqrt((v**2).sum(axis=axes, keepdims=True))


@pytest.mark.parametrize(
    ("make_layer", "shape"),
    [
        (lambda: keras.layers.Dense(5, activation="relu"), (4, 3)),
        (lambda: keras.layers.Conv2D(4, 3, padding="same"), (2, 6, 6, 3)),
        (lambda: keras.layers.Conv1DTranspose(4, 3, strides=2), (2, 5, 3)),
    ],
)
def test_output_is_the_wrapped_layer_with_kernel_g_v_over_norm_v(make_layer, shape):
    x = np.random.default_rng(0).normal(size=shape).astype("float32")
    wrapper = WeightNormalization(make_layer(), data_init=False)
    wrapper.build(x.shape)
    wrapper.g.assign(np.random.default_rng(1).uniform(0.5, 2.0, wrapper.g.shape))
    wrapper.layer.bias.assign(np.random.default_rng(2).normal(size=wrapper.layer.bias.shape))
    plain = make_layer()
    plain.build(x.shape)
    plain.set_weights([_effective_kernel(wrapper), wrapper.layer.bias.numpy()])
    np.testing.assert_allclose(wrapper(x), plain(x), rtol=1e-5, atol=1e-5)


def test_without_data_init_it_starts_as_the_unwrapped_layer():
    x = np.random.default_rng(0).normal(size=(4, 3)).astype("float32")
    dense = keras.layers.Dense(5, bias_initializer="ones")
    wrapper = WeightNormalization(dense, data_init=False)
    wrapper.build(x.shape)
    expected = x @ dense.kernel.numpy() + 1.0
    np.testing.assert_allclose(wrapper(x, training=True), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("layer", "shape", "unit_axis"),
    [
        (keras.layers.Dense(6), (64, 5), -1),
        (keras.layers.Conv2D(3, 3), (8, 7, 7, 2), -1),
        (keras.layers.Conv2D(3, 3, data_format="channels_first"), (8, 2, 7, 7), 1),
    ],
)
def test_data_init_gives_zero_mean_unit_variance_outputs_on_the_first_batch(
    layer, shape, unit_axis
):
    x = np.random.default_rng(0).normal(loc=3.0, scale=2.0, size=shape).astype("float32")
    wrapper = WeightNormalization(layer)
    call = wrapper
    if getattr(layer, "data_format", None) == "channels_first":
        # TensorFlow runs channels-first 2D convolutions on a CPU only through XLA (plain Keras
        # Conv2D fails there too), so call the wrapper as a compiled function.
        call = tf.function(wrapper, jit_compile=True)
    first = np.asarray(call(x, training=True))
    axes = tuple(a for a in range(first.ndim) if a != unit_axis % first.ndim)
    np.testing.assert_allclose(first.mean(axis=axes), 0.0, atol=1e-4)
    np.testing.assert_allclose(first.std(axis=axes), 1.0, rtol=1e-3)
    assert bool(wrapper.initialized.numpy())
    # Only once: a second, different batch is not normalized again.
    second = np.asarray(call(2.0 * x + 1.0, training=True))
    assert not np.allclose(second.std(axis=axes), 1.0, rtol=1e-2)


def test_data_init_runs_inside_a_compiled_training_step():
    x = np.random.default_rng(0).normal(loc=1.0, size=(64, 5)).astype("float32")
    wrapper = WeightNormalization(keras.layers.Dense(4))
    model = keras.Sequential([keras.Input((5,)), wrapper])
    model.compile("sgd", "mse", jit_compile=True)
    model.fit(x, np.zeros((64, 4), "float32"), batch_size=64, epochs=1, verbose=0)
    assert bool(wrapper.initialized.numpy())
    # One SGD step (lr 0.01) moves the initialized statistics only slightly.
    outputs = model.predict(x, verbose=0)
    np.testing.assert_allclose(outputs.std(axis=0), 1.0, rtol=0.1)


def test_inference_before_training_does_not_trigger_data_init():
    wrapper = WeightNormalization(keras.layers.Dense(3))
    wrapper(np.ones((4, 2), "float32"))
    assert not bool(wrapper.initialized.numpy())


def test_trainable_weights_are_v_bias_and_g_and_all_get_gradients():
    x = np.random.default_rng(0).normal(size=(4, 3)).astype("float32")
    wrapper = WeightNormalization(keras.layers.Dense(2))
    wrapper.build(x.shape)
    names = sorted(v.path.split("/")[-1] for v in wrapper.trainable_variables)
    assert names == ["bias", "g", "kernel"]
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(wrapper(x) ** 2)
    gradients = tape.gradient(loss, wrapper.trainable_variables)
    assert all(g is not None and np.any(np.asarray(g) != 0) for g in gradients)


def test_gradient_with_respect_to_v_is_orthogonal_to_v():
    """Scaling v leaves w unchanged, so dL/dv is orthogonal to v per unit (paper, eq. 4)."""
    x = np.random.default_rng(0).normal(size=(8, 5)).astype("float32")
    wrapper = WeightNormalization(keras.layers.Dense(3), data_init=False)
    wrapper.build(x.shape)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.sin(wrapper(x)))
    grad_v = tape.gradient(loss, wrapper.layer.kernel.value).numpy()
    np.testing.assert_allclose((grad_v * wrapper.layer.kernel.numpy()).sum(axis=0), 0, atol=1e-5)


def test_save_load_restores_g_v_and_the_initialized_flag(tmp_path):
    x = np.random.default_rng(0).normal(size=(16, 5)).astype("float32")
    model = keras.Sequential([keras.Input((5,)), WeightNormalization(keras.layers.Dense(3))])
    model(x, training=True)
    model.save(tmp_path / "wn.keras")
    restored = keras.models.load_model(tmp_path / "wn.keras")
    original, loaded = model.layers[0], restored.layers[0]
    np.testing.assert_array_equal(loaded.g.numpy(), original.g.numpy())
    np.testing.assert_array_equal(loaded.layer.kernel.numpy(), original.layer.kernel.numpy())
    assert bool(loaded.initialized.numpy())
    # No re-initialization on the restored model's first training call.
    np.testing.assert_allclose(restored(2 * x, training=True), model(2 * x), rtol=1e-6)


@pytest.mark.parametrize(
    "layer",
    [keras.layers.DepthwiseConv2D(3), keras.layers.LSTM(3), keras.layers.Dropout(0.1), "dense"],
)
def test_rejects_unsupported_layers(layer):
    with pytest.raises(ValueError, match="WeightNormalization wraps one of Dense"):
        WeightNormalization(layer)
