"""Reader for the IDX files of the MNIST family (MNIST, Fashion-MNIST, KMNIST).

The IDX format is a big-endian header (two zero bytes, a type code, the number of dimensions, then one
32-bit size per dimension) followed by the raw array. Files may be gzip-compressed. Debian's
`dataset-fashion-mnist` recompresses the original `.gz` files, so their checksums differ from the ones
TFDS knows; the content is what matters, and this reader checks it: magic numbers, dimensions, and that
the payload holds exactly the advertised number of items.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from recipes.train.errors import DataError

# IDX type codes and the NumPy dtype (big-endian where it matters) they stand for.
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

# The four files of an MNIST-family dataset, by split, as the original distribution names them.
IDX_FILENAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


class IdxFormatError(DataError):
    """An IDX file is truncated, corrupt, or not the kind of file it was expected to be."""


def _read_bytes(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            head = f.read(2)
            f.seek(0)
            if head == b"\x1f\x8b":
                return gzip.decompress(f.read())
            return f.read()
    except (OSError, EOFError, zlib.error) as err:
        raise IdxFormatError(f"{path}: cannot read or decompress the file ({err})") from err


def read_idx(path: str | os.PathLike, expected_ndim: int | None = None) -> np.ndarray:
    """Reads an IDX file (optionally gzip-compressed) into a NumPy array.

    Args:
        path: the file; compression is detected from its content, not its name.
        expected_ndim: if given, the number of dimensions the file must declare (3 for images, 1 for
            labels).

    Returns:
        The array, in native byte order, with the shape the header declares.

    Raises:
        IdxFormatError: the magic number, type code, dimensions or payload length is wrong.
        FileNotFoundError: the file does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file not found: {path}")
    data = _read_bytes(path)
    if len(data) < 4:
        raise IdxFormatError(f"{path}: {len(data)} bytes is too short for an IDX header")
    zero1, zero2, type_code, ndim = data[0], data[1], data[2], data[3]
    if zero1 != 0 or zero2 != 0 or type_code not in _IDX_DTYPES:
        magic = int.from_bytes(data[:4], "big")
        raise IdxFormatError(
            f"{path}: bad magic number 0x{magic:08x}; an IDX file starts with 0x0000TTDD where TT is "
            f"one of {sorted(f'0x{code:02x}' for code in _IDX_DTYPES)} and DD the number of dimensions"
        )
    if expected_ndim is not None and ndim != expected_ndim:
        raise IdxFormatError(f"{path}: declares {ndim} dimensions, expected {expected_ndim}")
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise IdxFormatError(f"{path}: header truncated ({len(data)} bytes for {ndim} dimensions)")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = _IDX_DTYPES[type_code]
    expected_len = header_len + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected_len:
        raise IdxFormatError(
            f"{path}: header declares shape {shape} ({expected_len - header_len} payload bytes) but "
            f"the file holds {len(data) - header_len}: the file is truncated or corrupt"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header_len).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=False)


def _find_idx_file(directory: Path, stem: str) -> Path:
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"{directory}: neither {stem}.gz nor {stem} found (an MNIST-family mirror holds "
        f"{', '.join(name for pair in IDX_FILENAMES.values() for name in pair)}, optionally .gz)"
    )


def _check_label_range(path: Path, labels: np.ndarray, num_classes: int) -> None:
    bad = (labels < 0) | (labels >= num_classes)
    if bad.any():
        values = np.unique(labels[bad])
        shown = ", ".join(str(int(v)) for v in values[:5]) + (", ..." if len(values) > 5 else "")
        raise IdxFormatError(
            f"{path}: label{'s' * (len(values) > 1)} {shown} outside 0..{num_classes - 1} "
            f"({int(bad.sum())} of {len(labels)} labels; the dataset has {num_classes} classes): "
            "the file does not belong to this dataset, or is corrupt"
        )


def load_idx_split(
    directory: str | os.PathLike, split: str, num_classes: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Loads one split of an MNIST-family dataset from a directory of IDX files.

    Args:
        directory: a folder holding the original files (e.g. `/usr/share/datasets/fashion-mnist`).
        split: "train" or "test".
        num_classes: when given, every label must be in `0 .. num_classes - 1`; a label file with
            others would train and then fail, or train on a class the model has no output for.

    Returns:
        `(images, labels)`: uint8 images of shape (N, H, W, 1) and int64 labels of shape (N,).

    Raises:
        IdxFormatError: a file is corrupt, the counts differ, or a label is out of range.
    """
    if split not in IDX_FILENAMES:
        raise ValueError(f"unknown IDX split {split!r}; accepted: {sorted(IDX_FILENAMES)}")
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"manual_dir {directory} is not a directory")
    images_stem, labels_stem = IDX_FILENAMES[split]
    images_path = _find_idx_file(directory, images_stem)
    labels_path = _find_idx_file(directory, labels_stem)
    images = read_idx(images_path, expected_ndim=3)
    labels = read_idx(labels_path, expected_ndim=1)
    if images.shape[0] != labels.shape[0]:
        raise IdxFormatError(
            f"{images_path} holds {images.shape[0]} images but {labels_path} holds "
            f"{labels.shape[0]} labels"
        )
    if num_classes is not None:
        _check_label_range(labels_path, labels, num_classes)
    return images[..., np.newaxis].astype(np.uint8), labels.astype(np.int64)
