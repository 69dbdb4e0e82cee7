"""Data that would make a wrong or lost run is refused, or reported, before training: a changed
dataset under --resume, empty splits, IDX labels out of range, images that do not decode,
standardization that would blow up, and settings that are legal but probably not meant."""

import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from recipes.data import datasets
from recipes.data.datasets import load_dataset
from recipes.data.fingerprint import check_same_data
from recipes.data.idx import IdxFormatError
from recipes.data.image_folder import ImageFolderError
from recipes.train.errors import DataError, run_command
from tests.conftest import run_recipe, write_image_folder
from tests.test_idx import write_split

FOLDER_RUN = ("--epochs", "1", "--batch-size", "8", "--lr", "0.01", "--verbose", "0")


def coloured_images(count: int, colour, size: int = 8, seed: int = 0) -> np.ndarray:
    """`count` noisy images around one RGB colour: classes that a small model can tell apart."""
    rng = np.random.default_rng(seed)
    return rng.normal(colour, 20, size=(count, size, size, 3)).clip(0, 255).astype(np.uint8)


def three_class_folder(root: Path, per_class: int = 12) -> Path:
    colours = {"a": [200, 40, 40], "b": [40, 200, 40], "c": [40, 40, 200]}
    return write_image_folder(
        root,
        {
            name: coloured_images(per_class, colour, seed=i)
            for i, (name, colour) in enumerate(colours.items())
        },
    )


def snapshot(directory: Path) -> dict[str, bytes]:
    return {
        str(path.relative_to(directory)): path.read_bytes()
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


def resume(dataset: Path, out_dir: Path) -> dict:
    return run_recipe(
        "mlp_fashion_mnist",
        "--dataset",
        str(dataset),
        *FOLDER_RUN,
        "--out-dir",
        str(out_dir),
        "--resume",
    )


# --- 1. the dataset's fingerprint, checked on --resume -------------------------------------------


def test_fingerprint_is_stable_and_follows_the_files(tmp_path):
    root = three_class_folder(tmp_path / "ds")
    _, first = load_dataset(str(root), "train", image_size=(8, 8))
    _, again = load_dataset(str(root), "train", image_size=(8, 8))
    assert set(first.fingerprint) == {"train", "validation", "test"}
    assert first.fingerprint == again.fingerprint
    assert json.loads(json.dumps(first.to_dict()))["fingerprint"] == first.fingerprint
    # A moved folder is the same data.
    moved = root.rename(tmp_path / "moved")
    _, after_move = load_dataset(str(moved), "train", image_size=(8, 8))
    assert after_move.fingerprint == first.fingerprint
    # Another carve of the same files is other data for the splits it changes.
    _, reseeded = load_dataset(str(moved), "train", image_size=(8, 8), seed=1)
    assert reseeded.split_sizes == first.split_sizes
    with pytest.raises(
        DataError, match="the files changed .* in the test, train, validation splits"
    ):
        check_same_data(first.to_dict(), reseeded)


def test_resume_refuses_changed_data_before_writing_anything(tmp_path):
    dataset = three_class_folder(tmp_path / "ds")
    run_dir = tmp_path / "run"
    run_recipe(
        "mlp_fashion_mnist", "--dataset", str(dataset), *FOLDER_RUN, "--out-dir", str(run_dir)
    )
    saved = snapshot(run_dir)
    assert json.loads((run_dir / "dataset.json").read_text())["fingerprint"]

    def add_class():
        write_image_folder(dataset, {"zebra": coloured_images(12, [128, 128, 128])})

    def rename_class():
        (dataset / "c").rename(dataset / "kitten")

    def add_image():
        (dataset / "a" / "extra.png").write_bytes(
            tf.io.encode_png(coloured_images(1, [0, 0, 0])[0]).numpy()
        )

    def rewrite_image():
        path = dataset / "b" / "3.png"
        path.write_bytes(tf.io.encode_png(coloured_images(1, [90, 90, 90])[0]).numpy())
        stat = path.stat()
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))

    cases = [
        (add_class, r"class folders changed: added 'zebra'"),
        (rename_class, r"class folders changed: renamed 'c' -> 'kitten'"),
        (add_image, r"split sizes changed: train 30 -> 31"),
        (
            rewrite_image,
            r"the files changed \(names, sizes or modification times\) in the \w+ split[;.]",
        ),
    ]
    original = shutil.copytree(dataset, tmp_path / "original")  # copy2 keeps modification times
    for change, message in cases:
        change()
        with pytest.raises(DataError, match=message):
            resume(dataset, run_dir)
        assert snapshot(run_dir) == saved, change.__name__
        shutil.rmtree(dataset)
        shutil.copytree(original, dataset)

    # The same data resumes, also from a dataset.json written before fingerprints were saved.
    legacy = json.loads((run_dir / "dataset.json").read_text())
    del legacy["fingerprint"]
    (run_dir / "dataset.json").write_text(json.dumps(legacy))
    metrics = resume(dataset, run_dir)
    assert metrics["epochs"] == 1 and math.isfinite(metrics["test_loss"])
    assert json.loads((run_dir / "dataset.json").read_text())["fingerprint"]


def test_a_legacy_dataset_file_still_guards_classes_and_split_sizes(tmp_path):
    _, info = load_dataset("sample", "test")
    legacy = {key: value for key, value in info.to_dict().items() if key != "fingerprint"}
    check_same_data(legacy, info)
    renamed = {**legacy, "class_names": ["T-shirt", *legacy["class_names"][1:]]}
    with pytest.raises(DataError, match="class names changed: renamed 'T-shirt' -> 'T-shirt/top'"):
        check_same_data(renamed, info)
    resized = {**legacy, "split_sizes": {**legacy["split_sizes"], "train": 3500}}
    with pytest.raises(DataError, match="split sizes changed: train 3500 -> 3600"):
        check_same_data(resized, info)
    # A run on a gray folder loaded as RGB before gray folders got one channel.
    rgb = {**legacy, "image_shape": [28, 28, 3]}
    with pytest.raises(DataError, match=r"image shape changed: \[28, 28, 3\] -> \[28, 28, 1\]"):
        check_same_data(rgb, info)


def test_idx_fingerprint_follows_the_images_and_labels(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(100, 28, 28), dtype=np.uint8)
    labels = np.arange(100, dtype=np.uint8) % 10
    write_split(tmp_path, "train", images, labels)
    write_split(tmp_path, "test", images[:20], labels[:20])
    _, before = load_dataset("mnist", "test", manual_dir=tmp_path)
    labels[[0, 1]] = labels[[1, 0]]  # two training labels swapped: same sizes, other data
    write_split(tmp_path, "train", images, labels)
    _, after = load_dataset("mnist", "test", manual_dir=tmp_path)
    assert after.split_sizes == before.split_sizes
    assert after.fingerprint["test"] == before.fingerprint["test"]
    with pytest.raises(DataError, match="the images or labels changed in the (train|validation)"):
        check_same_data(before.to_dict(), after)


# --- 2. standardization of a channel that is constant in training --------------------------------


def constant_channel_folder(root: Path) -> Path:
    """Class by the red channel; green is noise; blue is 100 everywhere in training and varies by
    up to two grey levels in the test split."""
    rng = np.random.default_rng(0)
    splits = {"train": 40, "test": 10}
    for split, count in splits.items():
        classes = {}
        for name, red in (("dark", 60), ("bright", 190)):
            images = coloured_images(count, [red, 128, 100], seed=rng.integers(1000))
            images[..., 2] = (
                100 if split == "train" else rng.integers(98, 103, size=images.shape[:3])
            )
            classes[name] = images
        write_image_folder(root / split, classes)
    return root


def test_a_constant_training_channel_is_centred_but_not_divided(tmp_path):
    root = constant_channel_folder(tmp_path / "ds")
    pipelines, info = load_dataset(
        str(root),
        ("train", "test"),
        image_size=(8, 8),
        preprocessing="per_channel",
        batch_size=100,
        shuffle=False,
    )
    statistics = info.statistics
    assert statistics["channel_std"][2] == 0.0 and statistics["channel_scale"][2] == 1.0
    np.testing.assert_allclose(statistics["channel_scale"][:2], statistics["channel_std"][:2])
    test_images = np.concatenate([x.numpy() for x, _ in pipelines["test"]])
    # Two grey levels stay two grey levels, instead of being divided by a std of ~0.
    assert np.abs(test_images[..., 2]).max() <= 2.5 / 255
    train_images = np.concatenate([x.numpy() for x, _ in pipelines["train"]])
    np.testing.assert_allclose(
        train_images[..., :2].std(axis=(0, 1, 2), dtype=np.float64), 1.0, rtol=1e-6
    )


def test_per_channel_run_with_a_constant_channel_has_a_sane_test_loss(tmp_path):
    root = constant_channel_folder(tmp_path / "ds")
    metrics = run_recipe(
        "mlp_fashion_mnist",
        "--dataset",
        str(root),
        "--preprocessing",
        "per_channel",
        "--image-size",
        "8",
        "--epochs",
        "3",
        "--batch-size",
        "16",
        "--verbose",
        "0",
        "--out-dir",
        str(tmp_path / "run"),
    )
    assert math.isfinite(metrics["test_loss"]) and metrics["test_loss"] < 0.5
    assert metrics["test_accuracy"] == 1.0


# --- 3. every evaluated split has examples -------------------------------------------------------


def tiny_class_folder(root: Path, classes: int, per_class: int) -> Path:
    images = np.zeros((per_class, 2, 2, 3), np.uint8)
    return write_image_folder(root, {f"class{i:03d}": images for i in range(classes)})


def test_many_small_classes_are_refused_before_training(tmp_path):
    root = tiny_class_folder(tmp_path / "ds", 300, 2)
    with pytest.raises(DataError) as error:
        load_dataset(str(root), image_size=(2, 2))
    assert str(error.value) == (
        "no examples in the validation and test splits: the carved shares (validation 0.1 and "
        "test 0.1) are taken from each class and rounded, which takes none from a class of fewer "
        "than 6 examples, and all 300 classes ('class000', 'class001', 'class002', ...) have "
        "fewer (the largest has 2; 600 training examples in all). To fix: raise "
        "validation_fraction (--validation-fraction), raise test_fraction, add examples (at "
        "least 6 per class) or provide the splits yourself as sub-folders train/, validation/ "
        "and test/, each holding the class folders"
    )
    # Only the splits asked for must have examples.
    _, info = load_dataset(str(root), "train", image_size=(2, 2))
    assert info.split_sizes == {"train": 600, "validation": 0, "test": 0}


def test_the_runner_refuses_empty_splits_in_one_line_without_writing(tmp_path, capsys):
    root = tiny_class_folder(tmp_path / "ds", 50, 1)
    run_dir = tmp_path / "run"
    argv = ["--dataset", str(root), *FOLDER_RUN, "--out-dir", str(run_dir)]
    code = run_command(lambda: run_recipe("mlp_fashion_mnist", *argv), argv)
    error = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert error[-1].startswith("error: no examples in the validation and test splits:")
    assert "all 50 classes ('class000', 'class001', 'class002', ...) have fewer" in error[-1]
    assert not (run_dir / "config.json").exists() and not (run_dir / "model.keras").exists()


def test_an_empty_provided_split_is_named(tmp_path):
    three_class_folder(tmp_path / "train", per_class=4)
    (tmp_path / "test").mkdir()
    with pytest.raises(
        DataError,
        match="no examples in the test split: the folder's own test split is empty. To fix: put "
        "images in the test sub-folder's class folders, or remove the sub-folder",
    ):
        load_dataset(str(tmp_path), image_size=(8, 8), validation_fraction=0.5)


def test_a_stratified_carve_that_takes_every_training_example_is_refused():
    # The sample's 400 training images per class all go to validation at a share this close to 1.
    with pytest.raises(
        DataError,
        match="no examples in the train split: carving validation from the 4000 training "
        "examples, each class's share rounded, left none for training",
    ):
        load_dataset("sample", validation_fraction=0.9995)


# --- 4. IDX labels outside the class range --------------------------------------------------------


def test_idx_labels_outside_the_classes_are_refused_naming_the_file(tmp_path):
    images = np.zeros((30, 28, 28), np.uint8)
    labels = np.arange(30, dtype=np.uint8) % 10
    labels[[4, 9]] = 10
    write_split(tmp_path, "train", images, labels)
    write_split(tmp_path, "test", images[:10], labels[:10] % 10)
    with pytest.raises(
        IdxFormatError, match=r"train-labels-idx1-ubyte.gz: label 10 outside 0..9 \(2 of 30"
    ):
        load_dataset("fashion_mnist", manual_dir=tmp_path)


# --- 5. images whose header is valid but whose content does not decode -----------------------------


def corrupt_jpeg_folder(root: Path) -> Path:
    for name, colour in (("a", [200, 40, 40]), ("b", [40, 40, 200])):
        (root / name).mkdir(parents=True)
        for i, image in enumerate(coloured_images(10, colour, size=32)):
            (root / name / f"{i}.jpg").write_bytes(tf.io.encode_jpeg(image).numpy())
    path = root / "b" / "7.jpg"
    data = path.read_bytes()
    noise = np.random.default_rng(0).integers(0, 256, len(data) - 300, dtype=np.uint8)
    path.write_bytes(data[:300] + noise.tobytes())  # the JPEG header survives
    return path


def test_an_image_that_does_not_decode_is_named_when_loading(tmp_path):
    broken = corrupt_jpeg_folder(tmp_path / "ds")
    with pytest.raises(ImageFolderError, match=f"{broken}: cannot be decoded as an image"):
        load_dataset(
            str(tmp_path / "ds"), image_size=(8, 8), validation_fraction=0.2, test_fraction=0.2
        )


def test_a_split_too_large_to_cache_is_checked_by_a_pass_of_its_own(tmp_path, monkeypatch):
    broken = corrupt_jpeg_folder(tmp_path / "ds")
    monkeypatch.setattr(datasets, "MAX_CACHE_BYTES", 0)
    with pytest.raises(ImageFolderError, match=f"{broken}: cannot be decoded as an image"):
        load_dataset(
            str(tmp_path / "ds"), image_size=(8, 8), validation_fraction=0.2, test_fraction=0.2
        )
    broken.unlink()
    pipelines, info = load_dataset(str(tmp_path / "ds"), image_size=(8, 8), batch_size=64)
    assert sum(len(y) for _, y in pipelines["train"]) == info.split_sizes["train"] == 15


# --- 6. warnings for questionable but legal settings ----------------------------------------------


def test_questionable_settings_are_warned_about_in_one_line_each(capsys):
    run_recipe(
        "mlp_fashion_mnist",
        "--dataset",
        "sample",
        "--batch-size",
        "4000",
        "--epochs",
        "2",
        "--warmup-epochs",
        "2",
        "--dry-run",
    )
    warnings = [
        line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")
    ]
    assert warnings == [
        "warning: --batch-size 4000 is larger than the training set (3600 examples): every epoch "
        "is a single step on a batch of 3600",
        "warning: --warmup-epochs 2 >= --epochs 2: the learning rate rises for the whole run and "
        "never trains at the schedule's --lr",
    ]
