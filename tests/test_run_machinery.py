"""Run-directory machinery: per-epoch checkpoints, divergence guard, plots."""

import keras
import numpy as np
import pytest

from recipes.callbacks.checkpoints import (
    BEST_MODEL,
    LAST_MODEL,
    RunCheckpoint,
    history_columns,
    read_history,
    read_state,
)
from recipes.callbacks.divergence import DivergenceGuard
from recipes.train.files import atomic_write_text
from recipes.train.plots import plot_curves


def tiny_model(lr: float = 0.05) -> keras.Model:
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    model.compile(
        optimizer=keras.optimizers.SGD(lr),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def tiny_data(n: int = 64):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 4)).astype("float32")
    return x, np.argmax(x[:, :3], axis=1)


def test_run_checkpoint_writes_resumable_state(tmp_path):
    x, y = tiny_data()
    model = tiny_model()
    checkpoint = RunCheckpoint(tmp_path, monitor="val_accuracy")
    model.fit(x, y, validation_data=(x, y), epochs=3, verbose=0, callbacks=[checkpoint])
    state = read_state(tmp_path)
    assert state["epochs_done"] == 3
    rows = read_history(tmp_path)
    assert [row["epoch"] for row in rows] == [1.0, 2.0, 3.0]
    assert state["best"] == max(row["val_accuracy"] for row in rows)
    assert state["train_seconds"] > 0
    reloaded = keras.models.load_model(tmp_path / LAST_MODEL)
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert (tmp_path / BEST_MODEL).is_file()
    assert history_columns(read_history(tmp_path, 2))["loss"] == [r["loss"] for r in rows[:2]]


def test_run_checkpoint_adds_training_time_to_the_resumed_runs(tmp_path):
    x, y = tiny_data()
    checkpoint = RunCheckpoint(tmp_path, train_seconds=1000.0)
    tiny_model().fit(x, y, validation_data=(x, y), epochs=2, verbose=0, callbacks=[checkpoint])
    assert 1000.0 < read_state(tmp_path)["train_seconds"] == checkpoint.train_seconds < 1100.0


def test_divergence_guard_stops_and_keeps_last_good_checkpoint(tmp_path):
    x, y = tiny_data()
    model = tiny_model(lr=0.05)
    guard = DivergenceGuard(learning_rate=0.05)
    checkpoint = RunCheckpoint(tmp_path, monitor="val_accuracy", divergence_guard=guard)
    model.fit(x, y, validation_data=(x, y), epochs=1, verbose=0, callbacks=[guard, checkpoint])
    good = keras.models.load_model(tmp_path / LAST_MODEL).get_weights()

    model.optimizer.learning_rate.assign(1e30)
    x_bad = x * 1e6
    model.fit(
        x_bad,
        y,
        validation_data=(x, y),
        epochs=3,
        initial_epoch=1,
        verbose=0,
        callbacks=[guard, checkpoint],
    )
    assert guard.diverged and "learning rate is probably too high" in guard.diverged
    assert read_state(tmp_path)["epochs_done"] == 1
    for kept, saved in zip(
        keras.models.load_model(tmp_path / LAST_MODEL).get_weights(), good, strict=True
    ):
        np.testing.assert_array_equal(kept, saved)


def test_divergence_guard_rejects_bad_factor():
    with pytest.raises(ValueError, match="explode_factor must be > 1"):
        DivergenceGuard(explode_factor=0.5)


def test_plot_and_atomic_text(tmp_path):
    path = plot_curves({"loss": [1.0, 0.5], "val_loss": [1.1, 0.7]}, "loss", tmp_path / "l.png")
    assert path.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(KeyError, match="no 'accuracy'"):
        plot_curves({"loss": [1.0]}, "accuracy", tmp_path / "a.png")
    atomic_write_text(tmp_path / "sub" / "t.txt", "hello")
    assert (tmp_path / "sub" / "t.txt").read_text() == "hello"
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["t.txt"]
