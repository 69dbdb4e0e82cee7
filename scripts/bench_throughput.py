"""Training throughput of a recipe's pipeline vs a plain Keras `model.fit` on in-memory arrays.

    python scripts/bench_throughput.py [--quick] [--dataset fashion_mnist --manual-dir DIR]

The recipe pipeline is what `recipes.train.runner.run` trains with: `recipes.train.runner.load_data` (cached
uint8 examples, per-epoch shuffle, batch, scale, prefetch) feeding a model from
`recipes.train.runner.build_model` compiled by `recipes.train.runner.compile_model`. The plain reference is
what a hand-written Keras script does: the same zoo model, compiled with the same optimizer and
loss, `model.fit(x, y, batch_size=B)` on float32 NumPy arrays of the same training images.

Both are traced by a warm-up epoch, then timed epoch by epoch (steady state), alternating recipe
and plain rounds so that both see the same machine load. The ratio is plain epoch time / recipe
epoch time, the median over rounds: above 1.0 the recipe pipeline is faster. Images/s come from
each pipeline's fastest epoch. The full run adds the recipe pipeline with XLA (`jit_compile`),
which Keras leaves off on CPU.

`run_benchmarks(quick)` returns the rows for `scripts/benchmark.py`.
"""

from __future__ import annotations

import math
import os
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import keras
import numpy as np
import tensorflow as tf

from recipes.data.datasets import load_dataset
from recipes.optim.losses import get_loss
from recipes.optim.optimizers import get_optimizer
from recipes.train.config import RunConfig
from recipes.train.runner import build_model, compile_model, load_data
from scripts.bench_common import EpochTimer, format_tables, parse_args

# (zoo model, batch size) pairs, each with the batch size its recipe trains with.
QUICK_CASES = (("mlp", 128), ("lenet5", 64))
FULL_CASES = (*QUICK_CASES, ("maxout_mlp", 128))
# Recipe pipeline variants: name -> (jit_compile or None for Keras' choice, steps_per_execution). "default" is what the
# runner does; the others show what XLA and several steps per call would change on this machine.
DEFAULT_VARIANT = {"default": (None, 1)}
FULL_VARIANTS = {**DEFAULT_VARIANT, "xla": (True, 1), "steps_per_execution=8": (None, 8)}


def recipe_config(model: str, batch_size: int, **overrides: Any) -> RunConfig:
    """A full run configuration, as a recipe would have it, for `model` at `batch_size`
    (`overrides` by flat option name, e.g. `dataset=...`, `validation_fraction=...`)."""
    return RunConfig.from_dict(
        {
            "model": model,
            "batch_size": batch_size,
            "optimizer": "momentum",
            "lr": 0.01,
            "optimizer_options": {"momentum": 0.9},
            **overrides,
        }
    )


@dataclass
class EpochTimes:
    """Per-epoch wall and CPU seconds of one training call."""

    wall: list[float]
    cpu: list[float]


@dataclass
class RecipePipeline:
    """A compiled model and the training pipeline the recipe runner would feed it."""

    model: keras.Model
    train: tf.data.Dataset
    num_examples: int

    def epoch_times(self, epochs: int) -> EpochTimes:
        """Trains `epochs` epochs; returns each epoch's wall and CPU time."""
        timer = EpochTimer()
        self.model.fit(self.train, epochs=epochs, verbose=0, callbacks=[timer], shuffle=False)
        return EpochTimes(timer.seconds, timer.cpu_seconds)


def recipe_pipeline(
    config: RunConfig,
    jit_compile: bool | None = None,
    steps_per_execution: int = 1,
    seed: int = 0,
) -> RecipePipeline:
    """The runner's data, model and compile for `config`, training split only.

    `jit_compile` (None keeps Keras' choice: XLA off on CPU) and `steps_per_execution` override
    what `compile_model` set.
    """
    train, info = load_data(config.updated({"run.seed": seed}), "train")
    keras.utils.set_random_seed(seed)
    model = build_model(config, info.image_shape, info.num_classes)
    num_examples = info.split_sizes["train"]
    compile_model(model, config, steps_per_epoch=math.ceil(num_examples / config.run.batch_size))
    if jit_compile is not None:
        model.jit_compile = jit_compile
    model.steps_per_execution = steps_per_execution
    return RecipePipeline(model, train, num_examples)


@dataclass
class PlainPipeline:
    """The hand-written reference: a compiled model and float32 arrays in memory."""

    model: keras.Model
    images: np.ndarray
    labels: np.ndarray
    batch_size: int

    def epoch_times(self, epochs: int) -> EpochTimes:
        """Trains `epochs` epochs; returns each epoch's wall and CPU time."""
        timer = EpochTimer()
        self.model.fit(
            self.images,
            self.labels,
            batch_size=self.batch_size,
            epochs=epochs,
            verbose=0,
            callbacks=[timer],
        )
        return EpochTimes(timer.seconds, timer.cpu_seconds)


def plain_pipeline(config: RunConfig, seed: int = 0) -> PlainPipeline:
    """The same model and training images, compiled and fed the way a plain Keras script does."""
    unbatched, info = load_dataset(
        config.data.dataset,
        "train",
        manual_dir=config.data.manual_dir,
        batch_size=8192,
        validation_fraction=config.data.validation_fraction,
        seed=seed,
        preprocessing=config.data.preprocessing,
        shuffle=False,
    )
    batches = list(unbatched.as_numpy_iterator())
    images = np.concatenate([x for x, _ in batches])
    labels = np.concatenate([y for _, y in batches])
    keras.utils.set_random_seed(seed)
    model = build_model(config, info.image_shape, info.num_classes)
    model.compile(
        optimizer=get_optimizer(
            config.optim.optimizer, learning_rate=config.optim.lr, **config.optim.options
        ),
        loss=get_loss(config.optim.loss),
        metrics=["accuracy"],
    )
    return PlainPipeline(model, images, labels, config.run.batch_size)


def interleaved_epoch_times(
    pipelines: dict[str, RecipePipeline | PlainPipeline], rounds: int, epochs_per_round: int
) -> list[dict[str, EpochTimes]]:
    """Warms every pipeline up by one epoch, then times rounds that visit each pipeline in turn."""
    for pipeline in pipelines.values():
        pipeline.epoch_times(1)  # traces the train step
    return [
        {name: pipeline.epoch_times(epochs_per_round) for name, pipeline in pipelines.items()}
        for _ in range(rounds)
    ]


def paired_ratio(
    rounds: list[dict[str, EpochTimes]], name: str, reference: str, clock: str
) -> float:
    """Median over rounds of reference / `name` median epoch time on `clock` ("wall" or "cpu")."""
    return statistics.median(
        statistics.median(getattr(times[reference], clock))
        / statistics.median(getattr(times[name], clock))
        for times in rounds
    )


def images_per_second(rounds: list[dict[str, EpochTimes]], name: str, examples: int) -> float:
    """Throughput of `name`'s fastest epoch."""
    return examples / min(min(times[name].wall) for times in rounds)


def run_benchmarks(
    quick: bool, dataset: str = "sample", manual_dir: str | None = None
) -> list[dict[str, Any]]:
    """Times recipe vs plain pipelines; returns one row per (model, batch size, variant).

    Each row: `model`, `batch_size`, `variant` of the recipe pipeline (see `FULL_VARIANTS`),
    `examples` per epoch, `recipe_img_s` and `plain_img_s` (fastest epoch), `ratio` (median over
    rounds of plain / recipe epoch wall time: >= 1.0 means the recipe pipeline is not slower) and
    `cpu_ratio` (the same on process CPU time, the less load-sensitive cross-check).
    """
    cases = QUICK_CASES if quick else FULL_CASES
    rounds, epochs_per_round = (3, 2) if quick else (6, 3)
    variants = DEFAULT_VARIANT if quick else FULL_VARIANTS
    rows = []
    for model_name, batch_size in cases:
        config = recipe_config(model_name, batch_size, dataset=dataset, manual_dir=manual_dir)
        plain = plain_pipeline(config)
        pipelines: dict[str, RecipePipeline | PlainPipeline] = {"plain": plain}
        for variant, (jit, steps) in variants.items():
            pipelines[variant] = recipe_pipeline(config, jit_compile=jit, steps_per_execution=steps)
        timings = interleaved_epoch_times(pipelines, rounds, epochs_per_round)
        examples = len(plain.labels)
        for variant in variants:
            rows.append(
                {
                    "model": model_name,
                    "batch_size": batch_size,
                    "variant": variant,
                    "examples": examples,
                    "recipe_img_s": images_per_second(timings, variant, examples),
                    "plain_img_s": images_per_second(timings, "plain", examples),
                    "ratio": paired_ratio(timings, variant, "plain", "wall"),
                    "cpu_ratio": paired_ratio(timings, variant, "plain", "cpu"),
                }
            )
    return rows


def main(argv: list[str] | None = None) -> None:
    args = parse_args(__doc__.split("\n")[0], argv)
    print(format_tables(run_benchmarks(args.quick, args.dataset, args.manual_dir)))


if __name__ == "__main__":
    main()
