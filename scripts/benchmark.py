"""All benchmarks in one run: one table per sub-benchmark, each with ratios measured in that run.

    python scripts/benchmark.py [--quick] [--only layers,optimizers,...,export,execution]
        [--dataset fashion_mnist --manual-dir DIR]

- layers: our layers vs their references, forward and forward+backward (`bench_layers`);
- optimizers: step time of our tf.train-exact optimizers vs Keras' built-ins (`bench_optimizers`);
- monitors: fit time with the training monitors vs without (`bench_monitors`);
- throughput: images/s of the recipes (run by their runner) vs a plain `model.fit` on arrays
  (`bench_throughput`);
- scaling: throughput vs batch size, epoch time vs dataset size (`bench_scaling`);
- export: size and single-image latency of each export format vs Keras (`bench_export`);
- execution: step time with and without XLA, and per steps per execution (`bench_execution`).

Each sub-benchmark is a module `scripts/bench_<name>.py` with `run_benchmarks(quick)` returning
rows (dicts); this script runs the selected ones in order and prints their rows. `--quick` keeps
every sub-benchmark short (small models, few repeats). `--dataset` and `--manual-dir` go to the
sub-benchmarks that train on a dataset (throughput, scaling; default: the embedded sample).
Timings are only comparable within one run.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.bench_common import format_tables

SUB_BENCHMARKS = {
    "layers": "ours vs reference layer, time ratio (lower is faster)",
    "optimizers": "optimizer step time vs Keras built-ins (lower is faster)",
    "monitors": "fit time with monitors / without",
    "throughput": "recipes vs plain model.fit, speed ratio (>= 1.0: recipe not slower)",
    "scaling": "throughput vs batch size; per-image cost vs dataset size (1.0: linear)",
    "export": "export formats: size (x_float: / float TFLite) and single-image latency",
    "execution": "step time without XLA / with, and at 1 / N steps per execution (> 1: faster)",
}


def selected_benchmarks(only: str | None) -> list[str]:
    """The sub-benchmark names from a comma-separated `--only` value (all when None)."""
    if only is None:
        return list(SUB_BENCHMARKS)
    names = [name.strip() for name in only.split(",") if name.strip()]
    unknown = [name for name in names if name not in SUB_BENCHMARKS]
    if unknown or not names:
        raise ValueError(
            f"unknown sub-benchmark(s) {unknown or only!r} in --only; "
            f"accepted: {', '.join(SUB_BENCHMARKS)}"
        )
    return names


def run_benchmark(name: str, quick: bool, **data: Any) -> list[dict[str, Any]]:
    """Runs `scripts/bench_<name>.py`'s `run_benchmarks(quick)`, with those of the `data`
    arguments (`dataset`, `manual_dir`) that it takes."""
    run_benchmarks = importlib.import_module(f"scripts.bench_{name}").run_benchmarks
    accepted = inspect.signature(run_benchmarks).parameters
    return run_benchmarks(quick, **{key: value for key, value in data.items() if key in accepted})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short runs of every benchmark")
    parser.add_argument(
        "--only", help=f"comma-separated sub-benchmarks ({','.join(SUB_BENCHMARKS)})"
    )
    parser.add_argument("--dataset", default="sample", help="throughput, scaling: the dataset")
    parser.add_argument("--manual-dir", help="throughput, scaling: IDX files of --dataset")
    args = parser.parse_args(argv)
    try:
        names = selected_benchmarks(args.only)
    except ValueError as error:
        parser.error(str(error))
    for name in names:
        start = time.perf_counter()
        rows = run_benchmark(name, args.quick, dataset=args.dataset, manual_dir=args.manual_dir)
        elapsed = time.perf_counter() - start
        print(f"== {name}: {SUB_BENCHMARKS[name]} ({elapsed:.0f} s)")
        print(format_tables(rows) + "\n", flush=True)


if __name__ == "__main__":
    main()
