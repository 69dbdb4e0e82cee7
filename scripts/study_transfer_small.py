"""Transfer from the zoo's own trained weights to another small gray task, against training from scratch.

    python scripts/study_transfer_small.py                   # LeNet-5, 100 images per class
    python scripts/study_transfer_small.py --model mobilenet_tiny --seeds 5
    python scripts/study_transfer_small.py --model resnet20 --seeds 5

The task: scikit-learn's 8x8 handwritten digits (1,797 images, bundled with scikit-learn, so
offline), upscaled to 28x28 and written as an MNIST-format IDX mirror, so that the recipe runner
reads them as `--dataset mnist --manual-dir <mirror>`: `--per-class` training images per class
plus a fifth as many for validation, the remaining ~55 per class as the test split. The model's
shipped weights (`--weights fashion_mnist`) learned Fashion-MNIST's clothes, not digits.

Three settings, each run through `recipes.train.runner.run` with the same optimizer (Adam, 1e-3,
batch 32) and epochs, for `--seeds` seeds:

- head: the shipped weights frozen, a new classifier (`--fine-tune head`);
- full: the head for `--head-epochs`, then the whole network at a 10x lower rate
  (`--fine-tune full`);
- scratch: the same architecture (the card's knobs and options) from random initialisation.

Writes docs/studies/transfer_small_<model>.png (validation accuracy and training loss per epoch)
and transfer_small_<model>.md.
"""

from __future__ import annotations

import gzip
import os
import struct
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import tensorflow as tf
from sklearn.datasets import load_digits

from recipes.data.idx import IDX_FILENAMES
from scripts.study_common import (
    StudyRun,
    command_line,
    markdown_table,
    mean_and_spread,
    new_figure,
    plot_histories,
    run_recipe,
    study_config,
    study_parser,
    write_study,
)
from zoo import pretrained

TAG = "fashion_mnist"
MODES = ("head", "full", "scratch")


def _write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file of unsigned bytes (type 0x08), gzip-compressed like the MNIST originals."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def write_digits_mirror(directory: Path, per_class: int, seed: int) -> dict[str, int]:
    """scikit-learn's digits at 28x28 as MNIST IDX files: `per_class * 6 / 5` images per class in
    the training files (the runner carves a sixth out for validation), the rest as test.

    Returns the number of images per split file.
    """
    digits = load_digits()
    images = digits.images.astype(np.float32) * (255.0 / 16.0)  # 0..16 -> 0..255
    resized = tf.image.resize(images[..., None], (28, 28), method="bilinear").numpy()
    images = np.clip(np.round(resized[..., 0]), 0, 255).astype(np.uint8)
    labels = digits.target.astype(np.uint8)
    order = np.random.default_rng(seed).permutation(len(labels))
    train_count = per_class * 6 // 5
    train = np.concatenate([order[labels[order] == c][:train_count] for c in range(10)])
    test = np.setdiff1d(order, train)
    for split, indices in (("train", train), ("test", test)):
        image_file, label_file = IDX_FILENAMES[split]
        _write_idx(directory / f"{image_file}.gz", images[indices])
        _write_idx(directory / f"{label_file}.gz", labels[indices])
    return {"train": len(train), "test": len(test)}


def _mean_std(values: list[float]) -> str:
    return "{:.3f} ± {:.3f}".format(*mean_and_spread(values))


def findings(model: str, test: dict[str, list[float]], per_class: int, seeds: int) -> str:
    """What the runs show, next to what the course says: the better transfer setting against
    training from scratch, a difference within the larger seed spread counting as none."""
    means = {mode: float(np.mean(values)) for mode, values in test.items()}
    facts = (
        f"With {per_class} images per class of a task the weights never saw (digits; they were "
        f"trained on clothes), over {seeds} seed(s): a new head on the frozen Fashion-MNIST "
        f"features reaches {means['head']:.3f} test accuracy, fine-tuning the whole network "
        f"{means['full']:.3f}, and {model} from scratch {means['scratch']:.3f}. "
    )
    transfer = max(("head", "full"), key=means.get)
    gain = means[transfer] - means["scratch"]
    noise = max(mean_and_spread(test[mode])[1] for mode in (transfer, "scratch"))
    if abs(gain) <= noise:
        verdict = (
            f"The better transfer setting ({transfer}) and training from scratch differ by "
            f"{gain * 100:+.1f} points, within the seed spread ({noise * 100:.1f} points). "
        )
    elif gain > 0:
        verdict = (
            f"Starting from the trained weights pays: {transfer} beats training from scratch by "
            f"{gain * 100:.1f} points, more than the seed spread ({noise * 100:.1f} points). "
        )
    else:
        verdict = (
            f"Transfer does not pay here: training from scratch beats the better transfer setting "
            f"({transfer}) by {-gain * 100:.1f} points, more than the seed spread "
            f"({noise * 100:.1f} points); the features learned on clothes separate the digits only "
            "partly, and full fine-tuning trains the network at a tenth of the rate after the "
            "head epochs (the runner's --full-lr-factor 0.1). "
        )
    return (
        facts
        + verdict
        + "The course's rule, start from trained weights when data is scarce, assumes that the "
        "old task resembles the new one and that the network is large for the data."
    )


def main(argv: list[str] | None = None) -> None:
    parser = study_parser(__doc__.split("\n")[0], epochs=20)
    parser.add_argument("--model", default="lenet5", help="a model with weights 'fashion_mnist'")
    parser.add_argument("--per-class", type=int, default=100, help="training images per class")
    parser.add_argument("--head-epochs", type=int, default=5, help="full: epochs of head only")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per setting")
    args = parser.parse_args(argv)
    card = pretrained.pretrained_card(args.model, TAG)
    accuracies: dict[str, list[float]] = {mode: [] for mode in MODES}
    first_seed: dict[str, StudyRun] = {}
    with tempfile.TemporaryDirectory() as mirror:
        sizes = write_digits_mirror(Path(mirror), args.per_class, args.seed)
        for seed in range(args.seed, args.seed + args.seeds):
            for mode in MODES:
                setting = {
                    "dataset": "mnist",
                    "manual_dir": mirror,
                    "model": card.model,
                    "validation_fraction": 1 / 6,
                    "optimizer": "adam",
                    "lr": 0.001,
                    "batch_size": 32,
                    "seed": seed,
                }
                if mode == "scratch":
                    setting.update(card.knobs, model_options=dict(card.options))
                else:
                    setting.update(weights=TAG, fine_tune=mode, head_epochs=args.head_epochs)
                _, study_run = run_recipe(study_config(args, **setting), mode)
                accuracies[mode].append(study_run.test_accuracy)
                first_seed.setdefault(mode, study_run)
                print(
                    f"seed {seed} {mode}: test accuracy {study_run.test_accuracy:.3f}", flush=True
                )
    runs = list(first_seed.values())
    for study_run in runs:
        study_run.label = {
            "scratch": f"{card.model} from scratch",
            "head": f"{card.model} {TAG}, head",
            "full": f"{card.model} {TAG}, full",
        }[study_run.label]
    figure, (accuracy_axis, loss_axis) = new_figure(2)
    plot_histories(accuracy_axis, runs, "val_accuracy", "validation accuracy")
    plot_histories(loss_axis, runs, "loss", "training loss")
    for axis in (accuracy_axis, loss_axis):
        axis.axvline(args.head_epochs + 0.5, color="gray", linestyle=":", linewidth=1)
    figure.suptitle(
        f"{card.model}: Fashion-MNIST weights fine-tuned on {args.per_class} digits per class "
        f"vs scratch (seed {args.seed})\ndotted: full unfreezes the network"
    )
    rows = [
        {
            "setting": mode,
            "test accuracy (mean ± std)": _mean_std(values),
            "seeds": len(values),
            "final validation accuracy (first seed)": first_seed[mode].history["val_accuracy"][-1],
        }
        for mode, values in accuracies.items()
    ]
    table = markdown_table(rows) + (
        f"\n\nData: scikit-learn's digits upscaled to 28x28, {sizes['train']} training-file images "
        f"(a sixth carved out for validation), {sizes['test']} test images. Weights: "
        f"{card.model}-{TAG}, {card.test_accuracy:.4f} on Fashion-MNIST's test set."
    )
    write_study(
        args.out_dir,
        f"transfer_small_{card.model}",
        f"Transfer from the zoo's own weights: {card.model} {TAG} to digits",
        figure,
        command_line("study_transfer_small.py", args, parser.parse_args([])),
        table,
        findings(card.model, accuracies, args.per_class, args.seeds),
    )


if __name__ == "__main__":
    main()
