"""Batch size against generalization and speed, at a fixed number of epochs.

    python scripts/study_batch_size.py                     # the embedded sample, a minute
    python scripts/study_batch_size.py --dataset fashion_mnist \\
        --manual-dir /usr/share/datasets/fashion-mnist --seeds 0,1

The claims: larger batches process more images per second (the hardware is better used), but
"large-batch methods tend to converge to sharp minimizers of the training and testing functions
... and sharp minima lead to poorer generalization" (Keskar et al., 2017, who measure a
generalization gap of up to 5 points with batches of 10% of the data, Adam, same epochs); the
course's advice follows: the batch size is set by memory and speed, with the learning rate tuned
for it.

Measured here: the course's 3x256 ReLU MLP trained with Adam at its default rate (as Keskar et
al. do: one rate for every batch size) for the same number of epochs at each size of
`BATCH_SIZES`, over seeds. Reported: test and training accuracy (inference mode) and their gap,
and training images per second. Writes docs/studies/batch_size.png and batch_size.md.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.study_common import (
    RELU_MLP,
    command_line,
    compare_over_seeds,
    markdown_table,
    new_figure,
    seed_mean,
    study_parser,
    write_study,
)

BATCH_SIZES = (16, 64, 256, 1024, 4096)
ADAM_MLP = {**RELU_MLP, "init": "he", "optimizer": "adam", "optimizer_options": {}, "lr": 1e-3}
# The generalization claim needs the largest batch at least this much less accurate than the
# best smaller batch (Keskar et al. report 1-5 points).
WORSE = 0.005


def verdict(accuracy: dict[int, float], gap: dict[int, float], speed: dict[int, float]) -> str:
    """holds: the largest batch trains faster per image than the smallest, is at least `WORSE`
    less accurate than the best smaller batch, and overfits at least as much (the sharp-minimum
    explanation); partly: faster and less accurate, but with a smaller gap (it did fewer updates
    and underfits); does not hold otherwise."""
    largest = max(accuracy)
    best = max((size for size in accuracy if size != largest), key=accuracy.get)
    faster = speed[largest] > speed[min(speed)]
    worse = accuracy[best] - accuracy[largest] >= WORSE
    if faster and worse and gap[largest] >= gap[best]:
        return "holds"
    if faster and worse:
        return "holds partly"
    return "does not hold here"


def findings(accuracy: dict, gap: dict, speed: dict, seeds: list[int]) -> str:
    smallest, largest = min(BATCH_SIZES), max(BATCH_SIZES)
    best = max(accuracy, key=accuracy.get)
    return (
        "The claims: larger batches train faster per image; at the same epochs they generalize "
        "worse (Keskar et al., 2017: gaps of up to 5 points at 10% of the data per batch). "
        f"Measured over seeds {', '.join(map(str, seeds))}: {speed[smallest]:,.0f} images/s at "
        f"batch {smallest}, {speed[largest]:,.0f} at batch {largest} "
        f"({speed[largest] / speed[smallest]:.1f}x); test accuracy "
        + ", ".join(f"{accuracy[size]:.4f} at {size}" for size in BATCH_SIZES)
        + f" (best at batch {best}); training minus test accuracy "
        + ", ".join(f"{gap[size]:.3f}" for size in BATCH_SIZES)
        + ". Where the largest batch is less accurate with a smaller gap, it did fewer updates "
        "and underfits rather than generalizing worse from the same fit. Verdict: "
        f"**{verdict(accuracy, gap, speed)}** (holds: batch {largest} is faster per image, at "
        f"least {WORSE:.1%} less accurate than the best smaller batch, and overfits at least as "
        "much; partly: faster and less accurate, but underfitting)."
    )


def main(argv: list[str] | None = None) -> None:
    parser = study_parser(__doc__.split("\n")[0], epochs=10, seeds="0,1")
    args = parser.parse_args(argv)
    by_label, rows = compare_over_seeds(
        args, {f"batch {size}": {"batch_size": size} for size in BATCH_SIZES}, **ADAM_MLP
    )
    means = {
        size: seed_mean(runs) for size, runs in zip(BATCH_SIZES, by_label.values(), strict=True)
    }
    accuracy = {size: mean.test_accuracy for size, mean in means.items()}
    gap = {size: row["gap"] for size, row in zip(BATCH_SIZES, rows, strict=True)}
    speed = {size: row["images/s"] for size, row in zip(BATCH_SIZES, rows, strict=True)}
    figure, (accuracy_axis, speed_axis) = new_figure(2)
    sizes = list(BATCH_SIZES)
    for metric, name in (("train_accuracy", "training"), ("test_accuracy", "test")):
        values = [getattr(means[size], metric) for size in sizes]
        accuracy_axis.plot(sizes, values, marker="o", label=name)
    speed_axis.plot(sizes, [speed[size] for size in sizes], marker="o")
    for axis, title, label in (
        (accuracy_axis, f"accuracy after {args.epochs} epochs", "accuracy"),
        (speed_axis, "training speed", "images per second"),
    ):
        axis.set_xscale("log", base=2)
        axis.set_xticks(sizes, [str(size) for size in sizes])
        axis.set_xlabel("batch size")
        axis.set_ylabel(label)
        axis.set_title(title, fontsize=10)
        axis.grid(alpha=0.3)
    accuracy_axis.legend(fontsize=8)
    figure.suptitle(f"Batch size, 3x256 ReLU MLP, Adam 1e-3 ({args.dataset})")
    write_study(
        args.out_dir,
        "batch_size",
        "Batch size against generalization and speed",
        figure,
        command_line("study_batch_size.py", args, parser.parse_args([])),
        markdown_table(rows),
        findings(accuracy, gap, speed, args.seeds),
    )


if __name__ == "__main__":
    main()
