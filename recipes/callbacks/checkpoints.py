"""Per-epoch run state on disk, so that a run killed at any moment resumes exactly where it was.

The run state after an epoch (`RunState`: epochs done, history rows, best metric and its epoch,
training time, the recipe, whether the run diverged) is stored inside `checkpoints/last.keras`,
as the archive member `run_state.json`, and written with the weights and optimizer variables in
one atomic replace. At the end of every epoch `RunCheckpoint` writes, in this order:

1. `checkpoints/last.keras`: model, optimizer and run state; its rename is the epoch's commit;
2. `checkpoints/best.keras`: a copy of it, when the monitored validation metric improved;
3. `history.csv`: the history rows, for people and tools;
4. `checkpoints/state.json`: the state without the rows, for people and tools.

Why this is atomic: the new `last.keras` is written to a temporary file, flushed to disk and
renamed over the old one (`recipes.train.files`). POSIX `rename(2)` swaps the directory entry in
one step, so a process killed (or a machine losing power) at any moment leaves either the previous
`last.keras` with the previous epoch's state inside, or the new one with the new state: the
weights, the optimizer's step count and the epoch count can never disagree. Files 2-4 are
derived from the commit, so a kill after it can only leave them one epoch behind;
`load_run_state` accepts exactly that lag and `RunCheckpoint.write_views` rebuilds them from the
checkpoint. Anything else (a `state.json` ahead of the checkpoint, history rows that are not the
checkpoint's, more epochs than the run has) is not something a crash produces, and is refused
with a message naming the file and the way out. (Writing a directory per epoch and renaming it
into place would not be simpler: `rename(2)` cannot replace a non-empty directory, so switching
to the new one takes a second atomic step, a pointer file or a symbolic link, and changes the
layout that tools read.)

Run directories written before checkpoints held their state (no `run_state.json` member) still
resume from `state.json`, as they were written: `last.keras`, `best.keras`, `history.csv`, then
`state.json`. A kill there between `last.keras` and `state.json` left the checkpoint one epoch
ahead of the state; `reconcile_optimizer_steps` finds it from the optimizer's step count.

A run whose training diverged keeps the last good epoch's checkpoint, and the divergence is
recorded in the state (in the checkpoint when there is one), so that a resumed run knows.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import time
import zipfile
from pathlib import Path
from typing import Any

import keras

from recipes.callbacks.divergence import DivergenceGuard, non_finite_weights
from recipes.train.errors import RecipeError
from recipes.train.files import (
    atomic_copy,
    atomic_replace_members,
    atomic_save_model,
    atomic_write_text,
)

STATE_FILE = "checkpoints/state.json"
LAST_MODEL = "checkpoints/last.keras"
BEST_MODEL = "checkpoints/best.keras"
HISTORY_FILE = "history.csv"
# The run state's name inside a checkpoint's .keras archive.
STATE_MEMBER = "run_state.json"
# The history columns `RunCheckpoint` adds to Keras' metrics: how fast each epoch trained.
SPEED_COLUMNS = ("epoch_seconds", "images_per_second")


class RunStateError(RecipeError):
    """A run directory's saved state is damaged or inconsistent; the message names the file and
    the way out. Nothing was written."""


@dataclasses.dataclass
class RunState:
    """What a run has done so far: the point a resumed run continues from.

    Attributes:
        epochs_done: finished (checkpointed) epochs.
        history: one row per finished epoch: `{"epoch": n, "loss": ..., "val_accuracy": ...}`.
        best: the best value of `monitor` so far, and `best_epoch` the epoch that reached it.
        monitor, mode: the metric deciding the best checkpoint, and "max" or "min".
        train_seconds: training time of the finished epochs, summed over every process that
            trained the run.
        recipe: the recipe that trains the run (None in states written before it was recorded).
        diverged: `{"epoch": n, "message": ...}` when the run stopped because its training
            diverged in epoch n (after the last finished one); None otherwise.
        legacy: read from a run directory written before checkpoints held their state.
    """

    epochs_done: int = 0
    history: list[dict[str, float]] = dataclasses.field(default_factory=list)
    best: float | None = None
    best_epoch: int | None = None
    monitor: str = "val_accuracy"
    mode: str = "max"
    train_seconds: float = 0.0
    recipe: str | None = None
    diverged: dict[str, Any] | None = None
    legacy: bool = False

    def to_json(self, history: bool = True) -> str:
        """The state as saved: in the checkpoint with its history, in state.json without."""
        values = dataclasses.asdict(self)
        del values["legacy"]
        if not history:
            del values["history"]
        return json.dumps(values, indent=2) + "\n"

    @classmethod
    def from_dict(cls, values: Any, source: Path, legacy: bool = False) -> RunState:
        """A state from its saved values; keys missing in older files take their defaults.

        Raises:
            RunStateError: `values` is not a run state (naming `source`).
        """
        fields = {field.name for field in dataclasses.fields(cls)} - {"legacy"}
        try:
            if not isinstance(values, dict):
                raise TypeError(f"a JSON object was expected, found {type(values).__name__}")
            state = cls(**{k: v for k, v in values.items() if k in fields}, legacy=legacy)
            _check_types(state)
        except (TypeError, ValueError) as error:
            raise RunStateError(
                f"{source} does not hold a run state ({error}). {_way_out(source)}"
            ) from None
        return state


def _check_types(state: RunState) -> None:
    def number(value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool)

    def count(value: Any) -> bool:
        return number(value) and isinstance(value, int) and value >= 0

    if not count(state.epochs_done):
        raise ValueError(f"epochs_done={state.epochs_done!r} is not a count of epochs")
    if state.best_epoch is not None and not count(state.best_epoch):
        raise ValueError(f"best_epoch={state.best_epoch!r} is not an epoch number")
    if not number(state.train_seconds):
        raise ValueError(f"train_seconds={state.train_seconds!r} is not a number")
    if state.best is not None and not number(state.best):
        raise ValueError(f"best={state.best!r} is not a number")
    if not isinstance(state.history, list) or not all(
        isinstance(row, dict) and isinstance(row.get("epoch"), int) for row in state.history
    ):
        raise ValueError("history is not a list of rows with an epoch number")
    if state.diverged is not None and not isinstance(state.diverged, dict):
        raise ValueError(f"diverged={state.diverged!r} is not a record of the divergence")


def _way_out(path: Path) -> str:
    """What to do when `path`, a file of a run directory, cannot be trusted."""
    run_dir = path.parent.parent if path.parent.name == "checkpoints" else path.parent
    last, best = run_dir / LAST_MODEL, run_dir / BEST_MODEL
    if path == best:
        return f"Delete {path} to resume: the next improvement writes it again"
    if path != last and _has_own_state(last):
        return f"Delete {path} to resume: it is rebuilt from {last}, which holds its epoch's state"
    start_over = f"to train again from scratch, delete {last.parent} and {run_dir / HISTORY_FILE}"
    if _has_own_state(best):
        return (
            f"To continue from the best epoch instead, copy {best} over {last} and delete "
            f"{run_dir / STATE_FILE} and {run_dir / HISTORY_FILE} (they are rebuilt from it); "
            f"{start_over}"
        )
    return f"{best} (if any) holds the best model so far; {start_over}"


def _has_own_state(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path) as archive:
            return STATE_MEMBER in archive.namelist()
    except (OSError, zipfile.BadZipFile):
        return False


def read_state(run_dir: str | Path) -> dict | None:
    """The saved `checkpoints/state.json` (see `RunState`), or None if there is none.

    Raises:
        RunStateError: the file is not valid JSON.
    """
    path = Path(run_dir) / STATE_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise RunStateError(
            f"{path} is damaged: not valid JSON ({error}). {_way_out(path)}"
        ) from None


def read_checkpoint_state(path: str | Path) -> dict | None:
    """The run state stored inside a checkpoint (`last.keras` or `best.keras`), or None for a
    checkpoint written before checkpoints held their state.

    Raises:
        RunStateError: the file is not a complete `.keras` archive (a truncated or damaged file),
            or its state is not valid JSON.
    """
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
            if damaged is not None:
                raise zipfile.BadZipFile(f"{damaged} fails its checksum")
            if STATE_MEMBER not in archive.namelist():
                return None
            return json.loads(archive.read(STATE_MEMBER))
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as error:
        raise RunStateError(
            f"{path} is damaged: not a complete .keras file ({' '.join(str(error).split())}). "
            f"{_way_out(path)}"
        ) from None


def load_checkpoint_model(path: str | Path) -> keras.Model:
    """The model, with its optimizer, of a checkpoint `read_checkpoint_state` accepted.

    A mixed_float16 model keeps its loss scaling: the runner compiles it with an explicit
    `CountingLossScaleOptimizer` (`recipes.optim.wrap_for_policy`), which the file's compile
    config holds, unlike the one `model.compile` adds by itself.

    Raises:
        RunStateError: Keras cannot load it; the message names the file and the way out.
    """
    path = Path(path)
    try:
        return keras.models.load_model(path)
    except (ValueError, OSError, KeyError, TypeError, zipfile.BadZipFile) as error:
        raise RunStateError(
            f"cannot resume: {path} does not load as a Keras model ({' '.join(str(error).split())})"
            f". {_way_out(path)}"
        ) from error


def read_history(run_dir: str | Path, epochs: int | None = None) -> list[dict[str, float]]:
    """Rows of `history.csv` (epoch numbers from 1), keeping only the first `epochs` if given.

    An empty cell is a column the epoch's row does not have (`epoch_seconds` and
    `images_per_second` in the rows of epochs trained before they were recorded): the key is left
    out of that row, as it is in the run state.

    Raises:
        RunStateError: the file is not a history written by `RunCheckpoint`.
    """
    path = Path(run_dir) / HISTORY_FILE
    if not path.is_file():
        return []
    try:
        with open(path, newline="") as f:
            rows = [
                {
                    key: int(value) if key == "epoch" else float(value)
                    for key, value in row.items()
                    if value != ""
                }
                for row in csv.DictReader(f)
            ]
        if rows and "epoch" not in rows[0]:
            raise ValueError("no epoch column")
    except (ValueError, TypeError, UnicodeDecodeError, csv.Error) as error:
        raise RunStateError(f"{path} is damaged ({error}). {_way_out(path)}") from None
    return rows if epochs is None else rows[:epochs]


def history_columns(rows: list[dict[str, float]]) -> dict[str, list[float]]:
    """Per-metric lists, like `keras.callbacks.History.history`, from history rows; a column
    that some rows lack (epochs trained before it was recorded) holds NaN for them."""
    keys = [key for key in dict.fromkeys(key for row in rows for key in row) if key != "epoch"]
    return {key: [row.get(key, math.nan) for row in rows] for key in keys}


def _csv_text(rows: list[dict[str, float]]) -> str:
    buffer = io.StringIO()
    fields = list(dict.fromkeys(key for row in rows for key in row))
    writer = csv.DictWriter(buffer, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _epoch_numbers(rows: list[dict[str, float]]) -> list[int]:
    return [int(row["epoch"]) for row in rows]


def _refuse(path: Path, problem: str) -> RunStateError:
    return RunStateError(f"cannot resume: {path} {problem}. {_way_out(path)}")


def load_run_state(
    run_dir: str | Path, *, epochs: int, recipe: str | None = None, check_views: bool = True
) -> RunState:
    """The state a resumed run continues from, checked against its checkpoint and its config.

    The checkpoint's own state (inside `last.keras`) is the truth. `state.json` and
    `history.csv` must agree with it, or be one epoch behind it (a kill after the epoch's commit,
    before they were written), or be missing; `best.keras` must be the checkpoint of the best
    epoch, or one improvement behind. The number of epochs must not exceed the run's, and a
    recorded recipe must be `recipe`. In a directory written before checkpoints held their state,
    `state.json` is the truth, as it was then, and `history.csv` must reach its epochs.

    Reads only: `RunCheckpoint.write_views` brings the derived files in line once every check
    has passed.

    Args:
        run_dir: the run directory.
        epochs: the run's total number of epochs (`run.epochs`).
        recipe: the recipe resuming the run, checked against the recorded one.
        check_views: compare `state.json`, `history.csv` and `best.keras` with the checkpoint.
            A non-chief worker of a multi-worker run, whose directory is scratch space and whose
            epoch the chief's overrides, does not.

    Raises:
        RunStateError: a file is damaged or the files disagree; the message names the file and
            the way out.
    """
    run_dir = Path(run_dir)
    last, state_path = run_dir / LAST_MODEL, run_dir / STATE_FILE
    stored = read_checkpoint_state(last) if last.is_file() else None
    saved = read_state(run_dir)
    if stored is not None:
        source, state = last, RunState.from_dict(stored, last)
    elif saved is not None:
        source, state = state_path, RunState.from_dict(saved, state_path, legacy=last.is_file())
    else:
        return RunState(recipe=recipe)
    if state.epochs_done > epochs:
        raise _refuse(source, f"says {state.epochs_done} epochs are done, but the run has {epochs}")
    if recipe is not None and state.recipe not in (None, recipe):
        raise RunStateError(
            f"cannot resume {run_dir} with recipe {recipe}: recipe {state.recipe} trained it "
            f"({source}). Resume it with `python -m recipes.{state.recipe} --out-dir {run_dir} "
            "--resume`; nothing was written"
        )
    state.recipe = state.recipe or recipe
    if stored is not None:
        if check_views:
            if _epoch_numbers(state.history) != list(range(1, state.epochs_done + 1)):
                raise _refuse(
                    last,
                    f"holds {state.epochs_done} epochs but the history of epochs "
                    f"{_epoch_numbers(state.history)}",
                )
            _check_views(run_dir, state, saved)
        return state
    if state.epochs_done and not last.is_file():
        raise _refuse(
            state_path, f"says {state.epochs_done} epochs are done, but {last} is missing"
        )
    rows = read_history(run_dir)
    if check_views and _epoch_numbers(rows[: state.epochs_done]) != list(
        range(1, state.epochs_done + 1)
    ):
        raise _refuse(
            run_dir / HISTORY_FILE,
            f"has rows for epochs {_epoch_numbers(rows)}, but {state_path} says "
            f"{state.epochs_done} epochs are done",
        )
    state.history = rows[: state.epochs_done]
    return state


def _check_views(run_dir: Path, state: RunState, saved: dict | None) -> None:
    """Refuses `state.json`, `history.csv` or `best.keras` unless each agrees with the
    checkpoint's `state`, or lags it by the epoch a kill after the commit leaves behind."""
    n = state.epochs_done
    state_path = run_dir / STATE_FILE
    if saved is not None:
        said = RunState.from_dict(saved, state_path).epochs_done
        if said not in (n, n - 1):
            raise _refuse(
                state_path,
                f"says {said} epochs are done, but {run_dir / LAST_MODEL} holds epoch {n}",
            )
    rows = read_history(run_dir)
    if rows and (len(rows) not in (n, n - 1) or rows != state.history[: len(rows)]):
        raise _refuse(
            run_dir / HISTORY_FILE,
            f"has rows for epochs {_epoch_numbers(rows)} that are not those of the "
            f"{n} epochs in {run_dir / LAST_MODEL}",
        )
    best_path = run_dir / BEST_MODEL
    if state.best_epoch is None or not best_path.is_file():
        return
    best = read_checkpoint_state(best_path)
    best_epoch = best.get("epochs_done") if isinstance(best, dict) else None
    # The copy of the newest epoch is missing when a kill came between the commit and the copy.
    lagging = state.best_epoch == n and best_epoch is not None and best_epoch < n
    if best is not None and best_epoch != state.best_epoch and not lagging:
        raise _refuse(
            best_path,
            f"holds epoch {best_epoch}, but {run_dir / LAST_MODEL} says the best epoch is "
            f"{state.best_epoch}",
        )


def reconcile_optimizer_steps(
    run_dir: str | Path, state: RunState, steps: int, steps_per_epoch: int
) -> RunState:
    """Checks the loaded checkpoint's optimizer step count against the state's epochs.

    Call it for runs whose optimizer counts every step from the first epoch (one training phase).
    A directory written before checkpoints held their state, killed after saving `last.keras` but
    before `state.json`, has a checkpoint one epoch ahead of its state: when `history.csv` holds
    that epoch's row, the state moves on to it, instead of training that epoch a second time.

    Args:
        run_dir: the run directory.
        state: the state from `load_run_state`.
        steps: the batches the loaded optimizer was applied to (`recipes.optim.applied_batches`:
            its `iterations`, plus the steps loss scaling skipped).
        steps_per_epoch: training steps in one epoch.

    Returns:
        The state to continue from.

    Raises:
        RunStateError: the step count is not that of the state's epochs.
    """
    run_dir = Path(run_dir)
    if steps == state.epochs_done * steps_per_epoch:
        return state
    epochs = steps / steps_per_epoch
    rows = read_history(run_dir)
    if state.legacy and epochs == state.epochs_done + 1 and len(rows) >= epochs:
        print(f"{run_dir / LAST_MODEL} holds epoch {int(epochs)}, one more than {STATE_FILE} says")
        return dataclasses.replace(state, epochs_done=int(epochs), history=rows[: int(epochs)])
    raise _refuse(
        run_dir / LAST_MODEL,
        f"holds an optimizer that took {steps} steps, but {state.epochs_done} epochs of "
        f"{steps_per_epoch} steps make {state.epochs_done * steps_per_epoch}: the checkpoint is "
        "not that of the state, or the training data or batch size differ from the run's",
    )


class RunCheckpoint(keras.callbacks.Callback):
    """Writes the run state of every finished epoch (see the module docstring).

    Args:
        run_dir: the run's output directory.
        monitor: metric deciding the best checkpoint, e.g. "val_accuracy" or "val_loss".
        mode: "max" or "min": whether a larger or smaller `monitor` is better.
        state: the state to continue (from `load_run_state` when resuming); a new run's, with
            its recipe, otherwise.
        divergence_guard: when given and it has seen the run diverge, the epoch is not saved and
            the divergence is recorded. An epoch whose metrics or weights are not finite is
            not saved either: it stops the training as a divergence.
        images_per_epoch: the training examples of an epoch; given, each history row gets
            `images_per_second`.

    Each finished epoch adds its training time to `train_seconds` (from the epoch's start to its
    end, validation included) and its history row gets `epoch_seconds`: the training pass alone,
    from the epoch's start to the end of its last training step, without validation and without
    writing the checkpoint (the first epoch of a session includes tracing and compiling the
    training step). `images_per_second` is `images_per_epoch / epoch_seconds`. After `fit`,
    `epochs_done` is the number of the last epoch saved and `diverged` says why training stopped
    early, if it did.
    """

    def __init__(
        self,
        run_dir: str | Path,
        monitor: str = "val_accuracy",
        mode: str = "max",
        state: RunState | None = None,
        divergence_guard: DivergenceGuard | None = None,
        images_per_epoch: int | None = None,
    ):
        super().__init__()
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        state = dataclasses.replace(state or RunState())
        if state.epochs_done and (state.monitor, state.mode) != (monitor, mode):
            raise ValueError(
                f"the saved state's best checkpoint follows {state.mode} {state.monitor}, not "
                f"{mode} {monitor}"
            )
        state.monitor, state.mode = monitor, mode
        self.run_dir = Path(run_dir)
        self.monitor = monitor
        self.mode = mode
        self.state = state
        self.divergence_guard = divergence_guard
        self.images_per_epoch = images_per_epoch
        self._epoch_start = time.perf_counter()
        self._training_end = self._epoch_start

    @property
    def rows(self) -> list[dict[str, float]]:
        """History rows of the finished epochs."""
        return self.state.history

    @property
    def epochs_done(self) -> int:
        return self.state.epochs_done

    @property
    def best(self) -> float | None:
        return self.state.best

    @property
    def train_seconds(self) -> float:
        return self.state.train_seconds

    @property
    def diverged(self) -> str | None:
        """Why the run stopped diverging (with advice), or None."""
        return self.state.diverged["message"] if self.state.diverged else None

    def _improved(self, value: float) -> bool:
        if self.state.best is None:
            return True
        return value > self.state.best if self.mode == "max" else value < self.state.best

    def write_views(self) -> None:
        """Writes `history.csv` and `state.json` from the state, and `best.keras` where a kill
        after the last commit left it behind. Call it before training (after `load_run_state`'s
        checks, when resuming): it also records a new run's state before its first epoch."""
        state = self.state
        last, best = self.run_dir / LAST_MODEL, self.run_dir / BEST_MODEL
        if state.epochs_done and state.best_epoch == state.epochs_done:
            kept = read_checkpoint_state(best) if best.is_file() else None
            if (kept or {}).get("epochs_done") != state.epochs_done:
                atomic_copy(last, best)
        if state.history:
            atomic_write_text(self.run_dir / HISTORY_FILE, _csv_text(state.history))
        else:
            (self.run_dir / HISTORY_FILE).unlink(missing_ok=True)
        atomic_write_text(self.run_dir / STATE_FILE, state.to_json(history=False))

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch_start = self._training_end = time.perf_counter()

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        self._training_end = time.perf_counter()

    def _speed(self) -> dict[str, float]:
        """The epoch's `epoch_seconds` and `images_per_second` (see the class docstring)."""
        seconds = self._training_end - self._epoch_start
        speed = {"epoch_seconds": round(seconds, 4)}
        if self.images_per_epoch and seconds > 0:
            speed["images_per_second"] = round(self.images_per_epoch / seconds, 1)
        return speed

    def _not_finite(self, epoch: int, logs: dict[str, float]) -> str | None:
        """Why epoch `epoch` must not be saved (metrics or weights not finite), or None."""
        metrics = [f"{key}={value}" for key, value in logs.items() if not math.isfinite(value)]
        if metrics:
            return f"the metrics of epoch {epoch} are not finite ({', '.join(metrics)})"
        weights = non_finite_weights(self.model)
        if weights:
            more = f" and {len(weights) - 3} more" if len(weights) > 3 else ""
            return (
                f"the weights after epoch {epoch} hold NaN or inf ({', '.join(weights[:3])}"
                f"{more}) while its metrics stayed finite"
            )
        return None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = {key: float(value) for key, value in (logs or {}).items()}
        guard = self.divergence_guard
        message = guard.diverged if guard is not None else None
        reason = self._not_finite(epoch + 1, logs) if message is None else None
        if reason is not None:
            if guard is not None:
                guard.stop(reason)
                message = guard.diverged
            else:
                self.model.stop_training = True
                message = f"Training stopped: {reason}."
        if message is not None:
            # A diverged epoch is not a state worth resuming from; the last good one stays.
            self._record_divergence(epoch + 1, message)
            return
        state = dataclasses.replace(
            self.state,
            epochs_done=epoch + 1,
            history=[*self.state.history, {"epoch": epoch + 1, **logs, **self._speed()}],
            train_seconds=self.state.train_seconds + time.perf_counter() - self._epoch_start,
            diverged=None,
        )
        value = logs.get(self.monitor)
        improved = value is not None and self._improved(value)
        if improved:
            state.best, state.best_epoch = value, epoch + 1
        atomic_save_model(self.model, self.run_dir / LAST_MODEL, {STATE_MEMBER: state.to_json()})
        self.state = state
        if improved:
            atomic_copy(self.run_dir / LAST_MODEL, self.run_dir / BEST_MODEL)
        atomic_write_text(self.run_dir / HISTORY_FILE, _csv_text(state.history))
        atomic_write_text(self.run_dir / STATE_FILE, state.to_json(history=False))

    def _record_divergence(self, epoch: int, message: str) -> None:
        """Records in the state that `epoch` diverged; the last good epoch's checkpoint stays,
        with the record added to its state."""
        self.state = dataclasses.replace(self.state, diverged={"epoch": epoch, "message": message})
        last = self.run_dir / LAST_MODEL
        if self.state.epochs_done and last.is_file():
            atomic_replace_members(last, {STATE_MEMBER: self.state.to_json()})
        atomic_write_text(self.run_dir / STATE_FILE, self.state.to_json(history=False))
