"""Fine-tuning modes on a small subset: predict, head and full, with MobileNet v1 (alpha 0.25).

    python scripts/study_finetune.py                      # the embedded sample, a few minutes
    python scripts/study_finetune.py --dataset fashion_mnist --manual-dir /usr/share/datasets/fashion-mnist

The course's three states of transfer learning, each run through `recipes.train.runner.run` exactly as
`recipes.finetune_imagenet` runs them:

- predict: the ImageNet classifier as is, labelling the photos in `<shared>/images/imagenet-samples`;
- head: the pretrained backbone frozen, a new softmax head trained on `--per-class` Fashion-MNIST
  images per class (written to a temporary class-per-folder dataset);
- full: the head first (`--head-epochs`), then the whole backbone at a 10x lower learning rate;

plus, for reference, LeNet-5 trained from scratch on the same images for the same epochs.
Pretrained weights: the offline Keras files in `<shared>/weights` (see its README) when present,
else Keras' own download (`weights="imagenet"`). Writes docs/studies/finetune.png (validation
accuracy per epoch) and finetune.md.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import tensorflow as tf

from recipes.data.datasets import load_dataset
from scripts.study_common import (
    REPO_ROOT,
    StudyRun,
    command_line,
    markdown_table,
    new_figure,
    plot_histories,
    run_recipe,
    study_config,
    study_parser,
    write_study,
)

SHARED_DIR = REPO_ROOT.parent / "shared"
# Keras' own file names for MobileNet v1 alpha=0.25, with and without the ImageNet classifier.
WEIGHTS_FILES = {"predict": "mobilenet_2_5_224_tf.h5", "tuned": "mobilenet_2_5_224_tf_no_top.h5"}
CLASS_INDEX_FILE = "imagenet_class_index.json"
# Images per class moved from the training split to validation and taken from the test split.
VALIDATION_PER_CLASS, TEST_PER_CLASS = 20, 50


def write_image_folder(
    root: Path, dataset: str, manual_dir: str | None, per_class: int, seed: int
) -> tuple[str, ...]:
    """Writes root/{train,validation,test}/<class>/<n>.png from the first images of each class."""
    splits, info = load_dataset(
        dataset,
        ("train", "test"),
        manual_dir=manual_dir,
        batch_size=4096,
        seed=seed,
        preprocessing="none",
        shuffle=False,
    )
    arrays = {}
    for split, pipeline in splits.items():
        batches = list(pipeline.as_numpy_iterator())
        arrays[split] = (
            np.concatenate([x for x, _ in batches]).astype(np.uint8),
            np.concatenate([y for _, y in batches]),
        )
    # Class names become folder names: sorted in label order, no path separators.
    folders = [
        f"{label:02d}_{name.replace('/', '-')}" for label, name in enumerate(info.class_names)
    ]
    plan = {
        "train": ("train", 0, per_class),
        "validation": ("train", per_class, per_class + VALIDATION_PER_CLASS),
        "test": ("test", 0, TEST_PER_CLASS),
    }
    for split, (source, start, stop) in plan.items():
        images, labels = arrays[source]
        for label, folder in enumerate(folders):
            directory = root / split / folder
            directory.mkdir(parents=True, exist_ok=True)
            for number, index in enumerate(np.flatnonzero(labels == label)[start:stop]):
                png = tf.io.encode_png(images[index])
                (directory / f"{number:04d}.png").write_bytes(png.numpy())
    return tuple(folders)


def weights_for(mode: str, weights_dir: Path | None) -> str:
    """The offline weights file for `mode` when `weights_dir` has it, else "imagenet"."""
    if weights_dir is not None:
        path = weights_dir / WEIGHTS_FILES["predict" if mode == "predict" else "tuned"]
        if path.is_file():
            return str(path)
    return "imagenet"


def predictions_table(predictions: dict) -> list[dict]:
    """One row per photo: its top-1 ImageNet label and probability."""
    return [
        {"photo": name, "top-1": top[0]["label"], "p": top[0]["probability"]}
        for name, top in sorted(predictions.items())
    ]


def findings(runs: dict[str, StudyRun], per_class: int) -> str:
    """What the runs show, next to what the course says."""
    final = {name: run.history["val_accuracy"][-1] for name, run in runs.items()}
    test = {name: run.test_accuracy for name, run in runs.items()}
    best = max(test, key=test.get)
    beat_scratch = [mode for mode in ("head", "full") if test[mode] > test["scratch"]]
    verdict = (
        f"{' and '.join(beat_scratch)} beat{'s' if len(beat_scratch) == 1 else ''} training "
        "from scratch here"
        if beat_scratch
        else "neither beats training from scratch here"
    )
    head_note = (
        ": the frozen ImageNet features fit these small gray images less well than features "
        "learned on them, which is the course's case for fine-tuning further"
        if test["head"] < test["scratch"]
        else ""
    )
    return (
        "The course: with a small dataset similar to ImageNet, train only a new head on the "
        "frozen pretrained features; with more data, or data unlike ImageNet, fine-tune more "
        "of the network at a lower learning rate; either beats training from scratch on little "
        f"data. With {per_class} gray 28x28 Fashion-MNIST images per class (far from "
        f"ImageNet's photos): head reaches {test['head']:.3f} test accuracy, full "
        f"{test['full']:.3f}, LeNet-5 from scratch {test['scratch']:.3f}; the best is {best}, "
        f"and {verdict}{head_note}. "
        f"Final validation accuracy: head {final['head']:.3f}, full {final['full']:.3f}, "
        f"scratch {final['scratch']:.3f}. In predict mode the ImageNet classifier labels the "
        "sample photos (table above) with no training at all."
    )


def main(argv: list[str] | None = None) -> None:
    parser = study_parser(__doc__.split("\n")[0], epochs=4)
    parser.add_argument("--per-class", type=int, default=100, help="training images per class")
    parser.add_argument("--head-epochs", type=int, default=2, help="full: epochs of head only")
    parser.add_argument("--image-size", type=int, default=96, help="backbone input size")
    parser.add_argument("--shared-dir", type=Path, default=SHARED_DIR, help="offline material")
    args = parser.parse_args(argv)
    weights_dir = args.shared_dir / "weights"
    photos = args.shared_dir / "images" / "imagenet-samples"
    class_index = weights_dir / CLASS_INDEX_FILE
    backbone = {"model": "mobilenet", "preprocessing": "none", "image_size": (28, 28)}
    metrics, _ = run_recipe(
        study_config(
            args,
            **backbone,
            dataset=str(photos),
            fine_tune="predict",
            model_options={"alpha": 0.25},
            weights=weights_for("predict", weights_dir),
            class_index=str(class_index) if class_index.is_file() else None,
        ),
        "predict",
    )
    runs = {}
    with tempfile.TemporaryDirectory() as folder:
        write_image_folder(Path(folder), args.dataset, args.manual_dir, args.per_class, args.seed)
        tuned = {
            **backbone,
            "dataset": folder,
            "model_options": {"alpha": 0.25, "image_size": args.image_size},
            "optimizer": "adam",
            "lr": 0.001,
            "batch_size": 32,
        }
        for mode in ("head", "full"):
            config = study_config(
                args,
                **tuned,
                fine_tune=mode,
                head_epochs=args.head_epochs,
                weights=weights_for(mode, weights_dir),
            )
            _, runs[mode] = run_recipe(config, mode)
            print(f"{mode}: test accuracy {runs[mode].test_accuracy:.3f}", flush=True)
        scratch = study_config(
            args,
            dataset=folder,
            model="lenet5",
            image_size=(28, 28),
            optimizer="adam",
            lr=0.001,
            batch_size=32,
        )
        _, runs["scratch"] = run_recipe(scratch, "scratch")
        print(f"scratch: test accuracy {runs['scratch'].test_accuracy:.3f}", flush=True)
    for name, run in runs.items():
        run.label = {"scratch": "LeNet-5 from scratch"}.get(name, f"MobileNet 0.25, {name}")
    figure, (accuracy_axis, loss_axis) = new_figure(2)
    plot_histories(accuracy_axis, list(runs.values()), "val_accuracy", "validation accuracy")
    plot_histories(loss_axis, list(runs.values()), "loss", "training loss")
    if "full" in runs:
        for axis in (accuracy_axis, loss_axis):
            axis.axvline(args.head_epochs + 0.5, color="gray", linestyle=":", linewidth=1)
    figure.suptitle(
        f"Fine-tuning modes, {args.per_class} images per class ({args.dataset}); "
        f"dotted: full unfreezes the backbone"
    )
    rows = [
        {
            "mode": name,
            "final training accuracy": run.history["accuracy"][-1],
            "final validation accuracy": run.history["val_accuracy"][-1],
            "test accuracy": run.test_accuracy,
            "seconds": run.seconds,
        }
        for name, run in runs.items()
    ]
    table = (
        markdown_table(rows)
        + "\n\nPredict mode on the sample photos:\n\n"
        + markdown_table(predictions_table(metrics.get("predictions", {})))
    )
    write_study(
        args.out_dir,
        "finetune",
        "Fine-tuning modes: predict, head, full",
        figure,
        command_line("study_finetune.py", args, parser.parse_args([])),
        table,
        findings(runs, args.per_class),
    )


if __name__ == "__main__":
    main()
