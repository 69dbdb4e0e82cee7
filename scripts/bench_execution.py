"""Training step time of the recipe models under each execution setting: XLA, precision, steps
per execution (the data behind `auto` in recipes.train.execution; see docs/performance.md).

    python scripts/bench_execution.py [--quick] [--only xla,steps] [--precisions float32,...]
                                      [--models mlp,resnet20,...]

- xla: for each recipe model family (zoo model, knobs, input shape, the recipe's batch size),
  the step time of `model.fit` on one fixed batch without and with XLA (`jit_compile`), in each
  precision given; `speedup` is the step time without XLA / with it (> 1: XLA is faster), the
  figure `recipes.train.execution.CPU_XLA_SPEEDUP` records per model and precision, and
  `best_speedup` the same on each variant's fastest epoch (the least disturbed by other load);
- steps: the small models' (or with `--models`, those cases') step time at 1, 4 and 16 steps
  per execution and at the number that `--steps-per-execution auto` picks, with the divergence
  guard attached as the runner does (it reads the loss after every execution); `speedup` is the
  step time at 1 / at N.

Models are built and compiled by the runner (`build_model`, `compile_model`), so each variant is
what a recipe trains with those flags. Every variant is traced by a warm-up epoch; then rounds
visit the variants in turn (so that all see the same machine load), each timing one epoch of
about `EPOCH_SECONDS`. Step times are medians over rounds, of wall time and of the process's CPU
time (less sensitive to other processes on the machine); speedups are medians of the per-round
ratios. Epochs have at least `MIN_STEPS` steps, so that a slow
model on a loaded machine still finishes in minutes. Timings are only comparable within one run.

`run_benchmarks(quick)` returns the rows for `scripts/benchmark.py`.
"""

from __future__ import annotations

import argparse
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

from recipes.callbacks.divergence import DivergenceGuard
from recipes.train.config import RunConfig
from recipes.train.execution import PRECISIONS, auto_steps_per_execution, estimate_step_seconds
from recipes.train.runner import build_model, compile_model
from scripts.bench_common import EpochTimer, format_tables

FASHION, CIFAR = (28, 28, 1), (32, 32, 3)


@dataclass(frozen=True)
class Case:
    """A recipe's model family: zoo model and knobs, input shape, the recipe's batch size."""

    label: str
    model: str
    input_shape: tuple[int, int, int]
    batch_size: int
    knobs: tuple[tuple[str, Any], ...] = ()


QUICK_CASES = (Case("mlp", "mlp", FASHION, 128), Case("lenet5", "lenet5", FASHION, 64))
FULL_CASES = (
    *QUICK_CASES,
    Case("maxout_mlp", "maxout_mlp", FASHION, 128),
    Case("lenet5 weightnorm", "lenet5", FASHION, 128, (("norm", "weight"),)),
    Case("alexnet_small", "alexnet_small", CIFAR, 128),
    Case("vgg_small", "vgg_small", CIFAR, 128, (("norm", "batch"),)),
    Case("resnet20", "resnet20", CIFAR, 128, (("norm", "batch"),)),
    Case("resnet20 fashion", "resnet20", FASHION, 128, (("norm", "batch"),)),
    Case("resnet20 groupnorm", "resnet20", CIFAR, 4, (("norm", "group"), ("groups", 8))),
)
STEPS_CASES = (QUICK_CASES[0], QUICK_CASES[1], Case("maxout_mlp", "maxout_mlp", FASHION, 128))
STEPS_PER_EXECUTION = (1, 4, 16)
EPOCH_SECONDS = 3.0
MIN_STEPS = 8
SECTIONS = ("xla", "steps")


def case_config(case: Case, **run: Any) -> RunConfig:
    """The run configuration of `case` with the given `run` section values."""
    return RunConfig.from_dict(
        {
            "model": {"name": case.model, "knobs": dict(case.knobs)},
            "optim": {"optimizer": "momentum", "lr": 0.01, "options": {"momentum": 0.9}},
            "run": {"batch_size": case.batch_size, **run},
        }
    )


def one_batch(case: Case) -> tf.data.Dataset:
    """One fixed batch of `case`'s shape, repeated: the step time without input pipeline."""
    rng = np.random.default_rng(0)
    images = rng.random((case.batch_size, *case.input_shape), dtype=np.float32)
    labels = rng.integers(0, 10, case.batch_size)
    return tf.data.Dataset.from_tensors((images, labels)).repeat()


class Variant:
    """A compiled model of `case` under one execution setting, timed epoch by epoch."""

    def __init__(self, case: Case, callbacks: tuple = (), **run: Any):
        keras.utils.set_random_seed(0)
        config = case_config(case, **run)
        self.model = build_model(config, case.input_shape, 10)
        self.execution = compile_model(self.model, config, steps_per_epoch=1000)
        self.callbacks = list(callbacks)
        self.data = one_batch(case)
        self.steps = 10

    def epoch(self) -> tuple[float, float]:
        """Trains one epoch of `self.steps` steps; returns its wall and CPU seconds per step."""
        timer = EpochTimer()
        self.model.fit(
            self.data,
            steps_per_epoch=self.steps,
            epochs=1,
            verbose=0,
            callbacks=[timer, *self.callbacks],
        )
        return timer.seconds[0] / self.steps, timer.cpu_seconds[0] / self.steps

    def warm_up(self) -> None:
        """Traces the training step, then sizes epochs to about `EPOCH_SECONDS`."""
        self.epoch()
        wall, _ = self.epoch()
        n = self.execution.steps_per_execution
        self.steps = max(n, round(min(max(EPOCH_SECONDS / wall, MIN_STEPS), 400) / n) * n)


def timed(variants: dict[str, Variant], rounds: int) -> dict[str, list[tuple[float, float]]]:
    """Warms every variant up, then times `rounds` rounds visiting each in turn."""
    for variant in variants.values():
        variant.warm_up()
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, variant in variants.items():
            times[name].append(variant.epoch())
    return times


def _median(samples: list[tuple[float, float]], clock: int) -> float:
    return statistics.median(sample[clock] for sample in samples)


def _best(samples: list[tuple[float, float]], clock: int) -> float:
    return min(sample[clock] for sample in samples)


def _speedup(reference: list[tuple[float, float]], other: list[tuple[float, float]], clock: int):
    return statistics.median(r[clock] / o[clock] for r, o in zip(reference, other, strict=True))


def xla_rows(cases: tuple[Case, ...], precisions: list[str], rounds: int) -> list[dict[str, Any]]:
    """Step time without and with XLA per case and precision (see the module docstring)."""
    rows = []
    for case in cases:
        for precision in precisions:
            variants = {
                jit: Variant(case, precision=precision, jit_compile=jit, steps_per_execution=1)
                for jit in ("off", "on")
            }
            times = timed(variants, rounds)
            rows.append(
                {
                    "model": case.label,
                    "batch": case.batch_size,
                    "precision": precision,
                    "ms_step": 1e3 * _median(times["off"], 0),
                    "ms_step_xla": 1e3 * _median(times["on"], 0),
                    "speedup": _speedup(times["off"], times["on"], 0),
                    "best_speedup": _best(times["off"], 0) / _best(times["on"], 0),
                    "cpu_speedup": _speedup(times["off"], times["on"], 1),
                }
            )
            print(format_tables(rows[-1:]), flush=True)
    return rows


def steps_rows(cases: tuple[Case, ...], rounds: int) -> list[dict[str, Any]]:
    """Step time per steps per execution, with the divergence guard (see the module docstring)."""
    rows = []
    for case in cases:
        reference = Variant(case, precision="float32", jit_compile="off")
        estimate = estimate_step_seconds(reference.model, case.batch_size, False)
        auto = auto_steps_per_execution(estimate, steps_per_epoch=1000)
        counts = sorted({*STEPS_PER_EXECUTION, auto})
        variants = {
            n: Variant(
                case,
                (DivergenceGuard(),),
                precision="float32",
                jit_compile="off",
                steps_per_execution=n,
            )
            for n in counts
        }
        times = timed(variants, rounds)
        for n in counts:
            rows.append(
                {
                    "model": case.label,
                    "batch": case.batch_size,
                    "steps_per_execution": n,
                    "auto": n == auto,
                    "estimate_ms": 1e3 * estimate,
                    "ms_step": 1e3 * _median(times[n], 0),
                    "speedup": _speedup(times[1], times[n], 0),
                    "cpu_speedup": _speedup(times[1], times[n], 1),
                }
            )
        print(format_tables(rows[-len(counts) :]), flush=True)
    return rows


def run_benchmarks(
    quick: bool,
    only: list[str] | None = None,
    precisions: list[str] | None = None,
    models: list[str] | None = None,
    rounds: int | None = None,
) -> list[dict[str, Any]]:
    """The rows of the selected sections (all by default), quick: few cases and rounds; `models`
    keeps the cases of those labels (any case, in the steps section too)."""
    rounds = rounds or (2 if quick else 3)

    def selected(cases: tuple[Case, ...]) -> tuple[Case, ...]:
        return tuple(case for case in cases if models is None or case.label in models)

    rows = []
    for section in only or SECTIONS:
        if section == "xla":
            cases = QUICK_CASES if quick else FULL_CASES
            rows += xla_rows(selected(cases), precisions or ["float32"], rounds)
        else:
            default = QUICK_CASES[:1] if quick else STEPS_CASES
            rows += steps_rows(selected(default if models is None else FULL_CASES), rounds)
    return rows


def _names(text: str, accepted: tuple[str, ...]) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in accepted]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"{text!r}: accepted: {', '.join(accepted)}")
    return names


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer cases and rounds")
    parser.add_argument("--rounds", type=int, help="timed rounds (default: 2 quick, else 3)")
    parser.add_argument(
        "--only", type=lambda text: _names(text, SECTIONS), help="xla and/or steps (default: both)"
    )
    parser.add_argument(
        "--precisions",
        type=lambda text: _names(text, PRECISIONS[1:]),
        help="precisions of the xla section (default: float32)",
    )
    labels = tuple(case.label for case in FULL_CASES)
    parser.add_argument(
        "--models",
        type=lambda text: _names(text, labels),
        help=f"cases to run, by label ({', '.join(labels)}; default: all)",
    )
    args = parser.parse_args(argv)
    rows = run_benchmarks(args.quick, args.only, args.precisions, args.models, args.rounds)
    print("\n" + format_tables(rows))


if __name__ == "__main__":
    main()
