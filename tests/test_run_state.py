"""The run state of real runs on the sample dataset: one owner per run directory, an epoch's
checkpoint committed as one unit (faults injected at every write), divergence kept in the state,
and saved states that are damaged, inconsistent or another recipe's refused before anything is
written."""

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import keras
import pytest
from keras.utils import set_random_seed

from recipes import mlp_fashion_mnist
from recipes.callbacks.checkpoints import (
    BEST_MODEL,
    LAST_MODEL,
    SPEED_COLUMNS,
    STATE_FILE,
    STATE_MEMBER,
    RunStateError,
    read_checkpoint_state,
    read_history,
    read_state,
)
from recipes.callbacks.divergence import TrainingDiverged
from recipes.data import SPLITS
from recipes.data.datasets import draw_seed
from recipes.train import runner
from recipes.train.files import LOCK_FILE, atomic_replace_members
from recipes.train.model_card import MODEL_CARD_FILE
from recipes.train.runner import METRICS_FILE, load_data, recipe_cli, recipe_main
from tests.conftest import REPO_ROOT

RECIPE = "mlp_fashion_mnist"
# 3,600 training images in batches of 500: 8 optimizer steps per epoch, on a cosine schedule
# whose length is counted in steps (an extra epoch would overrun it).
STEPS_PER_EPOCH = 8
SMALL_RUN = (
    "--dataset", "sample", "--batch-size", "500", "--model-option", "width=16",
    "--lr-schedule", "cosine", "--seed", "1", "--verbose", "0",
)  # fmt: skip


def train(run_dir: Path, *flags: str) -> dict:
    keras.backend.clear_session()
    argv = [*SMALL_RUN, "--out-dir", str(run_dir), *flags]
    return recipe_main(RECIPE, mlp_fashion_mnist.__doc__, mlp_fashion_mnist.DEFAULTS, argv)


def metrics_only(rows: list[dict]) -> list[dict]:
    """History rows without their timings, which differ from run to run."""
    return [{k: v for k, v in row.items() if k not in SPEED_COLUMNS} for row in rows]


def snapshot(directory: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(directory)): path.read_bytes()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def final_steps(run_dir: Path) -> int:
    return int(keras.models.load_model(run_dir / "model.keras").optimizer.iterations)


class Crash(BaseException):
    """The process dying at a write boundary: a BaseException, which nothing in between
    catches (as nothing runs after a SIGKILL)."""


@contextlib.contextmanager
def crash_at_commit(
    run_dir: Path, dies: Callable[[list[str], str], bool] | None = None
) -> Iterator[list[str]]:
    """Records every file committed (renamed into place) in `run_dir`; the process "dies"
    instead of committing a file when `dies(files committed so far, file)` says so, with the
    file's new content written but not renamed.

    Every writer of the run directory commits with `os.replace`, so its calls are the write
    boundaries. Dying there leaves the temporary file behind, as a SIGKILL would.
    """
    real_replace = os.replace
    commits: list[str] = []

    def replace(source, destination, *args, **kwargs):
        destination = Path(destination)
        if not destination.resolve().is_relative_to(run_dir.resolve()):
            return real_replace(source, destination, *args, **kwargs)
        name = str(destination.relative_to(run_dir))
        if dies is not None and dies(commits, name):
            shutil.copyfile(source, destination.with_name(f".{destination.stem}.died.tmp"))
            raise Crash(f"died before committing {name}")
        real_replace(source, destination, *args, **kwargs)
        commits.append(name)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "replace", replace)
        yield commits


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> tuple[Path, list[str]]:
    """A 2-epoch run that nothing interrupted, and the files it committed, in order."""
    run_dir = tmp_path_factory.mktemp("uninterrupted") / "run"
    with crash_at_commit(run_dir) as commits:
        train(run_dir, "--epochs", "2")
    return run_dir, commits


def assert_consistent(run_dir: Path, epochs: int) -> None:
    """The finished run's files agree with each other and hold no leftover temporary file."""
    stored = read_checkpoint_state(run_dir / LAST_MODEL)
    assert stored["epochs_done"] == epochs
    assert [row["epoch"] for row in stored["history"]] == list(range(1, epochs + 1))
    assert read_history(run_dir) == stored["history"]
    assert {**read_state(run_dir), "history": None} == {**stored, "history": None}
    assert read_checkpoint_state(run_dir / BEST_MODEL)["epochs_done"] == stored["best_epoch"]
    assert json.loads((run_dir / "metrics.json").read_text())["epochs"] == epochs
    assert final_steps(run_dir) == epochs * STEPS_PER_EPOCH
    assert not [p for p in run_dir.rglob(".*") if p.is_file()]
    assert not (run_dir / LOCK_FILE).exists()


# ------------------------------------------------------------------------------------------------
# The epoch's checkpoint is one unit


@pytest.mark.slow
def test_a_run_killed_at_any_write_boundary_resumes_to_the_uninterrupted_run(
    uninterrupted, tmp_path
):
    """For every file the run commits, the run dies just before committing it (its new content
    written beside it) and is resumed: it ends with the uninterrupted run's optimizer steps and
    epochs, and the history rows of every epoch committed before dying are the uninterrupted
    run's."""
    reference, commits = uninterrupted
    # The state a new run starts with, then each epoch's commit followed by the files it rebuilds.
    state_writes = [name for name in commits if name in (LAST_MODEL, "history.csv", STATE_FILE)]
    epoch = [LAST_MODEL, "history.csv", STATE_FILE]
    assert state_writes == [STATE_FILE, *epoch, *epoch]
    assert commits[-2:] == [METRICS_FILE, MODEL_CARD_FILE]
    reference_rows = read_history(reference)
    assert final_steps(reference) == 2 * STEPS_PER_EPOCH
    for number, name in enumerate(commits, start=1):
        run_dir = tmp_path / f"died_before_{number}"
        with (
            pytest.raises(Crash),
            crash_at_commit(run_dir, lambda done, _, n=number: len(done) + 1 == n),
        ):
            train(run_dir, "--epochs", "2")
        committed = commits[: number - 1].count(LAST_MODEL)
        started = (run_dir / "config.json").is_file()
        train(run_dir, "--epochs", "2", *(["--resume"] if started else []))
        where = f"died before commit {number} ({name}) after {committed} epochs"
        assert_consistent(run_dir, 2)
        rows = read_history(run_dir)
        assert metrics_only(rows[:committed]) == metrics_only(reference_rows[:committed]), where


# ------------------------------------------------------------------------------------------------
# One process per run directory


def start_recipe(*flags: str, log: Path) -> subprocess.Popen:
    with open(log, "w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", f"recipes.{RECIPE}", *SMALL_RUN, *flags],
            cwd=REPO_ROOT,
            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def wait_for(condition, process: subprocess.Popen, log: Path, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"the run ended first:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"timed out:\n{log.read_text()[-3000:]}"
        time.sleep(0.05)


@pytest.mark.slow
def test_a_second_run_or_resume_into_a_busy_run_directory_is_refused(tmp_path):
    """A second process, new run or --resume, fails at once naming the owner's PID and writes
    nothing; the owner (held still meanwhile with SIGSTOP) then finishes its own run."""
    run_dir = tmp_path / "run"
    owner = start_recipe("--epochs", "3", "--out-dir", str(run_dir), log=tmp_path / "owner.log")
    lock = run_dir / LOCK_FILE
    try:
        wait_for(
            lambda: (
                (run_dir / "config.json").is_file()
                and lock.is_file()
                and lock.read_text().split()[:1] == [str(owner.pid)]
            ),
            owner,
            tmp_path / "owner.log",
        )
        owner.send_signal(signal.SIGSTOP)
        before = snapshot(run_dir)
        for flags in (["--epochs", "2", "--lr", "0.5"], ["--epochs", "3", "--resume"]):
            started = time.monotonic()
            second = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    f"recipes.{RECIPE}",
                    *SMALL_RUN,
                    *flags,
                    "--out-dir",
                    run_dir,
                ],
                cwd=REPO_ROOT,
                env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
                capture_output=True,
                text=True,
                timeout=120,
            )
            last_line = second.stderr.strip().splitlines()[-1]
            assert second.returncode == 1, second.stderr[-3000:]
            assert last_line.startswith("error: ") and f"PID {owner.pid}" in last_line, last_line
            assert "--out-dir" in last_line and "Traceback" not in second.stderr
            assert time.monotonic() - started < 60  # refused at the start, not after training
            assert snapshot(run_dir) == before
    finally:
        owner.send_signal(signal.SIGCONT)
    assert owner.wait(timeout=300) == 0, (tmp_path / "owner.log").read_text()[-3000:]
    config = json.loads((run_dir / "config.json").read_text())
    assert config["run"]["epochs"] == 3 and config["optim"]["lr"] == 0.05
    assert_consistent(run_dir, 3)


# ------------------------------------------------------------------------------------------------
# Divergence


def test_a_run_that_diverged_resumes_only_when_told_to(tmp_path):
    """Epoch 1 trains at 0.05, epoch 2 at 1000: it diverges. --resume refuses (naming the flag)
    and writes nothing; --force-resume continues from epoch 1, where the same rate diverges
    again, and the permission is not saved."""
    run_dir = tmp_path / "run"
    steps = ["--lr-schedule", "step", "--schedule-option", "boundary_epochs=[1]"]
    steps += ["--schedule-option", "values=[0.05, 1000]"]
    flags = ["--epochs", "3", "--lr", "0.05", *steps]
    with pytest.raises(TrainingDiverged, match="learning rate is probably too high"):
        train(run_dir, *flags)
    stored = read_checkpoint_state(run_dir / LAST_MODEL)
    assert stored["epochs_done"] == 1 and stored["diverged"]["epoch"] == 2
    assert read_state(run_dir)["diverged"] == stored["diverged"]

    before = snapshot(run_dir)
    with pytest.raises(TrainingDiverged) as refusal:
        train(run_dir, *flags, "--resume")
    message = str(refusal.value)
    assert message.startswith(f"cannot resume {run_dir}: its training diverged in epoch 2")
    assert "--force-resume" in message and "continue after epoch 1" in message
    assert snapshot(run_dir) == before

    with pytest.raises(TrainingDiverged, match="Training stopped") as again:
        train(run_dir, *flags, "--resume", "--force-resume")
    assert "cannot resume" not in str(again.value)
    assert read_checkpoint_state(run_dir / LAST_MODEL)["epochs_done"] == 1
    assert json.loads((run_dir / "config.json").read_text())["run"]["force_resume"] is False
    with pytest.raises(TrainingDiverged, match="--force-resume"):
        train(run_dir, *flags, "--resume")


def test_force_resume_needs_resume(tmp_path):
    with pytest.raises(ValueError, match="needs run.resume"):
        train(tmp_path / "run", "--force-resume", "--dry-run")


# ------------------------------------------------------------------------------------------------
# Saved states that cannot be trusted


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory) -> Path:
    """A 3-epoch run that died in its third epoch, before committing it."""
    run_dir = tmp_path_factory.mktemp("stopped") / "run"

    def third_epoch(done: list[str], name: str) -> bool:
        return name == LAST_MODEL and done.count(LAST_MODEL) == 2

    with pytest.raises(Crash), crash_at_commit(run_dir, third_epoch):
        train(run_dir, "--epochs", "3")
    return run_dir


def copy_of(run_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    return copy


def set_state(run_dir: Path, **values) -> None:
    state = json.loads((run_dir / STATE_FILE).read_text())
    (run_dir / STATE_FILE).write_text(json.dumps({**state, **values}))


def set_checkpoint_state(path: Path, **values) -> None:
    stored = read_checkpoint_state(path)
    atomic_replace_members(path, {STATE_MEMBER: json.dumps({**stored, **values})})


def drop_checkpoint_state(path: Path) -> None:
    """`path` as a checkpoint written before checkpoints held their state."""
    with zipfile.ZipFile(path) as original:
        members = {info.filename: original.read(info) for info in original.infolist()}
    with zipfile.ZipFile(path, "w") as rewritten:
        for name, data in members.items():
            if name != STATE_MEMBER:
                rewritten.writestr(name, data)


def as_written_before(run_dir: Path) -> None:
    """The run directory as the code before checkpoints held their state wrote it."""
    for name in (LAST_MODEL, BEST_MODEL):
        drop_checkpoint_state(run_dir / name)
    state = json.loads((run_dir / STATE_FILE).read_text())
    old = {key: state[key] for key in ("epochs_done", "best", "monitor", "train_seconds")}
    (run_dir / STATE_FILE).write_text(json.dumps(old))


def add_history_row(run_dir: Path) -> None:
    lines = (run_dir / "history.csv").read_text().splitlines()
    (run_dir / "history.csv").write_text("\n".join([*lines, "3" + lines[-1][1:]]) + "\n")


def change_history_value(run_dir: Path) -> None:
    text = (run_dir / "history.csv").read_text()
    header, first, *rest = text.splitlines()
    first = first.split(",")
    first[1] = "0.999"
    (run_dir / "history.csv").write_text("\n".join([header, ",".join(first), *rest]) + "\n")


LIES = [
    ("state ahead", lambda d: set_state(d, epochs_done=99), STATE_FILE, "says 99 epochs are done"),
    ("state two behind", lambda d: set_state(d, epochs_done=0), STATE_FILE, "holds epoch 2"),
    ("history row added", add_history_row, "history.csv", "epochs [1, 2, 3]"),
    ("history value changed", change_history_value, "history.csv", "are not those"),
    (
        "best of a later epoch",
        lambda d: set_checkpoint_state(d / BEST_MODEL, epochs_done=5),
        BEST_MODEL,
        "holds epoch 5",
    ),
    (
        "checkpoint without its history",
        lambda d: set_checkpoint_state(d / LAST_MODEL, epochs_done=3),
        LAST_MODEL,
        "holds 3 epochs but the history of epochs [1, 2]",
    ),
    (
        "checkpoint beyond the run",
        lambda d: set_checkpoint_state(d / LAST_MODEL, epochs_done=4),
        LAST_MODEL,
        "says 4 epochs are done, but the run has 3",
    ),
    (
        "old state ahead",
        lambda d: (as_written_before(d), set_state(d, epochs_done=99)),
        STATE_FILE,
        "says 99 epochs are done, but the run has 3",
    ),
    (
        "old history short",
        lambda d: (as_written_before(d), (d / "history.csv").unlink()),
        "history.csv",
        "has rows for epochs []",
    ),
    ("truncated checkpoint", lambda d: truncate(d / LAST_MODEL), LAST_MODEL, "is damaged"),
    (
        "state not JSON",
        lambda d: (d / STATE_FILE).write_text("{'epochs_done': 2"),
        STATE_FILE,
        "not valid JSON",
    ),
    (
        "state not a state",
        lambda d: (d / STATE_FILE).write_text("[2]"),
        STATE_FILE,
        "does not hold a run state",
    ),
    (
        "history not CSV",
        lambda d: (d / "history.csv").write_text("epoch,loss\n1,abc\n"),
        "history.csv",
        "is damaged",
    ),
]


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize(
    ("damage", "culprit", "problem"),
    [lie[1:] for lie in LIES],
    ids=[lie[0] for lie in LIES],
)
def test_a_state_that_cannot_be_trusted_is_refused_before_anything_is_written(
    damage, culprit, problem, stopped_run, tmp_path, monkeypatch, capsys
):
    run_dir = copy_of(stopped_run, tmp_path)
    damage(run_dir)
    before = snapshot(run_dir)
    argv = [*SMALL_RUN, "--out-dir", str(run_dir), "--resume"]
    monkeypatch.setattr(sys, "argv", [f"python -m recipes.{RECIPE}", *argv])
    with pytest.raises(SystemExit) as exit_info:
        recipe_cli(RECIPE, mlp_fashion_mnist.__doc__, mlp_fashion_mnist.DEFAULTS)
    error = capsys.readouterr().err
    assert exit_info.value.code == 1 and "Traceback" not in error, error
    line = error.strip().splitlines()[-1]
    assert line.startswith("error: ") and str(run_dir / culprit) in line and problem in line, line
    # The way out: each message says what to delete or copy.
    assert "Delete " in line or "delete " in line, line
    assert snapshot(run_dir) == before


def test_another_recipes_run_is_refused(stopped_run, tmp_path):
    from recipes import lenet5_fashion_mnist

    run_dir = copy_of(stopped_run, tmp_path)
    before = snapshot(run_dir)
    with pytest.raises(RunStateError, match=f"python -m recipes.{RECIPE} --out-dir") as error:
        recipe_main(
            "lenet5_fashion_mnist",
            lenet5_fashion_mnist.__doc__,
            lenet5_fashion_mnist.DEFAULTS,
            ["--out-dir", str(run_dir), "--resume"],
        )
    assert f"recipe {RECIPE} trained it" in str(error.value)
    assert snapshot(run_dir) == before


@pytest.mark.slow
def test_following_the_way_out_resumes(stopped_run, tmp_path):
    """Deleting a lying state.json resumes from the checkpoint; copying best.keras over a
    damaged last.keras (and deleting the files rebuilt from it) resumes from the best epoch."""
    lying = copy_of(stopped_run, tmp_path / "lying")
    set_state(lying, epochs_done=99)
    (lying / STATE_FILE).unlink()
    train(lying, "--resume")
    assert_consistent(lying, 3)

    damaged = copy_of(stopped_run, tmp_path / "damaged")
    best_epoch = read_checkpoint_state(damaged / BEST_MODEL)["epochs_done"]
    truncate(damaged / LAST_MODEL)
    shutil.copyfile(damaged / BEST_MODEL, damaged / LAST_MODEL)
    (damaged / STATE_FILE).unlink()
    (damaged / "history.csv").unlink()
    train(damaged, "--resume")
    assert_consistent(damaged, 3)
    assert read_history(damaged)[:best_epoch] == read_history(stopped_run)[:best_epoch]


def test_a_resumed_run_draws_anew(stopped_run, tmp_path, monkeypatch):
    """The session that resumes after epoch 2 builds its pipelines, and seeds the generators its
    random layers draw from, for the epochs done, so that its shuffle, augmentations and dropout
    masks are not the ones the run's first session started with (see
    `recipes.data.datasets.draw_seed`)."""
    run_dir = copy_of(stopped_run, tmp_path)
    first_epochs, seeds = [], []

    def recording_load_data(config, split=SPLITS, first_epoch=0):
        first_epochs.append(first_epoch)
        return load_data(config, split, first_epoch)

    def recording_set_random_seed(seed):
        seeds.append(seed)
        set_random_seed(seed)

    monkeypatch.setattr(runner, "load_data", recording_load_data)
    monkeypatch.setattr(keras.utils, "set_random_seed", recording_set_random_seed)
    train(run_dir, "--resume")
    assert first_epochs == [2]
    assert seeds == [1, draw_seed(1, 2)]  # the run's --seed 1, then the resume point's
    assert_consistent(run_dir, 3)


# ------------------------------------------------------------------------------------------------
# Run directories written before checkpoints held their state


@pytest.mark.slow
def test_a_run_directory_written_before_checkpoints_held_their_state_resumes(stopped_run, tmp_path):
    run_dir = copy_of(stopped_run, tmp_path / "old")
    as_written_before(run_dir)
    rows = read_history(run_dir)
    train(run_dir, "--resume")
    assert_consistent(run_dir, 3)
    assert read_history(run_dir)[:2] == rows


@pytest.mark.slow
def test_an_old_run_killed_between_its_checkpoint_and_its_state_does_not_redo_the_epoch(
    stopped_run, tmp_path, capsys
):
    """The code before wrote last.keras, history.csv, then state.json: killed in between, the
    checkpoint is an epoch ahead of state.json. The optimizer's step count tells; the epoch is
    not trained twice (it was: 4 epochs of steps for a 3-epoch run)."""
    run_dir = copy_of(stopped_run, tmp_path / "old")
    as_written_before(run_dir)
    set_state(run_dir, epochs_done=1)
    train(run_dir, "--resume")
    assert "holds epoch 2, one more than" in capsys.readouterr().out
    assert_consistent(run_dir, 3)

    # Without the epoch's history row the epoch cannot be continued honestly: refused.
    run_dir = copy_of(stopped_run, tmp_path / "old_short")
    as_written_before(run_dir)
    set_state(run_dir, epochs_done=1)
    lines = (run_dir / "history.csv").read_text().splitlines()
    (run_dir / "history.csv").write_text("\n".join(lines[:2]) + "\n")
    before = snapshot(run_dir)
    with pytest.raises(RunStateError, match=r"took 16 steps, but 1 epochs of 8 steps make 8"):
        train(run_dir, "--resume")
    assert snapshot(run_dir) == before
