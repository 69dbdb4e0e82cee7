"""Per-epoch run state on disk, so that a run killed at any moment can be resumed.

At the end of every epoch `RunCheckpoint` writes, each file atomically and in this order:

1. `checkpoints/last.keras`: the model with its optimizer state;
2. `checkpoints/best.keras`: the same, when the monitored validation metric improved;
3. `history.csv`: one row per finished epoch;
4. `checkpoints/state.json`: the number of finished epochs, the best metric so far and the training
   time they took (summed over every process that trained the run).

`state.json` is written last and is the source of truth: a run killed between steps 1 and 4 resumes
with the previous state's epoch count and redoes that epoch (starting from `last.keras`, which may
already hold its weights), and rows of `history.csv` past the state are dropped.
"""

from __future__ import annotations

import csv
import io
import json
import math
import time
from pathlib import Path

import keras

from recipes.callbacks.divergence import DivergenceGuard
from recipes.train.files import atomic_save_model, atomic_write_text

STATE_FILE = "checkpoints/state.json"
LAST_MODEL = "checkpoints/last.keras"
BEST_MODEL = "checkpoints/best.keras"
HISTORY_FILE = "history.csv"


def read_state(run_dir: str | Path) -> dict | None:
    """The saved run state (`{"epochs_done", "best", "monitor", "train_seconds"}`), or None if no
    epoch finished."""
    path = Path(run_dir) / STATE_FILE
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def read_history(run_dir: str | Path, epochs: int | None = None) -> list[dict[str, float]]:
    """Rows of `history.csv` (epoch numbers from 1), keeping only the first `epochs` if given."""
    path = Path(run_dir) / HISTORY_FILE
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        rows = [
            {key: int(value) if key == "epoch" else float(value) for key, value in row.items()}
            for row in csv.DictReader(f)
        ]
    return rows if epochs is None else rows[:epochs]


def history_columns(rows: list[dict[str, float]]) -> dict[str, list[float]]:
    """Per-metric lists, like `keras.callbacks.History.history`, from history rows."""
    keys = [key for key in (rows[0] if rows else {}) if key != "epoch"]
    return {key: [row[key] for row in rows] for key in keys}


def _csv_text(rows: list[dict[str, float]]) -> str:
    buffer = io.StringIO()
    fields = list(dict.fromkeys(key for row in rows for key in row))
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


class RunCheckpoint(keras.callbacks.Callback):
    """Writes the run state of every finished epoch (see the module docstring).

    Args:
        run_dir: the run's output directory.
        monitor: metric deciding the best checkpoint, e.g. "val_accuracy" or "val_loss".
        mode: "max" or "min": whether a larger or smaller `monitor` is better.
        history: rows of the epochs already done (when resuming), continued by this run.
        best: the best `monitor` value so far (when resuming).
        divergence_guard: when given and it has seen the run diverge, the epoch is not saved.
        train_seconds: training time of the epochs already done (when resuming); each finished
            epoch adds its own, checkpoint writing included, in `train_seconds`.

    After `fit`, `epochs_done` is the number of the last epoch saved.
    """

    def __init__(
        self,
        run_dir: str | Path,
        monitor: str = "val_accuracy",
        mode: str = "max",
        history: list[dict[str, float]] | None = None,
        best: float | None = None,
        divergence_guard: DivergenceGuard | None = None,
        train_seconds: float = 0.0,
    ):
        super().__init__()
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        self.run_dir = Path(run_dir)
        self.monitor = monitor
        self.mode = mode
        self.rows = list(history or [])
        self.best = best
        self.divergence_guard = divergence_guard
        self.train_seconds = train_seconds
        self.epochs_done = len(self.rows)
        self._epoch_start = time.perf_counter()

    def _improved(self, value: float) -> bool:
        if self.best is None:
            return True
        return value > self.best if self.mode == "max" else value < self.best

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = dict(logs or {})
        diverged = self.divergence_guard is not None and self.divergence_guard.diverged
        if diverged or not all(math.isfinite(float(v)) for v in logs.values()):
            # A diverged epoch is not a state worth resuming from; the last good one stays.
            return
        atomic_save_model(self.model, self.run_dir / LAST_MODEL)
        value = logs.get(self.monitor)
        if value is not None and self._improved(float(value)):
            self.best = float(value)
            atomic_save_model(self.model, self.run_dir / BEST_MODEL)
        self.rows.append({"epoch": epoch + 1, **{k: float(v) for k, v in logs.items()}})
        atomic_write_text(self.run_dir / HISTORY_FILE, _csv_text(self.rows))
        self.train_seconds += time.perf_counter() - self._epoch_start
        self.epochs_done = epoch + 1
        state = {
            "epochs_done": self.epochs_done,
            "best": self.best,
            "monitor": self.monitor,
            "train_seconds": self.train_seconds,
        }
        atomic_write_text(self.run_dir / STATE_FILE, json.dumps(state, indent=2))
