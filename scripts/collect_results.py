"""Collects finished runs into a Markdown table: test accuracy (mean and spread over seeds),
parameters, epochs and wall time per recipe, from each run directory's metrics.json.

The accuracy with test-time augmentation (see `recipes.data.tta`) gets a column of its own, filled
where every run of a row measured it; the plain single-view accuracy is always measured.

Runs that differ only in their seed are pooled into one row; the row's last column names every
setting that differs from the recipe's defaults, so each row can be re-run from its recipe. Runs
that trained in different numeric precisions are not pooled: `--precision auto` picks
mixed_bfloat16 on a CPU with native bfloat16 and float32 on one without, so the same command
trains differently on two machines; the column names a precision other than float32.

    python scripts/collect_results.py runs/*/* > table.md
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python scripts/collect_results.py`: find the packages
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from recipes.__main__ import recipe_defaults
from recipes.train.config import RunConfig, flat_items

# Settings that differ between repeats of one experiment without changing the experiment; the
# test-time augmentation only adds a column, since the single-view accuracy is always measured.
RUN_SPECIFIC_KEYS = ("seed", "out_dir", "resume", "verbose", "dry_run", "tta")
# Settings the table shows in columns of their own, or that say where the data lives.
SHOWN_KEYS = ("model", "norm", "dataset", "data_dir", "manual_dir", "batch_size", "epochs")


def load_runs(run_dirs: list[Path]) -> dict[str, list[dict]]:
    """Metrics of every finished run, grouped by configuration; repeats over seeds are pooled."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for run_dir in run_dirs:
        path = run_dir / "metrics.json"
        if not path.is_file():
            print(f"skipping {run_dir}: no metrics.json (unfinished run?)", file=sys.stderr)
            continue
        metrics = json.loads(path.read_text())
        # Runs recorded before the sectioned configuration hold the flat one; both convert.
        metrics["config"] = flat_items(RunConfig.from_dict(metrics["config"], str(path)))
        experiment = {k: v for k, v in metrics["config"].items() if k not in RUN_SPECIFIC_KEYS}
        experiment["trained_in"] = precision_used(metrics)
        groups[json.dumps(experiment, sort_keys=True, default=str)].append(metrics)
    return groups


def precision_used(metrics: dict) -> str:
    """The numeric precision a run trained in: recorded since `--precision` exists; the runs made
    before it trained in float32."""
    return metrics.get("precision", "float32")


def changed_settings(recipe: str, config: dict[str, Any]) -> str:
    """`key=value` for every setting of `config` (flat option names) that differs from recipe
    `recipe`'s defaults."""
    try:
        settings = recipe_defaults(recipe)
    except ValueError:
        return "(unknown recipe)"
    defaults = flat_items(RunConfig.from_dict(settings))
    changed = [
        f"{key}={json.dumps(value) if isinstance(value, dict) else value}"
        for key, value in sorted(config.items())
        if key not in RUN_SPECIFIC_KEYS + SHOWN_KEYS and defaults.get(key) != value
    ]
    return ", ".join(changed) or "defaults"


def changes(metrics: dict) -> str:
    """The table's last column for a row: the changed settings, and the precision the runs
    trained in unless float32 (`precision=auto` resolves by machine)."""
    changed = changed_settings(metrics.get("recipe", "?"), metrics["config"])
    used = precision_used(metrics)
    if used == "float32" or f"precision={used}" in changed:
        return changed
    trained_in = f"trained in {used}"
    return trained_in if changed == "defaults" else f"{changed}, {trained_in}"


def mean_and_spread(values: list[float]) -> str:
    """`mean ± half the range` to 4 decimals; the mean alone for a single value."""
    spread = f" ± {(max(values) - min(values)) / 2:.4f}" if len(values) > 1 else ""
    return f"{statistics.mean(values):.4f}{spread}"


def tta_accuracy(runs: list[dict]) -> str:
    """The test-time-augmented accuracy when every run of the group has it, with one mode."""
    modes = {run.get("tta") for run in runs}
    if len(modes) != 1 or None in modes:
        return "-"
    return f"{mean_and_spread([run['test_accuracy_tta'] for run in runs])} ({modes.pop()})"


def seed_count(runs: list[dict]) -> str:
    """The row's seeds: how many distinct ones, and the runs when a seed was run again (a
    repeat on later code counts as a run of its own in the mean, not as another seed)."""
    seeds = len({run["config"]["seed"] for run in runs})
    return str(seeds) if seeds == len(runs) else f"{seeds} ({len(runs)} runs)"


def markdown_table(groups: dict[str, list[dict]]) -> str:
    """One row per experiment: accuracy as mean (± half the range when there are several seeds)."""
    lines = [
        "| recipe | model | norm | dataset | batch | epochs | seeds | test accuracy "
        "| with test-time augmentation | parameters | wall time per run "
        "| changed from the recipe's defaults |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    rows = sorted(groups.values(), key=lambda runs: (runs[0].get("recipe", ""), runs[0]["epochs"]))
    for runs in rows:
        first, config = runs[0], runs[0]["config"]
        recipe = first.get("recipe", "?")
        wall = statistics.mean(run["wall_time_s"] for run in runs)
        lines.append(
            f"| {recipe} | {config['model']} | {config.get('norm') or 'default'} "
            f"| {first['dataset']['name']} | {config['batch_size']} | {first['epochs']} "
            f"| {seed_count(runs)} | {mean_and_spread([run['test_accuracy'] for run in runs])} "
            f"| {tta_accuracy(runs)} | {first['parameters']:,} | {wall / 60:.1f} min "
            f"| {changes(first)} |"
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
