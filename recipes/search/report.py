"""A search's results, read back from its directory: the trials table, a scatter plot, the best config.

Everything is read from files (the stage plans and KerasTuner's per-trial `trial.json`), so the
reports can be rebuilt at any time, by any process, from a search that is finished, running or
interrupted:

    trials.csv         one row per trial: id, stage, status, validation accuracy, epochs (the
                       stage's, or Hyperband's budget for the trial), the searched values, run
                       directory, and why a trial failed
    scatter.png        two searched numeric options (log axes for log ranges) coloured by validation
                       accuracy; with fewer numeric options, an option against validation accuracy
    best_config.yaml   the best trial's full configuration, for `python -m recipes.<name> --config`
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
import tempfile
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import yaml
from keras_tuner.engine.trial import Trial

from recipes.search.space import RESERVED_KEYS, ParamSpec
from recipes.search.stage import TRIALS_DIR, StagePlan, read_plan, stage_dir
from recipes.search.tuner import OBJECTIVE, hyperband_epochs, searched_values
from recipes.train.files import atomic_write_text

TRIALS_CSV = "trials.csv"
SCATTER_PNG = "scatter.png"
BEST_CONFIG = "best_config.yaml"
# Keys that describe one run rather than the configuration, left out of the best config.
RUN_KEYS = (*RESERVED_KEYS, "run.verbose")


@dataclasses.dataclass(frozen=True)
class TrialRecord:
    """One trial as the reports show it.

    Args:
        trial: the trial's name, `stage<N>-<KerasTuner trial id>` (also its run directory's name).
        stage: the stage number.
        status: KerasTuner's status in lower case: completed, failed, running (or interrupted).
        val_accuracy: the run's best validation accuracy; None unless completed.
        epochs: the trial's training epochs: the stage's, or Hyperband's budget for the trial.
        values: the searched options' values.
        run_dir: the trial's run directory.
        message: why a failed trial failed (the error's last line), else "".
    """

    trial: str
    stage: int
    status: str
    val_accuracy: float | None
    epochs: int
    values: dict[str, Any]
    run_dir: Path
    message: str


def _failure_reason(message: str | None) -> str:
    lines = [line for line in (message or "").strip().splitlines() if line.strip()]
    if not lines:
        return ""
    # The traceback's last line is "module.ErrorClass: reason".
    return lines[-1].split(": ", 1)[-1].strip()


def read_plans(search_dir: str | Path) -> list[StagePlan]:
    """The plans of the stages started in `search_dir`, in order."""
    plans = []
    while (plan := read_plan(search_dir, len(plans) + 1)) is not None:
        plans.append(plan)
    return plans


def read_trials(search_dir: str | Path) -> list[TrialRecord]:
    """Every trial of every started stage, in stage and trial order."""
    search_dir = Path(search_dir)
    records = []
    for plan in read_plans(search_dir):
        trial_files = stage_dir(search_dir, plan.stage).glob("trial_*/trial.json")
        # By number: the ids' zero padding follows the trial count, which a resumed search can raise.
        trials = sorted(
            (Trial.load(str(path)) for path in trial_files), key=lambda t: int(t.trial_id)
        )
        for trial in trials:
            completed = trial.status == "COMPLETED" and trial.metrics.exists(OBJECTIVE)
            name = f"stage{plan.stage}-{trial.trial_id}"
            values = trial.hyperparameters.values
            records.append(
                TrialRecord(
                    trial=name,
                    stage=plan.stage,
                    status=trial.status.lower(),
                    val_accuracy=float(trial.metrics.get_best_value(OBJECTIVE))
                    if completed
                    else None,
                    epochs=hyperband_epochs(values) or plan.epochs,
                    values=searched_values(values),
                    run_dir=search_dir / TRIALS_DIR / name,
                    message=_failure_reason(trial.message) if trial.status == "FAILED" else "",
                )
            )
    return records


def best_trial(records: list[TrialRecord]) -> TrialRecord | None:
    """The best completed trial among the longest-trained ones: stage 2's when it trains longer,
    Hyperband's full-budget trials.

    Short runs only rank configurations roughly; a longer run's accuracy is the one a full
    training is expected to reach, so shorter runs do not compete with it.
    """
    completed = [record for record in records if record.val_accuracy is not None]
    if not completed:
        return None
    longest = max(record.epochs for record in completed)
    return max(
        (record for record in completed if record.epochs == longest),
        key=lambda record: record.val_accuracy,
    )


def write_trials_csv(records: list[TrialRecord], names: list[str], path: str | Path) -> Path:
    """Writes the trials table; `names` are the searched options (one column each)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["trial", "stage", "status", OBJECTIVE, "epochs", *names, "run_dir", "message"])
    for record in records:
        accuracy = "" if record.val_accuracy is None else f"{record.val_accuracy:.6g}"
        writer.writerow(
            [
                record.trial,
                record.stage,
                record.status,
                accuracy,
                record.epochs,
                *(record.values.get(name, "") for name in names),
                record.run_dir,
                record.message,
            ]
        )
    return atomic_write_text(path, buffer.getvalue())


def _positions(spec: ParamSpec, records: list[TrialRecord]) -> list[float]:
    """The records' places along a spec's axis: the value, or the index of a choice."""
    if spec.is_numeric:
        return [float(record.values[spec.name]) for record in records]
    labels = [str(value) for value in spec.values]
    return [labels.index(str(record.values[spec.name])) for record in records]


def _set_axis(axes, which: str, spec: ParamSpec) -> None:
    """Labels an axis; a numeric axis spans the option's whole searched range."""
    getattr(axes, f"set_{which}label")(spec.name)
    if spec.is_log:
        getattr(axes, f"set_{which}scale")("log")
    if spec.is_numeric:
        low, high = spec.to_space(spec.low), spec.to_space(spec.high)
        margin = 0.03 * (high - low)
        limits = spec.from_space(low - margin), spec.from_space(high + margin)
        getattr(axes, f"set_{which}lim")(*limits)
    else:
        getattr(axes, f"set_{which}ticks")(range(len(spec.values)), [str(v) for v in spec.values])


def plot_scatter(records: list[TrialRecord], specs: list[ParamSpec], path: str | Path) -> Path:
    """Plots the trials over two searched options, coloured by validation accuracy.

    The first two numeric options of `specs` are the axes; with fewer numeric options, the first
    option is plotted against validation accuracy. Stages get different markers, failed trials are
    grey crosses, and the best trial is ringed.
    """
    numeric = [spec for spec in specs if spec.is_numeric]
    x_spec = numeric[0] if numeric else specs[0]
    y_spec = numeric[1] if len(numeric) > 1 else None
    records = [r for r in records if all(s.name in r.values for s in (x_spec, y_spec) if s)]
    best = best_trial(records)
    accuracies = [r.val_accuracy for r in records if r.val_accuracy is not None]
    colour_range = (min(accuracies), max(accuracies)) if accuracies else (None, None)
    figure, axes = plt.subplots(figsize=(6.5, 5))
    colour_scale = None
    for stage, marker in zip(sorted({r.stage for r in records}), "o^sDv", strict=False):
        done = [r for r in records if r.stage == stage and r.val_accuracy is not None]
        failed = [r for r in records if r.stage == stage and r.status == "failed"]
        if y_spec is None:
            axes.scatter(
                _positions(x_spec, done),
                [r.val_accuracy for r in done],
                marker=marker,
                label=f"stage {stage}",
            )
            continue
        colour_scale = axes.scatter(
            _positions(x_spec, done),
            _positions(y_spec, done),
            c=[r.val_accuracy for r in done],
            cmap="viridis",
            vmin=colour_range[0],
            vmax=colour_range[1],
            marker=marker,
            edgecolors="black",
            linewidths=0.3,
            label=f"stage {stage}",
        )
        if failed:
            axes.scatter(
                _positions(x_spec, failed),
                _positions(y_spec, failed),
                marker="x",
                color="grey",
                label=f"stage {stage} failed",
            )
    if best is not None:
        axes.scatter(
            _positions(x_spec, [best]),
            _positions(y_spec, [best]) if y_spec else [best.val_accuracy],
            s=250,
            facecolors="none",
            edgecolors="red",
            linewidths=1.5,
            label=f"best ({best.trial}, {best.val_accuracy:.3f})",
        )
    _set_axis(axes, "x", x_spec)
    if y_spec is None:
        axes.set_ylabel(f"validation accuracy ({OBJECTIVE})")
    else:
        _set_axis(axes, "y", y_spec)
        if colour_scale is not None:
            figure.colorbar(colour_scale, ax=axes, label="validation accuracy")
    axes.set_title("search trials")
    axes.grid(alpha=0.3)
    if records:
        axes.legend(fontsize="small")
    figure.tight_layout()
    return _save_figure(figure, Path(path))


def _save_figure(figure, destination: Path) -> Path:
    # A unique temporary name: reports may be rebuilt by more than one process.
    descriptor, temporary = tempfile.mkstemp(
        dir=destination.parent, prefix=f".{destination.stem}.", suffix=destination.suffix
    )
    os.close(descriptor)
    try:
        figure.savefig(temporary, dpi=100)
        os.replace(temporary, destination)
    finally:
        plt.close(figure)
        Path(temporary).unlink(missing_ok=True)
    return destination


def best_config(record: TrialRecord, plan: StagePlan) -> dict[str, Any]:
    """The full configuration of a trial, without the keys that belong to a single run."""
    config = plan.trial_config(record.values, record.epochs)
    for key in RUN_KEYS:
        section, _, field = key.partition(".")
        del config[section][field]
    return config


def write_best_config(record: TrialRecord, plan: StagePlan, path: str | Path) -> Path:
    """Writes the best trial's configuration as YAML for a recipe's `--config`."""
    header = (
        f"# Best trial of the {plan.recipe} search: {record.trial}, validation accuracy "
        f"{record.val_accuracy:.4f} after {record.epochs} epochs.\n"
        f"# Train it: python -m recipes.{plan.recipe} --config {Path(path).name}\n"
    )
    body = yaml.safe_dump(best_config(record, plan), sort_keys=True)
    return atomic_write_text(path, header + body)


def write_reports(search_dir: str | Path) -> TrialRecord | None:
    """Rebuilds trials.csv, scatter.png and best_config.yaml; returns the best trial (or None)."""
    search_dir = Path(search_dir)
    plans = read_plans(search_dir)
    if not plans:
        return None
    specs = plans[0].specs
    records = read_trials(search_dir)
    write_trials_csv(records, [spec.name for spec in specs], search_dir / TRIALS_CSV)
    plot_scatter(records, specs, search_dir / SCATTER_PNG)
    best = best_trial(records)
    if best is not None:
        write_best_config(best, plans[best.stage - 1], search_dir / BEST_CONFIG)
    return best
