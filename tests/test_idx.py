"""The IDX reader against files written here by an independent writer (struct + gzip)."""

import gzip
import struct

import numpy as np
import pytest

from recipes.data.idx import IdxFormatError, load_idx_split, read_idx


def write_idx(path, array: np.ndarray, compress: bool = True, type_code: int = 0x08) -> None:
    header = struct.pack(">BBBB", 0, 0, type_code, array.ndim)
    header += b"".join(struct.pack(">I", d) for d in array.shape)
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    if compress:
        payload = gzip.compress(payload)
    path.write_bytes(payload)


def write_split(directory, split: str, images: np.ndarray, labels: np.ndarray) -> None:
    prefix = "train" if split == "train" else "t10k"
    write_idx(directory / f"{prefix}-images-idx3-ubyte.gz", images)
    write_idx(directory / f"{prefix}-labels-idx1-ubyte.gz", labels)


@pytest.mark.parametrize("compress", [True, False])
def test_round_trip_uint8(tmp_path, compress):
    array = np.random.default_rng(0).integers(0, 256, size=(7, 5, 3), dtype=np.uint8)
    write_idx(tmp_path / "a.idx", array, compress=compress)
    np.testing.assert_array_equal(read_idx(tmp_path / "a.idx"), array)


def test_round_trip_other_types(tmp_path):
    floats = np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4)
    write_idx(tmp_path / "f.idx", floats, type_code=0x0D)
    np.testing.assert_array_equal(read_idx(tmp_path / "f.idx"), floats)
    ints = np.arange(-5, 5, dtype=np.int32)
    write_idx(tmp_path / "i.idx", ints, type_code=0x0C)
    np.testing.assert_array_equal(read_idx(tmp_path / "i.idx"), ints)


def test_load_split_shapes_and_types(tmp_path):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(20, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=20, dtype=np.uint8)
    write_split(tmp_path, "train", images, labels)
    x, y = load_idx_split(tmp_path, "train")
    assert x.shape == (20, 28, 28, 1) and x.dtype == np.uint8
    assert y.dtype == np.int64
    np.testing.assert_array_equal(x[..., 0], images)
    np.testing.assert_array_equal(y, labels)


def test_truncated_file(tmp_path):
    array = np.zeros((10, 4, 4), dtype=np.uint8)
    write_idx(tmp_path / "t.idx", array, compress=False)
    data = (tmp_path / "t.idx").read_bytes()
    (tmp_path / "t.idx").write_bytes(data[:-5])
    with pytest.raises(IdxFormatError, match="truncated or corrupt"):
        read_idx(tmp_path / "t.idx")


def test_truncated_gzip(tmp_path):
    write_idx(tmp_path / "t.gz", np.zeros((100, 4, 4), dtype=np.uint8))
    data = (tmp_path / "t.gz").read_bytes()
    (tmp_path / "t.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(IdxFormatError, match="cannot read or decompress"):
        read_idx(tmp_path / "t.gz")


def test_bad_magic(tmp_path):
    (tmp_path / "x.idx").write_bytes(b"\x12\x34\x08\x01" + b"\x00" * 8)
    with pytest.raises(IdxFormatError, match="bad magic number 0x12340801"):
        read_idx(tmp_path / "x.idx")


def test_wrong_dimensions(tmp_path):
    write_split(tmp_path, "train", np.zeros((3, 2, 2), np.uint8), np.zeros(3, np.uint8))
    (tmp_path / "train-labels-idx1-ubyte.gz").replace(tmp_path / "labels-backup.gz")
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros((3, 2), np.uint8))
    with pytest.raises(IdxFormatError, match="declares 2 dimensions, expected 1"):
        load_idx_split(tmp_path, "train")


def test_count_mismatch(tmp_path):
    write_split(tmp_path, "test", np.zeros((3, 2, 2), np.uint8), np.zeros(4, np.uint8))
    with pytest.raises(IdxFormatError, match="3 images but .* 4 labels"):
        load_idx_split(tmp_path, "test")


def test_missing_files_and_split(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        load_idx_split(tmp_path, "train")
    with pytest.raises(ValueError, match="unknown IDX split 'dev'"):
        load_idx_split(tmp_path, "dev")
    with pytest.raises(FileNotFoundError, match="not a directory"):
        load_idx_split(tmp_path / "nope", "train")


def test_debian_fashion_mnist(fashion_mnist_dir):
    """Debian's recompressed files: checksums differ from TFDS', content is the real dataset."""
    x_test, y_test = load_idx_split(fashion_mnist_dir, "test")
    assert x_test.shape == (10000, 28, 28, 1)
    assert np.bincount(y_test).tolist() == [1000] * 10


def test_labels_outside_the_class_range_are_refused_with_a_class_count(tmp_path):
    labels = np.array([0, 3, 9, 255, 255, 10], np.uint8)
    write_split(tmp_path, "train", np.zeros((6, 2, 2), np.uint8), labels)
    _, y = load_idx_split(tmp_path, "train")  # without a class count, any label loads
    assert y.tolist() == [0, 3, 9, 255, 255, 10]
    with pytest.raises(
        IdxFormatError,
        match=r"train-labels-idx1-ubyte.gz: labels 10, 255 outside 0..9 \(3 of 6 labels",
    ):
        load_idx_split(tmp_path, "train", num_classes=10)
    load_idx_split(tmp_path, "train", num_classes=256)
