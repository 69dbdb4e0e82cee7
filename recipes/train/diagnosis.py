"""End-of-run diagnosis from the loss and accuracy curves.

Reads a Keras history (`{"loss": [...], "val_loss": [...], "accuracy": [...], ...}`, one value
per epoch or per logged step) and recognizes the course's six curve shapes:

- exploding loss (non-finite, or climbing far above its minimum): learning rate too high;
- a loss that never leaves its initial value ln(C) (softmax cross-entropy over C classes) with
  accuracy at chance: nothing is learned, a learning-rate or initialization problem;
- a steady, nearly straight decrease that is not flattening: learning rate too low;
- a long flat start followed by a sudden drop: bad initialization;
- a large train/validation gap or a rising validation loss: overfitting;
- low training accuracy once the loss has flattened, with validation as low: model too weak.

`diagnose` returns `Finding`s; `format_findings` renders them for a terminal; `write_diagnosis`
writes them into a run directory; `TrainingDiagnosis` is a callback doing all of it after `fit`.
"""

import dataclasses
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import keras
import numpy as np

from recipes.train.files import atomic_write_text

ACCURACY_KEYS = (
    "accuracy",
    "acc",
    "sparse_categorical_accuracy",
    "categorical_accuracy",
    "binary_accuracy",
)


@dataclasses.dataclass(frozen=True)
class Finding:
    """One problem read from the curves.

    Args:
        code: stable identifier: `exploding_loss`, `stuck_at_chance`, `learning_rate_too_low`,
            `bad_initialization`, `overfitting` or `underfitting`.
        summary: the problem in a few words.
        evidence: the figures from the history that show it.
        advice: what to try.
    """

    code: str
    summary: str
    evidence: str
    advice: str

    def render(self) -> str:
        return f"{self.summary}\n  evidence: {self.evidence}\n  try: {self.advice}"


@dataclasses.dataclass(frozen=True)
class DiagnosisThresholds:
    """The figures at which a curve shape counts as a problem.

    Args:
        divergence_factor: loss ending above this multiple of its minimum is exploding.
        linear_fit_r2: a decrease at least this well fitted by a straight line is "linear".
        linear_deceleration: ...and "not flattening" when the second half of the curve fell at
            least this fraction of what the first half fell (a healthy curve falls much less).
        plateau_tolerance: points within this relative distance of the first loss are "flat".
        plateau_min_points: a flat start at least this long is a plateau.
        drop_fraction: after a plateau, falling this fraction below it within
            `plateau_min_points` points is a sudden drop.
        overfit_gap: train minus validation accuracy above this is overfitting.
        val_loss_rise: validation loss ending this fraction above its minimum is overfitting.
        min_train_accuracy: final training accuracy below this, with the loss flattened and no
            large gap, is a model too weak (depends on the task: lower it for hard ones).
        flat_tolerance: the loss has flattened when it fell less than this fraction over the
            last third of the curve.
        min_points: fewer points than this only get the exploding-loss and chance checks.
        chance_tolerance: a loss within this fraction of ln(C) at every point, with accuracy
            below `chance_accuracy_factor / C`, is stuck at chance.
        chance_accuracy_factor: see `chance_tolerance`.
    """

    divergence_factor: float = 2.0
    linear_fit_r2: float = 0.95
    linear_deceleration: float = 0.6
    plateau_tolerance: float = 0.05
    plateau_min_points: int = 3
    drop_fraction: float = 0.3
    overfit_gap: float = 0.1
    val_loss_rise: float = 0.1
    min_train_accuracy: float = 0.7
    flat_tolerance: float = 0.05
    min_points: int = 4
    chance_tolerance: float = 0.02
    chance_accuracy_factor: float = 1.5

    def __post_init__(self):
        positive = ("divergence_factor", "plateau_min_points", "min_points")
        fractions = (
            "linear_fit_r2",
            "linear_deceleration",
            "plateau_tolerance",
            "drop_fraction",
            "overfit_gap",
            "val_loss_rise",
            "min_train_accuracy",
            "flat_tolerance",
            "chance_tolerance",
        )
        for name in positive:
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        for name in fractions:
            if not 0.0 < getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in (0, 1], got {getattr(self, name)!r}")
        if self.divergence_factor <= 1.0:
            raise ValueError(f"divergence_factor must exceed 1, got {self.divergence_factor!r}")
        if self.chance_accuracy_factor < 1.0:
            raise ValueError(
                f"chance_accuracy_factor must be >= 1, got {self.chance_accuracy_factor!r}"
            )


def _accuracy_key(history: Mapping[str, Sequence[float]], accuracy_key: str | None) -> str | None:
    if accuracy_key is not None:
        if accuracy_key not in history:
            raise ValueError(
                f"accuracy_key {accuracy_key!r} is not in the history; its keys are "
                f"{sorted(history)}"
            )
        return accuracy_key
    return next((key for key in ACCURACY_KEYS if key in history), None)


def _exploding(loss: np.ndarray, limits: DiagnosisThresholds) -> Finding | None:
    not_finite = np.flatnonzero(~np.isfinite(loss))
    advice = "lower the learning rate (3-10x), add gradient clipping or a warm-up"
    if not_finite.size:
        first = int(not_finite[0])
        return Finding(
            "exploding_loss",
            "Loss exploded: learning rate too high",
            f"loss became {loss[first]} at point {first} (previous value "
            f"{loss[first - 1] if first else 'none'})",
            advice,
        )
    lowest = int(np.argmin(loss))
    if loss[-1] > limits.divergence_factor * loss[lowest] and loss[lowest] > 0:
        return Finding(
            "exploding_loss",
            "Loss exploded: learning rate too high",
            f"loss climbed from its minimum {loss[lowest]:.4g} (point {lowest}) to "
            f"{loss[-1]:.4g} at the end, more than {limits.divergence_factor:g}x",
            advice,
        )
    return None


def _stuck_at_chance(
    history: Mapping[str, Sequence[float]],
    loss: np.ndarray,
    accuracy_key: str | None,
    num_classes: int,
    limits: DiagnosisThresholds,
) -> Finding | None:
    chance_loss = math.log(num_classes)
    if not np.all(np.abs(loss - chance_loss) <= limits.chance_tolerance * chance_loss):
        return None
    chance_accuracy = 1.0 / num_classes
    accuracy = history[accuracy_key][-1] if accuracy_key else None
    if accuracy is not None and accuracy > limits.chance_accuracy_factor * chance_accuracy:
        return None
    shown = f", accuracy {accuracy:.3f} (chance {chance_accuracy:.3f})" if accuracy else ""
    return Finding(
        "stuck_at_chance",
        "Loss stuck at its initial value ln(C): the network learns nothing",
        f"loss stayed within {limits.chance_tolerance:.0%} of ln({num_classes}) = "
        f"{chance_loss:.4g} at all {len(loss)} points (last {loss[-1]:.4g}){shown}",
        "check the learning rate first: too low leaves the loss where it started, too high "
        "saturates or kills the units so the outputs fall back to uniform (run the "
        "learning-rate range test, --sanity); then the initialization (zeros or tiny weights "
        "leave the units identical or dead: use He for ReLU, Glorot for tanh), and that the "
        "labels belong to the images",
    )


def _plateau_then_drop(loss: np.ndarray, limits: DiagnosisThresholds) -> Finding | None:
    start = loss[0]
    flat = np.abs(loss - start) <= limits.plateau_tolerance * abs(start)
    plateau = len(loss) if flat.all() else int(np.argmin(flat))
    if plateau < limits.plateau_min_points or plateau >= len(loss):
        return None
    window = loss[plateau : plateau + limits.plateau_min_points]
    if window.min() > (1.0 - limits.drop_fraction) * start:
        return None
    drop_at = plateau + int(np.argmin(window))
    return Finding(
        "bad_initialization",
        "Long plateau, then a sudden drop: bad initialization",
        f"loss stayed within {limits.plateau_tolerance:.0%} of {start:.4g} for the first "
        f"{plateau} points, then fell to {loss[drop_at]:.4g} by point {drop_at}",
        "use a fan-in-scaled initialization (He for ReLU, Glorot for tanh/sigmoid), add batch "
        "normalization, and check the activation histograms at initialization",
    )


def _linear_decrease(loss: np.ndarray, limits: DiagnosisThresholds) -> Finding | None:
    middle = len(loss) // 2
    first_drop, second_drop = loss[0] - loss[middle], loss[middle] - loss[-1]
    if first_drop <= 0 or second_drop <= 0:
        return None
    positions = np.arange(len(loss), dtype=np.float64)
    slope, intercept = np.polyfit(positions, loss, 1)
    residual = np.sum((loss - (slope * positions + intercept)) ** 2)
    total = np.sum((loss - loss.mean()) ** 2)
    r_squared = 1.0 - residual / total
    deceleration = second_drop / first_drop
    if r_squared < limits.linear_fit_r2 or deceleration < limits.linear_deceleration:
        return None
    return Finding(
        "learning_rate_too_low",
        "Slow, linear decrease of the loss: learning rate too low",
        f"loss fell steadily from {loss[0]:.4g} to {loss[-1]:.4g} (straight-line fit R^2 "
        f"{r_squared:.3f}); the second half fell {deceleration:.2f}x as much as the first, so "
        "it is not flattening",
        "raise the learning rate (try 3-10x, or run the learning-rate range test), or train longer",
    )


def _overfitting(
    history: Mapping[str, Sequence[float]],
    loss: np.ndarray,
    accuracy_key: str | None,
    limits: DiagnosisThresholds,
) -> Finding | None:
    advice = (
        "regularize more (weight decay, dropout, data augmentation), get more data, or stop "
        "at the best validation epoch"
    )
    validation_key = f"val_{accuracy_key}" if accuracy_key else None
    if validation_key in history:
        train, validation = history[accuracy_key][-1], history[validation_key][-1]
        if train - validation > limits.overfit_gap:
            return Finding(
                "overfitting",
                "Large train/validation gap: overfitting",
                f"final train accuracy {train:.3f} vs validation {validation:.3f} (gap "
                f"{train - validation:.3f} > {limits.overfit_gap:g})",
                advice,
            )
    if "val_loss" in history:
        val_loss = np.asarray(history["val_loss"], dtype=np.float64)
        best = int(np.argmin(val_loss))
        rose = val_loss[-1] > (1.0 + limits.val_loss_rise) * val_loss[best]
        if rose and loss[-1] < loss[best]:
            return Finding(
                "overfitting",
                "Validation loss rising while training loss falls: overfitting",
                f"validation loss rose from {val_loss[best]:.4g} (point {best}) to "
                f"{val_loss[-1]:.4g}, training loss fell from {loss[best]:.4g} to {loss[-1]:.4g}",
                advice,
            )
    return None


def _underfitting(
    history: Mapping[str, Sequence[float]],
    loss: np.ndarray,
    accuracy_key: str | None,
    limits: DiagnosisThresholds,
) -> Finding | None:
    if accuracy_key is None:
        return None
    train = history[accuracy_key][-1]
    last_third = loss[-max(2, len(loss) // 3) :]
    flattened = last_third[0] - last_third[-1] < limits.flat_tolerance * abs(last_third[0])
    if train >= limits.min_train_accuracy or not flattened:
        return None
    validation = history.get(f"val_{accuracy_key}")
    shown = f" and validation {validation[-1]:.3f}" if validation else ""
    return Finding(
        "underfitting",
        "Training and validation accuracy both low: model too weak",
        f"final train accuracy {train:.3f}{shown} (below {limits.min_train_accuracy:g}) "
        "although the loss has flattened",
        "use a bigger model (more units or layers), less regularization, or better features",
    )


def diagnose(
    history: Mapping[str, Sequence[float]],
    thresholds: DiagnosisThresholds | None = None,
    accuracy_key: str | None = None,
    num_classes: int | None = None,
) -> list[Finding]:
    """Recognizes the course's problem shapes in a loss/accuracy history.

    Args:
        history: metric name -> values, e.g. `model.fit(...).history`. Needs `loss`; uses
            `val_loss` and an accuracy metric (and its `val_` twin) when present.
        thresholds: the figures that define each shape; defaults to `DiagnosisThresholds()`.
        accuracy_key: the accuracy metric's name; None picks the first of `ACCURACY_KEYS`.
        num_classes: the class count when the loss is softmax cross-entropy, whose value for
            uniform predictions is ln(num_classes); enables the stuck-at-chance check.

    Returns:
        The findings, most fundamental first; empty for a healthy run. An exploding loss, or a
        loss stuck at chance, is reported alone: the other shapes say nothing then.
    """
    limits = thresholds or DiagnosisThresholds()
    if "loss" not in history or len(history["loss"]) == 0:
        raise ValueError(f"history needs a non-empty 'loss' list; its keys are {sorted(history)}")
    key = _accuracy_key(history, accuracy_key)
    loss = np.asarray(history["loss"], dtype=np.float64)
    exploding = _exploding(loss, limits)
    if exploding is not None:
        return [exploding]
    if num_classes is not None and num_classes > 1:
        stuck = _stuck_at_chance(history, loss, key, num_classes, limits)
        if stuck is not None:
            return [stuck]
    if len(loss) < limits.min_points:
        return []
    plateau = _plateau_then_drop(loss, limits)
    checks = [
        plateau,
        None if plateau else _linear_decrease(loss, limits),
        _overfitting(history, loss, key, limits),
        _underfitting(history, loss, key, limits),
    ]
    return [finding for finding in checks if finding is not None]


def format_findings(findings: Sequence[Finding]) -> str:
    """A plain-text report of the findings, one numbered block each."""
    if not findings:
        return "Diagnosis: no problem found in the loss/accuracy curves.\n"
    blocks = [f"{index}. {finding.render()}" for index, finding in enumerate(findings, 1)]
    return "Diagnosis:\n" + "\n".join(blocks) + "\n"


def write_diagnosis(run_dir: str | os.PathLike, findings: Sequence[Finding]) -> Path:
    """Writes `diagnosis.txt` (the rendering) and `diagnosis.json` atomically into `run_dir`.

    Returns:
        The path of `diagnosis.txt`.
    """
    directory = Path(run_dir)
    records = [dataclasses.asdict(finding) for finding in findings]
    atomic_write_text(directory / "diagnosis.json", json.dumps(records, indent=2) + "\n")
    return atomic_write_text(directory / "diagnosis.txt", format_findings(findings))


class TrainingDiagnosis(keras.callbacks.Callback):
    """Diagnoses the run from its epoch logs when `fit` ends; prints and writes the result.

    Args:
        run_dir: directory for `diagnosis.txt` / `diagnosis.json`; None only prints.
        thresholds: passed to `diagnose`.
        verbose: print the rendering at the end of training.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike | None = None,
        thresholds: DiagnosisThresholds | None = None,
        verbose: bool = True,
    ):
        super().__init__()
        self.run_dir = run_dir
        self.thresholds = thresholds
        self.verbose = verbose
        self.history: dict[str, list[float]] = {}
        self.findings: list[Finding] = []

    def on_train_begin(self, logs=None):
        self.history = {}

    def on_epoch_end(self, epoch, logs=None):
        for name, value in (logs or {}).items():
            self.history.setdefault(name, []).append(float(value))

    def on_train_end(self, logs=None):
        if not self.history.get("loss"):
            return
        self.findings = diagnose(self.history, self.thresholds)
        if self.verbose:
            print(format_findings(self.findings), end="")
        if self.run_dir is not None:
            write_diagnosis(self.run_dir, self.findings)
