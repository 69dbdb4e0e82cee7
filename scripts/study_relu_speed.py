"""ReLU against tanh on a small CNN: how many images each needs to reach a training error.

    python scripts/study_relu_speed.py                   # the embedded sample, a minute
    python scripts/study_relu_speed.py --dataset fashion_mnist \\
        --manual-dir /usr/share/datasets/fashion-mnist --seeds 0,1,2

The claim (Krizhevsky, Sutskever & Hinton 2012, section 3.1 and figure 1): a four-layer
convolutional network with ReLUs reaches 25% training error on CIFAR-10 six times faster than
the same network with tanh units, each at the learning rate that made it fastest. Measured here
the same way: the zoo's `lenet5` (two convolutions, three dense layers) with ReLU or tanh units,
each with its usual initialization (He for ReLU, Xavier for tanh), SGD with momentum 0.9 at
every learning rate of `--lrs`, batches of 128, no regularization or augmentation. The training
error is recorded every `--steps-per-epoch` batches (an "epoch" here; default 20), as the mean
over those batches while they train, and a run stops once it is below the lowest of
`THRESHOLDS` or after `--epochs` of them. For each activation, the learning rate whose median
over seeds reaches the thresholds with the fewest images (the lowest threshold first) is its
fastest, and the ratio tanh / ReLU of those medians is the speed-up. Seconds are images over the
run's steady throughput (the median chunk's, which leaves out the first chunk's tracing).

Fashion-MNIST is easier than CIFAR-10: both networks pass 25% training error within a few
hundred batches, so lower thresholds are measured too. Writes docs/studies/relu_speed.png and
relu_speed.md.
"""

from __future__ import annotations

import math
import os
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import keras
import numpy as np

from scripts.bench_common import EpochTimer
from scripts.study_common import (
    command_line,
    markdown_table,
    new_figure,
    number_list,
    study_config,
    study_parser,
    train_config,
    write_study,
)

THRESHOLDS = (0.25, 0.15, 0.12, 0.10)
ACTIVATIONS = {"relu": "he", "tanh": "xavier"}
BATCH_SIZE = 128
# Verdicts on the speed-up at the claim's own threshold (25% training error).
HOLDS, HOLDS_PARTLY = 4.0, 1.5


class StopBelowError(keras.callbacks.Callback):
    """Stops training once an epoch's training error is at or below `error`."""

    def __init__(self, error: float) -> None:
        super().__init__()
        self.error = error

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if 1.0 - (logs or {}).get("accuracy", 0.0) <= self.error:
            self.model.stop_training = True


@dataclass
class SpeedRun:
    """One activation, learning rate and seed: its training error per chunk and its speed."""

    activation: str
    lr: float
    seed: int
    errors: list[float]
    images_per_chunk: int
    images_per_second: float
    test_accuracy: float

    def images_to(self, threshold: float) -> float:
        """Training images seen when the chunk error first reached `threshold` (inf: never)."""
        for chunk, error in enumerate(self.errors, start=1):
            if error <= threshold:
                return chunk * self.images_per_chunk
        return math.inf


def median_images(runs: list[SpeedRun], threshold: float) -> float:
    """The median over seeds of the images to `threshold`; inf when half or more never got there."""
    return statistics.median(run.images_to(threshold) for run in runs)


def fastest_lr(runs_by_lr: dict[float, list[SpeedRun]]) -> float:
    """The learning rate reaching the thresholds with the fewest images, the lowest first."""
    return min(
        runs_by_lr,
        key=lambda lr: [median_images(runs_by_lr[lr], t) for t in sorted(THRESHOLDS)],
    )


def speedup(relu: list[SpeedRun], tanh: list[SpeedRun], threshold: float) -> float:
    """tanh's median images to `threshold` over ReLU's (NaN when ReLU never got there)."""
    relu_images, tanh_images = median_images(relu, threshold), median_images(tanh, threshold)
    return tanh_images / relu_images if math.isfinite(relu_images) else math.nan


def verdict(ratio: float) -> str:
    if not math.isfinite(ratio) or ratio < HOLDS_PARTLY:
        return "does not hold here"
    return "holds" if ratio >= HOLDS else "holds partly"


def train_one(args, activation: str, lr: float, seed: int) -> SpeedRun:
    config = study_config(
        args,
        seed=seed,
        model="lenet5",
        activation=activation,
        init=ACTIVATIONS[activation],
        optimizer="momentum",
        lr=lr,
        optimizer_options={"momentum": 0.9},
        batch_size=BATCH_SIZE,
        augment="none",
        tta="none",
    )
    timer = EpochTimer()
    run = train_config(
        config,
        f"{activation} lr={lr:g} seed={seed}",
        steps_per_epoch=args.steps_per_epoch,
        callbacks=[StopBelowError(min(THRESHOLDS)), timer],
    )
    steps_per_chunk = int(run.model.optimizer.iterations.numpy()) // len(run.history["loss"])
    images_per_chunk = steps_per_chunk * BATCH_SIZE
    return SpeedRun(
        activation,
        lr,
        seed,
        [1.0 - accuracy for accuracy in run.history["accuracy"]],
        images_per_chunk,
        images_per_chunk / statistics.median(timer.seconds),
        run.test_accuracy,
    )


def describe_ratio(ratio: float, threshold: float) -> str:
    if math.isnan(ratio):
        return f"ReLU did not reach {threshold:.0%} within the budget"
    if math.isinf(ratio):
        return f"tanh did not reach {threshold:.0%} within the budget, ReLU did"
    return f"tanh needed {ratio:.1f}x ReLU's images at {threshold:.0%}"


def findings(chosen: dict[str, list[SpeedRun]], seeds: list[int]) -> str:
    relu, tanh = chosen["relu"], chosen["tanh"]
    ratio = speedup(relu, tanh, 0.25)
    relu_images = median_images(relu, 0.25)
    lower = "; ".join(describe_ratio(speedup(relu, tanh, t), t) for t in THRESHOLDS[1:])
    relu_speed = statistics.median(run.images_per_second for run in relu)
    tanh_speed = statistics.median(run.images_per_second for run in tanh)
    return (
        f'The claim: "a four-layer convolutional neural network with ReLUs reaches a 25% '
        f"training error rate on CIFAR-10 six times faster than an equivalent network with "
        f'tanh neurons" (Krizhevsky et al. 2012, figure 1). Measured on LeNet-5, '
        f"{len(seeds)} seeds ({', '.join(map(str, seeds))}), each activation at its fastest "
        f"learning rate (ReLU {relu[0].lr:g}, tanh {tanh[0].lr:g}): at 25% training error, "
        f"{describe_ratio(ratio, 0.25)} (ReLU reached it after {relu_images:.0f} training "
        f"images, median); at lower errors: {lower}. "
        f"Verdict: **{verdict(ratio)}** (holds: >= {HOLDS:g}x at 25%, the paper's 6x within "
        f"seed and setup differences; partly: {HOLDS_PARTLY:g}-{HOLDS:g}x). The paper's 25% on "
        "CIFAR-10 took its ReLU network about six epochs, deep into training; an easier "
        "dataset reaches the same error early, where the lower thresholds are the comparable "
        f"ones. Seconds are images over speed: ReLU trained at {relu_speed:.0f} images/s and "
        f"tanh at {tanh_speed:.0f} (medians), so to 25% tanh took "
        f"{ratio * relu_speed / tanh_speed:.1f}x ReLU's seconds."
    )


def main(argv: list[str] | None = None) -> None:
    parser = study_parser(__doc__.split("\n")[0], epochs=100, seeds="0,1,2")
    parser.set_defaults(steps_per_epoch=20)
    parser.add_argument(
        "--lrs",
        type=number_list(float),
        default="0.01,0.03,0.1",
        help="learning rates tried for each activation (default 0.01,0.03,0.1)",
    )
    args = parser.parse_args(argv)
    seeds = args.seeds
    lrs = args.lrs
    runs: dict[str, dict[float, list[SpeedRun]]] = {}
    for activation in ACTIVATIONS:
        runs[activation] = {}
        for lr in lrs:
            runs[activation][lr] = [train_one(args, activation, lr, seed) for seed in seeds]
            reached = [median_images(runs[activation][lr], t) for t in THRESHOLDS]
            print(f"{activation} lr={lr:g}: median images to {THRESHOLDS}: {reached}", flush=True)
    chosen = {activation: by_lr[fastest_lr(by_lr)] for activation, by_lr in runs.items()}

    figure, (curves, bars) = new_figure(2, width=5.5)
    for activation, activation_runs in chosen.items():
        for index, run in enumerate(activation_runs):
            images = np.arange(1, len(run.errors) + 1) * run.images_per_chunk
            (line,) = curves.plot(images, run.errors, alpha=0.8, linewidth=1)
            line.set_color("C0" if activation == "relu" else "C1")
            if index == 0:
                line.set_label(f"{activation} (lr {run.lr:g})")
    for threshold in THRESHOLDS:
        curves.axhline(threshold, color="gray", linewidth=0.6, linestyle=":")
    curves.set_yscale("log")
    curves.set_xlabel("training images seen")
    curves.set_ylabel("training error (mean over the chunk)")
    curves.set_title(f"Training error, every seed ({args.dataset})", fontsize=10)
    curves.legend(fontsize=8)
    curves.grid(alpha=0.3)
    positions = np.arange(len(THRESHOLDS))
    for offset, (activation, activation_runs) in zip((-0.2, 0.2), chosen.items(), strict=True):
        medians = [median_images(activation_runs, t) for t in THRESHOLDS]
        heights = [m if math.isfinite(m) else 0.0 for m in medians]
        bars.bar(positions + offset, heights, width=0.4, label=activation)
    bars.set_xticks(positions, [f"{t:.0%}" for t in THRESHOLDS])
    bars.set_xlabel("training error reached")
    bars.set_ylabel("training images (median over seeds)")
    bars.set_title("Images to reach each error (fastest lr)", fontsize=10)
    bars.legend(fontsize=8)
    bars.grid(alpha=0.3, axis="y")

    rows = []
    for activation, by_lr in runs.items():
        for lr, lr_runs in by_lr.items():
            row = {"activation": activation, "lr": lr, "fastest": lr == chosen[activation][0].lr}
            for threshold in THRESHOLDS:
                images = median_images(lr_runs, threshold)
                row[f"images to {threshold:.0%}"] = "never" if math.isinf(images) else int(images)
            row["images/s"] = statistics.median(r.images_per_second for r in lr_runs)
            row["test accuracy (at stop)"] = statistics.mean(r.test_accuracy for r in lr_runs)
            rows.append(row)
    ratio_row = {"activation": "tanh / relu", "lr": math.nan, "fastest": True}
    for threshold in THRESHOLDS:
        ratio = speedup(chosen["relu"], chosen["tanh"], threshold)
        ratio_row[f"images to {threshold:.0%}"] = f"{ratio:.2f}x" if math.isfinite(ratio) else "-"
    rows.append({**ratio_row, "images/s": math.nan, "test accuracy (at stop)": math.nan})
    write_study(
        args.out_dir,
        "relu_speed",
        "ReLU against tanh: images to a training error",
        figure,
        command_line("study_relu_speed.py", args, parser.parse_args([])),
        markdown_table(rows),
        findings(chosen, seeds),
    )


if __name__ == "__main__":
    main()
