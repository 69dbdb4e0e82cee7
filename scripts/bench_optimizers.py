"""Step time of our optimizers vs Keras' built-in and tf.compat.v1.train's, as ratios.

    python -m scripts.bench_optimizers --quick

For every tf.train name, one training step (forward, backward, optimizer update) of the same MLP
on the same batch is timed with three optimizers: ours (`get_optimizer(name)`), Keras' closest
built-in, and `tf.compat.v1.train.<Name>Optimizer` applied to the same variables. Keras has no
AdagradDA, ProximalGradientDescent or ProximalAdagrad, so their Keras reference is `Adagrad`, and
the budget is that they cost at most 1.3x its step time.

The three implementations are timed in short bursts, round robin, many rounds over. Ratios are the
median over rounds of the ratio between bursts of the same round (neighbours in time see the same
machine load); step times are each implementation's fastest burst. GradientDescent compares
Keras' SGD with itself (ours is Keras' there), so its ratio shows the measurement noise.

Steps run in a `tf.function`, by default without XLA (each op its own kernel, the worst case for
our element-wise rules against tf.train's fused kernels); `--jit` compiles the steps with XLA, as
`model.fit` does by default on the TensorFlow backend.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from recipes.optim.optimizers import OPTIMIZER_NAMES, get_optimizer
from scripts.bench_common import format_rows

NEW_OPTIMIZERS = ("AdagradDA", "ProximalGradientDescent", "ProximalAdagrad")
BUDGET_VS_KERAS_ADAGRAD = 1.3
LEARNING_RATE = 0.01

# Keras' closest built-in for each name, configured with tf.train's defaults where Keras has them.
KERAS_EQUIVALENTS: dict[str, Callable[[], keras.optimizers.Optimizer]] = {
    "GradientDescent": lambda: keras.optimizers.SGD(LEARNING_RATE),
    "Adadelta": lambda: keras.optimizers.Adadelta(LEARNING_RATE, epsilon=1e-8),
    "Adagrad": lambda: keras.optimizers.Adagrad(LEARNING_RATE),
    "AdagradDA": lambda: keras.optimizers.Adagrad(LEARNING_RATE),
    "Momentum": lambda: keras.optimizers.SGD(LEARNING_RATE, momentum=0.9),
    "Adam": lambda: keras.optimizers.Adam(LEARNING_RATE, epsilon=1e-8),
    "Ftrl": lambda: keras.optimizers.Ftrl(LEARNING_RATE),
    "ProximalGradientDescent": lambda: keras.optimizers.Adagrad(LEARNING_RATE),
    "ProximalAdagrad": lambda: keras.optimizers.Adagrad(LEARNING_RATE),
    "RMSProp": lambda: keras.optimizers.RMSprop(LEARNING_RATE, epsilon=1e-10),
}
# Non-default regularization so the proximal/dual-averaging branches are part of the timing.
OUR_HYPERPARAMETERS: dict[str, dict[str, float]] = {
    name: {"l1": 1e-4, "l2": 1e-4} for name in NEW_OPTIMIZERS
}


def _tf_train_optimizer(name: str, global_step: tf.Variable) -> Any:
    cls = getattr(tf.compat.v1.train, f"{name}Optimizer")
    if name == "Momentum":
        return cls(LEARNING_RATE, momentum=0.9)
    if name == "AdagradDA":
        return cls(
            LEARNING_RATE,
            global_step,
            l1_regularization_strength=1e-4,
            l2_regularization_strength=1e-4,
        )
    if name in ("ProximalGradientDescent", "ProximalAdagrad"):
        return cls(LEARNING_RATE, l1_regularization_strength=1e-4, l2_regularization_strength=1e-4)
    return cls(LEARNING_RATE)


def _mlp(width: int) -> keras.Model:
    inputs = keras.Input((784,))
    hidden = keras.layers.Dense(width, activation="relu")(inputs)
    hidden = keras.layers.Dense(width, activation="relu")(hidden)
    return keras.Model(inputs, keras.layers.Dense(10)(hidden))


def _step_function(
    model: keras.Model, apply: Callable[[list[Any], list[Any]], Any], jit: bool
) -> Callable[[tf.Tensor, tf.Tensor], tf.Tensor]:
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    def step(features: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = loss_fn(labels, model(features, training=True))
        variables = [v.value for v in model.trainable_variables]
        apply(tape.gradient(loss, variables), model.trainable_variables)
        return loss

    return tf.function(step, jit_compile=jit)


def _keras_apply(optimizer: keras.optimizers.Optimizer) -> Callable[[list, list], Any]:
    return lambda gradients, variables: optimizer.apply_gradients(
        zip(gradients, variables, strict=True)
    )


def _tf_train_apply(name: str) -> Callable[[list, list], Any]:
    global_step = tf.Variable(0, dtype=tf.int64, trainable=False)
    optimizer = _tf_train_optimizer(name, global_step)

    def apply(gradients: list, variables: list) -> Any:
        pairs = zip(gradients, [v.value for v in variables], strict=True)
        return optimizer.apply_gradients(pairs, global_step=global_step)

    return apply


def _time_steps(step: Callable, batch: tuple[tf.Tensor, tf.Tensor], steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        loss = step(*batch)
    float(loss)  # wait for the last step
    return (time.perf_counter() - start) / steps


def _benchmark_one(
    name: str, batch: tuple[tf.Tensor, tf.Tensor], width: int, steps: int, repeats: int, jit: bool
) -> dict[str, Any]:
    steps_by_label: dict[str, Callable] = {}
    keras.utils.set_random_seed(0)
    initial = _mlp(width).get_weights()
    for label, make_apply in (
        (
            "ours",
            lambda: _keras_apply(
                get_optimizer(name, LEARNING_RATE, **OUR_HYPERPARAMETERS.get(name, {}))
            ),
        ),
        ("keras", lambda: _keras_apply(KERAS_EQUIVALENTS[name]())),
        ("tf_train", lambda: _tf_train_apply(name)),
    ):
        model = _mlp(width)
        model.set_weights(initial)
        step = _step_function(model, make_apply(), jit)
        _time_steps(step, batch, 3)  # trace, build slots, warm caches
        steps_by_label[label] = step
    timings: dict[str, list[float]] = {label: [] for label in steps_by_label}
    for _ in range(repeats):
        for label, step in steps_by_label.items():
            timings[label].append(_time_steps(step, batch, steps))
    best = {label: min(values) for label, values in timings.items()}

    def paired_ratio(reference: str) -> float:
        ratios = [o / r for o, r in zip(timings["ours"], timings[reference], strict=True)]
        return statistics.median(ratios)

    return {
        "benchmark": "optimizer_step_time",
        "optimizer": name,
        "ours": type(get_optimizer(name)).__name__,
        "keras": type(KERAS_EQUIVALENTS[name]()).__name__,
        "jit_compile": jit,
        "ours_ms": 1e3 * best["ours"],
        "keras_ms": 1e3 * best["keras"],
        "tf_train_ms": 1e3 * best["tf_train"],
        "ratio_vs_keras": paired_ratio("keras"),
        "ratio_vs_tf_train": paired_ratio("tf_train"),
    }


def run_benchmarks(quick: bool, jit: bool = False) -> list[dict]:
    """Times every optimizer; returns one row per tf.train name.

    Each row: `optimizer`, the classes compared (`ours`, `keras`), best step times in ms
    (`ours_ms`, `keras_ms`, `tf_train_ms`), the paired median ratios `ratio_vs_keras` and
    `ratio_vs_tf_train`, and for the
    three optimizers Keras lacks, `within_budget` (ratio to Keras' Adagrad <= 1.3).
    """
    width, batch_size, steps, repeats = (256, 64, 3, 8) if quick else (512, 128, 5, 60)
    rng = np.random.default_rng(0)
    batch = (
        tf.constant(rng.normal(size=(batch_size, 784)).astype("float32")),
        tf.constant(rng.integers(0, 10, size=batch_size).astype("int32")),
    )
    rows = []
    for name in OPTIMIZER_NAMES:
        row = _benchmark_one(name, batch, width, steps, repeats, jit)
        if name in NEW_OPTIMIZERS:
            row["within_budget"] = row["ratio_vs_keras"] <= BUDGET_VS_KERAS_ADAGRAD
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small model, few steps")
    parser.add_argument("--jit", action="store_true", help="compile the steps with XLA")
    args = parser.parse_args()
    print(format_rows(run_benchmarks(args.quick, jit=args.jit)))


if __name__ == "__main__":
    main()
