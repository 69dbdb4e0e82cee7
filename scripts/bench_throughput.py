"""Training throughput of the recipes, run by their runner, vs a plain Keras `model.fit` on arrays.

    python scripts/bench_throughput.py [--quick] [--dataset fashion_mnist --manual-dir DIR]
        [--epochs K] [--rounds R] [--recipe-flags "--batch-size 256"] [--recipes resnet20_cifar10]
    python scripts/benchmark.py --only throughput --dataset fashion_mnist --manual-dir DIR

Each case is a recipe (`recipes/<name>.py`) with an augmentation setting, measured two ways in
the same process, one right after the other so that both see the same machine load:

- **recipe**: the real thing, `recipes.train.runner.run` on the configuration the recipe's
  command line gives for its defaults plus `--dataset`, `--epochs 1+K`, `--out-dir` (a
  temporary directory), `--verbose 0`, `--tta none`, the case's `--augment`, the speed flags at
  their automatic settings (`--precision auto --jit-compile auto --steps-per-execution auto`,
  each passed only if the recipe command line knows it) and `--recipe-flags`. An epoch timer,
  called before the runner's own callbacks, times each epoch: training plus the validation
  pass, without the checkpoint writes. The first epoch also traces the training step; the mean
  of the next K is the steady-state epoch.
- **plain**: what a hand-written Keras script does: the same zoo model built in float32, compiled
  with the recipe's optimizer, learning rate and loss and Keras' defaults otherwise,
  `model.fit(x, y, batch_size=B, validation_data=(x_val, y_val))` on float32 NumPy arrays of the
  same (unaugmented) images, B the recipe's batch size. Its first epoch is the warm-up; the mean
  of the next K epochs is its steady-state epoch.

Rows: `recipe_img_s` and `plain_img_s` (training images / steady epoch seconds), `ratio`
(recipe / plain images/s: above 1.0 the recipe is faster), `cpu_ratio` (the same on the
process's CPU time, less disturbed by other processes on a shared machine), `epoch_s` (the recipe's steady epoch), `input_share` (the CPU
seconds of one pass over the recipe's training pipeline alone, without a model, over the CPU
seconds of its steady epoch: the share of the work that is input conversion, augmentation and
normalization; far less disturbed by the machine's load than a difference of wall times) and,
for a case with augmentation, `augment_cost`: the share of its epoch that the same recipe without
augmentation does not spend, `(epoch_s - epoch_s without) / epoch_s`. With `--rounds R` every case is
measured R times and each figure is the median over rounds (ratios paired within a round).
`--recipes` keeps the cases of the named recipes only (e.g. ResNet-20's three, whose epochs on
the full training set take minutes on 2 cores).

`run_benchmarks(quick)` returns the rows for `scripts/benchmark.py`. `recipe_config` and
`recipe_pipeline` (the runner's data, model and compile, in-process) serve `bench_scaling`.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import math
import os
import shlex
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import keras
import numpy as np
import tensorflow as tf

from layers.validation import check_choice
from recipes.data.datasets import load_dataset
from recipes.optim.losses import get_loss, loss_label_format
from recipes.optim.optimizers import get_optimizer
from recipes.train.config import RunConfig, build_parser, resolve_config
from recipes.train.runner import build_model, compile_model, load_data, run
from scripts.bench_common import EpochTimer, benchmark_parser, format_tables

# The speed settings a recipe is measured at: each flag is passed when the command line has it.
AUTO_SPEED_FLAGS = (
    ("--precision", "auto"),
    ("--jit-compile", "auto"),
    ("--steps-per-execution", "auto"),
)
# The plain reference's configuration is resolved in float32 whatever the recipe's flags say.
FLOAT32_FLAGS = (("--precision", "float32"),)
NO_AUGMENTATION = (None, "", "none")


@dataclass(frozen=True)
class Case:
    """A recipe and the `--augment` value it is run with (`None`: the recipe's own)."""

    recipe: str
    augment: str | None = None


QUICK_CASES = (
    Case("mlp_fashion_mnist"),
    Case("lenet5_fashion_mnist"),
    Case("lenet5_fashion_mnist", "flip_h,crop"),
)
# ResNet-20's own augmentation is "standard", which is flip_h,crop on grayscale images.
FULL_CASES = (
    *QUICK_CASES,
    Case("resnet20_cifar10"),
    Case("resnet20_cifar10", "none"),
    Case("resnet20_cifar10", "flip_h,crop,erase"),
)


def selected_cases(cases: tuple[Case, ...], recipes: str | None) -> tuple[Case, ...]:
    """The `cases` of the comma-separated `recipes` (all of them for `None`), in their order."""
    if recipes is None:
        return cases
    known = tuple(dict.fromkeys(case.recipe for case in cases))
    names = {check_choice("recipes", name.strip(), known) for name in recipes.split(",")}
    return tuple(case for case in cases if case.recipe in names)


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


def recipe_pipeline(config: RunConfig, seed: int = 0) -> RecipePipeline:
    """The runner's data, model and compile for `config`, training split only, in-process."""
    train, info = load_data(config.updated({"run.seed": seed}), "train")
    keras.utils.set_random_seed(seed)
    model = build_model(config, info.image_shape, info.num_classes)
    num_examples = info.split_sizes["train"]
    compile_model(model, config, steps_per_epoch=math.ceil(num_examples / config.run.batch_size))
    return RecipePipeline(model, train, num_examples)


def known_flags(recipe: str, flags: list[tuple[str, str]]) -> list[str]:
    """The `(flag, value)` pairs that `recipe`'s command line accepts, flattened; the others are
    dropped (speed flags that a version of the runner does not have yet)."""
    module = importlib.import_module(f"recipes.{recipe}")
    parser = build_parser(recipe, "", RunConfig.from_dict(module.DEFAULTS))
    kept = []
    for flag, value in flags:
        _, unknown = parser.parse_known_args([flag, value])
        if flag not in unknown:
            kept += [flag, value]
    return kept


@dataclass(frozen=True)
class RecipeTiming:
    """One case's recipe run: its steady epoch and the resolved configuration."""

    epoch_s: float
    cpu_s: float
    examples: int
    config: RunConfig


def time_recipe(recipe: str, argv: list[str], epochs: int) -> RecipeTiming:
    """The runner's steady-state epoch for `recipe` with `argv`: the mean wall and CPU seconds
    of the `epochs` epochs after the first, in a temporary run directory, output silenced."""
    module = importlib.import_module(f"recipes.{recipe}")
    timer = EpochTimer()
    with tempfile.TemporaryDirectory() as run_dir, contextlib.redirect_stdout(io.StringIO()):
        flags = [*argv, "--epochs", str(1 + epochs), "--out-dir", f"{run_dir}/run"]
        config = resolve_config(module.DEFAULTS, flags, recipe, module.__doc__)
        metrics = run(config, recipe=recipe, callbacks=[timer])
    return RecipeTiming(
        epoch_s=statistics.mean(timer.seconds[1:]),
        cpu_s=statistics.mean(timer.cpu_seconds[1:]),
        examples=metrics["dataset"]["split_sizes"]["train"],
        config=config,
    )


def _arrays(dataset: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray]:
    batches = list(dataset.as_numpy_iterator())
    return np.concatenate([x for x, _ in batches]), np.concatenate([y for _, y in batches])


def time_plain(config: RunConfig, epochs: int) -> EpochTimes:
    """Steady epochs (after a warm-up one) of the plain float32 `model.fit` on arrays for the
    model, data, optimizer and loss of `config`."""
    data, info = load_dataset(
        config.data.dataset,
        ("train", "validation"),
        data_dir=config.data.data_dir,
        manual_dir=config.data.manual_dir,
        batch_size=8192,
        image_size=config.data.image_size,
        validation_fraction=config.data.validation_fraction,
        seed=config.run.seed,
        preprocessing=config.data.preprocessing,
        one_hot=loss_label_format(config.optim.loss) != "sparse",
        shuffle=False,
    )
    (x, y), validation = _arrays(data["train"]), _arrays(data["validation"])
    keras.mixed_precision.set_global_policy("float32")
    keras.utils.set_random_seed(config.run.seed)
    model = build_model(config, info.image_shape, info.num_classes)
    not_float32 = {layer.dtype_policy.name for layer in model.layers} - {"float32"}
    if not_float32:
        raise RuntimeError(f"the plain reference model is not float32: {sorted(not_float32)}")
    model.compile(
        optimizer=get_optimizer(
            config.optim.optimizer, learning_rate=config.optim.lr, **config.optim.options
        ),
        loss=get_loss(config.optim.loss, **config.optim.loss_options),
        metrics=["accuracy"],
    )
    timer = EpochTimer()
    model.fit(
        x,
        y,
        batch_size=config.run.batch_size,
        epochs=1 + epochs,
        validation_data=validation,
        verbose=0,
        callbacks=[timer],
    )
    return EpochTimes(timer.seconds[1:], timer.cpu_seconds[1:])


def input_cpu_seconds(config: RunConfig) -> float:
    """CPU seconds of one pass over the training pipeline of `config` alone, without a model:
    what the input work (conversion, augmentation, normalization) costs per epoch. The first
    pass fills the cache and traces the map; the second is timed."""
    train, _ = load_data(config, "train")
    for _ in train:
        pass
    start = time.process_time()
    for _ in train:
        pass
    return time.process_time() - start


def measure_round(
    cases: tuple[Case, ...], base_argv: list[str], extra_flags: list[str], epochs: int
) -> list[dict[str, Any]]:
    """One measurement of every case; the plain reference is measured once per recipe, right
    before that recipe's cases."""
    plain: dict[str, EpochTimes] = {}
    rows = []
    for case in cases:
        argv = [*base_argv, *known_flags(case.recipe, AUTO_SPEED_FLAGS), *extra_flags]
        if case.augment is not None:
            argv += ["--augment", case.augment]
        if case.recipe not in plain:
            module = importlib.import_module(f"recipes.{case.recipe}")
            float32 = known_flags(case.recipe, FLOAT32_FLAGS)
            config = resolve_config(module.DEFAULTS, [*argv, *float32], case.recipe, "")
            plain[case.recipe] = time_plain(config, epochs)
        recipe = time_recipe(case.recipe, argv, epochs)
        plain_s = statistics.mean(plain[case.recipe].wall)
        plain_cpu_s = statistics.mean(plain[case.recipe].cpu)
        rows.append(
            {
                "recipe": case.recipe,
                "augment": recipe.config.data.augment or "none",
                "batch_size": recipe.config.run.batch_size,
                "examples": recipe.examples,
                "plain_img_s": recipe.examples / plain_s,
                "recipe_img_s": recipe.examples / recipe.epoch_s,
                "ratio": plain_s / recipe.epoch_s,
                "cpu_ratio": plain_cpu_s / recipe.cpu_s,
                "epoch_s": recipe.epoch_s,
                "input_share": input_cpu_seconds(recipe.config) / recipe.cpu_s,
            }
        )
    for row in rows:
        without = [
            other
            for other in rows
            if other["recipe"] == row["recipe"] and other["augment"] in NO_AUGMENTATION
        ]
        has_cost = row["augment"] not in NO_AUGMENTATION and without
        row["augment_cost"] = (
            (row["epoch_s"] - without[0]["epoch_s"]) / row["epoch_s"] if has_cost else None
        )
    return rows


def median_rows(rounds: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Row by row, the median of every number over the rounds."""
    merged = []
    for rows in zip(*rounds, strict=True):
        row = dict(rows[0])
        for key, value in row.items():
            if isinstance(value, float):
                row[key] = statistics.median(other[key] for other in rows)
        merged.append(row)
    return merged


def run_benchmarks(
    quick: bool,
    dataset: str = "sample",
    manual_dir: str | None = None,
    epochs: int | None = None,
    rounds: int = 1,
    recipe_flags: str = "",
    recipes: str | None = None,
) -> list[dict[str, Any]]:
    """Times every case (`QUICK_CASES` or `FULL_CASES`) against the plain reference; one row per
    case (see the module docstring for the columns).

    Args:
        quick: the quick cases and 1 timed epoch (default: the full cases, 2 epochs).
        dataset, manual_dir: the recipes' `--dataset` and `--manual-dir`.
        epochs: timed epochs per measurement, after the warm-up one.
        rounds: measurements of every case; figures are medians over them.
        recipe_flags: more recipe flags, one shell-quoted string (e.g. "--jit-compile on").
        recipes: comma-separated recipe names whose cases to run (default: every case).
    """
    epochs = epochs or (1 if quick else 2)
    base_argv = ["--dataset", dataset, "--verbose", "0", "--tta", "none"]
    if manual_dir is not None:
        base_argv += ["--manual-dir", str(manual_dir)]
    cases = selected_cases(QUICK_CASES if quick else FULL_CASES, recipes)
    extra = shlex.split(recipe_flags)
    return median_rows([measure_round(cases, base_argv, extra, epochs) for _ in range(rounds)])


def main(argv: list[str] | None = None) -> None:
    parser = benchmark_parser(__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, help="timed epochs after the warm-up (1 / 2)")
    parser.add_argument("--rounds", type=int, default=1, help="measurements of every case")
    parser.add_argument("--recipe-flags", default="", help="more flags for every recipe run")
    parser.add_argument("--recipes", help="comma-separated recipes whose cases to run (all)")
    args = parser.parse_args(argv)
    try:  # a misspelt recipe is refused before anything is measured
        selected_cases(QUICK_CASES if args.quick else FULL_CASES, args.recipes)
    except ValueError as error:
        parser.error(str(error))
    rows = run_benchmarks(
        args.quick,
        args.dataset,
        args.manual_dir,
        args.epochs,
        args.rounds,
        args.recipe_flags,
        args.recipes,
    )
    print(format_tables(rows))


if __name__ == "__main__":
    main()
