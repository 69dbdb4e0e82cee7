"""Datasets for every recipe: one function from a dataset name to ready `tf.data` pipelines.

`load_dataset` understands four kinds of name:

- `"sample"`: a fixed, stratified subset of Fashion-MNIST embedded in the package (no download);
- an MNIST-family name (`fashion_mnist`, `mnist`, `kmnist`) with `manual_dir` pointing at the
  original IDX files, e.g. Debian's `/usr/share/datasets/fashion-mnist` (an offline mirror);
- a path to a folder of images with one sub-folder per class (see `recipes.data.image_folder`);
- any TFDS image-classification name (`cifar10`, `tf_flowers`, ...), loaded through `tfds.load`,
  which downloads and prepares it into `data_dir` on first use.

Splits a dataset does not have are carved from its training split, deterministically for a seed
(stratified by class where labels are known up front). Training pipelines shuffle, from a seed of
their own in each session of a resumed run (see `draw_seed`), and all of them cache the uint8
examples (when they fit in memory), batch, and prefetch; each batch then goes through one parallel
map call that does all the per-batch work: conversion to float, one-hot labels, the training
split's augmentation and the normalization (see `pipeline_options`).

What cannot be trained on is refused while loading, with a `DataError` that names the problem,
instead of failing during or after training: a requested split that is empty (for a carved split,
which classes have too few examples), IDX labels outside the class range, and image files that do
not decode (each file is decoded once when loaded; when the split fits in memory that pass fills
the cache the epochs read, so the check costs no second decode). `DatasetInfo.fingerprint` holds
a digest of each split's content (see `recipes.data.fingerprint`).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import tensorflow as tf

from layers import naming
from layers.preprocessing import image_statistics, standardizing_scale
from layers.validation import check_integer
from recipes.data.augment import Augmentation, BatchFunction, build_augmentation
from recipes.data.balance import balanced_resample
from recipes.data.fingerprint import arrays_digest, files_digest, text_digest
from recipes.data.idx import load_idx_split
from recipes.data.image_folder import check_decodable, image_channels, scan_image_folder
from recipes.train.errors import DataError

SPLITS = ("train", "validation", "test")
PREPROCESSING_MODES = ("scale", "mean_image", "per_channel", "none")
SAMPLE_NAME = "sample"
SAMPLE_RESOURCE = "fashion_mnist_sample.npz"

FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
# MNIST-family datasets that an offline mirror of IDX files can stand in for, with their classes.
IDX_DATASETS = {
    "fashion_mnist": FASHION_MNIST_CLASSES,
    "mnist": tuple(str(digit) for digit in range(10)),
    "kmnist": ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
}
_VALID_DATASETS = (
    f"Accepted: {SAMPLE_NAME!r} (embedded), an existing folder of class sub-folders, or a "
    "TensorFlow Datasets image-classification name (e.g. fashion_mnist, mnist, cifar10, "
    "tf_flowers); case, '-', '_' and spaces are ignored in names."
)
# The names known without asking TFDS; IDX ones are TFDS names too when there is no mirror.
_LOCAL_NAMES = naming.Names("dataset", (SAMPLE_NAME, *IDX_DATASETS))
_IDX_NAMES = naming.Names("IDX dataset", IDX_DATASETS)
# Variable-size sources (folders, TFDS datasets like tf_flowers) are resized to this unless told.
DEFAULT_IMAGE_SIZE = (224, 224)
# Above this many bytes of decoded uint8 images a split is streamed instead of cached in memory.
MAX_CACHE_BYTES = 4 * 1024**3


@dataclass(frozen=True)
class DatasetInfo:
    """What a recipe needs to know about a loaded dataset.

    Attributes:
        name: the dataset name as given to `load_dataset`.
        source: where it came from: "sample", "idx", "folder" or "tfds".
        num_classes: number of classes.
        class_names: class names in label order.
        image_shape: (height, width, channels) of the images the pipelines yield.
        split_sizes: number of examples in each split.
        preprocessing: the preprocessing mode applied (see `PREPROCESSING_MODES`).
        statistics: training-set statistics the preprocessing used, in [0, 1] units: "mean_image"
            of shape image_shape; "channel_mean", "channel_std" and "channel_scale" of shape
            (channels,). "per_channel" divides by "channel_scale": the std, or 1 for a channel
            whose std is below `layers.preprocessing.MIN_STD` (centred, not divided).
        fingerprint: a digest of each split's content, by split name (see
            `recipes.data.fingerprint`); saved with a run so that `--resume` can tell when the
            data changed.
    """

    name: str
    source: str
    num_classes: int
    class_names: tuple[str, ...]
    image_shape: tuple[int, int, int]
    split_sizes: dict[str, int]
    preprocessing: str = "scale"
    statistics: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    fingerprint: dict[str, str] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict:
        """A JSON-serializable summary (statistics left out)."""
        return {
            "name": self.name,
            "source": self.source,
            "num_classes": self.num_classes,
            "class_names": list(self.class_names),
            "image_shape": list(self.image_shape),
            "split_sizes": dict(self.split_sizes),
            "preprocessing": self.preprocessing,
            "fingerprint": dict(self.fingerprint),
        }


@dataclass
class _RawData:
    """Unbatched uint8 examples of every split a source provides, before any pipeline work.

    `carved` holds the fraction of each split carved from the training split; `class_counts`, the
    examples per class of the training split before that carve, when the carve is stratified.
    `files` holds each split's image files when the examples are decoded from them.
    """

    source: str
    class_names: tuple[str, ...]
    image_shape: tuple[int, int, int]
    splits: dict[str, tf.data.Dataset]
    sizes: dict[str, int]
    fingerprint: dict[str, str]
    carved: dict[str, float] = field(default_factory=dict)
    class_counts: np.ndarray | None = None
    files: dict[str, np.ndarray] | None = None


def assign_splits(
    num_examples: int,
    fractions: dict[str, float],
    seed: int,
    labels: np.ndarray | None = None,
) -> np.ndarray:
    """Assigns each example of a training split to "train" or to one of the splits carved from it.

    Args:
        num_examples: size of the training split.
        fractions: fraction of the examples to move to each carved split, e.g. {"validation": 0.1}.
        seed: the assignment is a function of (seed, num_examples, labels) alone.
        labels: when given, each class is carved separately so every split keeps the class balance.

    Returns:
        An array of split names, one per example.
    """
    for split, fraction in fractions.items():
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"{split} fraction must be in (0, 1), got {fraction}")
    if sum(fractions.values()) >= 1.0:
        raise ValueError(f"carved fractions {fractions} leave nothing for training")
    rng = np.random.default_rng(seed)
    assignment = np.full(num_examples, "train", dtype=object)
    groups = (
        [np.arange(num_examples)]
        if labels is None
        else [np.flatnonzero(labels == c) for c in np.unique(labels)]
    )
    for members in groups:
        members = rng.permutation(members)
        start = 0
        for split, fraction in fractions.items():
            count = round(fraction * len(members))
            assignment[members[start : start + count]] = split
            start += count
    return assignment


def _carved_fractions(
    present: Sequence[str], validation_fraction: float, test_fraction: float
) -> dict[str, float]:
    wanted = {"validation": validation_fraction, "test": test_fraction}
    return {split: fraction for split, fraction in wanted.items() if split not in present}


def _raw_from_arrays(
    source: str,
    arrays: dict[str, tuple[np.ndarray, np.ndarray]],
    class_names: tuple[str, ...],
    validation_fraction: float,
    test_fraction: float,
    seed: int,
    files_root: str | None = None,
) -> _RawData:
    """Carves the missing splits from `arrays["train"]`, stratified by class.

    With `files_root`, the "images" are the paths of image files below it, decoded later.
    """
    carve = _carved_fractions(list(arrays), validation_fraction, test_fraction)
    class_counts = np.bincount(arrays["train"][1], minlength=len(class_names))
    if carve:
        images, labels = arrays["train"]
        assignment = assign_splits(len(labels), carve, seed, labels)
        arrays = dict(arrays)
        for split in ("train", *carve):
            mask = assignment == split
            arrays[split] = (images[mask], labels[mask])
    return _RawData(
        source=source,
        class_names=class_names,
        image_shape=tuple(int(d) for d in arrays["train"][0].shape[1:]),
        splits={
            split: tf.data.Dataset.from_tensor_slices((images, labels.astype(np.int64)))
            for split, (images, labels) in arrays.items()
        },
        sizes={split: len(labels) for split, (_, labels) in arrays.items()},
        fingerprint={
            split: arrays_digest(images, labels)
            if files_root is None
            else files_digest(images, labels, files_root)
            for split, (images, labels) in arrays.items()
        },
        carved=carve,
        class_counts=class_counts,
        files=None
        if files_root is None
        else {split: files for split, (files, _) in arrays.items()},
    )


def _load_sample(validation_fraction: float, test_fraction: float, seed: int) -> _RawData:
    with (
        resources.files("recipes.data").joinpath(SAMPLE_RESOURCE).open("rb") as f,
        np.load(f) as npz,
    ):
        arrays = {
            split: (npz[f"x_{split}"][..., np.newaxis], npz[f"y_{split}"])
            for split in ("train", "test")
        }
        class_names = tuple(str(name) for name in npz["class_names"])
    return _raw_from_arrays("sample", arrays, class_names, validation_fraction, test_fraction, seed)


def _load_idx(
    name: str,
    manual_dir: str | os.PathLike,
    validation_fraction: float,
    test_fraction: float,
    seed: int,
) -> _RawData:
    class_names = IDX_DATASETS[name]
    arrays = {
        split: load_idx_split(manual_dir, split, num_classes=len(class_names))
        for split in ("train", "test")
    }
    return _raw_from_arrays("idx", arrays, class_names, validation_fraction, test_fraction, seed)


def _decode_image_file(path: tf.Tensor, image_size: tuple[int, int], channels: int) -> tf.Tensor:
    image = tf.io.decode_image(tf.io.read_file(path), channels=channels, expand_animations=False)
    return resize_uint8(image, image_size)


def resize_uint8(image: tf.Tensor, image_size: tuple[int, int]) -> tf.Tensor:
    """A uint8 image (or batch) resized to (height, width) as every pipeline resizes: bilinear
    with antialiasing (so that shrinking does not alias), rounded back to uint8."""
    resized = tf.image.resize(image, image_size, antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)


def _load_folder(
    root: str,
    image_size: tuple[int, int],
    validation_fraction: float,
    test_fraction: float,
    seed: int,
) -> _RawData:
    found, class_names = scan_image_folder(root)
    arrays = {
        split: (np.array(files.paths, dtype=str), np.array(files.labels, dtype=np.int64))
        for split, files in found.items()
    }
    raw = _raw_from_arrays(
        "folder", arrays, class_names, validation_fraction, test_fraction, seed, files_root=root
    )
    channels = image_channels([path for paths, _ in arrays.values() for path in paths])
    raw.image_shape = (*image_size, channels)
    raw.splits = {
        split: ds.map(
            lambda path, label: (_decode_image_file(path, image_size, channels), label),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
        for split, ds in raw.splits.items()
    }
    return raw


def _tfds_name(name: str) -> str:
    """The TFDS builder name `name` spells ("CIFAR-10" -> "cifar10"), keeping a ":version".

    A name TFDS knows as given is used directly; only a name it does not know is matched against
    TFDS' whole list, which takes seconds to build.

    Raises:
        ValueError: for a name no dataset has, suggesting the closest.
    """
    import tensorflow_datasets as tfds

    local = _LOCAL_NAMES.find(name)
    if local is not None:
        return local
    builder_name, colon, version = name.partition(":")
    try:
        tfds.builder_cls(builder_name)
    # DatasetNotFoundError, or the ValueError of a name TFDS cannot even parse ("CIFAR-10").
    except ValueError:
        names = naming.Names(
            "dataset",
            (SAMPLE_NAME, *IDX_DATASETS, *tfds.list_builders()),
            valid=_VALID_DATASETS,
            allow_ambiguous=True,
        )
        return names.resolve(builder_name) + colon + version
    return name


def _load_tfds(
    name: str,
    data_dir: str | None,
    image_size: tuple[int, int] | None,
    validation_fraction: float,
    test_fraction: float,
    seed: int,
) -> _RawData:
    import tensorflow_datasets as tfds

    builder = tfds.builder(name, data_dir=data_dir)
    features = builder.info.features
    if "image" not in features or "label" not in features:
        raise ValueError(
            f"TFDS dataset {name!r} is not an image-classification dataset (its features are "
            f"{sorted(features)}; an 'image' and a 'label' feature are needed)"
        )
    builder.download_and_prepare()
    native_shape = tuple(features["image"].shape)
    if image_size is None and None in native_shape[:2]:
        image_size = DEFAULT_IMAGE_SIZE
    channels = native_shape[2] or 3
    image_shape = (*(image_size or native_shape[:2]), channels)

    present = [split for split in SPLITS if split in builder.info.splits]
    if "train" not in present:
        raise ValueError(f"TFDS dataset {name!r} has no 'train' split ({builder.info.splits})")
    splits = {
        split: builder.as_dataset(split=split, as_supervised=True, shuffle_files=False)
        for split in present
    }
    sizes = {split: builder.info.splits[split].num_examples for split in present}
    carve = _carved_fractions(present, validation_fraction, test_fraction)
    if carve:
        # Labels are not known without a pass over the data, so the carve is not stratified here.
        assignment = assign_splits(sizes["train"], carve, seed)
        codes = tf.constant([list(carve).index(s) + 1 if s in carve else 0 for s in assignment])
        train = splits["train"].enumerate()
        for code, split in enumerate(("train", *carve)):
            splits[split] = train.filter(
                lambda index, example, code=code: tf.equal(tf.gather(codes, index), code)
            ).map(lambda index, example: example)
            sizes[split] = int(np.sum(assignment == split))

    def to_image_shape(image: tf.Tensor, label: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        if image_size is not None:
            image = resize_uint8(image, image_size)
        return tf.ensure_shape(image, image_shape), tf.cast(label, tf.int64)

    return _RawData(
        source="tfds",
        class_names=tuple(features["label"].names),
        image_shape=image_shape,
        splits={
            split: ds.map(to_image_shape, num_parallel_calls=tf.data.AUTOTUNE)
            for split, ds in splits.items()
        },
        sizes=sizes,
        # TFDS versions pin a dataset's content: its name, version and the carve identify it.
        fingerprint={
            split: text_digest(builder.info.full_name, split, size, seed if carve else None, carve)
            for split, size in sizes.items()
        },
        carved=carve,
    )


def _load_raw(
    name: str,
    data_dir: str | os.PathLike | None,
    manual_dir: str | os.PathLike | None,
    image_size: tuple[int, int] | None,
    validation_fraction: float,
    test_fraction: float,
    seed: int,
) -> _RawData:
    # A path is taken as written: only names are matched loosely.
    is_path = os.sep in name or Path(name).is_dir()
    if manual_dir is not None:
        idx_name = _IDX_NAMES.find(name)
        if idx_name is None:
            raise ValueError(
                f"manual_dir (an offline mirror of IDX files) is supported for {sorted(IDX_DATASETS)}"
                f", not for dataset {name!r}"
            )
        raw = _load_idx(idx_name, manual_dir, validation_fraction, test_fraction, seed)
    elif name == SAMPLE_NAME or (not is_path and _LOCAL_NAMES.find(name) == SAMPLE_NAME):
        raw = _load_sample(validation_fraction, test_fraction, seed)
    elif is_path:
        if not Path(name).is_dir():
            raise FileNotFoundError(f"image folder {name} does not exist or is not a directory")
        return _load_folder(
            name, image_size or DEFAULT_IMAGE_SIZE, validation_fraction, test_fraction, seed
        )
    else:
        return _load_tfds(
            _tfds_name(name),
            None if data_dir is None else str(data_dir),
            image_size,
            validation_fraction,
            test_fraction,
            seed,
        )
    if image_size is not None and tuple(image_size) != raw.image_shape[:2]:
        raw.splits = {
            split: ds.map(
                lambda image, label: (resize_uint8(image, image_size), label),
                num_parallel_calls=tf.data.AUTOTUNE,
            )
            for split, ds in raw.splits.items()
        }
        raw.image_shape = (*image_size, raw.image_shape[2])
    return raw


def _smallest_class_for(fraction: float) -> int:
    """The fewest examples a class needs for a stratified carve of `fraction` to take one (the
    carve rounds each class's share to the nearest integer, ties to even)."""
    count = max(1, int(0.5 / fraction))
    while round(fraction * count) < 1:
        count += 1
    return count


def _empty_splits_message(raw: _RawData, empty: Sequence[str]) -> str:
    """Why the `empty` splits have no examples, and what to change."""
    train_total = sum(raw.sizes[split] for split in ("train", *raw.carved))
    reasons, fixes = [], []
    carved = [split for split in empty if split in raw.carved]
    for split in empty:
        if split == "train" and raw.carved:
            reasons.append(
                f"carving {' and '.join(raw.carved)} from the {train_total} training examples, "
                "each class's share rounded, left none for training"
            )
            fixes.append("lower the carved fractions")
        elif split not in raw.carved:
            owner = "folder's" if raw.source == "folder" else "dataset's"
            reasons.append(f"the {owner} own {split} split is empty")
            if raw.source == "folder":
                fixes.append(
                    f"put images in the {split} sub-folder's class folders, or remove the "
                    "sub-folder to have the split carved from the training images"
                )
    if carved:
        if "validation" in carved:
            fixes.append("raise validation_fraction (--validation-fraction)")
        if "test" in carved:
            fixes.append("raise test_fraction")
        shares = " and ".join(f"{split} {raw.carved[split]:g}" for split in carved)
        if raw.class_counts is None:
            reasons.append(f"the carved shares ({shares}) of {train_total} examples round to none")
            fixes.append("add examples")
        else:
            # Every class rounded its share to none, so every class is too small.
            needed = max(_smallest_class_for(raw.carved[split]) for split in carved)
            names = ", ".join(repr(name) for name in raw.class_names[:3])
            reasons.append(
                f"the carved shares ({shares}) are taken from each class and rounded, which "
                f"takes none from a class of fewer than {needed} examples, and all "
                f"{len(raw.class_names)} classes ({names}{', ...' * (len(raw.class_names) > 3)}) "
                f"have fewer (the largest has {int(raw.class_counts.max())}; {train_total} "
                "training examples in all)"
            )
            fixes.append(f"add examples (at least {needed} per class)")
        if raw.source == "folder":
            fixes.append(
                "provide the splits yourself as sub-folders train/, validation/ and test/, each "
                "holding the class folders"
            )
    message = "; ".join(reasons)
    if fixes:
        fixes = list(dict.fromkeys(fixes))
        message += ". To fix: " + " or ".join(
            [", ".join(fixes[:-1]), fixes[-1]] if fixes[:-1] else fixes
        )
    return message


def _check_split_sizes(raw: _RawData, requested: Sequence[str]) -> None:
    """Refuses a requested split without examples: training on it fails at once, and validating
    or testing on it fails only after training, or reports nothing."""
    empty = [split for split in requested if raw.sizes[split] == 0]
    if empty:
        raise DataError(
            f"no examples in the {' and '.join(empty)} split{'s' * (len(empty) > 1)}: "
            + _empty_splits_message(raw, empty)
        )


def _training_statistics(train: tf.data.Dataset) -> dict:
    """Mean image and per-channel mean/std of the training split, in [0, 1] units, in one pass,
    and the per-channel divisor of standardization (`layers.preprocessing.standardizing_scale`).

    Computed on the uint8 images, whose float64 sums are exact, then divided by 255.
    """
    statistics = image_statistics(train.batch(4096))
    channel_std = statistics["channel_std"] / 255.0
    return {
        "mean_image": (statistics["mean_image"] / 255.0).astype(np.float32),
        "channel_mean": (statistics["channel_mean"] / 255.0).astype(np.float32),
        "channel_std": channel_std.astype(np.float32),
        "channel_scale": standardizing_scale(channel_std).astype(np.float32),
    }


def _cached_split(raw: _RawData, split: str) -> tf.data.Dataset:
    """The split's uint8 examples, cached in memory when they fit.

    Examples decoded from image files are all decoded here, so that a file that does not decode is
    named now rather than failing a training step. When the split is cached, that pass is the one
    that fills the cache, so nothing is decoded twice; a split too large to cache is checked by a
    pass of its own.
    """
    ds = raw.splits[split]
    fits = raw.sizes[split] * int(np.prod(raw.image_shape)) <= MAX_CACHE_BYTES
    if raw.files is None:
        return ds.cache() if fits else ds
    if fits:
        # Failed decodes are skipped while filling, and the count tells whether any failed: the
        # cache is only kept when it holds every example.
        ds = ds.ignore_errors().cache()
        if int(ds.reduce(np.int64(0), lambda count, _: count + 1)) == raw.sizes[split]:
            # Skipping makes the count unknown to tf.data; Keras needs it for its epochs.
            return ds.apply(tf.data.experimental.assert_cardinality(raw.sizes[split]))
    check_decodable(raw.files[split])
    if fits:
        raise DataError(
            f"some images of the {split} split failed to decode while loading, though each "
            "decodes on its own now: were files changing while the dataset loaded?"
        )
    return ds


def _chained(functions: Sequence[BatchFunction]) -> BatchFunction:
    """The function that applies `functions` to `(images, labels)` one after the other."""

    def chained(images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        for function in functions:
            images, labels = function(images, labels)
        return images, labels

    return chained


def pipeline_options() -> tf.data.Options:
    """The tf.data options of every pipeline `load_dataset` returns.

    Each map call runs its ops on the one tf.data thread that runs it
    (`max_intra_op_parallelism = 1`): the parallelism comes from several batches in flight
    (`num_parallel_calls=AUTOTUNE`), and on a machine with few cores the input work then does
    not compete with the training step for the intra-op thread pool. Outputs stay in order
    (`deterministic`, tf.data's default): the batches reach the model in the seeded order.
    """
    options = tf.data.Options()
    options.threading.max_intra_op_parallelism = 1
    options.deterministic = True
    return options


def _normalizer(mode: str, statistics: dict) -> Callable[[tf.Tensor], tf.Tensor]:
    if mode == "mean_image":
        mean_image = tf.constant(statistics["mean_image"])
        return lambda x: x - mean_image
    if mode == "per_channel":
        mean = tf.constant(statistics["channel_mean"])
        scale = tf.constant(statistics["channel_scale"])
        return lambda x: (x - mean) / scale
    return lambda x: x


def draw_seed(seed: int, first_epoch: int = 0) -> int:
    """The seed of a training pipeline's random draws (shuffling, class-balanced sampling,
    augmentation) when its first pass is epoch `first_epoch + 1` of a run seeded with `seed`.

    tf.data's random streams start over in every process: a run resumed after epoch N with the
    run's own seed would draw epoch 1's shuffle and augmentations again, then epoch 2's, and so
    on. Resumed in many short sessions, it would train on the same few draws over and over (and
    fit them: a WRN-16-2 resumed every 8 epochs reached 0.970 training accuracy on the repeated
    draws against 0.961 on fresh ones). So `seed` itself serves a new run, and each resume point
    gets a seed of its own. A resumed run is still reproducible from its resume points, and draws
    as freshly as an uninterrupted one, though not the very same batches.
    """
    check_integer("seed", seed, low=0)
    check_integer("first_epoch", first_epoch, low=0)
    if first_epoch == 0:
        return seed
    return int(np.random.SeedSequence([seed, first_epoch]).generate_state(1)[0] >> 1)


def load_dataset(
    name: str,
    split: str | Sequence[str] = SPLITS,
    *,
    data_dir: str | os.PathLike | None = None,
    manual_dir: str | os.PathLike | None = None,
    batch_size: int = 128,
    image_size: tuple[int, int] | None = None,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 0,
    preprocessing: str = "scale",
    one_hot: bool = False,
    balance_classes: bool = False,
    augment: str | Callable[[tf.Tensor, tf.Tensor], tuple[tf.Tensor, tf.Tensor]] | None = None,
    shuffle: bool = True,
    first_epoch: int = 0,
) -> tuple[tf.data.Dataset | dict[str, tf.data.Dataset], DatasetInfo]:
    """Returns batched `tf.data` pipelines of (image, label) and the dataset's info.

    Args:
        name: "sample", an MNIST-family name with `manual_dir`, a folder path, or a TFDS name.
            Names (not paths) are matched ignoring case, `-`, `_` and spaces ("Fashion-MNIST").
        split: one split name ("train", "validation", "test") or a sequence of them.
        data_dir: where TFDS keeps prepared datasets (TFDS' default when None).
        manual_dir: folder with the original IDX files of an MNIST-family dataset (offline mirror).
        batch_size: examples per batch.
        image_size: (height, width) to resize to; variable-size sources default to 224x224.
        validation_fraction: share of the training split carved out as validation when the
            dataset has no validation split.
        test_fraction: share carved out as test when the dataset has no test split.
        seed: seeds the carving of splits, and the training split's draws (shuffling,
            class-balanced sampling, augmentation) as `draw_seed(seed, first_epoch)`.
        preprocessing: "scale" (to [0, 1]), "mean_image" (scale, then subtract the training
            set's mean image: zero-centering), "per_channel" (scale, then standardize each channel
            by the training set's mean and std), or "none" (float32 in [0, 255]).
        one_hot: yield one-hot float labels instead of integer class ids.
        balance_classes: training only: draw every class equally often ("label shuffle"); an epoch
            still has as many examples as the training split.
        augment: training only: an augmentation spec for `recipes.data.augment.build_augmentation`
            (e.g. "flip_h,crop:4" or "standard"), or a callable mapping a batch (images in
            [0, 1], labels) to an augmented batch; applied after scaling and one-hot encoding,
            before normalization. A spec that mixes labels (mixup, cutmix) makes every split's
            labels one-hot, so that metrics see the same label format everywhere.
        shuffle: shuffle the training split (reshuffled every epoch).
        first_epoch: epochs of the run already trained (a resumed run): the training split's
            draws then start from a seed of their own instead of repeating those of the run's
            first session (see `draw_seed`). The carved splits do not depend on it.

    Returns:
        `(pipelines, info)`: a single `tf.data.Dataset` when `split` is a string, else a dict
        from split name to dataset.
    """
    requested = [split] if isinstance(split, str) else list(split)
    for s in requested:
        if s not in SPLITS:
            raise ValueError(f"unknown split {s!r}; accepted: {list(SPLITS)}")
    if preprocessing not in PREPROCESSING_MODES:
        raise ValueError(
            f"unknown preprocessing {preprocessing!r}; accepted: {list(PREPROCESSING_MODES)}"
        )
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    draws = draw_seed(seed, first_epoch)

    raw = _load_raw(
        name, data_dir, manual_dir, image_size, validation_fraction, test_fraction, seed
    )
    _check_split_sizes(raw, requested)
    num_classes = len(raw.class_names)
    # Each split is cached (and its files checked) once, on first use.
    cached = functools.cache(functools.partial(_cached_split, raw))
    statistics = (
        _training_statistics(cached("train"))
        if preprocessing in ("mean_image", "per_channel")
        else {}
    )
    normalize = _normalizer(preprocessing, statistics)
    if augment in ("", "none"):
        augment = None
    elif isinstance(augment, str):
        augment = build_augmentation(
            augment,
            raw.image_shape,
            seed=draws,
            num_classes=num_classes,
            adapt_data=cached("train").map(lambda image, label: tf.cast(image, tf.float32) / 255.0),
        )
        one_hot = one_hot or augment.changes_labels
    scale = 1.0 if preprocessing == "none" else 1.0 / 255.0

    def to_float(images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        images = tf.cast(images, tf.float32) * scale
        if one_hot:
            labels = tf.one_hot(labels, num_classes)
        return images, labels

    def normalized(images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return normalize(images), labels

    pipelines = {}
    for s in requested:
        ds = cached(s)
        training = s == "train"
        if training and shuffle:
            ds = ds.shuffle(min(raw.sizes[s], 20_000), seed=draws, reshuffle_each_iteration=True)
        if training and balance_classes:
            ds = balanced_resample(ds, num_classes, seed=draws, epoch_size=raw.sizes[s])
        ds = ds.batch(batch_size)
        # All the work on a batch is one map call: uint8 to float, one-hot, augmentation,
        # normalization.
        if training and isinstance(augment, Augmentation):
            # A fresh, seeded draw for every batch of every epoch.
            ds = augment.apply_to(ds, before=to_float, after=normalized)
        else:
            steps = [to_float, *([augment] if training and augment is not None else [])]
            ds = ds.map(_chained([*steps, normalized]), num_parallel_calls=tf.data.AUTOTUNE)
        pipelines[s] = ds.prefetch(tf.data.AUTOTUNE).with_options(pipeline_options())

    info = DatasetInfo(
        name=name,
        source=raw.source,
        num_classes=num_classes,
        class_names=raw.class_names,
        image_shape=raw.image_shape,
        split_sizes=dict(raw.sizes),
        preprocessing=preprocessing,
        statistics=statistics,
        fingerprint=dict(raw.fingerprint),
    )
    return (pipelines[split] if isinstance(split, str) else pipelines), info
