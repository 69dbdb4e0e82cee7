"""Collects finished runs into a Markdown table: test accuracy (mean and spread over seeds),
parameters, epochs and wall time per recipe, from each run directory's metrics.json.

    python scripts/collect_results.py runs/*/* > table.md
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path


def load_runs(run_dirs: list[Path]) -> dict[tuple[str, str, int], list[dict]]:
    """Metrics of every finished run, grouped by (model, dataset, epochs); seeds are pooled."""
    groups: dict[tuple[str, str, int], list[dict]] = defaultdict(list)
    for run_dir in run_dirs:
        path = run_dir / "metrics.json"
        if not path.is_file():
            print(f"skipping {run_dir}: no metrics.json (unfinished run?)", file=sys.stderr)
            continue
        metrics = json.loads(path.read_text())
        config = metrics["config"]
        groups[(config["model"], metrics["dataset"]["name"], metrics["epochs"])].append(metrics)
    return groups


def markdown_table(groups: dict[tuple[str, str, int], list[dict]]) -> str:
    """One row per group: accuracy as mean (± half the range when there are several seeds)."""
    lines = [
        "| model | dataset | epochs | seeds | test accuracy | parameters | wall time per run |",
        "|---|---|---|---|---|---|---|",
    ]
    for (model, dataset, epochs), runs in sorted(groups.items()):
        accuracies = [run["test_accuracy"] for run in runs]
        spread = f" ± {(max(accuracies) - min(accuracies)) / 2:.3f}" if len(runs) > 1 else ""
        wall = statistics.mean(run["wall_time_s"] for run in runs)
        lines.append(
            f"| {model} | {dataset} | {epochs} | {len(runs)} | "
            f"{statistics.mean(accuracies):.3f}{spread} | {runs[0]['parameters']:,} | "
            f"{wall / 60:.1f} min |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "run_dirs", nargs="+", type=Path, help="run directories (with metrics.json)"
    )
    args = parser.parse_args(argv)
    groups = load_runs(args.run_dirs)
    if not groups:
        parser.error("none of the given directories holds a finished run (metrics.json)")
    print(markdown_table(groups), end="")


if __name__ == "__main__":
    main()
