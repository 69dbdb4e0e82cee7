"""Run the course's sanity checks on a small MLP, on Fashion-MNIST or synthetic data.

    python -m scripts.sanity_check --synthetic --output-dir /tmp/sanity
    python -m scripts.sanity_check --fashion-mnist-dir /usr/share/datasets/fashion-mnist

Checks the initial loss against ln(10), that regularization raises it, that the model memorizes
20 examples, and runs a learning-rate range test (PNG in the output directory). Prints the
report, writes it to `<output-dir>/sanity.txt`, and exits with status 1 when a check fails.
"""

import argparse
import sys
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from recipes.data.idx import load_idx_split
from recipes.train.files import atomic_write_text
from recipes.train.sanity import run_sanity_checks

NUM_CLASSES = 10
IMAGE_SHAPE = (28, 28)


def fashion_mnist(directory: Path, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The first `count` training images scaled to [0, 1], with their labels."""
    images, labels = load_idx_split(directory, "train")
    return images[:count, ..., 0].astype("float32") / 255.0, labels[:count].astype("int32")


def synthetic(count: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Ten classes of 28x28 "images": a fixed random template per class plus pixel noise."""
    rng = np.random.default_rng(seed)
    templates = rng.uniform(size=(NUM_CLASSES, *IMAGE_SHAPE))
    labels = rng.integers(0, NUM_CLASSES, size=count)
    noise = rng.normal(scale=0.3, size=(count, *IMAGE_SHAPE))
    return np.clip(templates[labels] + noise, 0.0, 1.0).astype("float32"), labels.astype("int32")


def build_mlp(regularization_scale: float, weight_decay: float = 1e-4) -> keras.Model:
    """A one-hidden-layer ReLU MLP whose L2 penalty is `weight_decay * regularization_scale`."""
    regularizer = keras.regularizers.L2(weight_decay * regularization_scale)
    inputs = keras.Input(IMAGE_SHAPE)
    hidden = keras.layers.Flatten()(inputs)
    hidden = keras.layers.Dense(128, activation="relu", kernel_regularizer=regularizer)(hidden)
    # Small final weights give near-equal scores, hence an initial loss near ln(10).
    logits = keras.layers.Dense(
        NUM_CLASSES,
        kernel_initializer=keras.initializers.RandomNormal(stddev=1e-3),
        kernel_regularizer=regularizer,
    )(hidden)
    return keras.Model(inputs, logits, name="sanity_mlp")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--synthetic", action="store_true", help="use generated data")
    source.add_argument(
        "--fashion-mnist-dir",
        type=Path,
        default=Path("/usr/share/datasets/fashion-mnist"),
        help="directory with the Fashion-MNIST IDX .gz files (default: %(default)s)",
    )
    parser.add_argument("--examples", type=int, default=2048, help="training examples to use")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr-steps", type=int, default=200, help="steps of the range test")
    parser.add_argument("--output-dir", type=Path, default=Path("sanity_output"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    keras.utils.set_random_seed(args.seed)
    if args.synthetic:
        images, labels = synthetic(args.examples, args.seed)
    else:
        images, labels = fashion_mnist(args.fashion_mnist_dir, args.examples)
    train_ds = (
        tf.data.Dataset.from_tensor_slices((images, labels))
        .shuffle(len(images), seed=args.seed)
        .batch(args.batch_size)
    )
    report = run_sanity_checks(
        build_mlp, train_ds, NUM_CLASSES, output_dir=args.output_dir, lr_range_steps=args.lr_steps
    )
    text = report.render()
    print(text, end="")
    atomic_write_text(args.output_dir / "sanity.txt", text)
    return 0 if report.passed else 1


if __name__ == "__main__":
    sys.exit(main())
