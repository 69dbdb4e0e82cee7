"""What the benchmarks share: epoch timing, the tables every benchmark prints, flags."""

from __future__ import annotations

import argparse
import time
from typing import Any

import keras


class EpochTimer(keras.callbacks.Callback):
    """Records the wall time and the process CPU time of every epoch of a `fit` call, in seconds.

    Wall time is the throughput a user sees; CPU time (all threads of the process) is the work
    done, which other processes competing for the cores disturb much less.
    """

    def __init__(self) -> None:
        super().__init__()
        self.seconds: list[float] = []
        self.cpu_seconds: list[float] = []
        self._start = (0.0, 0.0)

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._start = (time.perf_counter(), time.process_time())

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self.seconds.append(time.perf_counter() - self._start[0])
        self.cpu_seconds.append(time.process_time() - self._start[1])


def format_rows(rows: list[dict[str, Any]]) -> str:
    """A plain-text table of benchmark rows: one column per key, floats to 3 significant digits."""
    if not rows:
        return "(no rows)"
    columns = list(dict.fromkeys(key for row in rows for key in row))

    def cell(value: Any) -> str:
        if isinstance(value, bool) or value is None:
            return {True: "yes", False: "no", None: "-"}[value]
        if isinstance(value, float):
            return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"
        return str(value)

    table = [columns, *([cell(row.get(column)) for column in columns] for row in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    lines = [
        "  ".join(text.rjust(width) for text, width in zip(line, widths, strict=True))
        for line in table
    ]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def format_tables(rows: list[dict[str, Any]]) -> str:
    """`format_rows` for each run of consecutive rows with the same keys, blank line between."""
    groups: list[list[dict[str, Any]]] = []
    for row in rows:
        if groups and list(groups[-1][0]) == list(row):
            groups[-1].append(row)
        else:
            groups.append([row])
    return "\n\n".join(format_rows(group) for group in groups) if groups else "(no rows)"


def benchmark_parser(description: str) -> argparse.ArgumentParser:
    """The command line the throughput and scaling benchmarks share (`--quick`, `--dataset`,
    `--manual-dir`), for a benchmark to add its own flags to."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="fewer cases and rounds")
    parser.add_argument("--dataset", default="sample", help="sample (default) or fashion_mnist")
    parser.add_argument("--manual-dir", help="IDX files of --dataset (offline Fashion-MNIST)")
    return parser


def parse_args(description: str, argv: list[str] | None = None) -> argparse.Namespace:
    """The command line of the scaling benchmark: `benchmark_parser`'s flags."""
    return benchmark_parser(description).parse_args(argv)
