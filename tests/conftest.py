"""Shared test fixtures: quiet TensorFlow, paths to the offline material beside the repo."""

import os
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest

from recipes.callbacks.checkpoints import read_state

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DIR = REPO_ROOT.parent / "shared"
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The offline material (ImageNet weights, sample photos) that lives beside the checkout."""
    if not (SHARED_DIR / "weights").is_dir():
        pytest.skip(f"offline ImageNet material not found at {SHARED_DIR}")
    return SHARED_DIR


@pytest.fixture(scope="session")
def fashion_mnist_dir() -> Path:
    """Debian's Fashion-MNIST IDX files (`apt-get install dataset-fashion-mnist`)."""
    if not (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"Fashion-MNIST IDX files not found at {FASHION_MNIST_DIR}")
    return FASHION_MNIST_DIR


def wait_for_finished_epochs(
    run_dir: Path,
    epochs: int,
    processes: Sequence[subprocess.Popen],
    timeout: float = 240.0,
    describe: Callable[[], str] = str,
) -> None:
    """Waits until the run's checkpoint state counts `epochs` finished epochs, while every one of
    `processes` still runs (so that a test can then kill them mid-run).

    Fails if a process ends first or `timeout` seconds pass; `describe()` adds to the message
    (worker logs, say).
    """
    deadline = time.monotonic() + timeout
    while (done := (read_state(run_dir) or {}).get("epochs_done", 0)) < epochs:
        assert all(p.poll() is None for p in processes), (
            f"the run ended after {done} epochs, before it could be killed\n{describe()}"
        )
        assert time.monotonic() < deadline, f"{done} epochs done after {timeout} s\n{describe()}"
        time.sleep(0.05)
