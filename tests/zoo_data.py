"""Read a small class-balanced Fashion-MNIST subset from the IDX .gz files (for zoo tests)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np


def _read_idx(path: Path, header_bytes: int) -> np.ndarray:
    with gzip.open(path, "rb") as handle:
        return np.frombuffer(handle.read(), dtype=np.uint8, offset=header_bytes)


def fashion_mnist_subset(
    directory: Path, per_class: int, split: str = "train"
) -> tuple[np.ndarray, np.ndarray]:
    """The first `per_class` images of each class: (N, 28, 28, 1) uint8 images, int labels."""
    prefix = "train" if split == "train" else "t10k"
    images = _read_idx(directory / f"{prefix}-images-idx3-ubyte.gz", 16).reshape(-1, 28, 28, 1)
    labels = _read_idx(directory / f"{prefix}-labels-idx1-ubyte.gz", 8).astype("int32")
    chosen = np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in range(10)])
    order = np.random.default_rng(0).permutation(chosen)
    return images[order], labels[order]
