"""What identifies a loaded dataset, and the check that a resumed run trains on the same data.

A run saves its dataset's class names (in label order), split sizes and a digest of each split's
content in `dataset.json`. The digests are cheap: for image folders they cover the sorted file
list with each file's size and modification time (no image is read for it); for in-memory data
(the embedded sample, IDX files) the image and label arrays; for TFDS datasets the builder's
name and version. Each digest is taken after validation and test are carved out, so a different
carve shows as well.

`check_same_data(saved, loaded)` compares a saved `dataset.json` with the data loaded now and
raises a `DataError` that says what changed: resuming on other data would continue training with
labels that mean different classes, or on other examples, without any error.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from recipes.train.errors import DataError

if TYPE_CHECKING:
    from recipes.data.datasets import DatasetInfo


def _new_digest():
    return hashlib.blake2b(digest_size=16)


def arrays_digest(images: np.ndarray, labels: np.ndarray) -> str:
    """Digest of one split held in memory: the images' shape, dtype and bytes, and the labels."""
    digest = _new_digest()
    digest.update(f"{images.dtype.str}{images.shape}".encode())
    digest.update(np.ascontiguousarray(images).data)
    digest.update(np.ascontiguousarray(labels, dtype="<i8").data)
    return digest.hexdigest()


def files_digest(paths: Sequence[str], labels: np.ndarray, root: str | os.PathLike) -> str:
    """Digest of one split of image files: each file's path below `root`, size, modification time
    and label, in split order.

    Paths are taken relative to `root`, so a dataset folder that is moved keeps its digest; one
    whose files are rewritten, touched or copied without their times does not.
    """
    prefix = os.path.join(os.fspath(root), "")
    digest = _new_digest()
    for path, label in zip(paths, labels, strict=True):
        path = str(path)
        stat = os.stat(path)
        relative = path[len(prefix) :] if path.startswith(prefix) else path
        digest.update(f"{relative}\0{stat.st_size}\0{stat.st_mtime_ns}\0{int(label)}\n".encode())
    return digest.hexdigest()


def text_digest(*parts: Any) -> str:
    """Digest of a few values written as text (a TFDS builder's name, version and carve)."""
    digest = _new_digest()
    for part in parts:
        digest.update(f"{part}\0".encode())
    return digest.hexdigest()


def _quoted(names: Sequence[str]) -> str:
    return ", ".join(repr(name) for name in names)


def _class_changes(saved: Sequence[str], loaded: Sequence[str]) -> str:
    added = [name for name in loaded if name not in saved]
    removed = [name for name in saved if name not in loaded]
    if len(added) == len(removed) == 1 and len(saved) == len(loaded):
        return f"renamed {removed[0]!r} -> {added[0]!r}"
    changes = []
    if added:
        changes.append(f"added {_quoted(added)}")
    if removed:
        changes.append(f"removed {_quoted(removed)}")
    if not changes:
        changes.append(f"same classes in another label order: {list(saved)} -> {list(loaded)}")
    return "; ".join(changes)


def _size_changes(saved: Mapping[str, int], loaded: Mapping[str, int]) -> str:
    return ", ".join(
        f"{split} {saved.get(split, 'none')} -> {loaded.get(split, 'none')}"
        for split in sorted(set(saved) | set(loaded))
        if saved.get(split) != loaded.get(split)
    )


def data_changes(saved: Mapping[str, Any], loaded: DatasetInfo) -> list[str]:
    """What differs between a saved `dataset.json` and the data loaded now, one phrase per kind of
    change; empty when they agree.

    A `dataset.json` written before fingerprints were saved has no content digests: its class
    names and split sizes are compared, which is all it holds.
    """
    folder = loaded.source == "folder"
    changes = []
    saved_classes = list(saved.get("class_names", loaded.class_names))
    if saved_classes != list(loaded.class_names):
        what = "class folders" if folder else "class names"
        changes.append(f"{what} changed: {_class_changes(saved_classes, loaded.class_names)}")
    saved_shape = list(saved.get("image_shape", loaded.image_shape))
    if saved_shape != list(loaded.image_shape):
        changes.append(
            f"image shape changed: {saved_shape} -> {list(loaded.image_shape)}"
            + (" (a folder of gray files now loads with one channel)" * folder)
        )
    saved_sizes = dict(saved.get("split_sizes", loaded.split_sizes))
    if saved_sizes != dict(loaded.split_sizes):
        changes.append(f"split sizes changed: {_size_changes(saved_sizes, loaded.split_sizes)}")
    saved_digests = saved.get("fingerprint") or {}
    differing = [
        split
        for split in sorted(set(saved_digests) & set(loaded.fingerprint))
        if saved_digests[split] != loaded.fingerprint[split]
    ]
    if differing:
        what = (
            "the files changed (names, sizes or modification times)"
            if folder
            else "the images or labels changed"
        )
        changes.append(f"{what} in the {', '.join(differing)} split{'s' * (len(differing) > 1)}")
    return changes


def check_same_data(saved: Mapping[str, Any], loaded: DatasetInfo) -> None:
    """Refuses to continue a run on data other than the data it started with.

    Args:
        saved: the run's `dataset.json` (a `DatasetInfo.to_dict()`).
        loaded: the dataset loaded now for the resumed run.

    Raises:
        DataError: saying what changed (classes, split sizes, content).
    """
    changes = data_changes(saved, loaded)
    if changes:
        raise DataError(
            f"the dataset {loaded.name!r} is not the one this run started with: "
            f"{'; '.join(changes)}. Resuming would continue training on other data (labels that "
            "mean other classes, or other examples); restore the data as it was, or start a new "
            "run in another --out-dir"
        )
