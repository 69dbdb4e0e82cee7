"""A folder of images, one sub-folder per class: the user's own small dataset."""

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from recipes.data.datasets import load_dataset
from recipes.data.image_folder import (
    ImageFolderError,
    check_decodable,
    image_channels,
    scan_image_folder,
    undecodable_images,
)


def write_image(path, value: int, size=(12, 10), channels=3) -> None:
    image = np.full((*size, channels), value, dtype=np.uint8)
    encode = tf.io.encode_png if path.suffix == ".png" else tf.io.encode_jpeg
    path.write_bytes(encode(tf.constant(image)).numpy())


def make_folder(root, counts: dict[str, int], suffix=".png", channels=3):
    for index, (class_name, count) in enumerate(counts.items()):
        (root / class_name).mkdir(parents=True)
        for i in range(count):
            write_image(root / class_name / f"{i}{suffix}", 40 + 150 * index, channels=channels)
    return root


def test_folder_pool_is_split_and_decoded(tmp_path):
    root = make_folder(tmp_path / "ds", {"cats": 20, "dogs": 20})
    datasets, info = load_dataset(str(root), batch_size=64, image_size=(16, 16), seed=0)
    assert info.source == "folder" and info.class_names == ("cats", "dogs")
    assert info.image_shape == (16, 16, 3)
    assert info.split_sizes == {"train": 32, "validation": 4, "test": 4}
    for split in ("train", "validation", "test"):
        x, y = next(iter(datasets[split]))
        assert x.shape[1:] == (16, 16, 3)
        # Each class was drawn in its own grey level: labels must follow the pixels.
        expected = np.where(x.numpy().mean(axis=(1, 2, 3)) > 0.5, 1, 0)
        np.testing.assert_array_equal(y.numpy(), expected)


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_a_folder_of_gray_images_loads_with_one_channel(tmp_path, suffix):
    root = make_folder(tmp_path / "gray", {"a": 10, "b": 10}, suffix=suffix, channels=1)
    datasets, info = load_dataset(str(root), image_size=(8, 8), seed=0)
    assert info.image_shape == (8, 8, 1)
    x, _ = next(iter(datasets["train"]))
    assert x.shape[1:] == (8, 8, 1)
    # One colour file makes the folder RGB: gray files are then repeated over three channels.
    write_image(root / "a" / f"colour{suffix}", 90, channels=3)
    assert image_channels([str(p) for p in sorted(root.rglob(f"*{suffix}"))]) == 3
    _, info = load_dataset(str(root), image_size=(8, 8), seed=0)
    assert info.image_shape == (8, 8, 3)


def test_folder_with_split_directories(tmp_path):
    make_folder(tmp_path / "train", {"a": 6, "b": 6}, suffix=".jpg")
    make_folder(tmp_path / "test", {"a": 2, "b": 3})
    _, info = load_dataset(str(tmp_path), image_size=(8, 8), validation_fraction=0.5)
    assert info.split_sizes == {"train": 6, "test": 5, "validation": 6}


def test_empty_class_folder(tmp_path):
    make_folder(tmp_path, {"a": 2, "b": 2})
    (tmp_path / "c").mkdir()
    with pytest.raises(ImageFolderError, match="class folder .*c holds no images"):
        scan_image_folder(tmp_path)


def test_corrupt_image(tmp_path):
    make_folder(tmp_path, {"a": 2, "b": 2})
    (tmp_path / "b" / "broken.jpg").write_bytes(b"this is not a jpeg")
    with pytest.raises(ImageFolderError, match="broken.jpg: not a valid JPG image"):
        load_dataset(str(tmp_path))


def test_layout_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_dataset(str(tmp_path / "missing"))
    (tmp_path / "flat").mkdir()
    write_image(tmp_path / "flat" / "x.png", 1)
    with pytest.raises(ImageFolderError, match="no class sub-folders"):
        scan_image_folder(tmp_path / "flat")
    make_folder(tmp_path / "one", {"only": 2})
    with pytest.raises(ImageFolderError, match="a classifier needs at least two"):
        scan_image_folder(tmp_path / "one")
    make_folder(tmp_path / "mismatch" / "train", {"a": 2, "b": 2})
    make_folder(tmp_path / "mismatch" / "test", {"a": 1, "z": 1})
    with pytest.raises(ImageFolderError, match=r"class folders \['z'\]"):
        scan_image_folder(tmp_path / "mismatch")


def test_files_with_a_valid_header_that_do_not_decode_are_all_named(tmp_path):
    make_folder(tmp_path, {"a": 3, "b": 3}, suffix=".jpg")
    broken = [tmp_path / "a" / "1.jpg", tmp_path / "b" / "2.jpg"]
    for path in broken:
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])  # header intact, the rest cut off
    paths = sorted(str(p) for p in tmp_path.rglob("*.jpg"))
    assert undecodable_images(paths) == [str(p) for p in broken]
    # The scan's header check lets them through; decoding names them all.
    scan_image_folder(tmp_path)
    with pytest.raises(
        ImageFolderError,
        match=rf"{broken[0]}: cannot be decoded .* \(2 files fail; the others: {broken[1]}\)",
    ):
        check_decodable(paths)
    check_decodable([p for p in paths if Path(p) not in broken])
