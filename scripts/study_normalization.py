"""BatchNorm vs GroupNorm vs no normalization across batch sizes 2..128.

    python scripts/study_normalization.py                      # the embedded sample, a few minutes
    python scripts/study_normalization.py --dataset fashion_mnist \
        --manual-dir /usr/share/datasets/fashion-mnist --epochs 1 --seeds 0,1 --batch-sizes 2,8,32,128

The zoo's `lenet5` with ReLU units and He initialization, with norm none, batch or group (up to 4
groups), trained for the same number of epochs at every batch size with the learning rate scaled
linearly with the batch size (Goyal et al., 2017; the GroupNorm paper does the same). Test
accuracy is measured in inference mode: BatchNorm then uses its moving averages, whose momentum
is set to 0.9 here so that the few hundred steps at the largest batches are enough for them to
settle (Keras' 0.99 needs several hundred steps; its lag would blur the comparison). Each
configuration trains once per seed of `--seeds`; the table gives the mean test error and its
spread. Writes
docs/studies/normalization.png (test error and final training loss vs batch size) and
normalization.md.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import keras
import numpy as np

from recipes.data.datasets import load_dataset
from recipes.train.runner import build_model
from scripts.study_common import (
    StudyRun,
    command_line,
    markdown_table,
    mean_and_spread,
    new_figure,
    number_list,
    study_config,
    study_parser,
    train_config,
    write_study,
)

NORMS = ("none", "batch", "group")
BATCH_SIZES = (2, 4, 8, 16, 32, 64, 128)
# Learning rate at batch size 64, scaled linearly with the batch size.
BASE_LR, BASE_BATCH = 0.02, 64
BATCHNORM_MOMENTUM = 0.9


def with_batchnorm_momentum(model: keras.Model, momentum: float) -> keras.Model:
    """Sets the moving-average momentum of every BatchNormalization layer of `model`."""
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = momentum
    return model


def findings(rows: list[dict], batch_sizes: list[int], seeds: list[int], whole_epochs: bool) -> str:
    """What the runs show, next to what the course says."""
    error = {(row["norm"], row["batch size"]): row["test error"] for row in rows}
    spread = max(row["test error spread"] for row in rows)
    smallest, largest = min(batch_sizes), max(batch_sizes)

    def span(norm: str) -> str:
        return (
            f"{norm}: {error[(norm, largest)]:.3f} at batch {largest}, "
            f"{error[(norm, smallest)]:.3f} at batch {smallest}"
        )

    batch_penalty = error[("batch", smallest)] - error[("batch", largest)]
    group_penalty = error[("group", smallest)] - error[("group", largest)]
    verdict = (
        "as the GroupNorm paper reports"
        if batch_penalty > group_penalty
        else "unlike what the GroupNorm paper reports"
    )
    return (
        "The course (and Wu & He, 2018): BatchNorm normalizes with the statistics of the "
        "current batch, which become noisy estimates at small batch sizes, while at test time it "
        "uses moving averages of them, so its error grows as the batch shrinks; GroupNorm "
        "normalizes each example over groups of channels, independent of the batch, and keeps "
        f"its accuracy at any batch size. Test error measured here (mean of seeds "
        f"{', '.join(map(str, seeds))}; seed spread up to {spread:.3f}): {span('batch')}; "
        f"{span('group')}; {span('none')}. Going from batch {largest} to batch {smallest} costs "
        f"BatchNorm {batch_penalty:+.3f} and GroupNorm {group_penalty:+.3f} in test error, "
        f"{verdict}. "
        + (
            "Every configuration saw the same number of examples; small batches take many more "
            "(cheaper) steps."
            if whole_epochs
            else "Each epoch was cut to the same number of steps, so small batches saw fewer "
            "examples."
        )
    )


def train_one(args, info, norm: str, batch_size: int, seed: int) -> StudyRun:
    """LeNet-5 with `norm` at `batch_size` (the rate scaled with it), trained with `seed`."""
    config = study_config(
        args,
        model="lenet5",
        activation="relu",
        init="he",
        norm=norm,
        groups=4,
        optimizer="momentum",
        lr=BASE_LR * batch_size / BASE_BATCH,
        optimizer_options={"momentum": 0.9},
        batch_size=batch_size,
        seed=seed,
    )
    keras.utils.set_random_seed(seed)  # the model is built here, before train_config seeds
    model = with_batchnorm_momentum(
        build_model(config, info.image_shape, info.num_classes), BATCHNORM_MOMENTUM
    )
    return train_config(
        config, f"{norm}@{batch_size}", steps_per_epoch=args.steps_per_epoch, model=model
    )


def main(argv: list[str] | None = None) -> None:
    parser = study_parser(__doc__.split("\n")[0], epochs=3, seeds="0")
    parser.add_argument(
        "--batch-sizes",
        type=number_list(int),
        default=",".join(map(str, BATCH_SIZES)),
        help=f"comma-separated (default {','.join(map(str, BATCH_SIZES))})",
    )
    args = parser.parse_args(argv)
    _, info = load_dataset(args.dataset, "train", manual_dir=args.manual_dir, seed=args.seeds[0])
    rows = []
    for norm in NORMS:
        for batch_size in args.batch_sizes:
            runs = [train_one(args, info, norm, batch_size, seed) for seed in args.seeds]
            error, error_spread = mean_and_spread([1.0 - run.test_accuracy for run in runs])
            rows.append(
                {
                    "norm": norm,
                    "batch size": batch_size,
                    "lr": BASE_LR * batch_size / BASE_BATCH,
                    "final training loss": float(np.mean([r.history["loss"][-1] for r in runs])),
                    "test error": error,
                    "test error spread": error_spread,
                    "seconds": float(np.mean([run.seconds for run in runs])),
                }
            )
            print(
                f"{norm} @ {batch_size}: test error {error:.3f} +- {error_spread:.3f}", flush=True
            )
    figure, (error_axis, loss_axis) = new_figure(2)
    for norm in NORMS:
        mine = [row for row in rows if row["norm"] == norm]
        sizes = [row["batch size"] for row in mine]
        error_axis.plot(sizes, [row["test error"] for row in mine], marker="o", label=norm)
        loss_axis.plot(sizes, [row["final training loss"] for row in mine], marker="o", label=norm)
    for axis, metric in ((error_axis, "test error"), (loss_axis, "final training loss")):
        axis.set_xscale("log", base=2)
        axis.set_xticks(args.batch_sizes, [str(size) for size in args.batch_sizes])
        axis.set_xlabel("batch size")
        axis.set_ylabel(metric)
        axis.set_title(f"{metric} vs batch size", fontsize=10)
        axis.grid(alpha=0.3)
        axis.legend(title="norm", fontsize=8)
    figure.suptitle(f"BatchNorm vs GroupNorm vs none, LeNet-5 + ReLU ({args.dataset})")
    write_study(
        args.out_dir,
        "normalization",
        "BatchNorm vs GroupNorm vs no normalization across batch sizes",
        figure,
        command_line("study_normalization.py", args, parser.parse_args([])),
        markdown_table(rows),
        findings(rows, args.batch_sizes, args.seeds, args.steps_per_epoch is None),
    )


if __name__ == "__main__":
    main()
