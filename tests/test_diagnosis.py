"""Diagnosis of loss/accuracy histories: each of the six shapes and a healthy run."""

import json
import math

import keras
import numpy as np
import pytest

from recipes.train.diagnosis import (
    DiagnosisThresholds,
    TrainingDiagnosis,
    diagnose,
    format_findings,
    write_diagnosis,
)

EPOCHS = np.arange(20, dtype=np.float64)


def _decay(start: float, end: float, rate: float = 0.35) -> list[float]:
    """A healthy, quickly flattening curve from `start` towards `end`."""
    return list(end + (start - end) * np.exp(-rate * EPOCHS))


def _healthy() -> dict[str, list[float]]:
    return {
        "loss": _decay(2.3, 0.25),
        "val_loss": _decay(2.3, 0.3),
        "accuracy": _decay(0.1, 0.92),
        "val_accuracy": _decay(0.1, 0.89),
    }


def _codes(history: dict[str, list[float]]) -> list[str]:
    return [finding.code for finding in diagnose(history)]


def test_healthy_run_has_no_findings():
    assert diagnose(_healthy()) == []
    assert "no problem found" in format_findings([])


def test_nan_loss_is_exploding():
    history = _healthy()
    history["loss"][5:] = [float("nan")] * 15
    findings = diagnose(history)
    assert [f.code for f in findings] == ["exploding_loss"]
    assert "nan" in findings[0].evidence and "point 5" in findings[0].evidence


def test_loss_climbing_far_above_its_minimum_is_exploding():
    history = _healthy()
    history["loss"] = [2.3, 1.8, 1.5, 1.7, 2.5, 4.0, 9.0, 30.0]
    assert _codes(history) == ["exploding_loss"]


def test_slow_linear_decrease_means_learning_rate_too_low():
    history = _healthy()
    history["loss"] = list(2.30 - 0.01 * EPOCHS)
    history["accuracy"] = list(0.80 + 0.001 * EPOCHS)
    history["val_accuracy"] = list(0.79 + 0.001 * EPOCHS)
    findings = diagnose(history)
    assert [f.code for f in findings] == ["learning_rate_too_low"]
    assert "R^2" in findings[0].evidence


def test_plateau_then_sudden_drop_means_bad_initialization():
    history = _healthy()
    history["loss"] = [2.30, 2.30, 2.29, 2.30, 2.28, 2.29, 1.2, 0.6, *_decay(0.5, 0.25)[:12]]
    findings = diagnose(history)
    assert [f.code for f in findings] == ["bad_initialization"]
    assert "first 6 points" in findings[0].evidence


def test_train_validation_accuracy_gap_is_overfitting():
    history = _healthy()
    history["accuracy"] = _decay(0.1, 0.99)
    history["val_accuracy"] = _decay(0.1, 0.75)
    assert _codes(history) == ["overfitting"]


def test_rising_validation_loss_is_overfitting_without_accuracy():
    history = {"loss": _decay(2.3, 0.05), "val_loss": _decay(2.3, 0.4)}
    history["val_loss"][10:] = list(0.4 + 0.05 * np.arange(10))
    assert _codes(history) == ["overfitting"]


def test_both_accuracies_low_once_flat_is_underfitting():
    history = {
        "loss": _decay(2.3, 1.4),
        "val_loss": _decay(2.3, 1.45),
        "accuracy": _decay(0.1, 0.45),
        "val_accuracy": _decay(0.1, 0.44),
    }
    findings = diagnose(history)
    assert [f.code for f in findings] == ["underfitting"]
    assert "0.450" in findings[0].evidence


@pytest.mark.parametrize("epochs", [1, 2, 10])
def test_loss_stuck_at_ln_classes_with_chance_accuracy_points_at_the_learning_rate(epochs):
    stuck = {
        "loss": [math.log(10) * (1 + 0.001 * (-1) ** i) for i in range(epochs)],
        "accuracy": [0.1] * epochs,
        "val_loss": [math.log(10)] * epochs,
        "val_accuracy": [0.1] * epochs,
    }
    findings = diagnose(stuck, num_classes=10)
    assert [finding.code for finding in findings] == ["stuck_at_chance"]
    assert "learning rate" in findings[0].advice and "initialization" in findings[0].advice
    assert "ln(10) = 2.303" in findings[0].evidence
    # Without the class count the shape cannot be told: earlier the run got "no problem" or
    # "model too weak".
    assert "stuck_at_chance" not in _codes(stuck)


def test_learning_or_beating_chance_is_not_stuck():
    learning = {"loss": [2.30, 2.10, 1.90, 1.70], "accuracy": [0.1, 0.2, 0.3, 0.4]}
    assert "stuck_at_chance" not in [f.code for f in diagnose(learning, num_classes=10)]
    flat_but_better = {"loss": [math.log(10)] * 4, "accuracy": [0.3] * 4}
    assert "stuck_at_chance" not in [f.code for f in diagnose(flat_but_better, num_classes=10)]


def test_thresholds_decide():
    history = _healthy()
    history["accuracy"] = _decay(0.1, 0.99)
    history["val_accuracy"] = _decay(0.1, 0.85)
    assert _codes(history) == ["overfitting"]
    assert diagnose(history, DiagnosisThresholds(overfit_gap=0.2)) == []
    strict = DiagnosisThresholds(min_train_accuracy=0.995, overfit_gap=0.2)
    assert [f.code for f in diagnose(history, strict)] == ["underfitting"]


@pytest.mark.parametrize(
    ("field", "value"),
    [("divergence_factor", 1.0), ("overfit_gap", 0.0), ("min_points", 0), ("flat_tolerance", 2)],
)
def test_invalid_thresholds_are_rejected(field, value):
    with pytest.raises(ValueError, match=field):
        DiagnosisThresholds(**{field: value})


def test_history_without_loss_is_rejected():
    with pytest.raises(ValueError, match="'loss'"):
        diagnose({"accuracy": [0.5]})
    with pytest.raises(ValueError, match="accuracy_key 'acc'"):
        diagnose({"loss": [1.0]}, accuracy_key="acc")


def test_write_diagnosis_writes_text_and_json(tmp_path):
    history = _healthy()
    history["accuracy"] = _decay(0.1, 0.99)
    history["val_accuracy"] = _decay(0.1, 0.75)
    findings = diagnose(history)
    text_path = write_diagnosis(tmp_path / "run", findings)
    assert text_path.read_text() == format_findings(findings)
    assert "overfitting" in text_path.read_text()
    records = json.loads((tmp_path / "run" / "diagnosis.json").read_text())
    assert [record["code"] for record in records] == ["overfitting"]
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [
        "diagnosis.json",
        "diagnosis.txt",
    ]


def test_callback_diagnoses_a_real_fit(tmp_path, capsys):
    rng = np.random.default_rng(0)
    inputs = rng.normal(size=(64, 4)).astype("float32")
    targets = inputs @ np.array([1.0, -2.0, 0.5, 3.0], dtype="float32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    # Plain SGD on least squares diverges once lr exceeds 2 / (largest Hessian eigenvalue),
    # below 1 for these unit-variance inputs: lr=1 makes the loss grow geometrically.
    model.compile(keras.optimizers.SGD(1.0), "mse")
    callback = TrainingDiagnosis(run_dir=tmp_path)
    model.fit(inputs, targets, epochs=6, batch_size=16, verbose=0, callbacks=[callback])
    assert [f.code for f in callback.findings] == ["exploding_loss"]
    assert "Loss exploded" in capsys.readouterr().out
    assert "Loss exploded" in (tmp_path / "diagnosis.txt").read_text()
