"""Sanity checks to run before a long training run, following the course's advice.

1. With regularization off, the initial loss should be what chance predicts: ln(C) for softmax
   cross-entropy over C classes, C - 1 for the multiclass SVM loss with margin 1 (all scores
   about equal). A figure far off means the initial scores are too large or the wiring is wrong.
2. Turning regularization up should increase the initial loss (with the same weights).
3. With regularization off the model should overfit a tiny training subset (20 examples) to
   100% training accuracy. If it cannot, something is broken before data or capacity matter.
4. A learning-rate range test sweeps the learning rate log-uniformly over a few hundred steps,
   plots loss against learning rate and suggests one (a tenth of the rate at the lowest
   smoothed loss).

`run_sanity_checks` runs all four on a model factory `build_model(regularization_scale)` and a
`tf.data` dataset of `(inputs, class id)` batches; `lr_range_test` runs the last alone.
"""

import dataclasses
import itertools
import math
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from matplotlib.figure import Figure

from layers import naming
from layers.validation import check_integer
from recipes.callbacks.monitors import TrainingHealthWarning

ModelFactory = Callable[[float], keras.Model]
OptimizerSpec = str | Callable[[float], keras.optimizers.Optimizer]

# Loss family -> expected loss when every class gets the same score, per number of classes.
SOFTMAX_LOSS_NAMES = ("softmax_cross_entropy", "cross_entropy", "sparse_categorical_crossentropy")
SVM_LOSS_NAMES = ("svm_hinge", "multiclass_hinge")
_LOSS_FAMILY_NAMES = naming.Names("loss", SOFTMAX_LOSS_NAMES + SVM_LOSS_NAMES)


def expected_initial_loss(loss_name: str, num_classes: int, margin: float = 1.0) -> float:
    """The loss of a model that gives every class the same score.

    Args:
        loss_name: one of `SOFTMAX_LOSS_NAMES` (gives ln(C)) or `SVM_LOSS_NAMES` (gives
            (C - 1) * margin).
        num_classes: C, at least 2.
        margin: the SVM margin.
    """
    check_integer("num_classes", num_classes, low=2)
    # Any spelling the losses accept ("Cross-Entropy", "SVM hinge").
    if _LOSS_FAMILY_NAMES.resolve(loss_name) in SOFTMAX_LOSS_NAMES:
        return math.log(num_classes)
    return (num_classes - 1) * margin


def _ends_in_softmax(model: keras.Model) -> bool:
    return getattr(model.layers[-1], "activation", None) is keras.activations.softmax


def resolve_loss(model: keras.Model, loss_name: str, loss: keras.losses.Loss | None):
    """The loss to measure and train with: `loss` when given, else one built from `loss_name`.

    Without `loss`, softmax cross-entropy is built with `from_logits` chosen from the model's
    last layer (probabilities when it applies softmax, logits otherwise). The SVM loss has no
    Keras built-in: pass it as `loss` (e.g. `recipes.optim.losses.get_loss("svm_hinge")`).
    """
    expected_initial_loss(loss_name, 2)  # validates the name
    if loss is not None:
        return loss
    if _LOSS_FAMILY_NAMES.resolve(loss_name) in SVM_LOSS_NAMES:
        raise ValueError(f"loss_name {loss_name!r} needs the loss itself: pass loss=")
    return keras.losses.SparseCategoricalCrossentropy(from_logits=not _ends_in_softmax(model))


def _make_optimizer(optimizer: OptimizerSpec, learning_rate) -> keras.optimizers.Optimizer:
    if callable(optimizer):
        return optimizer(learning_rate)
    return keras.optimizers.get(
        {"class_name": optimizer, "config": {"learning_rate": learning_rate}}
    )


def _class_ids(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[-1] > 1:
        return labels.argmax(axis=-1)
    return labels.reshape(len(labels)).astype(np.int64)


def _initial_losses(model: keras.Model, batches, loss) -> tuple[float, float]:
    """Mean data loss over `batches` in inference mode, and the regularization penalty."""
    data_losses = [float(loss(labels, model(inputs, training=False))) for inputs, labels in batches]
    penalty = float(sum(float(term) for term in model.losses)) if model.losses else 0.0
    return float(np.mean(data_losses)), penalty


@dataclasses.dataclass(frozen=True)
class CheckResult:
    """The outcome of one sanity check.

    Args:
        name: `initial_loss`, `regularization_raises_loss`, `overfit_small_subset` or
            `lr_range_test`.
        passed: whether the model behaved as the course says it should.
        value: the headline figure (initial loss, loss increase, training accuracy, lr).
        message: the figures and what they mean, in one or two sentences.
    """

    name: str
    passed: bool
    value: float
    message: str

    def render(self) -> str:
        return f"[{'ok' if self.passed else 'FAIL'}] {self.name}: {self.message}"


@dataclasses.dataclass(frozen=True)
class SanityReport:
    """All sanity-check results, with the learning rate the range test suggests."""

    checks: tuple[CheckResult, ...]
    suggested_learning_rate: float | None = None
    lr_plot_path: Path | None = None

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    def check(self, name: str) -> CheckResult:
        for check in self.checks:
            if check.name == name:
                return check
        raise KeyError(f"no check named {name!r}; ran {[c.name for c in self.checks]}")

    def render(self) -> str:
        lines = ["Sanity checks:", *(check.render() for check in self.checks)]
        return "\n".join(lines) + "\n"


def check_initial_loss(
    model: keras.Model,
    batches: Sequence,
    loss,
    loss_name: str,
    num_classes: int,
    tolerance: float = 0.2,
) -> CheckResult:
    """Compares the initial data loss with the chance-level figure for the loss family."""
    expected = expected_initial_loss(loss_name, num_classes)
    measured, _ = _initial_losses(model, batches, loss)
    formula = f"ln({num_classes})" if loss_name in SOFTMAX_LOSS_NAMES else f"{num_classes} - 1"
    passed = abs(measured - expected) <= tolerance * expected
    verdict = (
        "as expected"
        if passed
        else "too far off: the initial scores are too large (shrink the initialization of the "
        "last layer) or the labels / output activation / loss do not match"
    )
    return CheckResult(
        "initial_loss",
        passed,
        measured,
        f"initial loss {measured:.4g} with regularization off, expected {formula} = "
        f"{expected:.4g} (tolerance {tolerance:.0%}): {verdict}",
    )


def check_regularization_raises_loss(
    build_model: ModelFactory, base_model: keras.Model, batches, loss, scales: Sequence[float]
) -> CheckResult:
    """Builds the model at each regularization scale with `base_model`'s weights; the total
    initial loss (data + regularization) must increase with the scale."""
    totals = []
    for scale in scales:
        model = build_model(scale)
        model.set_weights(base_model.get_weights())
        totals.append(sum(_initial_losses(model, batches, loss)))
    increasing = all(after > before for before, after in itertools.pairwise(totals))
    figures = ", ".join(f"{s:g} -> {t:.4g}" for s, t in zip(scales, totals, strict=True))
    verdict = (
        "increases as expected"
        if increasing
        else "does not increase: the regularization_scale does not reach the model's "
        "regularizers (or the model has none)"
    )
    return CheckResult(
        "regularization_raises_loss",
        increasing,
        totals[-1] - totals[0],
        f"initial loss by regularization scale: {figures}; {verdict}",
    )


def check_overfit_small_subset(
    build_model: ModelFactory,
    examples: tuple[np.ndarray, np.ndarray],
    loss,
    optimizer: OptimizerSpec = "adam",
    learning_rate: float = 1e-3,
    max_epochs: int = 300,
    target_accuracy: float = 1.0,
) -> CheckResult:
    """Trains a fresh model with regularization off on a few examples until it memorizes them."""
    inputs, labels = examples
    model = build_model(0.0)
    model.compile(_make_optimizer(optimizer, learning_rate), loss)
    class_ids = _class_ids(labels)
    epochs, accuracy, chunk = 0, 0.0, 25
    while epochs < max_epochs and accuracy < target_accuracy:
        model.fit(inputs, labels, batch_size=len(inputs), epochs=chunk, verbose=0)
        epochs += chunk
        predictions = model.predict_on_batch(inputs)
        accuracy = float(np.mean(predictions.argmax(axis=-1) == class_ids))
    passed = accuracy >= target_accuracy
    verdict = (
        f"memorized them in {epochs} epochs"
        if passed
        else "CANNOT overfit them: the model, loss or data pipeline is broken (labels shuffled "
        "apart from inputs? outputs not matching the loss? learning rate far off?)"
    )
    return CheckResult(
        "overfit_small_subset",
        passed,
        accuracy,
        f"training accuracy {accuracy:.0%} on {len(inputs)} examples with regularization off "
        f"(target {target_accuracy:.0%}): {verdict}",
    )


class _ExponentialSweep(keras.optimizers.schedules.LearningRateSchedule):
    """min_lr * (max_lr / min_lr) ** (step / (num_steps - 1)): log-uniform from min to max."""

    def __init__(self, min_lr: float, max_lr: float, num_steps: int):
        self.min_lr = min_lr
        self.max_lr = max_lr
        self.num_steps = num_steps

    def __call__(self, step):
        progress = keras.ops.cast(step, "float32") / (self.num_steps - 1)
        return self.min_lr * keras.ops.power(self.max_lr / self.min_lr, progress)

    def learning_rate_at(self, step: int) -> float:
        return self.min_lr * (self.max_lr / self.min_lr) ** (step / (self.num_steps - 1))

    def get_config(self):
        return {"min_lr": self.min_lr, "max_lr": self.max_lr, "num_steps": self.num_steps}


def _smooth(values: Sequence[float], beta: float) -> np.ndarray:
    """Bias-corrected exponential moving average, as used for range-test curves."""
    average, smoothed = 0.0, []
    for index, value in enumerate(values, 1):
        average = beta * average + (1.0 - beta) * value
        smoothed.append(average / (1.0 - beta**index))
    return np.asarray(smoothed)


def lr_range_test(
    build_model: ModelFactory,
    train_ds: tf.data.Dataset,
    output_path: str | os.PathLike,
    loss_name: str = "softmax_cross_entropy",
    loss: keras.losses.Loss | None = None,
    optimizer: OptimizerSpec = "adam",
    min_lr: float = 1e-6,
    max_lr: float = 1.0,
    num_steps: int = 200,
    regularization_scale: float = 1.0,
    smoothing: float = 0.9,
    divergence_factor: float = 4.0,
) -> float:
    """Sweeps the learning rate log-uniformly, plots loss vs learning rate, suggests one.

    One fresh model is trained for up to `num_steps` steps, the learning rate growing from
    `min_lr` to `max_lr`; the sweep stops early once the smoothed loss exceeds
    `divergence_factor` times its lowest value. The suggestion is a tenth of the learning rate at
    the lowest smoothed loss: where the loss still falls fast but safely below divergence.

    Args:
        build_model: `build_model(regularization_scale) -> keras.Model`.
        train_ds: `tf.data` dataset of `(inputs, class id)` batches; repeated as needed.
        output_path: PNG file for the loss vs learning rate plot.
        loss_name, loss: as in `resolve_loss`.
        optimizer: optimizer name for `keras.optimizers.get`, or `learning_rate -> Optimizer`.
        min_lr, max_lr: the sweep's range, `0 < min_lr < max_lr`.
        num_steps: number of training steps in the sweep (at least 10).
        regularization_scale: passed to `build_model` (the training configuration by default).
        smoothing: EMA coefficient for the loss curve, in [0, 1).
        divergence_factor: stop when the smoothed loss exceeds this multiple of its minimum.

    Returns:
        The suggested learning rate.
    """
    if not 0 < min_lr < max_lr:
        raise ValueError(f"need 0 < min_lr < max_lr, got min_lr={min_lr!r}, max_lr={max_lr!r}")
    if not isinstance(num_steps, int) or num_steps < 10:
        raise ValueError(f"num_steps must be an integer >= 10, got {num_steps!r}")
    if not 0 <= smoothing < 1:
        raise ValueError(f"smoothing must be in [0, 1), got {smoothing!r}")
    if divergence_factor <= 1:
        raise ValueError(f"divergence_factor must exceed 1, got {divergence_factor!r}")
    sweep = _sweep(
        build_model(regularization_scale),
        train_ds,
        loss_name,
        loss,
        optimizer,
        _ExponentialSweep(min_lr, max_lr, num_steps),
        smoothing,
        divergence_factor,
    )
    _plot_range_test(sweep, output_path)
    return sweep.suggested


@dataclasses.dataclass(frozen=True)
class _SweepResult:
    learning_rates: list[float]
    losses: list[float]
    smoothed: np.ndarray
    suggested: float

    @property
    def best_improvement(self) -> float:
        """How far the lowest smoothed loss lies below the first one, as a fraction of it."""
        finite = self.smoothed[np.isfinite(self.smoothed)]
        return 1.0 - finite.min() / finite[0] if finite.size and finite[0] > 0 else 0.0


def _sweep(
    model, train_ds, loss_name, loss, optimizer, schedule, smoothing, divergence_factor
) -> _SweepResult:
    model.compile(_make_optimizer(optimizer, schedule), resolve_loss(model, loss_name, loss))
    learning_rates, losses = [], []
    for step, (inputs, labels) in enumerate(train_ds.repeat().take(schedule.num_steps)):
        learning_rates.append(schedule.learning_rate_at(step))
        losses.append(float(model.train_on_batch(inputs, labels, return_dict=True)["loss"]))
        smoothed = _smooth(losses, smoothing)
        if not math.isfinite(losses[-1]) or smoothed[-1] > divergence_factor * smoothed.min():
            break
    smoothed = _smooth(losses, smoothing)
    lowest = int(np.argmin(np.where(np.isfinite(smoothed), smoothed, np.inf)))
    return _SweepResult(learning_rates, losses, smoothed, learning_rates[lowest] / 10.0)


def _plot_range_test(sweep: _SweepResult, output_path: str | os.PathLike) -> Path:
    learning_rates, smoothed, suggested = sweep.learning_rates, sweep.smoothed, sweep.suggested
    figure = Figure(figsize=(6, 4), layout="constrained")
    axis = figure.subplots()
    axis.semilogx(learning_rates, sweep.losses, alpha=0.3, label="loss per step")
    axis.semilogx(learning_rates, smoothed, label="smoothed")
    axis.axvline(suggested, color="tab:red", linestyle="--", label=f"suggested {suggested:.2g}")
    finite = [value for value in smoothed if math.isfinite(value)]
    if finite:
        # From the starting loss down to the lowest: the divergent tail would squash the curve.
        axis.set_ylim(min(finite) * 0.9, max(finite[0], min(finite)) * 1.2)
    axis.set_xlabel("learning rate")
    axis.set_ylabel("training loss")
    axis.set_title("learning-rate range test")
    axis.legend()
    destination = Path(output_path)
    destination.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(destination, dpi=90)
    return destination


def _first_batches(train_ds: tf.data.Dataset, count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    batches = [(np.asarray(x), np.asarray(y)) for x, y in train_ds.take(count)]
    if not batches:
        raise ValueError("train_ds yielded no batches")
    return batches


def _first_examples(train_ds: tf.data.Dataset, count: int) -> tuple[np.ndarray, np.ndarray]:
    inputs, labels = zip(*train_ds.unbatch().take(count).as_numpy_iterator(), strict=True)
    return np.stack(inputs), np.stack(labels)


def run_sanity_checks(
    build_model: ModelFactory,
    train_ds: tf.data.Dataset,
    num_classes: int,
    loss_name: str = "softmax_cross_entropy",
    loss: keras.losses.Loss | None = None,
    output_dir: str | os.PathLike | None = None,
    optimizer: OptimizerSpec = "adam",
    initial_loss_batches: int = 4,
    initial_loss_tolerance: float = 0.2,
    regularization_scales: Sequence[float] = (0.0, 1.0, 10.0),
    overfit_examples: int = 20,
    overfit_learning_rate: float = 1e-3,
    overfit_max_epochs: int = 300,
    lr_range_steps: int = 200,
) -> SanityReport:
    """Runs the course's sanity checks; warns (`TrainingHealthWarning`) for each failed one.

    Args:
        build_model: `build_model(regularization_scale) -> keras.Model` (compiled or not; the
            checks compile their own copies). Scale 0 must turn regularization off; larger
            scales must strengthen it.
        train_ds: `tf.data` dataset of `(inputs, class id)` batches.
        num_classes: number of classes C.
        loss_name, loss: the loss family and, optionally, the loss itself (see `resolve_loss`).
        output_dir: where the range test writes `lr_range_test.png`; None skips the range test.
        optimizer: optimizer name or `learning_rate -> Optimizer`, for overfitting and the sweep.
        initial_loss_batches: batches averaged for the initial loss.
        initial_loss_tolerance: allowed relative distance from the chance-level loss.
        regularization_scales: increasing scales to compare; the first should be 0.
        overfit_examples: size of the subset to memorize.
        overfit_learning_rate: learning rate for memorizing it.
        overfit_max_epochs: give up after this many full-batch epochs.
        lr_range_steps: steps of the learning-rate sweep.

    Returns:
        A `SanityReport`; `report.render()` is the text to print.
    """
    if (
        list(regularization_scales) != sorted(regularization_scales)
        or len(regularization_scales) < 2
    ):
        raise ValueError(
            f"regularization_scales must be at least two increasing values, got "
            f"{regularization_scales!r}"
        )
    batches = _first_batches(train_ds, initial_loss_batches)
    base_model = build_model(0.0)
    resolved = resolve_loss(base_model, loss_name, loss)
    checks = [
        check_initial_loss(
            base_model, batches, resolved, loss_name, num_classes, initial_loss_tolerance
        ),
        check_regularization_raises_loss(
            build_model, base_model, batches, resolved, regularization_scales
        ),
        check_overfit_small_subset(
            build_model,
            _first_examples(train_ds, overfit_examples),
            resolved,
            optimizer,
            overfit_learning_rate,
            overfit_max_epochs,
        ),
    ]
    suggested, plot_path = None, None
    if output_dir is not None:
        plot_path = Path(output_dir) / "lr_range_test.png"
        sweep = _sweep(
            build_model(1.0),
            train_ds,
            loss_name,
            resolved,
            optimizer,
            _ExponentialSweep(1e-6, 1.0, lr_range_steps),
            smoothing=0.9,
            divergence_factor=4.0,
        )
        _plot_range_test(sweep, plot_path)
        suggested = sweep.suggested
        fell = sweep.best_improvement >= 0.1
        verdict = (
            "(a tenth of the rate at the lowest smoothed loss)"
            if fell
            else "but the loss never fell by 10% during the sweep, so it means little: check "
            "the data and the model first"
        )
        checks.append(
            CheckResult(
                "lr_range_test",
                fell,
                suggested,
                f"suggested learning rate {suggested:.3g} {verdict}; the smoothed loss fell "
                f"{sweep.best_improvement:.0%} at best over {len(sweep.losses)} steps; plot in "
                f"{plot_path}",
            )
        )
    for check in checks:
        if not check.passed:
            warnings.warn(check.render(), TrainingHealthWarning, stacklevel=2)
    return SanityReport(tuple(checks), suggested, plot_path)
