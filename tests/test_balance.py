"""Class-balanced resampling of an imbalanced tf.data stream."""

import numpy as np
import pytest
import tensorflow as tf

from recipes.data.balance import balanced_resample

# 90 examples of class 0, 9 of class 1, 1 of class 2; the image encodes its own index.
LABELS = np.array([0] * 90 + [1] * 9 + [2], dtype="int64")
IMAGES = np.arange(len(LABELS), dtype="float32")[:, None, None, None] * np.ones((1, 2, 2, 1))


def imbalanced(label_shape=()):
    labels = LABELS.reshape(-1, *label_shape)
    dataset = tf.data.Dataset.from_tensor_slices((IMAGES.astype("float32"), labels))
    return dataset.shuffle(len(LABELS), seed=0)


def drawn(dataset, count):
    images, labels = zip(*dataset.take(count).as_numpy_iterator(), strict=True)
    return np.stack(images)[:, 0, 0, 0].astype(int), np.stack(labels).reshape(-1)


@pytest.mark.parametrize("method", ["sample", "reject"])
def test_classes_come_out_balanced_and_pairs_stay_intact(method):
    indices, labels = drawn(balanced_resample(imbalanced(), 3, seed=1, method=method), 600)
    frequencies = np.bincount(labels, minlength=3) / len(labels)
    # Rejection learns the class frequencies as it goes, so it starts out less balanced.
    np.testing.assert_allclose(frequencies, [1 / 3] * 3, atol=0.06 if method == "sample" else 0.1)
    np.testing.assert_array_equal(LABELS[indices], labels)


def test_same_seed_same_stream_and_labels_of_shape_one_work():
    first = drawn(balanced_resample(imbalanced((1,)), 3, seed=4), 50)
    again = drawn(balanced_resample(imbalanced((1,)), 3, seed=4), 50)
    other = drawn(balanced_resample(imbalanced((1,)), 3, seed=5), 50)
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[1], other[1])


def test_epoch_size_cuts_the_stream_and_a_missing_class_is_skipped():
    stream = balanced_resample(imbalanced(), 4, seed=0, epoch_size=60)
    _, labels = drawn(stream, 1000)
    assert len(labels) == 60
    assert set(labels) == {0, 1, 2}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_classes": 1}, "num_classes must be an integer >= 2"),
        ({"num_classes": 3, "method": "oversample"}, "method must be one of sample, reject"),
        ({"num_classes": 3, "epoch_size": 0}, "epoch_size must be a positive integer"),
    ],
)
def test_bad_arguments_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        balanced_resample(imbalanced(), **kwargs)
