"""Locally connected layers against convolutions at the same depth: parameters, speed, accuracy.

    python scripts/study_locally_connected.py              # the embedded sample, a few minutes
    python scripts/study_locally_connected.py --dataset fashion_mnist \\
        --manual-dir /usr/share/datasets/fashion-mnist --seeds 0,1

The claim (the course, on locally connected layers; DeepFace, Taigman et al., 2014): a locally
connected layer is a convolution whose weights are not shared across positions. It has as many
weight sets as output positions, so far more parameters for the same computation, and it pays
off where the inputs are aligned, so that each position has its own statistics (faces in
DeepFace; Fashion-MNIST's centred garments are aligned too).

Measured here: the zoo's `locally_connected_net` (conv - pool - conv, two 3x3 locally connected
layers, dense) against the same network with `share_weights=True` (the two 3x3 layers become
valid-padding convolutions: same depth, shapes and multiply-adds), both with their default
dropout, trained with SGD and momentum at the LeNet-5 recipe's settings, over seeds. Writes
docs/studies/locally_connected.png and locally_connected.md.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.study_common import (
    StudyRun,
    compare_over_seeds,
    gain_and_noise,
    study_parser,
    write_comparison,
)

TRAINING = {
    "model": "locally_connected_net",
    "activation": "relu",
    "init": "he",
    "optimizer": "momentum",
    "optimizer_options": {"momentum": 0.9},
    "lr": 0.05,
    "lr_schedule": "cosine",
    "batch_size": 64,
}
VARIANTS = {
    "locally connected": {"model_options": {"share_weights": False}},
    "convolution (shared)": {"model_options": {"share_weights": True}},
}


def verdict(local: list[StudyRun], shared: list[StudyRun]) -> str:
    """holds: the unshared layers are at least as accurate as the shared ones within the seeds'
    spread (their price, parameters, is certain); partly: less accurate, beyond the spread."""
    gain, noise = gain_and_noise(local, shared)
    if gain >= -noise:
        return "holds"
    return "holds partly"


def findings(by_label: dict[str, list[StudyRun]], rows: list[dict], seeds: list[int]) -> str:
    local, shared = (by_label[label] for label in VARIANTS)
    local_row, shared_row = rows
    return (
        "The claim: locally connected layers cost far more parameters than convolutions for the "
        "same computation and suit aligned inputs. Measured over seeds "
        f"{', '.join(map(str, seeds))}: {local_row['parameters']} parameters against "
        f"{shared_row['parameters']}; {local_row['images/s']:,.0f} training images/s against "
        f"{shared_row['images/s']:,.0f} ({local_row['images/s'] / shared_row['images/s']:.2f}x); "
        f"test accuracy {local_row['test accuracy']} against {shared_row['test accuracy']}, "
        f"overfitting (training minus test) {local_row['gap']:.3f} against "
        f"{shared_row['gap']:.3f}. Verdict: **{verdict(local, shared)}** (holds: on these aligned "
        "images the unshared layers are at least as accurate, within the seeds' spread; partly: "
        "they cost the parameters without the accuracy)."
    )


def main(argv: list[str] | None = None) -> None:
    parser = study_parser(__doc__.split("\n")[0], epochs=5, seeds="0,1")
    args = parser.parse_args(argv)
    by_label, rows = compare_over_seeds(args, VARIANTS, **TRAINING)
    write_comparison(
        args,
        parser,
        "locally_connected",
        "Locally connected layers against convolutions at the same depth",
        by_label,
        rows,
        findings(by_label, rows, args.seeds),
    )


if __name__ == "__main__":
    main()
