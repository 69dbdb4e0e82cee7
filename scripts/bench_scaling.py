"""How a recipe's training cost scales: throughput vs batch size, epoch time vs dataset size.

    python scripts/bench_scaling.py [--quick] [--dataset fashion_mnist --manual-dir DIR]

Both sweeps train the recipe pipeline of `scripts/bench_throughput.py` (the runner's data, model
and compile) and time steady-state epochs after a warm-up epoch, keeping each setting's fastest.

- Batch size: images/s at each batch size; `ratio` is the throughput relative to the smallest
  batch size. Small batches pay the per-step overhead (Python, kernel launches) on few images, so
  throughput rises with the batch size until the arithmetic dominates.
- Dataset size: the training split is shrunk by carving a larger validation split off it (the
  pipeline is otherwise unchanged), and the epoch time is divided by the number of images;
  `ratio` is that per-image cost relative to the largest size. A pipeline whose cost is linear in
  the dataset size (no shuffle buffer, cache or preprocessing step that grows faster) keeps the
  ratio near 1.0; a fixed per-epoch overhead lifts it at the smallest sizes, and `fixed_ms` and
  `per_image_us` (a least-squares line through all sizes) separate the two.

`run_benchmarks(quick)` returns the rows for `scripts/benchmark.py`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from recipes.train.config import RunConfig
from scripts.bench_common import format_tables, parse_args
from scripts.bench_throughput import recipe_config, recipe_pipeline

QUICK_BATCH_SIZES = (32, 128, 512)
FULL_BATCH_SIZES = (8, 16, 32, 64, 128, 256, 512)
# Fractions of the training file kept for training; the rest becomes the (unused) validation split.
QUICK_KEPT_FRACTIONS = (0.225, 0.45, 0.9)
FULL_KEPT_FRACTIONS = (0.1125, 0.225, 0.45, 0.675, 0.9)


def fastest_epoch_seconds(config: RunConfig, epochs: int) -> tuple[float, int]:
    """The fastest of `epochs` timed epochs after a warm-up one, and the examples per epoch."""
    pipeline = recipe_pipeline(config)
    pipeline.epoch_times(1)
    return min(pipeline.epoch_times(epochs).wall), pipeline.num_examples


def batch_size_rows(
    model: str, batch_sizes: tuple[int, ...], epochs: int, **data: Any
) -> list[dict[str, Any]]:
    """Images/s of `model`'s recipe pipeline at each batch size."""
    rows = []
    for batch_size in batch_sizes:
        seconds, examples = fastest_epoch_seconds(recipe_config(model, batch_size, **data), epochs)
        rows.append(
            {
                "sweep": "batch_size",
                "model": model,
                "batch_size": batch_size,
                "examples": examples,
                "epoch_s": seconds,
                "img_s": examples / seconds,
            }
        )
    for row in rows:
        row["ratio"] = row["img_s"] / rows[0]["img_s"]
    return rows


def dataset_size_rows(
    model: str, batch_size: int, kept_fractions: tuple[float, ...], epochs: int, **data: Any
) -> list[dict[str, Any]]:
    """Epoch time and per-image cost of `model`'s recipe pipeline at each training-set size."""
    rows = []
    for kept in kept_fractions:
        config = recipe_config(model, batch_size, validation_fraction=1.0 - kept, **data)
        # Smaller sets get proportionally more epochs, so every size is timed on as many images.
        timed_epochs = max(epochs, round(epochs * max(kept_fractions) / kept))
        seconds, examples = fastest_epoch_seconds(config, timed_epochs)
        rows.append(
            {
                "sweep": "dataset_size",
                "model": model,
                "batch_size": batch_size,
                "examples": examples,
                "epoch_s": seconds,
                "per_image_us": 1e6 * seconds / examples,
            }
        )
    sizes = np.array([row["examples"] for row in rows], dtype=np.float64)
    seconds = np.array([row["epoch_s"] for row in rows])
    per_image, fixed = np.polyfit(sizes, seconds, 1)
    largest = rows[int(np.argmax(sizes))]["per_image_us"]
    for row in rows:
        row["ratio"] = row["per_image_us"] / largest
        row["fixed_ms"] = 1e3 * fixed
        row["fit_per_image_us"] = 1e6 * per_image
    return rows


def run_benchmarks(
    quick: bool, dataset: str = "sample", manual_dir: str | None = None
) -> list[dict[str, Any]]:
    """Both sweeps; returns the batch-size rows, then the dataset-size rows.

    Batch-size rows: `model`, `batch_size`, `examples`, `epoch_s`, `img_s` and `ratio` (img/s
    relative to the smallest batch size). Dataset-size rows: `examples`, `epoch_s`,
    `per_image_us`, `ratio` (per-image cost relative to the largest size; 1.0 is linear cost),
    `fixed_ms` and `fit_per_image_us` (the least-squares line epoch_s = fixed + per_image * n).
    """
    data = {"dataset": dataset, "manual_dir": manual_dir}
    epochs = 2 if quick else 4
    models = ("mlp",) if quick else ("mlp", "lenet5")
    rows = []
    for model in models:
        batch_sizes = QUICK_BATCH_SIZES if quick else FULL_BATCH_SIZES
        rows += batch_size_rows(model, batch_sizes, epochs, **data)
    for model in models:
        fractions = QUICK_KEPT_FRACTIONS if quick else FULL_KEPT_FRACTIONS
        rows += dataset_size_rows(model, 128, fractions, epochs, **data)
    return rows


def main(argv: list[str] | None = None) -> None:
    args = parse_args(__doc__.split("\n")[0], argv)
    print(format_tables(run_benchmarks(args.quick, args.dataset, args.manual_dir)))


if __name__ == "__main__":
    main()
