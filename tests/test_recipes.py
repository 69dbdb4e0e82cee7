"""Every recipe end to end through the shared runner, as a user runs them from the shell."""

import json
import os
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest

from recipes.__main__ import list_recipes
from recipes.callbacks.checkpoints import LAST_MODEL, read_checkpoint_state
from recipes.data.datasets import load_dataset
from recipes.train.errors import ConfigurationError
from tests.conftest import (
    CIFAR_SHAPED,
    REPO_ROOT,
    SHORT_RUNS_GROUP,
    run_python,
    run_recipe,
    wait_for_finished_epochs,
)

RECIPES = sorted(list_recipes())


def test_recipe_listing():
    expected = {
        "lenet5_fashion_mnist",
        "mlp_fashion_mnist",
        "maxout_mlp_fashion_mnist",
        "alexnet_lrn_cifar10",
        "vgg_small_cifar10",
        "resnet20_cifar10",
        "resnet20_fashion_mnist",
        "wide_resnet16_2_fashion_mnist",
        "resnet20_groupnorm_small_batch",
        "finetune_imagenet",
        "weightnorm_fashion_mnist",
        "mobilenet_tiny_fashion_mnist",
    }
    assert expected <= set(RECIPES)
    out = subprocess.run(
        [sys.executable, "-m", "recipes"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout
    for name in expected:
        assert name in out


@pytest.mark.parametrize("name", RECIPES)
def test_dry_run(name, tmp_path, capsys, cifar_shaped_folder):
    flags = ["--dry-run", "--out-dir", str(tmp_path / "run")]
    if name in CIFAR_SHAPED:
        flags += ["--dataset", str(cifar_shaped_folder), "--image-size", "32"]
    else:
        flags += ["--dataset", "sample"]
    if name == "finetune_imagenet":
        flags += ["--weights", "none"]
    assert run_recipe(name, *flags) == {}
    out = capsys.readouterr().out
    assert '"dry_run": true' in out and "Total params" in out
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
@pytest.mark.xdist_group(SHORT_RUNS_GROUP)
@pytest.mark.parametrize("name", RECIPES)
def test_one_short_epoch(name, short_recipe_run):
    run_dir, metrics = short_recipe_run(name)
    assert metrics["epochs"] == 1 and 0.0 <= metrics["test_accuracy"] <= 1.0
    for file in ("model.keras", "history.csv", "metrics.json", "config.json", "loss.png"):
        assert (run_dir / file).is_file(), file
    assert (run_dir / "checkpoints" / "best.keras").is_file()
    assert any((run_dir / "tensorboard").rglob("events.out.tfevents.*"))


def test_lenet5_end_to_end_outputs_and_reload(tmp_path):
    metrics = run_recipe(
        "lenet5_fashion_mnist",
        "--dataset",
        "sample",
        "--epochs",
        "3",
        "--out-dir",
        str(tmp_path),
        "--verbose",
        "0",
    )
    assert metrics["test_accuracy"] > 0.6  # chance is 0.1
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["test_accuracy"] == metrics["test_accuracy"]
    assert saved["epochs"] == 3 and saved["wall_time_s"] > 0
    assert saved["dataset"]["name"] == "sample"
    assert json.loads((tmp_path / "config.json").read_text())["model"]["name"] == "lenet5"
    assert len((tmp_path / "history.csv").read_text().strip().splitlines()) == 4

    model = keras.models.load_model(tmp_path / "model.keras")
    test, _ = load_dataset("sample", "test", batch_size=100)
    images = next(iter(test))[0]
    reloaded = keras.models.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(
        model.predict(images, verbose=0), reloaded.predict(images, verbose=0), rtol=1e-6
    )
    accuracy = reloaded.evaluate(test, verbose=0, return_dict=True)["accuracy"]
    assert accuracy == pytest.approx(metrics["test_accuracy"], abs=1e-6)


def test_refuses_to_overwrite_a_run(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ConfigurationError, match="already holds a run; pass --resume"):
        run_recipe("lenet5_fashion_mnist", "--dataset", "sample", "--out-dir", str(tmp_path))
    assert (tmp_path / "config.json").read_text() == "{}"


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--epochs", "0"], "`run.epochs` must be an integer >= 1. Received: run.epochs=0"),
        (["--lr", "-0.1"], "`optim.lr` must be a number > 0. Received: optim.lr=-0.1"),
        (["--model", "lenet"], "lenet5"),
        (["--optimizer", "sgdd"], "sgdd"),
        (["--loss", "hinge_svm"], "Unknown loss 'hinge_svm'"),
        (["--augment", "flip_x"], "flip_x"),
        (["--model", "mobilenet", "--fine-tune", "head"], "data.preprocessing must be 'none'"),
        (["--fine-tune", "head"], "`fine_tune` starts from trained weights"),
        (["--resume"], "--resume needs --out-dir"),
    ],
)
def test_bad_flags_give_clear_errors(flags, message, tmp_path):
    with pytest.raises(ConfigurationError) as error:
        run_recipe("lenet5_fashion_mnist", "--dataset", "sample", "--dry-run", *flags)
    assert message in str(error.value)


def test_flag_with_a_fixed_set_of_values_lists_them(capsys):
    with pytest.raises(SystemExit):
        run_recipe("lenet5_fashion_mnist", "--tta", "rotate")
    error = capsys.readouterr().err
    assert "--tta: invalid choice: 'rotate'" in error and "none" in error and "flip" in error


def test_unknown_flag_exits_with_usage(capsys):
    with pytest.raises(SystemExit):
        run_recipe("lenet5_fashion_mnist", "--learning-rate", "0.1")
    assert "unrecognized arguments: --learning-rate" in capsys.readouterr().err


def test_runs_as_a_script(tmp_path):
    result = run_python(
        ["recipes/lenet5_fashion_mnist.py", "--dataset", "sample", "--dry-run"], timeout=300
    )
    assert '"name": "lenet5"' in result.stdout


@pytest.mark.slow
def test_resume_after_sigkill(tmp_path):
    """A real training process killed with SIGKILL mid-run resumes to the full epoch count."""
    run_dir = tmp_path / "run"
    arguments = [
        "-m",
        "recipes.lenet5_fashion_mnist",
        "--dataset",
        "sample",
        "--epochs",
        "4",
        "--batch-size",
        "32",
        "--out-dir",
        str(run_dir),
        "--verbose",
        "0",
    ]
    env = {"PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen(
        [sys.executable, *arguments],
        cwd=REPO_ROOT,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_finished_epochs(run_dir, 1, [process])
    process.send_signal(signal.SIGKILL)
    process.wait()
    # The checkpoint is the resume point; state.json may lag it by the epoch being written.
    killed_state = read_checkpoint_state(run_dir / LAST_MODEL)
    done = killed_state["epochs_done"]
    assert 1 <= done < 4
    assert not (run_dir / "model.keras").exists()

    result = run_python([*arguments, "--resume"], timeout=300, env=env)
    assert f"Resuming {run_dir} after epoch {done}" in result.stdout
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs"] == 4
    # Training time and throughput count the epochs of both processes.
    assert metrics["wall_time_s"] > killed_state["train_seconds"] > 0
    lines = (run_dir / "history.csv").read_text().strip().splitlines()
    assert [line.split(",")[0] for line in lines[1:]] == ["1", "2", "3", "4"]
    keras.models.load_model(run_dir / "model.keras")


def test_divergence_stops_the_run_with_advice(tmp_path):
    from recipes.callbacks.divergence import TrainingDiverged

    with pytest.raises(TrainingDiverged, match="learning rate is probably too high"):
        run_recipe(
            "mlp_fashion_mnist",
            "--dataset",
            "sample",
            "--epochs",
            "2",
            "--lr",
            "1e4",
            "--out-dir",
            str(tmp_path),
            "--verbose",
            "0",
        )
    assert not (tmp_path / "model.keras").exists()


def test_config_file_defaults(tmp_path):
    config = tmp_path / "best.yaml"
    config.write_text("run: {epochs: 1, batch_size: 512}\nmodel:\n  knobs: {activation: tanh}\n")
    metrics = run_recipe(
        "mlp_fashion_mnist",
        "--dataset",
        "sample",
        "--config",
        str(config),
        "--out-dir",
        str(tmp_path / "run"),
        "--verbose",
        "0",
    )
    assert metrics["epochs"] == 1
    assert metrics["config"]["model"]["knobs"]["activation"] == "tanh"
    assert metrics["config"]["run"]["batch_size"] == 512


def test_margin_loss_gets_a_linear_output_layer(tmp_path):
    metrics = run_recipe(
        "mlp_fashion_mnist",
        "--dataset",
        "sample",
        "--epochs",
        "2",
        "--loss",
        "svm_hinge",
        "--out-dir",
        str(tmp_path),
        "--verbose",
        "0",
    )
    model = keras.models.load_model(tmp_path / "model.keras")
    assert model.layers[-1].get_config()["activation"] == "linear"
    assert metrics["test_accuracy"] > 0.5


def test_a_run_stuck_at_chance_is_diagnosed_as_such(tmp_path):
    # Zero weights give every unit the same zero output: softmax stays uniform, loss ln(10).
    run_recipe(
        "lenet5_fashion_mnist",
        *("--dataset", "sample", "--init", "zeros", "--epochs", "2"),
        *("--out-dir", str(tmp_path), "--verbose", "0"),
    )
    findings = json.loads((tmp_path / "diagnosis.json").read_text())
    assert [finding["code"] for finding in findings] == ["stuck_at_chance"]
