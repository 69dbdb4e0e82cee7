"""The execution flags end to end: --precision, --jit-compile and --steps-per-execution in real
runs on the sample dataset (what each run reports, the model it saves, resuming with and without
them), the divergence guard and checkpoints under several steps per execution, and the speed
columns of history.csv."""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest

import zoo
from recipes import mlp_fashion_mnist
from recipes.callbacks.checkpoints import (
    BEST_MODEL,
    HISTORY_FILE,
    LAST_MODEL,
    SPEED_COLUMNS,
    RunCheckpoint,
    RunStateError,
    history_columns,
    load_checkpoint_model,
    read_checkpoint_state,
    read_history,
)
from recipes.callbacks.divergence import DivergenceGuard, TrainingDiverged
from recipes.optim import CountingLossScaleOptimizer, applied_batches
from recipes.train import runner
from recipes.train.config import CONFIG_FILE, RunConfig
from recipes.train.execution import (
    dtype_policy,
    model_precision,
    resolve_jit_compile,
    resolve_precision,
)
from recipes.train.files import atomic_replace_members
from recipes.train.hardware import Hardware, detect_hardware
from recipes.train.runner import build_model, recipe_main
from tests.conftest import REPO_ROOT, run_python
from tests.test_run_state import Crash, crash_at_commit, set_checkpoint_state, snapshot

RECIPE = "mlp_fashion_mnist"
# 3,600 training images in batches of 500: 8 steps per epoch.
STEPS_PER_EPOCH = 8
SMALL_RUN = (
    "--dataset", "sample", "--batch-size", "500", "--model-option", "width=16", "--seed", "1",
    "--verbose", "0",
)  # fmt: skip
COMPUTE_DTYPES = {"float32": "float32", "mixed_bfloat16": "bfloat16", "mixed_float16": "float16"}


def train(run_dir: Path, *flags: str) -> dict:
    keras.backend.clear_session()
    argv = [*SMALL_RUN, "--out-dir", str(run_dir), *flags]
    return recipe_main(RECIPE, mlp_fashion_mnist.__doc__, mlp_fashion_mnist.DEFAULTS, argv)


def _second_epoch_of_the_session(done: list[str], name: str) -> bool:
    return name == LAST_MODEL and done.count(LAST_MODEL) == 1


def stopped_after_one_epoch(run_dir: Path, *flags: str) -> Path:
    """A 3-epoch run that died before committing its second epoch."""
    with pytest.raises(Crash), crash_at_commit(run_dir, _second_epoch_of_the_session):
        train(run_dir, "--epochs", "3", *flags)
    assert read_checkpoint_state(run_dir / LAST_MODEL)["epochs_done"] == 1
    return run_dir


def saved_run(run_dir: Path) -> dict:
    return json.loads((run_dir / CONFIG_FILE).read_text())["run"]


# ------------------------------------------------------------------------------------------------
# Precision


@pytest.mark.parametrize("precision", ["float32", "mixed_bfloat16", "mixed_float16"])
def test_each_precision_trains_and_saves_a_model_of_that_precision(precision, tmp_path):
    metrics = train(tmp_path, "--epochs", "1", "--precision", precision)
    assert metrics["precision"] == precision
    assert saved_run(tmp_path)["precision"] == precision
    assert np.isfinite(metrics["test_loss"]) and metrics["test_accuracy"] > 0.2

    model = load_checkpoint_model(tmp_path / "model.keras")
    assert model_precision(model) == precision
    hidden = model.get_layer("dense1")
    assert hidden.compute_dtype == COMPUTE_DTYPES[precision]
    assert hidden.kernel.dtype == "float32"  # mixed policies keep float32 variables
    assert model.outputs[0].dtype == "float32"
    # A mixed_float16 model trains with loss scaling that counts the steps it skips (gradients
    # that overflowed), kept on load: every batch was either applied or counted as skipped.
    loss_scaled = isinstance(model.optimizer, CountingLossScaleOptimizer)
    assert loss_scaled is (precision == "mixed_float16")
    assert applied_batches(model.optimizer) == STEPS_PER_EPOCH


def test_auto_resolves_for_this_machine_and_reports_what_it_chose(tmp_path):
    metrics = train(tmp_path, "--epochs", "1")
    assert saved_run(tmp_path)["precision"] == "auto"  # config.json keeps what was asked
    hardware = detect_hardware()
    precision = resolve_precision("auto", hardware)
    assert metrics["precision"] == precision
    assert metrics["jit_compile"] is resolve_jit_compile("auto", hardware, "mlp", precision)
    if hardware.kind == "cpu" and precision == "float32":
        assert metrics["jit_compile"] is False  # no recipe model measured faster with XLA
    spe = metrics["steps_per_execution"]
    assert isinstance(spe, int) and 1 <= spe <= STEPS_PER_EPOCH
    assert metrics["hardware"] == hardware.describe()


RECIPE_MODELS = [
    ("mlp", {}, (28, 28, 1)),
    ("lenet5", {"norm": "weight"}, (28, 28, 1)),
    ("maxout_mlp", {}, (28, 28, 1)),
    ("alexnet_small", {}, (32, 32, 3)),
    ("vgg_small", {"norm": "batch"}, (32, 32, 3)),
    ("resnet20", {"norm": "group", "groups": 8}, (32, 32, 3)),
    ("allcnn", {}, (32, 32, 3)),
]


@pytest.mark.parametrize("precision", ["mixed_bfloat16", "mixed_float16"])
@pytest.mark.parametrize(
    ("name", "knobs", "shape"), RECIPE_MODELS, ids=[m[0] for m in RECIPE_MODELS]
)
def test_recipe_models_compute_in_the_policy_and_output_float32(name, knobs, shape, precision):
    config = RunConfig.from_dict(
        {"model": {"name": name, "knobs": knobs}, "run.precision": precision}
    )
    model = build_model(config, shape, 10)
    assert keras.config.dtype_policy().name == "float32"  # the global policy is left alone
    assert model.outputs[0].dtype == "float32"
    assert model_precision(model) == precision
    weighted = [layer for layer in model.layers if layer.weights]
    assert weighted[0].compute_dtype == COMPUTE_DTYPES[precision]


def test_a_fine_tuned_backbone_outputs_float32_under_mixed_precision():
    config = RunConfig.from_dict(
        {
            "model": {"name": "mobilenet", "options": {"alpha": 0.25}, "fine_tune": "head"},
            "data": {"preprocessing": "none"},
            "run": {"precision": "mixed_bfloat16"},
        }
    )
    model = build_model(config.updated({"model.weights": "none"}), (64, 64, 3), 5)
    assert model.outputs[0].dtype == "float32"
    backbone = model.get_layer(zoo.backbones.BACKBONE_LAYER)
    assert model_precision(backbone) == "mixed_bfloat16"


# ------------------------------------------------------------------------------------------------
# XLA and steps per execution


@pytest.mark.parametrize("jit", ["on", "off"])
def test_xla_on_and_off(jit, tmp_path):
    metrics = train(tmp_path, "--epochs", "1", "--jit-compile", jit, "--precision", "float32")
    assert metrics["jit_compile"] is (jit == "on")
    assert np.isfinite(metrics["test_loss"]) and metrics["test_accuracy"] > 0.2


def test_several_steps_per_execution_train_exactly_as_one(tmp_path):
    """The same batches in the same order, with dropout's random state: the same weights."""
    flags = ("--epochs", "2", "--dropout", "0.3", "--jit-compile", "off")
    one = train(tmp_path / "one", *flags, "--steps-per-execution", "1")
    four = train(tmp_path / "four", *flags, "--steps-per-execution", "4")
    assert (one["steps_per_execution"], four["steps_per_execution"]) == (1, 4)
    first = keras.models.load_model(tmp_path / "one" / "model.keras").get_weights()
    second = keras.models.load_model(tmp_path / "four" / "model.keras").get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    speed = set(SPEED_COLUMNS)
    metrics = [
        {k: v for k, v in row.items() if k not in speed} for row in read_history(tmp_path / "one")
    ]
    assert metrics == [
        {k: v for k, v in row.items() if k not in speed} for row in read_history(tmp_path / "four")
    ]


def _tiny_classifier(steps_per_execution: int) -> keras.Model:
    inputs = keras.Input((4,))
    # tanh, not relu: oneDNN's fused matmul + relu turns a NaN into 0 on some CPUs (AVX-512).
    hidden = keras.layers.Dense(8, activation="tanh")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(hidden))
    model.compile(
        optimizer=keras.optimizers.SGD(0.05),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        steps_per_execution=steps_per_execution,
    )
    return model


def test_a_nan_stops_the_run_within_its_execution_and_keeps_the_last_good_checkpoint(tmp_path):
    """20 batches of 4 per epoch, 4 batches per execution; batch 9 of epoch 2 holds a NaN. The
    guard stops at the end of its execution (batches 8-11): 12 of the epoch's 20 steps ran, and
    the checkpoint is still epoch 1's."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 4)).astype("float32")
    y = np.argmax(x[:, :3], axis=1)
    model = _tiny_classifier(steps_per_execution=4)
    guard = DivergenceGuard(learning_rate=0.05)
    checkpoint = RunCheckpoint(tmp_path, divergence_guard=guard, images_per_epoch=80)
    fit = {"batch_size": 4, "shuffle": False, "validation_data": (x, y), "verbose": 0}
    model.fit(x, y, epochs=1, callbacks=[guard, checkpoint], **fit)
    good = keras.models.load_model(tmp_path / LAST_MODEL).get_weights()

    x_bad = x.copy()
    x_bad[9 * 4 + 1] = np.nan
    model.fit(x_bad, y, epochs=2, initial_epoch=1, callbacks=[guard, checkpoint], **fit)
    assert "the training loss became nan in batches 8-11" in guard.diverged
    assert int(model.optimizer.iterations) == 20 + 12
    stored = read_checkpoint_state(tmp_path / LAST_MODEL)
    assert stored["epochs_done"] == 1 and stored["diverged"]["epoch"] == 2
    kept = keras.models.load_model(tmp_path / LAST_MODEL).get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(good, kept, strict=True))


def test_a_run_that_diverges_under_several_steps_per_execution_keeps_its_last_good_epoch(tmp_path):
    steps = ["--lr-schedule", "step", "--schedule-option", "boundary_epochs=[1]"]
    steps += ["--schedule-option", "values=[0.05, 1000]"]
    flags = ["--epochs", "3", "--lr", "0.05", *steps]
    with pytest.raises(TrainingDiverged, match=r"in batches \d+-\d+"):
        train(tmp_path, *flags, "--steps-per-execution", "4")
    stored = read_checkpoint_state(tmp_path / LAST_MODEL)
    assert stored["epochs_done"] == 1 and stored["diverged"]["epoch"] == 2
    assert not (tmp_path / "model.keras").exists()
    # Forced on with the whole epoch as one execution, it diverges again: the session's first
    # loss is then the exploded epoch's mean, and the guard compares with the run's first epoch.
    with pytest.raises(TrainingDiverged, match="exploded"):
        train(tmp_path, *flags, "--resume", "--force-resume", "--steps-per-execution", "8")
    assert read_checkpoint_state(tmp_path / LAST_MODEL)["epochs_done"] == 1


def test_monitors_measure_between_executions(tmp_path, capsys):
    flags = ["--monitors", "--monitor-every", "3", "--steps-per-execution", "4"]
    train(tmp_path, "--epochs", "2", *flags)
    assert "--monitor-every 3 is not a multiple of the 4 steps per execution" in (
        capsys.readouterr().err
    )
    for name in ("dead_relu", "activation_stats", "gradient_norms", "update_ratio"):
        text = (tmp_path / "monitors" / f"{name}.csv").read_text().splitlines()[1:]
        assert sorted({int(line.split(",")[0]) for line in text}) == [4, 8, 12, 16], name
    update_rows = (tmp_path / "monitors" / "update_ratio.csv").read_text().splitlines()
    assert {line.split(",")[-1] for line in update_rows if ",steps," in line} == {"4"}


def test_xla_under_several_replicas_is_refused_before_anything_is_written(tmp_path):
    mirrored = ["--strategy", "mirrored", "--cpu-replicas", "2", "--jit-compile", "on"]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            f"recipes.{RECIPE}",
            *SMALL_RUN,
            "--out-dir",
            str(tmp_path),
            *mirrored,
        ],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    last_line = result.stderr.strip().splitlines()[-1]
    assert result.returncode == 2, result.stderr[-3000:]
    assert (
        last_line.startswith("error: --jit-compile on cannot compile") and "2 replicas" in last_line
    )
    assert not tmp_path.exists() or not list(tmp_path.iterdir())


@pytest.mark.parametrize("steps", ["2", "auto"])
def test_mixed_precision_and_steps_per_execution_under_a_mirrored_strategy(steps, tmp_path):
    """Two replicas on logical CPUs, in a fresh process (the CPU must be split before TensorFlow
    starts); `auto` times the forward pass on both replicas."""
    mirrored = ["--strategy", "mirrored", "--cpu-replicas", "2", "--epochs", "1"]
    flags = ["--precision", "mixed_float16", "--steps-per-execution", steps, *mirrored]
    run_python(
        ["-m", f"recipes.{RECIPE}", *SMALL_RUN, "--out-dir", str(tmp_path), *flags],
        timeout=600,
        env={"PYTHONPATH": str(REPO_ROOT)},
    )
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["precision"] == "mixed_float16" and metrics["jit_compile"] is False
    spe = metrics["steps_per_execution"]
    assert spe == 2 if steps == "2" else 1 <= spe <= STEPS_PER_EPOCH
    assert np.isfinite(metrics["test_loss"])


# ------------------------------------------------------------------------------------------------
# Resuming


def test_resume_keeps_the_precision_and_may_change_xla_and_steps(tmp_path):
    flags = ("--precision", "mixed_float16", "--steps-per-execution", "2", "--jit-compile", "off")
    stopped = stopped_after_one_epoch(tmp_path / "stopped", *flags)
    restored = load_checkpoint_model(stopped / LAST_MODEL)
    assert isinstance(restored.optimizer, CountingLossScaleOptimizer)
    assert applied_batches(restored.optimizer) == STEPS_PER_EPOCH

    # The resume checks the checkpoint's optimizer steps under loss scaling too, skipped ones
    # included: a checkpoint whose optimizer counts 5 more skipped steps is not the state's.
    tampered = shutil.copytree(stopped, tmp_path / "tampered")
    restored.optimizer._skipped_steps.assign(restored.optimizer.skipped_steps + 5)
    restored.save(tmp_path / "skipped.keras")
    with zipfile.ZipFile(tmp_path / "skipped.keras") as archive:
        weights = archive.read("model.weights.h5")
    atomic_replace_members(tampered / LAST_MODEL, {"model.weights.h5": weights})
    before = snapshot(tampered)
    with pytest.raises(RunStateError, match=r"took 13 steps, but 1 epochs of 8 steps make 8"):
        train(tampered, "--epochs", "3", "--resume")
    assert snapshot(tampered) == before

    before = snapshot(stopped)
    with pytest.raises(
        ValueError, match=r"run.precision \(saved 'mixed_float16', given 'float32'\)"
    ):
        train(stopped, "--epochs", "3", "--resume", "--precision", "float32")
    assert snapshot(stopped) == before

    as_saved = train(stopped, "--epochs", "3", "--resume")
    assert (as_saved["precision"], as_saved["steps_per_execution"]) == ("mixed_float16", 2)
    assert as_saved["jit_compile"] is False and as_saved["epochs"] == 3

    changed_dir = stopped_after_one_epoch(tmp_path / "changed", *flags)
    changed = train(
        changed_dir,
        "--epochs",
        "3",
        "--resume",
        "--steps-per-execution",
        "4",
        "--jit-compile",
        "on",
    )
    assert (changed["precision"], changed["steps_per_execution"]) == ("mixed_float16", 4)
    assert changed["jit_compile"] is True
    assert saved_run(changed_dir)["steps_per_execution"] == 4
    final = load_checkpoint_model(changed_dir / "model.keras")
    assert isinstance(final.optimizer, CountingLossScaleOptimizer)
    assert applied_batches(final.optimizer) == 3 * STEPS_PER_EPOCH


def test_auto_resumes_in_the_precision_it_chooses_on_the_hardware_of_each_session(
    tmp_path, monkeypatch, capsys
):
    # A run carried between machines: trained on a CPU with native bfloat16 (where `auto` picks
    # mixed_bfloat16), resumed on one without, where bfloat16 would be emulated, and back.
    native, plain = Hardware(cpu_flags=frozenset({"avx512_bf16"})), Hardware()
    monkeypatch.setattr(runner, "detect_hardware", lambda: native)
    stopped = stopped_after_one_epoch(tmp_path / "carried")
    assert model_precision(load_checkpoint_model(stopped / LAST_MODEL)) == "mixed_bfloat16"

    monkeypatch.setattr(runner, "detect_hardware", lambda: plain)
    capsys.readouterr()
    with pytest.raises(Crash), crash_at_commit(stopped, _second_epoch_of_the_session):
        train(stopped, "--epochs", "3", "--resume")  # trains epoch 2 only
    assert (
        "Resuming in float32: the checkpoint computes in mixed_bfloat16, and --precision auto "
        "chooses float32 on this hardware (cpu (no native bfloat16))"
    ) in capsys.readouterr().out
    assert read_checkpoint_state(stopped / LAST_MODEL)["epochs_done"] == 2
    assert saved_run(stopped)["precision"] == "auto"
    assert model_precision(load_checkpoint_model(stopped / LAST_MODEL)) == "float32"

    monkeypatch.setattr(runner, "detect_hardware", lambda: native)
    metrics = train(stopped, "--epochs", "3", "--resume")
    assert (
        "Resuming in mixed_bfloat16: the checkpoint computes in float32, and --precision auto "
        "chooses mixed_bfloat16 on this hardware (cpu (native bfloat16))"
    ) in capsys.readouterr().out
    assert metrics["precision"] == "mixed_bfloat16" and metrics["epochs"] == 3
    final = load_checkpoint_model(stopped / "model.keras")
    assert model_precision(final) == "mixed_bfloat16"
    assert applied_batches(final.optimizer) == 3 * STEPS_PER_EPOCH
    assert [row["epoch"] for row in read_history(stopped)] == [1, 2, 3]

    # A precision asked for stays; where auto chooses mixed_float16 (a GPU), a run that did not
    # start in it goes on in float32 rather than start loss scaling midway.
    asked = stopped_after_one_epoch(tmp_path / "asked", "--precision", "float32")
    assert train(asked, "--epochs", "3", "--resume")["precision"] == "float32"
    config = RunConfig.from_dict(json.loads((stopped / CONFIG_FILE).read_text()))
    monkeypatch.setattr(
        runner, "detect_hardware", lambda: Hardware("gpu", gpu_capabilities=((8, 0),))
    )
    resumed_in = {
        "mixed_bfloat16": "float32",
        "float32": "float32",
        "mixed_float16": "mixed_float16",
    }
    for saved, expected in resumed_in.items():
        with dtype_policy(saved):
            model = zoo.create("mlp", input_shape=(28, 28, 1), num_classes=3)
        model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
        assert model_precision(runner._model_to_resume(model, config)) == expected


def _as_written_before_the_execution_settings(run_dir: Path) -> None:
    """The run directory as the code before --precision and the speed columns wrote it."""
    config = json.loads((run_dir / CONFIG_FILE).read_text())
    for key in ("precision", "jit_compile", "steps_per_execution"):
        del config["run"][key]
    (run_dir / CONFIG_FILE).write_text(json.dumps(config))
    rows = [
        {k: v for k, v in row.items() if k not in SPEED_COLUMNS} for row in read_history(run_dir)
    ]
    for name in (LAST_MODEL, BEST_MODEL):
        set_checkpoint_state(run_dir / name, history=rows)
    header = ",".join(rows[0])
    lines = [",".join(str(value) for value in row.values()) for row in rows]
    (run_dir / HISTORY_FILE).write_text("\n".join([header, *lines]) + "\n")


def test_an_old_run_resumes_in_float32_without_xla_one_step_per_execution(tmp_path):
    run_dir = stopped_after_one_epoch(tmp_path / "old", "--precision", "float32")
    _as_written_before_the_execution_settings(run_dir)

    with pytest.raises(ValueError, match=r"run.precision \(saved 'float32', given 'auto'\)"):
        train(run_dir, "--epochs", "3", "--resume", "--precision", "auto")
    metrics = train(run_dir, "--epochs", "3", "--resume")
    assert (metrics["precision"], metrics["jit_compile"], metrics["steps_per_execution"]) == (
        "float32",
        False,
        1,
    )
    run = saved_run(run_dir)
    assert (run["precision"], run["jit_compile"], run["steps_per_execution"]) == (
        "float32",
        "off",
        1,
    )

    # The epoch trained before the speed columns keeps empty cells; the others have them.
    header, *lines = (run_dir / HISTORY_FILE).read_text().splitlines()
    assert header.split(",")[-2:] == list(SPEED_COLUMNS)
    assert lines[0].endswith(",,") and not lines[1].endswith(",")
    rows = read_history(run_dir)
    assert not set(SPEED_COLUMNS) & set(rows[0]) and set(SPEED_COLUMNS) <= set(rows[2])
    columns = history_columns(rows)
    assert np.isnan(columns["epoch_seconds"][0]) and columns["epoch_seconds"][1] > 0


def test_history_records_the_speed_of_each_epochs_training(tmp_path):
    train(tmp_path, "--epochs", "2", "--steps-per-execution", "2")
    for row in read_history(tmp_path):
        seconds, speed = row["epoch_seconds"], row["images_per_second"]
        assert seconds > 0
        # 3,600 training images per epoch. The history rounds seconds to 4 decimals and images/s
        # to 1, which moves their ratio by up to this much (0.1% for a 50 ms epoch):
        rounding = 0.5e-4 / seconds + 0.05 / speed
        assert speed == pytest.approx(3600 / seconds, rel=1.01 * rounding)
