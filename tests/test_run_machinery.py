"""Run-directory machinery: config layering, per-epoch checkpoints, divergence guard, plots."""

import json

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
from recipes.train.config import BASE_DEFAULTS, resolve_config
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


def test_config_layers_defaults_file_and_flags(tmp_path):
    config_file = tmp_path / "c.yaml"
    config_file.write_text("lr: 0.5\nepochs: 7\nactivation: tanh\n")
    config = resolve_config(
        {"model": "mlp", "lr": 0.1, "epochs": 3},
        ["--config", str(config_file), "--epochs", "2", "--opt", "momentum=0.8"],
        prog="test",
        description="",
    )
    assert config["model"] == "mlp"  # recipe default
    assert config["lr"] == 0.5  # file over recipe default
    assert config["epochs"] == 2  # flag over file
    assert config["activation"] == "tanh"
    assert config["optimizer_options"] == {"momentum": 0.8}
    assert config["batch_size"] == BASE_DEFAULTS["batch_size"]


def test_config_key_value_and_aliases():
    config = resolve_config(
        {},
        ["--weight-decay", "1e-4", "--model-option", "depth=3", "--image-size", "32"],
        "test",
        "",
    )
    assert config["l2"] == 1e-4
    assert config["model_options"] == {"depth": 3}
    assert config["image_size"] == (32, 32)


def test_resume_takes_the_saved_config_and_refuses_changes(tmp_path):
    started = resolve_config(
        {"model": "mlp"},
        ["--epochs", "7", "--image-size", "32", "--out-dir", str(tmp_path)],
        "test",
        "",
    )
    (tmp_path / "config.json").write_text(json.dumps(started, default=str))

    resumed = resolve_config(
        {}, ["--out-dir", str(tmp_path), "--resume", "--verbose", "0"], "t", ""
    )
    assert resumed["model"] == "mlp" and resumed["epochs"] == 7
    assert resumed["image_size"] == [32, 32] and resumed["verbose"] == 0 and resumed["resume"]
    # How the final model is evaluated is not part of training, so it may change.
    flip = resolve_config({}, ["--out-dir", str(tmp_path), "--resume", "--tta", "flip"], "t", "")
    assert flip["tta"] == "flip" and flip["epochs"] == 7
    # Repeating the original command is fine: nothing changes.
    again = ["--epochs", "7", "--image-size", "32", "--out-dir", str(tmp_path), "--resume"]
    assert resolve_config({"model": "mlp"}, again, "t", "")["epochs"] == 7

    with pytest.raises(ValueError, match=r"differ: epochs \(saved 7, given 9\)") as error:
        resolve_config({}, ["--out-dir", str(tmp_path), "--resume", "--epochs", "9"], "t", "")
    assert "another --out-dir" in str(error.value)
    with pytest.raises(ValueError, match="optimizer_options"):
        resolve_config({}, ["--out-dir", str(tmp_path), "--resume", "--opt", "beta=1"], "t", "")


def test_config_rejects_unknown_keys(tmp_path):
    config_file = tmp_path / "c.json"
    config_file.write_text(json.dumps({"learning_rate": 0.1}))
    with pytest.raises(ValueError, match="unknown option 'learning_rate'"):
        resolve_config({}, ["--config", str(config_file)], "test", "")
    with pytest.raises(SystemExit):
        resolve_config({}, ["--no-such-flag"], "test", "")
    with pytest.raises(SystemExit):
        resolve_config({}, ["--opt", "momentum"], "test", "")


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
