"""What BatchNorm buys: higher usable learning rates, and indifference to the initialization.

    python scripts/study_batchnorm.py                    # the embedded sample, a few minutes
    python scripts/study_batchnorm.py --dataset fashion_mnist \\
        --manual-dir /usr/share/datasets/fashion-mnist --seeds 0,1

The claims (Ioffe & Szegedy 2015, sections 3.3 and 4.2; the course): batch normalization
"allows us to use much higher learning rates and be less careful about initialization".
Measured on the zoo's `mlp` (3 hidden layers of 256 ReLU units, SGD with momentum 0.9, batches
of 64) without and with BatchNorm before each activation (`norm`), over seeds:

- learning rates `LEARNING_RATES` with He initialization: a rate is usable when no seed diverged
  and the mean test accuracy is within `USABLE_MARGIN` of the best of that normalization;
- initializations `INITIALIZATIONS` (He, and normal weights of a fixed standard deviation from
  far too small to far too large) at `INIT_LR`: the spread of the mean test accuracy over them.

Writes docs/studies/batchnorm.png (test accuracy against the rate and against the
initialization) and batchnorm.md.
"""

from __future__ import annotations

import math
import os
import statistics
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from scripts.study_common import (
    RELU_MLP,
    StudyRun,
    command_line,
    markdown_table,
    new_figure,
    study_config,
    study_parser,
    train_config,
    write_study,
)

NORMS = {"none": "without BatchNorm", "batch": "with BatchNorm"}
LEARNING_RATES = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
INITIALIZATIONS = {
    "he": {"init": "he"},
    "normal 0.001": {"init": "small_random", "init_stddev": 0.001},
    "normal 0.01": {"init": "small_random", "init_stddev": 0.01},
    "normal 0.1": {"init": "small_random", "init_stddev": 0.1},
    "normal 1.0": {"init": "small_random", "init_stddev": 1.0},
}
INIT_LR = 0.01
USABLE_MARGIN = 0.02
# Verdicts. Learning rates: BatchNorm's highest usable rate over the plain network's, holds at
# this factor or more (the paper's "much higher": it trained at 5x and 30x the baseline's rate).
HIGHER_RATES_HOLD = 3.0
# Initialization: BatchNorm's accuracy spread over the initializations, as a fraction of the
# plain network's, holds at or below this; and the plain network's spread must be real.
SPREAD_HOLDS, REAL_SPREAD = 0.5, 0.05


def mean_accuracy(runs: list[StudyRun]) -> float:
    """The mean test accuracy over seeds; NaN if any seed diverged."""
    if any(run.diverged for run in runs):
        return math.nan
    return statistics.mean(run.test_accuracy for run in runs)


def usable_rates(accuracy_by_lr: dict[float, float]) -> list[float]:
    """The rates whose accuracy is within `USABLE_MARGIN` of the best (diverged ones never)."""
    finite = [accuracy for accuracy in accuracy_by_lr.values() if math.isfinite(accuracy)]
    if not finite:
        return []
    best = max(finite)
    return [
        lr
        for lr, accuracy in accuracy_by_lr.items()
        if math.isfinite(accuracy) and accuracy >= best - USABLE_MARGIN
    ]


def spread(accuracies: list[float]) -> float:
    """Best minus worst accuracy; a diverged setting counts as chance (0.1)."""
    values = [accuracy if math.isfinite(accuracy) else 0.1 for accuracy in accuracies]
    return max(values) - min(values)


def rate_verdict(plain: dict[float, float], batchnorm: dict[float, float]) -> str:
    plain_rates, bn_rates = usable_rates(plain), usable_rates(batchnorm)
    if not plain_rates or not bn_rates:
        return "not measurable here (a normalization had no usable rate)"
    # Rounded: the grid's rates are decimal, and 0.3 / 0.1 is 2.9999999999999996 in floats.
    factor = round(max(bn_rates) / max(plain_rates), 6)
    if factor >= HIGHER_RATES_HOLD:
        return "holds"
    return "holds partly" if factor > 1 else "does not hold here"


def init_verdict(plain: list[float], batchnorm: list[float]) -> str:
    plain_spread, bn_spread = spread(plain), spread(batchnorm)
    if plain_spread < REAL_SPREAD:
        return "not measurable here (the initializations barely matter without BatchNorm)"
    if bn_spread <= SPREAD_HOLDS * plain_spread:
        return "holds"
    return "holds partly" if bn_spread < plain_spread else "does not hold here"


def describe(accuracy: float) -> str:
    return "diverged" if math.isnan(accuracy) else f"{accuracy:.3f}"


def findings(
    by_lr: dict[str, dict[float, float]], by_init: dict[str, dict[str, float]], seeds: list[int]
) -> str:
    plain_rates, bn_rates = usable_rates(by_lr["none"]), usable_rates(by_lr["batch"])

    def rates(values: list[float]) -> str:
        return ", ".join(f"{lr:g}" for lr in values) or "none"

    plain_init, bn_init = list(by_init["none"].values()), list(by_init["batch"].values())
    worst_plain = min(by_init["none"], key=lambda name: np.nan_to_num(by_init["none"][name]))
    return (
        'The claim (Ioffe & Szegedy 2015; the course): BatchNorm "allows us to use much higher '
        'learning rates and be less careful about initialization". Measured over seeds '
        f"{', '.join(map(str, seeds))}. Learning rates (He initialization): usable without "
        f"BatchNorm {rates(plain_rates)}, with it {rates(bn_rates)} (usable: within "
        f"{USABLE_MARGIN:.0%} of the best accuracy, no seed diverged). Verdict on higher rates: "
        f"**{rate_verdict(by_lr['none'], by_lr['batch'])}** (holds: the highest usable rate "
        f"at least {HIGHER_RATES_HOLD:g}x higher). Initializations at lr {INIT_LR:g}: test "
        f"accuracy spreads over {spread(plain_init):.3f} without BatchNorm (worst: "
        f"{worst_plain}, {describe(by_init['none'][worst_plain])}) and over "
        f"{spread(bn_init):.3f} with it (a diverged setting counts as chance, 0.1). Verdict on "
        f"initialization: **{init_verdict(plain_init, bn_init)}** (holds: BatchNorm's spread at "
        f"most {SPREAD_HOLDS:.0%} of the plain network's)."
    )


def main(argv: list[str] | None = None) -> None:
    parser = study_parser(__doc__.split("\n")[0], epochs=3, seeds="0,1")
    args = parser.parse_args(argv)
    seeds = args.seeds

    def train(norm: str, label: str, **settings) -> float:
        runs = [
            train_config(
                study_config(args, **RELU_MLP, norm=norm, seed=seed, **settings),
                label,
                steps_per_epoch=args.steps_per_epoch,
            )
            for seed in seeds
        ]
        accuracy = mean_accuracy(runs)
        print(f"{NORMS[norm]}, {label}: test accuracy {describe(accuracy)}", flush=True)
        return accuracy

    by_lr = {
        norm: {lr: train(norm, f"lr {lr:g}", lr=lr, init="he") for lr in LEARNING_RATES}
        for norm in NORMS
    }
    by_init = {
        norm: {
            name: train(norm, f"init {name}", lr=INIT_LR, **init)
            for name, init in INITIALIZATIONS.items()
        }
        for norm in NORMS
    }

    figure, (rate_axis, init_axis) = new_figure(2, width=5.5)
    positions = np.arange(len(INITIALIZATIONS))
    for offset, (norm, label) in zip((-0.2, 0.2), NORMS.items(), strict=True):
        accuracies = [by_lr[norm][lr] for lr in LEARNING_RATES]
        rate_axis.plot(LEARNING_RATES, accuracies, marker="o", label=label)
        heights = [np.nan_to_num(by_init[norm][name]) for name in INITIALIZATIONS]
        init_axis.bar(positions + offset, heights, width=0.4, label=label)
    rate_axis.set_xscale("log")
    rate_axis.set_xlabel("learning rate (He initialization)")
    rate_axis.set_ylabel("test accuracy (mean over seeds; gaps: diverged)")
    rate_axis.set_title(f"Learning rate ({args.dataset})", fontsize=10)
    init_axis.set_xticks(positions, list(INITIALIZATIONS), fontsize=8)
    init_axis.set_xlabel(f"initialization (lr {INIT_LR:g}; 0: diverged)")
    init_axis.set_ylabel("test accuracy (mean over seeds)")
    init_axis.set_title("Initialization", fontsize=10)
    for axis in (rate_axis, init_axis):
        axis.set_ylim(0, 1)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)

    rows = [
        {
            "setting": f"lr {lr:g}, He init",
            **{f"test accuracy {label}": by_lr[norm][lr] for norm, label in NORMS.items()},
        }
        for lr in LEARNING_RATES
    ] + [
        {
            "setting": f"{name} init, lr {INIT_LR:g}",
            **{f"test accuracy {label}": by_init[norm][name] for norm, label in NORMS.items()},
        }
        for name in INITIALIZATIONS
    ]
    write_study(
        args.out_dir,
        "batchnorm",
        "What BatchNorm buys: learning rates and initialization",
        figure,
        command_line("study_batchnorm.py", args, parser.parse_args([])),
        markdown_table(rows) + "\n\n(- : a seed diverged.)",
        findings(by_lr, by_init, seeds),
    )


if __name__ == "__main__":
    main()
