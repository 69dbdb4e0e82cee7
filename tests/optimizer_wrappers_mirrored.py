"""Lookahead and SWA, also inside mixed precision's LossScaleOptimizer, under a 2-replica
MirroredStrategy (for tests/test_optimizer_wrappers.py).

A separate process because the two logical CPU devices must be configured before TensorFlow
initializes, which the test process has long done. For each wrapped optimizer: one epoch under
the strategy equals one on a single device (weights and every optimizer variable), the model
saved under the strategy loads back with the same optimizer state and keeps training; then the
SWA ending (averages in, BatchNorm statistics recomputed) under the strategy equals the one on a
single device. Prints one line per case and exits non-zero on the first mismatch.
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

from recipes.callbacks.swa import SWACallback  # noqa: E402
from recipes.optim import (  # noqa: E402
    Lookahead,
    StochasticWeightAveraging,
    get_optimizer,
    wrap_for_policy,
)

GLOBAL_BATCH = 16
CASES = {
    "Lookahead(Momentum)": lambda: Lookahead(get_optimizer("Momentum", 0.05), k=3, alpha=0.5),
    "SWA(Adam)": lambda: StochasticWeightAveraging(get_optimizer("Adam", 0.01), 2, 3),
    "SWA(Lookahead(Adam))": lambda: StochasticWeightAveraging(
        Lookahead(get_optimizer("Adam", 0.01), k=2, alpha=0.8), start_step=3, average_period=2
    ),
    # Mixed precision's loss scaling around a wrapper: its merge_call path under the strategy
    # (on a float32 model, so that the single device computes the same gradients).
    "LossScaleOptimizer(SWA(Lookahead(Momentum)))": lambda: wrap_for_policy(
        StochasticWeightAveraging(Lookahead(get_optimizer("Momentum", 0.05), k=3), 2, 2),
        "mixed_float16",
    ),
}


def _model(batch_norm: bool = False) -> keras.Model:
    inputs = keras.Input(shape=(6,))
    hidden = keras.layers.Dense(8, activation="tanh")(inputs)
    if batch_norm:
        hidden = keras.layers.BatchNormalization()(hidden)
    return keras.Model(inputs, keras.layers.Dense(1)(hidden))


def _data() -> tf.data.Dataset:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 6)).astype("float32")
    y = (x[:, :1] * 2 - x[:, 1:2]).astype("float32")
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(GLOBAL_BATCH)


def _train(strategy, make_optimizer, weights, batch_norm=False) -> keras.Model:
    with strategy.scope():
        model = _model(batch_norm)
        model.set_weights(weights)
        model.compile(optimizer=make_optimizer(), loss="mse")
    model.fit(_data(), epochs=2, shuffle=False, verbose=0)
    return model


def _assert_close(a, b, message, exact=False) -> None:
    for x, y in zip(a, b, strict=True):
        x, y = np.asarray(x), np.asarray(y)
        if exact:
            np.testing.assert_array_equal(x, y, err_msg=message)
        else:
            np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6, err_msg=message)


def main() -> int:
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert mirrored.num_replicas_in_sync == 2
    keras.utils.set_random_seed(0)
    initial = _model().get_weights()
    with tempfile.TemporaryDirectory() as directory:
        for name, make_optimizer in CASES.items():
            distributed = _train(mirrored, make_optimizer, initial)
            single = _train(tf.distribute.get_strategy(), make_optimizer, initial)
            # Two replicas of 8 with summed, rescaled gradients are one batch of 16.
            _assert_close(distributed.get_weights(), single.get_weights(), name)
            _assert_close(distributed.optimizer.variables, single.optimizer.variables, name)
            path = os.path.join(directory, "model.keras")
            distributed.save(path)
            with mirrored.scope():
                restored = keras.models.load_model(path)
            _assert_close(restored.optimizer.variables, distributed.optimizer.variables, name, True)
            restored.fit(_data(), epochs=1, shuffle=False, verbose=0)
            print(f"{name}: ok", flush=True)

    # The end of SWA on a model with BatchNormalization: the strategy's copy and a single
    # device's agree once given the same weights and optimizer state.
    keras.utils.set_random_seed(1)
    initial = _model(batch_norm=True).get_weights()
    models = []
    for strategy in (mirrored, tf.distribute.get_strategy()):
        model = _train(strategy, CASES["SWA(Adam)"], initial, batch_norm=True)
        models.append(model)
    distributed, single = models
    single.set_weights(distributed.get_weights())
    for target, source in zip(
        single.optimizer.variables, distributed.optimizer.variables, strict=True
    ):
        target.assign(np.asarray(source))
    reports = []
    for model in models:
        swa = SWACallback(_data(), verbose=0)
        reports.append(swa.finish(model))
    assert reports[0] == reports[1], reports
    _assert_close(distributed.get_weights(), single.get_weights(), "SWA ending")
    print("SWACallback: ok", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
