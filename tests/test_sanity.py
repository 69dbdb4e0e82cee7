"""Sanity checks on tiny real models and tf.data pipelines."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from recipes.callbacks.monitors import TrainingHealthWarning
from recipes.train.sanity import (
    check_initial_loss,
    check_overfit_small_subset,
    check_regularization_raises_loss,
    expected_initial_loss,
    lr_range_test,
    resolve_loss,
    run_sanity_checks,
)
from scripts import sanity_check
from tests.test_idx import write_split

NUM_CLASSES = 10
FEATURES = 16
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _blobs(count: int = 320) -> tf.data.Dataset:
    """Ten Gaussian blobs, one per class: an easy, real classification problem."""
    rng = np.random.default_rng(0)
    centers = rng.normal(scale=3.0, size=(NUM_CLASSES, FEATURES))
    labels = rng.integers(0, NUM_CLASSES, size=count)
    inputs = centers[labels] + rng.normal(size=(count, FEATURES))
    return tf.data.Dataset.from_tensor_slices(
        (inputs.astype("float32"), labels.astype("int32"))
    ).batch(32)


def _factory(output_stddev: float = 1e-3, l2: float = 1e-3, softmax: bool = False):
    """`build_model(regularization_scale)` for a small MLP with an L2 penalty scaled by it."""

    def build_model(regularization_scale: float) -> keras.Model:
        regularizer = keras.regularizers.L2(l2 * regularization_scale) if l2 else None
        inputs = keras.Input((FEATURES,))
        hidden = keras.layers.Dense(32, activation="relu", kernel_regularizer=regularizer)(inputs)
        outputs = keras.layers.Dense(
            NUM_CLASSES,
            activation="softmax" if softmax else None,
            kernel_initializer=keras.initializers.RandomNormal(stddev=output_stddev),
            kernel_regularizer=regularizer,
        )(hidden)
        return keras.Model(inputs, outputs)

    return build_model


def _batches(count: int = 2):
    return [(x.numpy(), y.numpy()) for x, y in _blobs().take(count)]


def _weston_watkins_hinge(labels, scores):
    """sum_{j != y} max(0, s_j - s_y + 1), averaged over the batch (the course's SVM loss)."""
    one_hot = tf.one_hot(tf.cast(tf.reshape(labels, [-1]), tf.int32), NUM_CLASSES)
    true_scores = tf.reduce_sum(scores * one_hot, axis=-1, keepdims=True)
    margins = tf.maximum(0.0, scores - true_scores + 1.0) * (1.0 - one_hot)
    return tf.reduce_mean(tf.reduce_sum(margins, axis=-1))


@pytest.mark.parametrize("softmax", [False, True])
def test_initial_loss_is_ln_classes_with_small_init(softmax):
    model = _factory(softmax=softmax)(0.0)
    loss = resolve_loss(model, "softmax_cross_entropy", None)
    result = check_initial_loss(model, _batches(), loss, "softmax_cross_entropy", NUM_CLASSES)
    assert result.passed
    assert result.value == pytest.approx(math.log(NUM_CLASSES), rel=0.02)
    assert "expected ln(10) = 2.303" in result.message


def test_initial_loss_far_off_with_large_init_is_reported():
    model = _factory(output_stddev=3.0)(0.0)
    loss = resolve_loss(model, "softmax_cross_entropy", None)
    result = check_initial_loss(model, _batches(), loss, "softmax_cross_entropy", NUM_CLASSES)
    assert not result.passed
    assert result.value > 2 * math.log(NUM_CLASSES)
    assert "too far off: the initial scores are too large" in result.message


def test_svm_initial_loss_is_classes_minus_one():
    model = _factory()(0.0)
    result = check_initial_loss(model, _batches(), _weston_watkins_hinge, "svm_hinge", NUM_CLASSES)
    assert result.passed
    assert result.value == pytest.approx(NUM_CLASSES - 1, rel=0.02)
    assert expected_initial_loss("svm_hinge", NUM_CLASSES) == 9.0
    with pytest.raises(ValueError, match="needs the loss itself"):
        resolve_loss(model, "svm_hinge", None)


def test_regularization_up_increases_initial_loss():
    build_model = _factory()
    base = build_model(0.0)
    loss = resolve_loss(base, "softmax_cross_entropy", None)
    result = check_regularization_raises_loss(build_model, base, _batches(), loss, (0.0, 1.0, 10.0))
    assert result.passed and result.value > 0
    assert "increases as expected" in result.message


def test_regularization_that_never_reaches_the_model_fails():
    build_model = _factory(l2=0.0)
    base = build_model(0.0)
    loss = resolve_loss(base, "softmax_cross_entropy", None)
    result = check_regularization_raises_loss(build_model, base, _batches(), loss, (0.0, 10.0))
    assert not result.passed
    assert "does not reach the model's regularizers" in result.message


def _twenty_examples():
    inputs, labels = zip(*_blobs().unbatch().take(20).as_numpy_iterator(), strict=True)
    return np.stack(inputs), np.stack(labels)


def test_overfits_twenty_examples():
    keras.utils.set_random_seed(0)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    result = check_overfit_small_subset(_factory(), _twenty_examples(), loss, learning_rate=1e-2)
    assert result.passed and result.value == 1.0
    assert "training accuracy 100% on 20 examples" in result.message


def test_model_blind_to_its_inputs_cannot_overfit():
    def build_model(regularization_scale: float) -> keras.Model:
        inputs = keras.Input((FEATURES,))
        # Multiplying by zero cuts the inputs off: the model can only learn class frequencies.
        blind = keras.layers.Rescaling(0.0)(inputs)
        return keras.Model(inputs, keras.layers.Dense(NUM_CLASSES)(blind))

    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    result = check_overfit_small_subset(
        build_model, _twenty_examples(), loss, learning_rate=1e-2, max_epochs=25
    )
    assert not result.passed and result.value < 0.5
    assert "CANNOT overfit them" in result.message


def test_lr_range_test_suggests_a_sane_rate_and_writes_png(tmp_path):
    keras.utils.set_random_seed(0)
    path = tmp_path / "plots" / "lr.png"
    suggested = lr_range_test(_factory(), _blobs(), path, num_steps=120, min_lr=1e-5)
    assert 1e-4 <= suggested <= 1e-1
    assert path.read_bytes()[:8] == PNG_SIGNATURE


def test_run_sanity_checks_report(tmp_path):
    keras.utils.set_random_seed(0)
    with pytest.warns(TrainingHealthWarning, match="initial_loss"):
        report = run_sanity_checks(
            _factory(output_stddev=3.0),
            _blobs(),
            NUM_CLASSES,
            output_dir=tmp_path,
            overfit_learning_rate=1e-2,
            lr_range_steps=60,
        )
    names = [check.name for check in report.checks]
    assert names == [
        "initial_loss",
        "regularization_raises_loss",
        "overfit_small_subset",
        "lr_range_test",
    ]
    assert not report.passed and not report.check("initial_loss").passed
    assert report.check("overfit_small_subset").passed
    assert report.suggested_learning_rate == report.check("lr_range_test").value
    assert (tmp_path / "lr_range_test.png").is_file()
    text = report.render()
    assert text.startswith("Sanity checks:\n[FAIL] initial_loss: initial loss")
    assert "[ok] overfit_small_subset" in text


def test_invalid_arguments_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="Unknown loss 'mse'. Valid names: softmax_cross"):
        expected_initial_loss("mse", NUM_CLASSES)
    with pytest.raises(ValueError, match="`num_classes` must be an integer >= 2"):
        expected_initial_loss("svm_hinge", 1)
    # Every spelling the losses accept names the same family.
    assert expected_initial_loss("Cross-Entropy", NUM_CLASSES) == pytest.approx(np.log(NUM_CLASSES))
    with pytest.raises(ValueError, match="need 0 < min_lr < max_lr"):
        lr_range_test(_factory(), _blobs(), tmp_path / "x.png", min_lr=1.0, max_lr=0.1)
    with pytest.raises(ValueError, match="regularization_scales must be at least two"):
        run_sanity_checks(_factory(), _blobs(), NUM_CLASSES, regularization_scales=(1.0, 0.0))


@pytest.mark.filterwarnings(
    "ignore::recipes.callbacks.monitors.TrainingHealthWarning"
)  # random labels
def test_sanity_script_reads_idx_files_through_the_project_reader(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(70, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, NUM_CLASSES, size=70).astype(np.uint8)
    (tmp_path / "idx").mkdir()
    write_split(tmp_path / "idx", "train", images, labels)

    loaded_images, loaded_labels = sanity_check.fashion_mnist(tmp_path / "idx", 64)
    assert loaded_images.shape == (64, 28, 28) and loaded_images.dtype == np.float32
    np.testing.assert_allclose(loaded_images, images[:64] / 255.0, atol=1e-7)
    np.testing.assert_array_equal(loaded_labels, labels[:64])

    output = tmp_path / "out"
    args = ["--fashion-mnist-dir", str(tmp_path / "idx"), "--examples", "64", "--lr-steps", "10"]
    sanity_check.main([*args, "--output-dir", str(output)])
    assert "initial loss" in (output / "sanity.txt").read_text()
