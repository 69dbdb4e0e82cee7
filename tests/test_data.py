"""load_dataset: the embedded sample, IDX mirror, splits, preprocessing, class balance."""

import numpy as np
import pytest
import tensorflow as tf

from layers import MeanImageSubtraction
from recipes.data.augment import build_augmentation
from recipes.data.datasets import _tfds_name, assign_splits, draw_seed, load_dataset
from tests.conftest import write_image_folder
from tests.test_idx import write_split
from tests.test_image_folder import make_folder


def collect(ds):
    xs, ys = zip(*((x.numpy(), y.numpy()) for x, y in ds), strict=True)
    return np.concatenate(xs), np.concatenate(ys)


def test_sample_dataset_is_stratified_and_small():
    datasets, info = load_dataset("sample", batch_size=500, shuffle=False)
    assert info.source == "sample" and info.num_classes == 10
    assert info.image_shape == (28, 28, 1)
    assert info.class_names[0] == "T-shirt/top"
    assert info.split_sizes == {"train": 3600, "validation": 400, "test": 1000}
    for split, per_class in (("train", 360), ("validation", 40), ("test", 100)):
        x, y = collect(datasets[split])
        assert np.bincount(y, minlength=10).tolist() == [per_class] * 10, split
        assert x.dtype == np.float32 and x.min() >= 0.0 and x.max() <= 1.0


def test_single_split_returns_dataset():
    ds, _ = load_dataset("sample", "test", batch_size=100)
    x, y = next(iter(ds))
    assert x.shape == (100, 28, 28, 1) and y.shape == (100,)


def test_splits_are_disjoint_and_deterministic_by_seed():
    def validation_images(seed):
        ds, _ = load_dataset("sample", "validation", seed=seed, batch_size=400)
        return collect(ds)[0]

    train, _ = load_dataset("sample", "train", seed=3, batch_size=3600, shuffle=False)
    a, b, c = validation_images(3), validation_images(3), validation_images(4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    train_rows = {row.tobytes() for row in collect(train)[0]}
    assert not any(row.tobytes() in train_rows for row in a)


def test_assign_splits_stratified():
    labels = np.repeat(np.arange(4), 50)
    assignment = assign_splits(200, {"validation": 0.1, "test": 0.2}, seed=0, labels=labels)
    for c in range(4):
        members = assignment[labels == c]
        assert (members == "validation").sum() == 5 and (members == "test").sum() == 10
    with pytest.raises(ValueError, match="leave nothing for training"):
        assign_splits(10, {"validation": 0.5, "test": 0.5}, seed=0)
    with pytest.raises(ValueError, match=r"must be in \(0, 1\)"):
        assign_splits(10, {"validation": -0.1}, seed=0)


def test_training_shuffle_is_seeded():
    def first_labels(seed):
        ds, _ = load_dataset("sample", "train", seed=seed, batch_size=64)
        return next(iter(ds))[1].numpy()

    np.testing.assert_array_equal(first_labels(1), first_labels(1))
    assert not np.array_equal(first_labels(1), first_labels(2))


def test_a_resumed_pipeline_draws_anew_and_keeps_the_splits():
    """A run resumed after epoch N shuffles and augments from a seed of its own, the same at
    every resume from N, instead of repeating the draws of its first session; a new run keeps
    the run's seed, and the carved splits never move."""

    def first_epoch_of(first_epoch=None, split="train"):
        extra = {} if first_epoch is None else {"first_epoch": first_epoch}
        ds, _ = load_dataset(
            "sample", split, seed=2, batch_size=400, augment="flip_h,crop,erase", **extra
        )
        return collect(ds)

    new_run, resumed = first_epoch_of(), first_epoch_of(5)
    for a, b in zip(first_epoch_of(0), new_run, strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(first_epoch_of(5), resumed, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(new_run[1], resumed[1])  # another order
    assert not np.array_equal(new_run[0], resumed[0])
    assert not np.array_equal(first_epoch_of(6)[1], resumed[1])
    for a, b in zip(first_epoch_of(0, "validation"), first_epoch_of(5, "validation"), strict=True):
        np.testing.assert_array_equal(a, b)
    assert draw_seed(2, 0) == 2 and draw_seed(2, 5) not in (2, draw_seed(2, 6), draw_seed(3, 5))


def test_mean_image_and_per_channel_preprocessing():
    ds, info = load_dataset("sample", "train", preprocessing="mean_image", batch_size=3600)
    x, _ = collect(ds)
    assert info.statistics["mean_image"].shape == (28, 28, 1)
    np.testing.assert_allclose(x.mean(axis=0), 0.0, atol=1e-5)
    ds, info = load_dataset("sample", "train", preprocessing="per_channel", batch_size=3600)
    x, _ = collect(ds)
    assert abs(x.mean()) < 1e-4 and abs(x.std() - 1.0) < 1e-3


def test_dataset_statistics_agree_with_mean_image_subtraction_adapted_on_the_split(tmp_path):
    # One implementation serves both: MeanImageSubtraction adapted on the scaled training split
    # learns load_dataset's statistics and centers the images as its "mean_image" pipeline does.
    rng = np.random.default_rng(0)
    # Channels of different means and spreads, so that a mix-up of channels shows.
    images = rng.normal([60, 120, 200], [10, 30, 20], size=(2, 10, 6, 5, 3)).clip(0, 255)
    write_image_folder(tmp_path, dict(zip("ab", images.astype(np.uint8), strict=True)))

    def load(preprocessing):
        ds, info = load_dataset(
            str(tmp_path), "train", preprocessing=preprocessing, batch_size=4, shuffle=False
        )
        return collect(ds)[0], info.statistics

    scaled, _ = load("scale")
    centered, statistics = load("mean_image")
    standardized, channel_statistics = load("per_channel")
    mean_image, mean_colour = MeanImageSubtraction(), MeanImageSubtraction(per_channel=True)
    for layer in (mean_image, mean_colour):
        layer.adapt(tf.data.Dataset.from_tensor_slices(scaled).batch(4))
    np.testing.assert_allclose(mean_image.mean.numpy(), statistics["mean_image"], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(mean_image(scaled)), centered, atol=1e-6)
    np.testing.assert_allclose(
        mean_colour.mean.numpy().ravel(), channel_statistics["channel_mean"], rtol=1e-6
    )
    np.testing.assert_allclose(
        channel_statistics["channel_std"], scaled.std(axis=(0, 1, 2), dtype=np.float64), rtol=1e-5
    )
    np.testing.assert_allclose(
        standardized,
        (np.asarray(mean_colour(scaled)) / channel_statistics["channel_std"]),
        atol=1e-5,
    )


def test_one_hot_labels():
    ds, _ = load_dataset("sample", "test", one_hot=True, batch_size=10)
    y = next(iter(ds))[1].numpy()
    assert y.shape == (10, 10) and np.all(y.sum(axis=1) == 1.0)


def test_label_shuffle_balances_an_imbalanced_set(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.array([0] * 90 + [1] * 10, dtype=np.uint8)
    images = rng.integers(0, 256, size=(100, 28, 28), dtype=np.uint8)
    write_split(tmp_path, "train", images, labels)
    write_split(tmp_path, "test", images[:10], labels[:10])
    ds, info = load_dataset(
        "mnist", "train", manual_dir=tmp_path, balance_classes=True, batch_size=1000, seed=0
    )
    _, y = collect(ds)
    assert len(y) == info.split_sizes["train"]
    assert 0.35 < np.mean(y == 1) < 0.65


def test_augment_applies_to_training_only():
    def zero_images(images, labels):
        return tf.zeros_like(images), labels

    datasets, _ = load_dataset("sample", ("train", "test"), augment=zero_images, batch_size=50)
    assert float(tf.reduce_max(next(iter(datasets["train"]))[0])) == 0.0
    assert float(tf.reduce_max(next(iter(datasets["test"]))[0])) > 0.0


def test_training_batches_are_scaled_augmented_then_normalized_in_one_map():
    spec, seed = "flip_h,crop,erase", 4
    options = {"batch_size": 500, "seed": seed}
    fused, info = load_dataset(
        "sample", "train", augment=spec, preprocessing="per_channel", **options
    )
    scaled, _ = load_dataset("sample", "train", preprocessing="scale", **options)
    aug = build_augmentation(spec, info.image_shape, seed=seed)
    mean, scale = info.statistics["channel_mean"], info.statistics["channel_scale"]
    staged = aug.apply_to(scaled).map(lambda x, y: ((x - mean) / scale, y))
    for _ in range(2):  # fresh draws in the second epoch, the same in both pipelines
        np.testing.assert_array_equal(collect(fused)[0], collect(staged)[0])
    assert fused.options().threading.max_intra_op_parallelism == 1


def test_training_batches_draw_a_flip_and_a_crop_offset_per_image():
    """Through the loader's one map call, every image of a batch is its own (mirrored or not)
    original shifted by its own offset: the randomness is per image, not per batch."""
    pad, options = 2, {"batch_size": 64, "seed": 3}
    augmented, info = load_dataset("sample", "train", augment=f"flip_h,crop:{pad}", **options)
    plain, _ = load_dataset("sample", "train", **options)  # the same shuffled order
    height, width, _ = info.image_shape
    outputs, originals = next(iter(augmented))[0].numpy(), next(iter(plain))[0].numpy()
    draws = []
    for out, x in zip(outputs, originals, strict=True):
        matches = [
            (mirrored, dy, dx)
            for mirrored in (False, True)
            for dy in range(2 * pad + 1)
            for dx in range(2 * pad + 1)
            if np.array_equal(
                out,
                np.pad(x[:, ::-1] if mirrored else x, [(pad, pad), (pad, pad), (0, 0)])[
                    dy : dy + height, dx : dx + width
                ],
            )
        ]
        assert matches, "every output is a window of its padded, possibly mirrored, original"
        draws.append(matches[0])
    assert {mirrored for mirrored, _, _ in draws} == {False, True}
    assert len({(dy, dx) for _, dy, dx in draws}) > 5


def test_resize():
    ds, info = load_dataset("sample", "test", image_size=(32, 32), batch_size=8)
    assert info.image_shape == (32, 32, 1)
    assert next(iter(ds))[0].shape == (8, 32, 32, 1)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"split": "dev"}, "unknown split 'dev'"),
        ({"preprocessing": "whiten"}, "unknown preprocessing 'whiten'"),
        ({"batch_size": 0}, "batch_size must be a positive integer"),
        ({"first_epoch": -1}, r"`first_epoch` must be an integer >= 0. Received: first_epoch=-1"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        load_dataset("sample", **kwargs)


@pytest.mark.parametrize(
    ("typo", "suggestion"), [("fashon_mnist", "fashion_mnist"), ("cifar-1O", "cifar10")]
)
def test_unknown_dataset_suggests_the_closest_name(typo, suggestion):
    with pytest.raises(ValueError, match=f"Unknown dataset '{typo}'. Did you mean '{suggestion}'"):
        load_dataset(typo)


@pytest.mark.parametrize("spelling", ["Sample", "SAMPLE", " sample "])
def test_dataset_names_are_matched_in_any_spelling(spelling):
    _, info = load_dataset(spelling, "test", batch_size=1000)
    assert info.source == "sample" and info.split_sizes["test"] == 1000


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [("Fashion-MNIST", "fashion_mnist"), ("CIFAR-10", "cifar10"), ("TF Flowers", "tf_flowers")],
)
def test_tfds_names_resolve_to_the_builder_name(spelling, canonical):
    assert _tfds_name(spelling) == canonical


def test_folder_paths_are_never_normalized(tmp_path, monkeypatch):
    # Folders spelled like dataset names stay folders, and their names are used as written.
    monkeypatch.chdir(tmp_path)
    for folder in ("Sample", "MNIST"):
        make_folder(tmp_path / folder, {"a": 10, "b": 10})
        _, info = load_dataset(folder, "train", batch_size=4)
        assert info.source == "folder" and info.class_names == ("a", "b")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_dataset(str(tmp_path / "sample"))


def test_manual_dir_only_for_mnist_family(tmp_path):
    with pytest.raises(ValueError, match="manual_dir .* not for dataset 'cifar10'"):
        load_dataset("cifar10", manual_dir=tmp_path)


def test_manual_dir_names_in_any_spelling(tmp_path):
    labels = np.arange(20, dtype=np.uint8) % 10
    write_split(tmp_path, "train", np.zeros((20, 28, 28), np.uint8), labels)
    write_split(tmp_path, "test", np.zeros((10, 28, 28), np.uint8), labels[:10])
    _, info = load_dataset("Fashion-MNIST", "test", manual_dir=tmp_path)
    assert info.source == "idx" and info.class_names[0] == "T-shirt/top"


@pytest.mark.slow
def test_full_fashion_mnist_offline_mirror(fashion_mnist_dir):
    datasets, info = load_dataset("fashion_mnist", manual_dir=fashion_mnist_dir, batch_size=2000)
    assert info.source == "idx"
    assert info.split_sizes == {"train": 54000, "validation": 6000, "test": 10000}
    _, y = collect(datasets["test"])
    assert np.bincount(y).tolist() == [1000] * 10
