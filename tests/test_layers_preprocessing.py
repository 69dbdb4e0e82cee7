"""MeanImageSubtraction, ZCAWhitening and PCAColorJitter: what adapt() learns and what call does."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from layers import MeanImageSubtraction, PCAColorJitter, ZCAWhitening
from layers.preprocessing import MIN_STD, image_statistics, standardizing_scale
from tests.conftest import MIXED_POLICIES, half_ulp


def _images(n=64, shape=(4, 4, 3), seed=0):
    rng = np.random.default_rng(seed)
    return (rng.uniform(size=(n, *shape)) * np.arange(1, shape[-1] + 1) + 0.5).astype("float32")


def test_mean_image_subtraction_zero_centers_the_training_set():
    images = _images()
    layer = MeanImageSubtraction()
    layer.adapt(images)
    np.testing.assert_allclose(layer.mean.numpy(), images.mean(axis=0), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(layer(images)).mean(axis=0), 0.0, atol=1e-5)


def test_mean_image_subtraction_per_channel_subtracts_the_mean_colour():
    images = _images()
    layer = MeanImageSubtraction(per_channel=True)
    layer.adapt(images)
    assert layer.mean.shape == (1, 1, 3)
    np.testing.assert_allclose(layer.mean.numpy().ravel(), images.mean(axis=(0, 1, 2)), rtol=1e-5)


def test_image_statistics_match_numpy_and_mean_image_subtraction():
    images = _images()
    statistics = image_statistics(tf.data.Dataset.from_tensor_slices(images).batch(10))
    np.testing.assert_allclose(statistics["mean_image"], images.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(statistics["channel_mean"], images.mean(axis=(0, 1, 2)), rtol=1e-6)
    np.testing.assert_allclose(
        statistics["channel_std"], images.std(axis=(0, 1, 2), dtype=np.float64), rtol=1e-6
    )
    layer = MeanImageSubtraction(per_channel=True)
    layer.adapt(images)
    np.testing.assert_allclose(layer.mean.numpy().ravel(), statistics["channel_mean"], rtol=1e-6)
    constant = image_statistics(np.full((4, 2, 2, 1), 0.1))
    assert constant["channel_std"].tolist() == [0.0]
    with pytest.raises(ValueError, match="received no data"):
        image_statistics(tf.data.Dataset.from_tensor_slices(np.zeros((0, 2, 2, 1))).batch(2))


def test_adapt_from_a_dataset_of_batches_equals_adapt_from_the_array():
    images = _images()
    labels = np.zeros(len(images))
    from_array, from_dataset = ZCAWhitening(), ZCAWhitening()
    from_array.adapt(images)
    from_dataset.adapt(tf.data.Dataset.from_tensor_slices((images, labels)).batch(10))
    for ours, expected in zip(from_dataset.get_weights(), from_array.get_weights(), strict=True):
        np.testing.assert_allclose(ours, expected, rtol=1e-4, atol=1e-4)


def test_adapt_steps_limits_the_batches_read():
    images = _images()
    layer = MeanImageSubtraction()
    layer.adapt(images, batch_size=16, steps=1)
    np.testing.assert_allclose(layer.mean.numpy(), images[:16].mean(axis=0), rtol=1e-5)


def _covariance(rows):
    centered = rows - rows.mean(axis=0)
    return centered.T @ centered / len(rows)


def test_zca_whitening_makes_the_training_covariance_the_identity():
    rng = np.random.default_rng(0)
    mixing = rng.normal(size=(12, 12))
    data = (rng.normal(size=(500, 12)) @ mixing + 3.0).reshape(500, 2, 2, 3).astype("float32")
    layer = ZCAWhitening(epsilon=1e-8)
    layer.adapt(data)
    whitened = np.asarray(layer(data), np.float64)
    assert whitened.shape == data.shape
    np.testing.assert_allclose(_covariance(whitened.reshape(500, -1)), np.eye(12), atol=1e-3)
    # ZCA is the symmetric whitening matrix: it stays closest to the original data.
    np.testing.assert_allclose(layer.whitening.numpy(), layer.whitening.numpy().T, atol=1e-5)


def test_pca_whitening_gives_decorrelated_components_by_decreasing_variance():
    rng = np.random.default_rng(1)
    data = (rng.normal(size=(400, 6)) * [5, 1, 3, 0.5, 2, 4]).astype("float32")
    layer = ZCAWhitening(method="pca", epsilon=1e-8)
    layer.adapt(data)
    components = np.asarray(layer(data), np.float64)
    np.testing.assert_allclose(_covariance(components), np.eye(6), atol=1e-3)
    # Without epsilon's damping, the first component is the largest-variance axis (x0 * 5).
    dominant = np.abs(np.corrcoef(components[:, 0], data[:, 0])[0, 1])
    assert dominant > 0.99


def test_whitening_epsilon_damps_low_variance_directions():
    data = np.random.default_rng(2).normal(size=(300, 4)).astype("float32") * [1, 1, 1, 1e-3]
    layer = ZCAWhitening(epsilon=1e-2)
    layer.adapt(data)
    variances = np.asarray(layer(data)).var(axis=0)
    assert variances[3] < 1e-3 < 0.9 < variances[0]


def test_standardizing_scale_does_not_divide_below_the_floor():
    std = np.array([0.0, 0.5 / 255, 1 / 255, 0.2])
    np.testing.assert_array_equal(standardizing_scale(std), [1.0, 1.0, 1 / 255, 0.2])
    # In [0, 255] units the floor is one grey level too.
    np.testing.assert_array_equal(
        standardizing_scale(std * 255, min_std=1.0), [1.0, 1.0, 1.0, 51.0]
    )
    assert MIN_STD == 1 / 255


@pytest.mark.parametrize("method", ["zca", "pca"])
def test_whitening_leaves_a_direction_constant_in_training_unscaled(method):
    rng = np.random.default_rng(3)
    train = rng.uniform(size=(400, 4)).astype("float32")
    train[:, 3] = 0.5
    test = train[:50].copy()
    test[:, 3] += 2 / 255  # two grey levels, where training never varied

    def change(layer):
        layer.adapt(train)
        return np.abs(np.asarray(layer(test)) - np.asarray(layer(train[:50]))).max()

    # Centred and rotated but not divided: the change keeps its size ...
    assert change(ZCAWhitening(method=method)) == pytest.approx(2 / 255, rel=1e-3)
    # ... where dividing by sqrt(epsilon) would magnify it about 300 times.
    assert change(ZCAWhitening(method=method, min_std=0)) > 2.0


def test_pca_color_jitter_is_the_identity_at_inference():
    images = _images()
    layer = PCAColorJitter()
    layer.adapt(images)
    np.testing.assert_array_equal(layer(images), images)
    np.testing.assert_array_equal(layer(images, training=False), images)


def test_pca_color_jitter_learns_the_rgb_eigen_decomposition():
    images = _images(n=128)
    layer = PCAColorJitter()
    layer.adapt(images)
    eigenvalues, eigenvectors = layer.eigenvalues.numpy(), layer.eigenvectors.numpy()
    covariance = _covariance(images.reshape(-1, 3).astype(np.float64))
    reconstructed = eigenvectors @ np.diag(eigenvalues) @ eigenvectors.T
    np.testing.assert_allclose(reconstructed, covariance, rtol=1e-4, atol=1e-6)


def test_pca_color_jitter_adds_one_offset_per_image_along_the_eigenvectors():
    images = _images(n=8)
    layer = PCAColorJitter(sigma=0.5, seed=1)
    layer.adapt(_images(n=256, seed=3))
    offsets = np.asarray(layer(images, training=True)) - images
    # Same colour offset at every pixel of an image, different across images.
    np.testing.assert_allclose(offsets, offsets[:, :1, :1, :] * np.ones_like(offsets), atol=1e-5)
    assert not np.allclose(offsets[0, 0, 0], offsets[1, 0, 0])
    # The offset is P (alpha * lambda): its coordinates in the eigenbasis divided by lambda are
    # the alphas.
    alphas = offsets[:, 0, 0, :] @ layer.eigenvectors.numpy() / layer.eigenvalues.numpy()
    assert 0.05 < alphas.std() < 2.0


def test_pca_color_jitter_offset_statistics_follow_sigma_times_eigenvalues():
    layer = PCAColorJitter(sigma=0.1, seed=0)
    layer.adapt(_images(n=256))
    images = np.zeros((4000, 1, 1, 3), "float32")
    offsets = np.asarray(layer(images, training=True)).reshape(-1, 3).astype(np.float64)
    eigenvalues, eigenvectors = layer.eigenvalues.numpy(), layer.eigenvectors.numpy()
    expected = eigenvectors @ np.diag((0.1 * eigenvalues) ** 2) @ eigenvectors.T
    np.testing.assert_allclose(_covariance(offsets), expected, rtol=0.1, atol=0.05 * expected.max())


def test_pca_color_jitter_is_reproducible_with_a_seed_and_works_on_single_images():
    images = _images(n=4)

    def jittered(batch):
        layer = PCAColorJitter(seed=7)
        layer.adapt(images)
        return np.asarray(layer(batch, training=True))

    np.testing.assert_array_equal(jittered(images), jittered(images))
    single = jittered(images[0])
    assert single.shape == images[0].shape
    offsets = single - images[0]
    np.testing.assert_allclose(offsets, np.broadcast_to(offsets[:1, :1], offsets.shape), atol=1e-5)


def test_pca_color_jitter_runs_in_a_tf_data_pipeline():
    images = _images(n=16)
    layer = PCAColorJitter(seed=2)
    layer.adapt(images)
    dataset = tf.data.Dataset.from_tensor_slices(images).batch(4)
    augmented = np.concatenate(
        list(dataset.map(lambda x: layer(x, training=True)).as_numpy_iterator())
    )
    assert augmented.shape == images.shape and not np.allclose(augmented, images)


def test_pca_color_jitter_rejects_non_rgb_input():
    with pytest.raises(ValueError, match="RGB"):
        PCAColorJitter().build((None, 8, 8, 1))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: ZCAWhitening(method="svd"), "method"),
        (lambda: ZCAWhitening(epsilon=0), "epsilon"),
        (lambda: ZCAWhitening(min_std=-1), "min_std"),
        (lambda: PCAColorJitter(sigma=-1), "sigma"),
    ],
)
def test_rejects_bad_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_adapt_rejects_empty_data():
    with pytest.raises(ValueError, match="no data"):
        MeanImageSubtraction().adapt(tf.data.Dataset.from_tensor_slices(_images()).take(0))


def test_unknown_non_batch_shape_is_rejected():
    with pytest.raises(ValueError, match="needs the non-batch input shape to be known"):
        ZCAWhitening().build((None, None, 4, 3))


def test_mean_image_subtraction_takes_uint8_pixels_in_float32():
    pixels = np.random.default_rng(0).integers(0, 256, size=(32, 4, 4, 3)).astype("uint8")
    layer = MeanImageSubtraction()
    layer.adapt(pixels)
    expected = pixels.astype(np.float64) - pixels.astype(np.float64).mean(axis=0)
    np.testing.assert_allclose(layer(pixels), expected, atol=1e-4)


@pytest.mark.parametrize("policy", MIXED_POLICIES)
@pytest.mark.parametrize(
    "make",
    [
        lambda dtype: MeanImageSubtraction(dtype=dtype),
        lambda dtype: ZCAWhitening(dtype=dtype),
        lambda dtype: ZCAWhitening(method="pca", dtype=dtype),
    ],
    ids=["mean_image", "zca", "pca"],
)
def test_mixed_precision_rounds_only_the_output(make, policy):
    """On 0-255 pixels of strongly correlated colour images the whitening matrix product cancels
    large terms, which float16 and bfloat16 would not resolve; computed in float32, each output
    element is the float32 one rounded once."""
    rng = np.random.default_rng(0)
    colours = rng.uniform(size=(500, 1, 1, 3))
    images = np.clip(colours + 0.05 * rng.normal(size=(500, 6, 6, 3)), 0, 1)
    pixels = np.round(images * 255).astype("float32")
    reference, mixed = make("float32"), make(policy)
    reference.adapt(pixels)
    mixed.adapt(pixels)
    output = mixed(pixels[:16])
    assert output.dtype == policy.removeprefix("mixed_")
    np.testing.assert_allclose(
        np.asarray(tf.cast(output, tf.float32)),
        reference(pixels[:16]),
        rtol=half_ulp(policy),
        atol=1e-5,
    )
