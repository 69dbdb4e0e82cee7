"""Shared test fixtures: quiet TensorFlow, paths to the offline material beside the repo."""

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest

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
