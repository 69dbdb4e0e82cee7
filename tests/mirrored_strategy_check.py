"""Trains with every optimizer under a 2-replica MirroredStrategy (for the distributed test).

A separate process because the two logical CPU devices must be configured before TensorFlow
initializes, which the test process has long done. Prints one line per optimizer and exits
non-zero on the first mismatch.
"""

from __future__ import annotations

import os
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import tensorflow as tf

_CPU = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(_CPU, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from recipes.optim.optimizers import OPTIMIZER_NAMES, get_optimizer  # noqa: E402

GLOBAL_BATCH = 16


def _model() -> keras.Model:
    tokens = keras.Input(shape=(8,), dtype="int32")
    pooled = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(20, 4)(tokens))
    hidden = keras.layers.Dense(8, activation="tanh")(pooled)
    return keras.Model(tokens, keras.layers.Dense(1)(hidden))


def _data() -> tf.data.Dataset:
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 20, size=(64, 8)).astype("int32")
    targets = (tokens.mean(axis=1, keepdims=True) / 10.0).astype("float32")
    return tf.data.Dataset.from_tensor_slices((tokens, targets)).batch(GLOBAL_BATCH)


def _train(strategy: tf.distribute.Strategy, name: str, weights: list[np.ndarray]) -> keras.Model:
    with strategy.scope():
        model = _model()
        model.set_weights(weights)
        model.compile(optimizer=get_optimizer(name, learning_rate=0.02), loss="mse")
    model.fit(_data(), epochs=1, shuffle=False, verbose=0)
    return model


def main() -> int:
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert mirrored.num_replicas_in_sync == 2
    keras.utils.set_random_seed(0)
    initial = _model().get_weights()
    with tempfile.TemporaryDirectory() as directory:
        for name in OPTIMIZER_NAMES:
            distributed = _train(mirrored, name, initial)
            single = _train(tf.distribute.get_strategy(), name, initial)
            # Two replicas of 8 with summed, rescaled gradients are one batch of 16.
            for a, b in zip(distributed.get_weights(), single.get_weights(), strict=True):
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=name)
            path = os.path.join(directory, f"{name}.keras")
            distributed.save(path)
            with mirrored.scope():
                restored = keras.models.load_model(path)
            assert type(restored.optimizer) is type(distributed.optimizer), name
            for a, b in zip(
                restored.optimizer.variables, distributed.optimizer.variables, strict=True
            ):
                np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=name)
            restored.fit(_data(), epochs=1, shuffle=False, verbose=0)
            print(f"{name}: ok ({type(distributed.optimizer).__name__})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
