"""Exported models: file size, test accuracy and single-image CPU latency of each format vs Keras.

    python scripts/bench_export.py RUN_DIR [RUN_DIR ...]     # the exports of trained runs
    python scripts/bench_export.py --quick                   # untrained zoo models, converted here
    python scripts/benchmark.py --only export

With run directories: every export found below each run (`python -m recipes.export`, see
docs/export.md) is timed next to the run's Keras model with its preprocessing
(`recipes.train.inference.raw_image_model`); sizes, accuracies and top-1 agreement come from the
exports' records (the parity check on the run's test split). Without: LeNet-5 and ResNet-20
(`--quick`: LeNet-5 only), untrained, 28x28x1, converted to each TFLite format in memory
(tflite_int8 calibrated on random images: sizes and latency only, no accuracy).

Latency: one image at a time, the median wall time of `--calls` calls after 10 warm-up calls, and
the mean process CPU time per call (all threads; less disturbed by other processes than wall
time). TFLite runs with one interpreter thread; Keras (`predict_on_batch`) and the SavedModel with
TensorFlow's default threads. Timings are only comparable within one run of this script.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
if __package__ in (None, ""):  # run as `python scripts/bench_export.py`: find the packages
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

import zoo
from recipes.export.formats import TFLITE_FORMATS, convert_to_tflite
from recipes.export.runtime import TFLiteModel, load_exported
from recipes.train.inference import load_run, raw_image_model
from recipes.train.model_card import exported_files
from scripts.bench_common import format_rows

WARMUP_CALLS = 10


def latency(predict: Callable[[np.ndarray], Any], image: np.ndarray, calls: int) -> dict:
    """Median wall milliseconds and mean CPU milliseconds of `predict` on one image."""
    for _ in range(WARMUP_CALLS):
        predict(image)
    walls = []
    cpu_start = time.process_time()
    for _ in range(calls):
        start = time.perf_counter()
        predict(image)
        walls.append(time.perf_counter() - start)
    cpu = (time.process_time() - cpu_start) / calls
    return {"latency_ms": 1000 * statistics.median(walls), "cpu_ms": 1000 * cpu}


def _one_image(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (1, *shape)).astype(np.float32)


def bench_run(run_dir: Path, calls: int) -> list[dict[str, Any]]:
    """Rows for Keras and every export of the run in `run_dir` (see the module docstring)."""
    records = exported_files(run_dir)
    if not records:
        raise SystemExit(f"{run_dir} has no exports: run python -m recipes.export on it first")
    run = load_run(run_dir)
    keras_model = raw_image_model(run)
    image = _one_image(run.image_shape)
    float_size = next((r["size_bytes"] for r in records if r["format"] == "tflite"), None)
    parity = records[0]["parity"]
    rows = [
        {
            "run": run_dir.name,
            "format": "keras",
            "size_bytes": run.model_file.stat().st_size,
            "x_float": None,
            "test_accuracy": parity["test_accuracy_keras"],
            "top1_agreement": 1.0,
            **latency(keras_model.predict_on_batch, image, calls),
        }
    ]
    for record in records:
        if record["format"] in TFLITE_FORMATS:
            exported = TFLiteModel(Path(record["path"]).read_bytes(), num_threads=1)
        else:
            exported, _ = load_exported(record["path"])
        rows.append(
            {
                "run": run_dir.name,
                "format": record["format"],
                "size_bytes": record["size_bytes"],
                "x_float": record["size_bytes"] / float_size if float_size else None,
                "test_accuracy": record["parity"]["test_accuracy_exported"],
                "top1_agreement": record["parity"]["top1_agreement"],
                **latency(exported.predict, image, calls),
            }
        )
    return rows


def bench_untrained(name: str, calls: int) -> list[dict[str, Any]]:
    """Rows for an untrained zoo model at 28x28x1 and its TFLite conversions."""
    model = zoo.create(name, input_shape=(28, 28, 1), num_classes=10)
    image = _one_image((28, 28, 1))
    calibration = np.random.default_rng(1).integers(0, 256, (64, 28, 28, 1)).astype(np.float32)
    rows = [{"model": name, "format": "keras", "size_bytes": None, "x_float": None}]
    rows[0].update(latency(model.predict_on_batch, image, calls))
    float_size = None
    for fmt in TFLITE_FORMATS:
        content = convert_to_tflite(model, fmt, lambda: (image[None] for image in calibration))
        float_size = float_size or len(content)
        exported = TFLiteModel(content, num_threads=1)
        rows.append(
            {
                "model": name,
                "format": fmt,
                "size_bytes": len(content),
                "x_float": len(content) / float_size,
                **latency(exported.predict, image, calls),
            }
        )
    return rows


def run_benchmarks(
    quick: bool, run_dirs: list[Path] | None = None, calls: int | None = None
) -> list[dict[str, Any]]:
    """The rows of every run in `run_dirs`, or of untrained zoo models when there are none."""
    calls = calls or (50 if quick else 300)
    if run_dirs:
        return [row for run_dir in run_dirs for row in bench_run(Path(run_dir), calls)]
    names = ["lenet5"] if quick else ["lenet5", "resnet20"]
    return [row for name in names for row in bench_untrained(name, calls)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dirs", nargs="*", type=Path, help="run directories with exports")
    parser.add_argument("--quick", action="store_true", help="fewer calls; LeNet-5 only")
    parser.add_argument("--calls", type=int, help="timed calls per format (default 300)")
    args = parser.parse_args(argv)
    print(format_rows(run_benchmarks(args.quick, args.run_dirs, args.calls)))


if __name__ == "__main__":
    main()
