"""Overhead of the training monitors: fit time with monitors / fit time without, same run.

    python -m scripts.bench_monitors --quick

For each model, trains a fresh copy (same seed, same data) without callbacks, with all four
monitors measuring once per epoch (the default), and with them measuring every 10 steps. Each
configuration is warmed up by one epoch (graph tracing) and timed over several epochs; the
fastest of `repeats` runs is kept. Prints the ratio to the run without monitors.
"""

import argparse
import time
from collections.abc import Callable

import keras
import numpy as np

from recipes.callbacks.monitors import build_monitors
from scripts.bench_common import format_rows

MONITOR_SCHEDULES = {"none": None, "per epoch": "epoch", "every 10 steps": 10}


def mlp_3x256() -> keras.Model:
    inputs = keras.Input((28, 28, 1))
    hidden = keras.layers.Flatten()(inputs)
    for _ in range(3):
        hidden = keras.layers.Dense(256, activation="relu")(hidden)
    return keras.Model(inputs, keras.layers.Dense(10)(hidden))


def cnn_2conv() -> keras.Model:
    inputs = keras.Input((28, 28, 1))
    hidden = keras.layers.Conv2D(16, 3, activation="relu")(inputs)
    hidden = keras.layers.MaxPooling2D()(hidden)
    hidden = keras.layers.Conv2D(32, 3, activation="relu")(hidden)
    hidden = keras.layers.GlobalAveragePooling2D()(hidden)
    return keras.Model(inputs, keras.layers.Dense(10)(hidden))


def _timed_fit(
    build: Callable[[], keras.Model], data, schedule, epochs: int, batch_size: int
) -> float:
    inputs, labels = data
    keras.utils.set_random_seed(0)
    model = build()
    model.compile(
        keras.optimizers.SGD(0.01),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    callbacks = []
    if schedule is not None:
        every = None if schedule == "epoch" else schedule
        callbacks = build_monitors((inputs[:128], labels[:128]), every_n_batches=every)
    # The warm-up epoch traces the train step and builds the monitors' probe models.
    model.fit(inputs, labels, batch_size=batch_size, epochs=1, verbose=0, callbacks=callbacks)
    start = time.perf_counter()
    model.fit(inputs, labels, batch_size=batch_size, epochs=epochs, verbose=0, callbacks=callbacks)
    return time.perf_counter() - start


def run_benchmarks(quick: bool) -> list[dict]:
    """Times every model under every monitor schedule; returns one row per pair.

    Each row: `model`, `monitors` (schedule name), `seconds` (best of the repeats) and `ratio`
    (seconds / seconds without monitors for the same model).
    """
    count, epochs, repeats = (2048, 2, 2) if quick else (8192, 4, 3)
    builders = [mlp_3x256] if quick else [mlp_3x256, cnn_2conv]
    rng = np.random.default_rng(0)
    data = (
        rng.uniform(size=(count, 28, 28, 1)).astype("float32"),
        rng.integers(0, 10, size=count).astype("int32"),
    )
    rows = []
    for build in builders:
        baseline = None
        for name, schedule in MONITOR_SCHEDULES.items():
            seconds = min(
                _timed_fit(build, data, schedule, epochs, batch_size=64) for _ in range(repeats)
            )
            baseline = baseline or seconds
            rows.append(
                {
                    "model": build.__name__,
                    "monitors": name,
                    "seconds": seconds,
                    "ratio": seconds / baseline,
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one model, small data")
    args = parser.parse_args()
    print(format_rows(run_benchmarks(args.quick)))


if __name__ == "__main__":
    main()
