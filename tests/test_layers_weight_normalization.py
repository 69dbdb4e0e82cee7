"""WeightNormalization: the reparameterization, data-dependent init, training and saving."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from layers import WeightNormalization


def _effective_kernel(wrapper):
    v = wrapper._kernel_variable().numpy()
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
    [
        keras.layers.DepthwiseConv2D(3),
        keras.layers.MaxPooling2D(2),
        keras.layers.Dropout(0.1),
        keras.layers.Bidirectional(keras.layers.LSTM(3)),
        keras.layers.RNN([keras.layers.LSTMCell(2), keras.layers.LSTMCell(2)]),
        "dense",
    ],
)
def test_rejects_unsupported_layers(layer):
    with pytest.raises(ValueError, match="WeightNormalization wraps one of Dense"):
        WeightNormalization(layer)


def test_rejects_a_data_init_that_is_not_a_boolean():
    with pytest.raises(ValueError, match="`data_init` must be True or False"):
        WeightNormalization(keras.layers.Dense(2), data_init="yes")


# TensorFlow Addons' expectations (its wrappers_test.py), rewritten. Where TFA initialized on
# any first call, the data-dependent init here runs on the first training call.


def _identity_dense_wrapper(data_init):
    dense = keras.layers.Dense(2, kernel_initializer="identity", bias_initializer="zeros")
    return WeightNormalization(dense, data_init=data_init)


def test_tfa_case_identity_kernel_without_data_init_is_the_identity():
    x = np.array([[[-4.0, -4.0], [4.0, 4.0]]], "float32")
    np.testing.assert_allclose(_identity_dense_wrapper(False)(x, training=True), x)


def test_tfa_case_identity_kernel_with_data_init_divides_by_the_batch_std():
    # Per unit the batch is {-4, 4}: mean 0, std 4, so g = 1/4 and the bias stays 0.
    x = np.array([[[-4.0, -4.0], [4.0, 4.0]]], "float32")
    wrapper = _identity_dense_wrapper(True)
    np.testing.assert_allclose(wrapper(x, training=True), x / 4, rtol=1e-6)
    np.testing.assert_allclose(wrapper.g.numpy(), [0.25, 0.25], rtol=1e-6)
    np.testing.assert_array_equal(wrapper.layer.bias.numpy(), [0.0, 0.0])


# (factory, input shape without the batch axis, recurrent)
_BASE_LAYERS = {
    "dense": (lambda: keras.layers.Dense(3), (4,), False),
    "conv2d": (lambda: keras.layers.Conv2D(3, 1), (3, 3, 2), False),
    "conv1d_transpose": (lambda: keras.layers.Conv1DTranspose(2, 3, strides=2), (5, 3), False),
    "simple_rnn": (lambda: keras.layers.SimpleRNN(2), (10, 3), True),
    "lstm": (lambda: keras.layers.LSTM(3, return_sequences=True), (10, 3), True),
    "gru": (lambda: keras.layers.GRU(2), (6, 4), True),
}


@pytest.mark.parametrize("name", _BASE_LAYERS)
def test_tfa_case_without_data_init_the_wrapper_computes_what_the_layer_computed(name):
    make_layer, shape, _ = _BASE_LAYERS[name]
    x = np.random.default_rng(0).normal(size=(2, *shape)).astype("float32")
    layer = make_layer()
    unwrapped = np.asarray(layer(x))
    wrapped = WeightNormalization(layer, data_init=False)(x)
    np.testing.assert_allclose(wrapped, unwrapped, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", _BASE_LAYERS)
def test_recurrent_layers_default_to_no_data_init_and_refuse_it(name):
    make_layer, _, recurrent = _BASE_LAYERS[name]
    assert WeightNormalization(make_layer()).data_init is (not recurrent)
    if recurrent:
        with pytest.raises(ValueError, match="data-dependent initialization is not used"):
            WeightNormalization(make_layer(), data_init=True)


@pytest.mark.parametrize(
    ("name", "data_init"),
    [(name, False) for name in _BASE_LAYERS]
    + [(name, True) for name, (_, _, recurrent) in _BASE_LAYERS.items() if not recurrent],
)
def test_tfa_case_removed_layer_computes_what_the_wrapper_computes(name, data_init, tmp_path):
    make_layer, shape, _ = _BASE_LAYERS[name]
    rng = np.random.default_rng(0)
    x = rng.normal(loc=1.0, size=(8, *shape)).astype("float32")
    wrapper = WeightNormalization(make_layer(), data_init=data_init)
    wrapper(x, training=True)
    # Move g away from ||v|| so that the baked-in kernel is not simply v.
    wrapper.g.assign(wrapper.g.numpy() * rng.uniform(0.5, 2.0, wrapper.g.shape))
    v_before = wrapper._kernel_variable().numpy()
    removed = wrapper.remove()
    assert type(removed) is type(wrapper.layer) and removed is not wrapper.layer
    np.testing.assert_allclose(removed(x), wrapper(x), rtol=1e-5, atol=1e-6)
    # The wrapper keeps its own weights.
    np.testing.assert_array_equal(wrapper._kernel_variable().numpy(), v_before)
    # The removed layer is a plain Keras layer: it saves and loads without this package.
    model = keras.Sequential([keras.Input(shape), removed])
    model.save(tmp_path / "removed.keras")
    restored = keras.models.load_model(tmp_path / "removed.keras")
    np.testing.assert_allclose(restored.predict(x, verbose=0), wrapper(x), rtol=1e-5, atol=1e-6)


def test_removed_kernel_is_g_times_v_over_its_norm():
    wrapper = WeightNormalization(keras.layers.Conv2D(4, 3), data_init=False)
    wrapper.build((None, 6, 6, 2))
    wrapper.g.assign([0.5, 1.0, 2.0, 3.0])
    np.testing.assert_allclose(wrapper.remove().kernel.numpy(), _effective_kernel(wrapper), 1e-6)


def test_remove_before_build_is_refused():
    with pytest.raises(ValueError, match="build or call the wrapper"):
        WeightNormalization(keras.layers.Dense(2)).remove()


def test_tfa_case_serialization_keeps_data_init_and_the_wrapped_class():
    for layer, data_init in [(keras.layers.Dense(1), True), (keras.layers.LSTM(1), False)]:
        wrapper = WeightNormalization(layer, data_init=data_init)
        restored = keras.layers.deserialize(keras.layers.serialize(wrapper))
        assert type(restored.layer) is type(layer)
        assert restored.data_init is data_init


def test_recurrent_layer_normalizes_each_column_of_the_recurrent_kernel():
    x = np.random.default_rng(0).normal(size=(3, 7, 4)).astype("float32")
    wrapper = WeightNormalization(keras.layers.LSTM(5))
    wrapper.build(x.shape)
    cell = wrapper.layer.cell
    assert wrapper.g.shape == (20,)  # one per column of the fused 4-gate recurrent kernel
    wrapper.g.assign(np.random.default_rng(1).uniform(0.5, 2.0, 20))
    plain = keras.layers.LSTM(5)
    plain.build(x.shape)
    plain.set_weights([cell.kernel.numpy(), _effective_kernel(wrapper), cell.bias.numpy()])
    np.testing.assert_allclose(wrapper(x), plain(x), rtol=1e-5, atol=1e-6)
    # The call put the variable back in place.
    assert cell.recurrent_kernel is wrapper.layer.weights[1]


def test_recurrent_layer_trains_v_g_the_input_kernel_and_bias():
    x = np.random.default_rng(0).normal(size=(4, 6, 3)).astype("float32")
    wrapper = WeightNormalization(keras.layers.GRU(2))
    wrapper.build(x.shape)
    names = sorted(v.path.split("/")[-1] for v in wrapper.trainable_variables)
    assert names == ["bias", "g", "kernel", "recurrent_kernel"]
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.sin(wrapper(x)))
    gradients = tape.gradient(loss, wrapper.trainable_variables)
    gradients = {
        v.path.split("/")[-1]: np.asarray(g)
        for v, g in zip(wrapper.trainable_variables, gradients, strict=True)
    }
    assert all(np.any(np.asarray(g) != 0) for g in gradients.values())
    # Scaling v leaves w unchanged, so dL/dv is orthogonal to v per column.
    v = wrapper.layer.cell.recurrent_kernel.numpy()
    np.testing.assert_allclose((gradients["recurrent_kernel"] * v).sum(axis=0), 0, atol=1e-6)


def test_recurrent_kernel_is_restored_when_the_call_fails():
    wrapper = WeightNormalization(keras.layers.SimpleRNN(2))
    wrapper(np.zeros((1, 3, 2), "float32"))
    variable = wrapper.layer.cell.recurrent_kernel
    with pytest.raises((ValueError, tf.errors.InvalidArgumentError)):
        wrapper(np.zeros((1, 3, 5), "float32"))  # wrong feature size
    assert wrapper.layer.cell.recurrent_kernel is variable


def test_recurrent_layer_receives_the_mask():
    tokens = np.array([[3, 1, 4, 0, 0], [2, 7, 1, 8, 2]])
    embedding = keras.layers.Embedding(10, 3, mask_zero=True)
    lstm = keras.layers.LSTM(4, return_sequences=True)
    inputs = keras.Input((5,), dtype="int32")
    wrapped = WeightNormalization(lstm, data_init=False)(embedding(inputs))
    model = keras.Model(inputs, wrapped)
    # With the mask, the padded steps repeat the last real step's output.
    outputs = model.predict(tokens, verbose=0)
    np.testing.assert_allclose(outputs[0, 3], outputs[0, 2])
    np.testing.assert_allclose(outputs[0, 4], outputs[0, 2])
    plain = lstm(embedding(tokens), mask=embedding.compute_mask(tokens))
    np.testing.assert_allclose(outputs, plain, rtol=1e-5, atol=1e-6)


def test_tfa_case_inside_time_distributed_in_a_model_that_trains():
    inputs = keras.Input((4, 8, 8, 3))
    wrapper = WeightNormalization(keras.layers.Conv2D(3, 3))
    model = keras.Model(inputs, keras.layers.TimeDistributed(wrapper)(inputs))
    model.compile("sgd", "mse")
    x = np.random.default_rng(0).normal(loc=2.0, size=(6, 4, 8, 8, 3)).astype("float32")
    model.fit(x, np.zeros((6, 4, 6, 6, 3)), batch_size=6, epochs=2, verbose=0)
    assert bool(wrapper.initialized.numpy())
    assert np.all(np.isfinite(model.predict(x, verbose=0)))


def test_inside_time_distributed_data_init_uses_the_first_time_step():
    # Keras 3's TimeDistributed calls the wrapper once per time step, so the first training call
    # sees the first step's batch.
    x = np.random.default_rng(0).normal(loc=2.0, size=(32, 3, 5)).astype("float32")
    wrapper = WeightNormalization(keras.layers.Dense(4))
    outputs = np.asarray(keras.layers.TimeDistributed(wrapper)(x, training=True))
    np.testing.assert_allclose(outputs[:, 0].mean(axis=0), 0.0, atol=1e-4)
    np.testing.assert_allclose(outputs[:, 0].std(axis=0), 1.0, rtol=1e-3)
    # Every step is the same wrapped layer applied to that step.
    np.testing.assert_allclose(outputs[:, 2], wrapper(x[:, 2]), rtol=1e-5, atol=1e-6)


def test_tfa_case_recurrent_layer_with_an_unknown_number_of_steps_builds_and_runs():
    model = keras.Sequential([keras.Input((None, 10)), WeightNormalization(keras.layers.LSTM(1))])
    x = np.ones((2, 7, 10), "float32")
    assert model.predict(x, verbose=0).shape == (2, 1)


@pytest.mark.parametrize(
    ("make_layer", "shape"),
    [(lambda: keras.layers.Dense(4), (3, 600)), (lambda: keras.layers.Conv2D(4, 3), (2, 6, 6, 64))],
    ids=["dense", "conv2d"],
)
def test_mixed_float16_keeps_a_kernel_norm_whose_square_overflows_float16(make_layer, shape):
    """`||v||` grows in training; past 256 its square is inf in float16, which would zero the
    output if the norm were taken in the compute dtype."""
    x = np.random.default_rng(0).normal(size=shape).astype("float32")
    reference = WeightNormalization(make_layer(), data_init=False)
    reference.build(shape)
    reference.layer.kernel.assign(reference.layer.kernel * 300.0)
    norms = np.linalg.norm(reference.layer.kernel.numpy().reshape(-1, 4), axis=0)
    assert norms.min() > 256
    mixed = WeightNormalization(make_layer(), data_init=False, dtype="mixed_float16")
    mixed.build(shape)
    mixed.set_weights(reference.get_weights())
    output = np.asarray(tf.cast(mixed(x), tf.float32))
    expected = np.asarray(reference(x))
    assert np.max(np.abs(output - expected)) <= 5e-3 * np.max(np.abs(expected))


def test_the_wrapper_takes_the_wrapped_layers_dtype_policy_unless_given_one():
    wrapped = WeightNormalization(keras.layers.Dense(3, dtype="mixed_bfloat16"))
    assert wrapped.dtype_policy.name == "mixed_bfloat16"
    assert wrapped(np.ones((2, 4), "float32")).dtype == tf.bfloat16
    explicit = WeightNormalization(keras.layers.Dense(3), dtype="mixed_float16")
    assert explicit.dtype_policy.name == "mixed_float16"
    assert explicit.layer.dtype_policy.name == "float32"
