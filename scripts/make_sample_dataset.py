"""Builds the small Fashion-MNIST subset embedded in the package (`load_dataset("sample")`).

The subset is fixed and stratified: the first `--train-per-class` training images and the first
`--test-per-class` test images of every class, in the original order, from the original IDX files
(Debian: `apt-get install dataset-fashion-mnist`). Taking the first ones rather than a random draw makes
the subset independent of any random number generator's version.

    python scripts/make_sample_dataset.py --manual-dir /usr/share/datasets/fashion-mnist
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from recipes.data.datasets import FASHION_MNIST_CLASSES, SAMPLE_RESOURCE
from recipes.data.idx import load_idx_split

DEFAULT_OUTPUT = Path(__file__).resolve().parent.parent / "recipes" / "data" / SAMPLE_RESOURCE


def first_per_class(labels: np.ndarray, per_class: int) -> np.ndarray:
    """Indices of the first `per_class` examples of every class, in their original order."""
    chosen = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        if len(members) < per_class:
            raise ValueError(f"class {c} has only {len(members)} examples, {per_class} asked for")
        chosen.append(members[:per_class])
    return np.sort(np.concatenate(chosen))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manual-dir", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--train-per-class", type=int, default=400)
    parser.add_argument("--test-per-class", type=int, default=100)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args(argv)

    arrays = {}
    for split, per_class in (("train", args.train_per_class), ("test", args.test_per_class)):
        images, labels = load_idx_split(args.manual_dir, split)
        keep = first_per_class(labels, per_class)
        arrays[f"x_{split}"] = images[keep, :, :, 0]
        arrays[f"y_{split}"] = labels[keep].astype(np.uint8)
        print(f"{split}: {len(keep)} images ({per_class} per class)")

    args.output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=args.output.parent, suffix=".npz.tmp")
    with os.fdopen(fd, "wb") as f:
        np.savez_compressed(f, class_names=np.array(FASHION_MNIST_CLASSES), **arrays)
    os.replace(tmp, args.output)
    print(f"wrote {args.output} ({args.output.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
