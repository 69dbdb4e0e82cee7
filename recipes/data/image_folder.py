"""Scanning a folder of images laid out one sub-folder per class, the usual shape of a user's own data.

Two layouts are accepted:

    root/<class>/<image>                       one pool; validation and test are carved from it
    root/train/<class>/<image>                 ready-made splits ("validation" may also be spelled
    root/validation/<class>/<image>            "val"; missing splits are carved from train)
    root/test/<class>/<image>

A folder whose every image is grayscale by its file header (PNG/JPEG/BMP/GIF gray modes) loads with
one channel, so that a model trained on gray images (the zoo's Fashion-MNIST weights) fine-tunes on
it; any colour file makes the whole folder RGB, gray files converted (`image_channels`).

Problems are reported when the folder is scanned, naming the offending path, rather than as an opaque
decoding error in the middle of training. The scan reads each file's first bytes (a file that is not
an image at all); `check_decodable` decodes every file, for one whose header is valid but whose
content is corrupt or truncated, and is run by `load_dataset` as it loads the images.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image

from recipes.train.errors import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif")

# Leading bytes of each accepted format: a file whose content does not start so is not an image,
# whatever its name says.
_SIGNATURES = {
    ".jpg": (b"\xff\xd8\xff",),
    ".jpeg": (b"\xff\xd8\xff",),
    ".png": (b"\x89PNG\r\n\x1a\n",),
    ".bmp": (b"BM",),
    ".gif": (b"GIF87a", b"GIF89a"),
}

SPLIT_DIRECTORY_NAMES = {
    "train": ("train",),
    "validation": ("validation", "val"),
    "test": ("test",),
}


class ImageFolderError(DataError):
    """The folder does not have the expected layout, or holds a file that is not a readable image."""


@dataclass(frozen=True)
class ImageFolderSplit:
    """The image files of one split and their integer labels (indices into the class names)."""

    paths: tuple[str, ...]
    labels: tuple[int, ...]


def check_image_file(path: Path) -> None:
    """Raises an `ImageFolderError` for an empty file, or one whose first bytes are not those of
    its extension's image format."""
    signatures = _SIGNATURES[path.suffix.lower()]
    with open(path, "rb") as f:
        head = f.read(8)
    if not head:
        raise ImageFolderError(f"{path}: empty file")
    if not any(head.startswith(signature) for signature in signatures):
        raise ImageFolderError(
            f"{path}: not a valid {path.suffix.lower()[1:].upper()} image (its first bytes are "
            f"{head[:4]!r}); remove or replace the file"
        )


def undecodable_images(paths: Sequence[str]) -> list[str]:
    """The files among `paths` that cannot be read and decoded as images, in order.

    One parallel `tf.data` pass decodes every file as training does.
    """

    def decoded(index: tf.Tensor, path: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        # The shape depends on the decode, so the decode is not pruned from the graph.
        return index, tf.shape(image)[0]

    ok = np.zeros(len(paths), dtype=bool)
    passes = (
        tf.data.Dataset.from_tensor_slices((np.arange(len(paths)), np.asarray(paths, dtype=str)))
        .map(decoded, num_parallel_calls=tf.data.AUTOTUNE)
        .ignore_errors()
        .batch(4096)
    )
    for indices, _ in passes.as_numpy_iterator():
        ok[indices] = True
    return [str(paths[i]) for i in np.flatnonzero(~ok)]


def _undecodable_error(path: str | os.PathLike, more: str = "") -> ImageFolderError:
    """The error naming a file that does not decode (`more`: the other such files, said after)."""
    return ImageFolderError(
        f"{path}: cannot be decoded as an image (its content is corrupt or truncated){more}; "
        "remove or replace the file"
    )


def check_decodable(paths: Sequence[str]) -> None:
    """Raises an `ImageFolderError` naming the files among `paths` that do not decode."""
    bad = undecodable_images(paths)
    if not bad:
        return
    more = ""
    if len(bad) > 1:
        listed = ", ".join(bad[1:4]) + (", ..." if len(bad) > 4 else "")
        more = f" ({len(bad)} files fail; the others: {listed})"
    raise _undecodable_error(bad[0], more)


# Pillow's modes of one-channel images: bilevel, 8-bit, 8-bit with alpha, 16/32-bit integer, float.
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}


def image_channels(paths: Sequence[str]) -> int:
    """1 when every file among `paths` is a grayscale image by its header, else 3.

    Only the headers are read (Pillow opens lazily). A palette image counts as colour, and so does
    an RGB file whose three channels happen to be equal: telling that would decode every image.

    Raises:
        ImageFolderError: naming a file whose header Pillow cannot read.
    """
    for path in paths:
        try:
            with Image.open(path) as image:
                mode = image.mode
        except OSError:  # Pillow's UnidentifiedImageError: a header too damaged to read
            raise _undecodable_error(path) from None
        if mode not in _GRAY_MODES:
            return 3
    return 1


def list_images(folder: str | os.PathLike) -> list[str]:
    """The image files directly inside `folder`, sorted, each checked to be a real image.

    For labelling a folder of photos (no class sub-folders), e.g. with an ImageNet classifier.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist or is not a directory")
    files = sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
    )
    if not files:
        raise ImageFolderError(
            f"{folder} holds no images (accepted extensions: {', '.join(IMAGE_EXTENSIONS)})"
        )
    for path in files:
        check_image_file(path)
    return [str(path) for path in files]


def _class_directories(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _scan_split(root: Path, class_names: tuple[str, ...]) -> ImageFolderSplit:
    paths, labels = [], []
    found = {d.name for d in _class_directories(root)}
    unknown = sorted(found - set(class_names))
    if unknown:
        raise ImageFolderError(
            f"{root}: class folders {unknown} are not among the training classes {list(class_names)}"
        )
    for label, class_name in enumerate(class_names):
        class_dir = root / class_name
        if not class_dir.is_dir():
            continue
        files = sorted(
            p for p in class_dir.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
        )
        if not files:
            raise ImageFolderError(
                f"class folder {class_dir} holds no images (accepted extensions: "
                f"{', '.join(IMAGE_EXTENSIONS)})"
            )
        for path in files:
            check_image_file(path)
            paths.append(str(path))
            labels.append(label)
    return ImageFolderSplit(tuple(paths), tuple(labels))


def _split_directory(root: Path, split: str) -> Path | None:
    for name in SPLIT_DIRECTORY_NAMES[split]:
        if (root / name).is_dir():
            return root / name
    return None


def scan_image_folder(
    root: str | os.PathLike,
) -> tuple[dict[str, ImageFolderSplit], tuple[str, ...]]:
    """Lists the images of a class-per-sub-folder dataset and checks every file's format.

    Args:
        root: the dataset folder, in one of the two layouts of this module's docstring.

    Returns:
        `(splits, class_names)`: the splits found on disk ("train" always; "validation" and "test"
        when the folder has them) and the class names in label order (sorted folder names).

    Raises:
        ImageFolderError: no class folders, an empty class folder, or a file that is not an image.
        FileNotFoundError: `root` is not a directory.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist or is not a directory")
    train_dir = _split_directory(root, "train") or root
    class_dirs = _class_directories(train_dir)
    if not class_dirs:
        raise ImageFolderError(
            f"{train_dir}: no class sub-folders; expected one sub-folder of images per class"
        )
    if len(class_dirs) < 2:
        raise ImageFolderError(
            f"{train_dir}: found a single class folder ({class_dirs[0].name}); a classifier needs "
            "at least two"
        )
    class_names = tuple(d.name for d in class_dirs)
    splits = {"train": _scan_split(train_dir, class_names)}
    if train_dir is not root:
        for split in ("validation", "test"):
            split_dir = _split_directory(root, split)
            if split_dir is not None:
                splits[split] = _scan_split(split_dir, class_names)
    return splits, class_names
