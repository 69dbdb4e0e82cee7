"""Run-directory machinery: per-epoch checkpoints, divergence guard, plots, atomic files, the
run directory's lock."""

import os
import zipfile

import keras
import numpy as np
import pytest

from recipes.callbacks.checkpoints import (
    BEST_MODEL,
    LAST_MODEL,
    RunCheckpoint,
    RunState,
    history_columns,
    read_checkpoint_state,
    read_history,
    read_state,
)
from recipes.callbacks.divergence import DivergenceGuard
from recipes.train.files import (
    LOCK_FILE,
    RunDirectoryBusy,
    atomic_directory,
    atomic_replace_members,
    atomic_save_arrays,
    atomic_save_model,
    atomic_write_text,
    hold_run_directory,
    remove_temporary_files,
)
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


def test_the_checkpoint_holds_the_state_it_commits(tmp_path):
    x, y = tiny_data()
    model = tiny_model()
    checkpoint = RunCheckpoint(tmp_path, state=RunState(recipe="tiny"))
    model.fit(x, y, validation_data=(x, y), epochs=2, verbose=0, callbacks=[checkpoint])
    stored = read_checkpoint_state(tmp_path / LAST_MODEL)
    assert stored["epochs_done"] == 2 and stored["recipe"] == "tiny"
    assert stored["history"] == read_history(tmp_path)
    assert {**stored, "history": None} == {**read_state(tmp_path), "history": None}
    # best.keras is the checkpoint of the best epoch, its state included.
    assert read_checkpoint_state(tmp_path / BEST_MODEL)["epochs_done"] == stored["best_epoch"]


def test_run_checkpoint_adds_training_time_to_the_resumed_runs(tmp_path):
    x, y = tiny_data()
    checkpoint = RunCheckpoint(tmp_path, state=RunState(train_seconds=1000.0))
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
    assert checkpoint.diverged == guard.diverged
    assert read_state(tmp_path)["epochs_done"] == 1
    for kept, saved in zip(
        keras.models.load_model(tmp_path / LAST_MODEL).get_weights(), good, strict=True
    ):
        np.testing.assert_array_equal(kept, saved)
    # The divergence is part of the run state: in state.json and in the checkpoint it concerns.
    recorded = {"epoch": 2, "message": guard.diverged}
    assert read_state(tmp_path)["diverged"] == recorded
    assert read_checkpoint_state(tmp_path / LAST_MODEL)["diverged"] == recorded
    assert read_checkpoint_state(tmp_path / LAST_MODEL)["history"] == read_history(tmp_path)

    # A later finished epoch (here with a sane learning rate again) clears the record.
    model.optimizer.learning_rate.assign(0.05)
    healthy = DivergenceGuard()
    checkpoint.divergence_guard = healthy
    model.fit(
        x, y, validation_data=(x, y), epochs=2, initial_epoch=1, verbose=0,
        callbacks=[healthy, checkpoint],
    )  # fmt: skip
    assert read_state(tmp_path)["diverged"] is None and checkpoint.diverged is None
    assert read_state(tmp_path)["epochs_done"] == 2


def test_an_epoch_with_metrics_that_are_not_finite_is_a_divergence(tmp_path):
    """Without a guard too: the epoch is not saved, training stops and the state says why."""
    x, y = tiny_data()
    y_bad = np.full(y.shape, np.nan, dtype="float32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss="mse")
    checkpoint = RunCheckpoint(tmp_path, monitor="val_loss", mode="min")
    model.fit(x, y, validation_data=(x, y_bad), epochs=3, verbose=0, callbacks=[checkpoint])
    assert checkpoint.epochs_done == 0 and not (tmp_path / LAST_MODEL).exists()
    assert "metrics of epoch 1 are not finite (val_loss=nan)" in checkpoint.diverged
    assert read_state(tmp_path)["diverged"]["epoch"] == 1
    assert int(model.optimizer.iterations) == 2  # one epoch of 2 batches, then it stopped


class _PoisonKernelAfterEpoch(keras.callbacks.Callback):
    """Sets one kernel entry to NaN at the end of an epoch, as a NaN gradient masked by a fused
    ReLU leaves it (the loss stays finite)."""

    def __init__(self, epoch: int):
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            kernel = self.model.layers[0].kernel
            poisoned = keras.ops.convert_to_numpy(kernel).copy()
            poisoned[0, 0] = np.nan
            kernel.assign(poisoned)


def test_an_epoch_with_weights_that_are_not_finite_is_a_divergence(tmp_path):
    x, y = tiny_data()
    model = tiny_model()
    guard = DivergenceGuard(learning_rate=0.05)
    checkpoint = RunCheckpoint(tmp_path, divergence_guard=guard)
    poison = _PoisonKernelAfterEpoch(epoch=1)
    model.fit(
        x, y, validation_data=(x, y), epochs=4, verbose=0, callbacks=[guard, poison, checkpoint]
    )
    assert checkpoint.epochs_done == 1 and read_state(tmp_path)["diverged"]["epoch"] == 2
    poisoned = model.layers[0].kernel.path
    message = f"weights after epoch 2 hold NaN or inf ({poisoned}) while its metrics stayed finite"
    assert message in checkpoint.diverged
    assert int(model.optimizer.iterations) == 4  # two epochs of 2 batches, then it stopped
    saved = keras.models.load_model(tmp_path / LAST_MODEL).get_weights()
    assert all(np.isfinite(weights).all() for weights in saved)


def test_a_checkpoint_of_another_monitor_is_not_continued(tmp_path):
    with pytest.raises(ValueError, match="follows max val_accuracy, not min val_loss"):
        RunCheckpoint(tmp_path, monitor="val_loss", mode="min", state=RunState(epochs_done=1))


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


def test_a_keras_file_keeps_loading_with_members_added_or_replaced(tmp_path):
    x, y = tiny_data()
    model = tiny_model()
    model.fit(x, y, epochs=1, verbose=0)
    path = atomic_save_model(model, tmp_path / "m.keras", {"note.json": '{"a": 1}'})
    atomic_replace_members(path, {"note.json": '{"a": 2}', "more.txt": "b"})
    with zipfile.ZipFile(path) as archive:
        assert archive.read("note.json") == b'{"a": 2}' and archive.read("more.txt") == b"b"
        assert archive.namelist().count("note.json") == 1
    reloaded = keras.models.load_model(path)
    assert int(reloaded.optimizer.iterations) == int(model.optimizer.iterations) == 2
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.keras"]


def test_a_run_directory_has_one_owner_at_a_time(tmp_path):
    with hold_run_directory(tmp_path / "run") as lock:
        assert lock.read_text().split()[0] == str(os.getpid())
        # flock locks belong to an open file: a second opening conflicts even in this process.
        busy = pytest.raises(RunDirectoryBusy, match=rf"another run \(PID {os.getpid()}[,)]")
        with busy, hold_run_directory(tmp_path / "run"):
            pass
        assert lock.read_text().split()[0] == str(os.getpid())
    # Directories made for a run that wrote nothing are not left behind.
    assert not (tmp_path / "run").exists()
    with hold_run_directory(tmp_path / "new" / "run") as lock:
        (tmp_path / "new" / "run" / "kept.txt").write_text("x")
    assert not lock.exists() and (tmp_path / "new" / "run" / "kept.txt").is_file()
    # The lock file a killed process leaves behind holds no lock.
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / LOCK_FILE).write_text("999999999 elsewhere\n")
    with hold_run_directory(tmp_path / "run") as lock:
        assert lock.read_text().split()[0] == str(os.getpid())


def test_temporary_files_of_interrupted_writes_are_removed(tmp_path):
    leftovers = [".state.json.k2j4_x.tmp", ".last.keras.8fz1.tmp.keras", ".last.tmp.keras"]
    for name in [*leftovers, "state.json", ".hidden", "notes.tmp"]:
        (tmp_path / name).write_text("x")
    assert sorted(p.name for p in remove_temporary_files(tmp_path)) == sorted(leftovers)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".hidden", "notes.tmp", "state.json"]


def test_atomic_directory_replaces_the_whole_directory_or_nothing(tmp_path):
    target = tmp_path / "saved_model"
    with atomic_directory(target) as folder:
        (folder / "a.txt").write_text("first")
        assert not target.exists()
    with pytest.raises(RuntimeError), atomic_directory(target) as folder:
        (folder / "b.txt").write_text("half")
        raise RuntimeError("failed while writing")
    assert [p.name for p in target.iterdir()] == ["a.txt"]
    with atomic_directory(target) as folder:
        (folder / "c.txt").write_text("second")
    assert [p.name for p in target.iterdir()] == ["c.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["saved_model"]


def test_atomic_save_arrays_round_trip(tmp_path):
    arrays = {"mean": np.arange(3, dtype=np.float32), "image": np.ones((2, 2, 1))}
    path = atomic_save_arrays(tmp_path / "statistics.npz", arrays)
    with np.load(path) as loaded:
        assert sorted(loaded.files) == ["image", "mean"]
        np.testing.assert_array_equal(loaded["mean"], arrays["mean"])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["statistics.npz"]
