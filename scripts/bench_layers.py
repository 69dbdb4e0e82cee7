"""Times each custom layer against its reference in the same run and prints the ratios.

    python scripts/bench_layers.py [--quick]

Every pair runs under `tf.function` on the same inputs, forward and
forward+backward (a loss on the output and its gradients with respect to
the inputs and all trainable weights), alternating ours and the reference over several repeats and keeping
the best time of each: the minimum over many short samples is the least
disturbed by other processes, and alternating exposes both to the same load.
`run_benchmarks(quick)` returns the rows for an umbrella benchmark script.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import keras
import numpy as np
import tensorflow as tf

import layers
from scripts.bench_common import format_rows


def _step(forward: Callable, variables: list, backward: bool) -> Callable:
    """A compiled forward (or forward+backward) pass of `forward` on a fixed input.

    The backward step returns the loss with the gradients, as a training step
    does, and the loss (half the sum of squares) has a gradient that depends
    on the outputs, as every real loss does. With a plain sum and only the
    gradients returned, a `Dense` reference's gradients are `ones @ W^T`,
    `x^T @ ones` and a constant bias gradient: TensorFlow would prune its
    forward matmul and constant-fold the bias reduction, timing less than a
    training step does.
    """

    @tf.function
    def run(x):
        if not backward:
            return forward(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = 0.5 * tf.reduce_sum(tf.square(forward(x)))
        return loss, tape.gradient(loss, [x, *variables])

    return run


def _mean_time_ms(run: Callable, x, iterations: int) -> float:
    start = time.perf_counter()
    for _ in range(iterations):
        result = run(x)
    tf.nest.map_structure(lambda t: t.numpy(), result)
    return (time.perf_counter() - start) / iterations * 1000


def _compare(ours: Callable, ours_vars, reference: Callable, reference_vars, x, quick):
    """Best-of-repeats times (ms) of ours and the reference, forward and forward+backward."""
    iterations, repeats = (1, 20) if quick else (2, 100)
    results = {}
    for backward in (False, True):
        runs = (_step(ours, ours_vars, backward), _step(reference, reference_vars, backward))
        for run in runs:
            run(x)  # trace and warm up
        best = [float("inf"), float("inf")]
        for _ in range(repeats):
            for i, run in enumerate(runs):
                best[i] = min(best[i], _mean_time_ms(run, x, iterations))
        results["forward+backward" if backward else "forward"] = tuple(best)
    return results


def _built(layer, x):
    layer(x)
    return layer


def _naive_locally_connected(layer):
    """The per-position loop the layer replaces: one slice and matmul per output position."""
    (out_h, out_w), (kh, kw), (sh, sw) = (
        layer._output_spatial_shape,
        layer.kernel_size,
        layer.strides,
    )

    def forward(x):
        rows = []
        for i in range(out_h):
            row = []
            for j in range(out_w):
                patch = x[:, i * sh : i * sh + kh, j * sw : j * sw + kw, :]
                patch = tf.reshape(patch, (tf.shape(x)[0], -1))
                row.append(tf.matmul(patch, layer.kernel[i * out_w + j]))
            rows.append(tf.stack(row, axis=1))
        return tf.stack(rows, axis=1) + layer.bias

    return forward


def _cases(quick: bool):
    rng = np.random.default_rng(0)

    def tensor(*shape):
        return tf.constant(rng.normal(size=shape).astype("float32"))

    batch = 8 if quick else 32
    images = tensor(batch, 27, 27, 96)
    lrn = _built(layers.LocalResponseNormalization(), images)
    yield (
        "LocalResponseNormalization",
        "tf.nn.local_response_normalization",
        1.2,
        (lrn, [], lambda x: tf.nn.local_response_normalization(x, 2, 2.0, 1e-4, 0.75), []),
        images,
    )

    features = tensor(batch, 28, 28, 64)
    ours = _built(layers.GroupNormalization(groups=8), features)
    reference = _built(keras.layers.GroupNormalization(groups=8), features)
    yield (
        "GroupNormalization",
        "keras.layers.GroupNormalization",
        1.0,
        (ours, ours.trainable_variables, reference, reference.trainable_variables),
        features,
    )

    vectors = tensor(128, 512)
    for name, make, x in (
        ("WeightNormalization(Dense)", lambda: keras.layers.Dense(512), vectors),
        ("WeightNormalization(Conv2D)", lambda: keras.layers.Conv2D(64, 3), features),
    ):
        wrapped = layers.WeightNormalization(make())
        wrapped(x, training=True)  # data-dependent init, then timed as in training
        plain = _built(make(), x)
        yield (
            name,
            f"plain {name.split('(')[1][:-1]}",
            1.3,
            (
                lambda x, w=wrapped: w(x, training=True),
                wrapped.trainable_variables,
                plain,
                plain.trainable_variables,
            ),
            x,
        )

    maxout = _built(layers.Maxout(4, units=256), vectors)
    dense = _built(keras.layers.Dense(1024), vectors)
    yield (
        "Maxout(units=256, pieces=4)",
        "Dense(1024)",
        1.2,
        (maxout, maxout.trainable_variables, dense, dense.trainable_variables),
        vectors,
    )

    small = tensor(batch, 24, 24, 8)
    local = _built(layers.LocallyConnected2D(16, 3), small)
    yield (
        "LocallyConnected2D",
        "naive per-position loop",
        None,
        (local, local.trainable_variables, _naive_locally_connected(local), []),
        small,
    )


def run_benchmarks(quick: bool) -> list[dict]:
    """Times all pairs; one row per layer and pass with times in ms and ours/reference."""
    rows = []
    for name, reference_name, target, (ours, ours_vars, reference, ref_vars), x in _cases(quick):
        timings = _compare(ours, ours_vars, reference, ref_vars, x, quick)
        for mode, (ours_ms, reference_ms) in timings.items():
            rows.append(
                {
                    "layer": name,
                    "reference": reference_name,
                    "pass": mode,
                    "ours_ms": ours_ms,
                    "reference_ms": reference_ms,
                    "ratio": ours_ms / reference_ms,
                    "target": target,
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small batches, few repeats")
    args = parser.parse_args()
    print(format_rows(run_benchmarks(args.quick)))


if __name__ == "__main__":
    main()
