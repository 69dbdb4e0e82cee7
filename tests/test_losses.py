"""The course's losses against NumPy references, their label/output contracts and serialization."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from recipes.optim.losses import (
    LOSS_NAMES,
    MulticlassHinge,
    SummedError,
    canonical_loss_name,
    get_loss,
    loss_accepts_soft_labels,
    loss_label_format,
    loss_output_activation,
)
from tests.conftest import MIXED_POLICIES, SCALE_TOLERANCE

RNG = np.random.default_rng(7)
BATCH, CLASSES = 6, 5
SCORES = RNG.normal(size=(BATCH, CLASSES)).astype("float32") * 2.0
CLASS_IDS = RNG.integers(0, CLASSES, size=BATCH)
ATTRIBUTES = RNG.integers(0, 2, size=(BATCH, CLASSES))
TARGETS = RNG.normal(size=(BATCH, 3)).astype("float32")
OUTPUTS = RNG.normal(size=(BATCH, 3)).astype("float32")


def np_softmax(logits):
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def np_weston_watkins(scores, ids, margin=1.0, squared=False):
    losses = []
    for row, y in zip(scores, ids, strict=True):
        total = 0.0
        for j, score in enumerate(row):
            if j != y:
                violation = max(0.0, score - row[y] + margin)
                total += violation**2 if squared else violation
        losses.append(total)
    return np.mean(losses)


def np_attribute_hinge(scores, present, margin=1.0):
    signs = np.where(present > 0, 1.0, -1.0)
    return np.mean(np.maximum(0.0, margin - signs * scores).sum(axis=-1))


def np_attribute_logistic(logits, present):
    signs = np.where(present > 0, 1.0, -1.0)
    return np.mean(np.log1p(np.exp(-signs * logits)).sum(axis=-1))


def evaluate(loss, y_true, y_pred):
    return float(loss(tf.constant(y_true), tf.constant(y_pred)))


@pytest.mark.parametrize("label_shape", ["sparse", "column", "one_hot"])
def test_softmax_cross_entropy_matches_numpy_for_every_label_layout(label_shape):
    labels = {
        "sparse": CLASS_IDS,
        "column": CLASS_IDS[:, None],
        "one_hot": np.eye(CLASSES, dtype="float32")[CLASS_IDS],
    }[label_shape]
    expected = -np.mean(np.log(np_softmax(SCORES)[np.arange(BATCH), CLASS_IDS]))
    from_logits = evaluate(get_loss("softmax_cross_entropy", from_logits=True), labels, SCORES)
    from_probabilities = evaluate(get_loss("cross_entropy"), labels, np_softmax(SCORES))
    np.testing.assert_allclose(from_logits, expected, rtol=1e-5)
    np.testing.assert_allclose(from_probabilities, expected, rtol=1e-4)


def test_softmax_cross_entropy_takes_soft_mixup_targets():
    soft = np_softmax(RNG.normal(size=(BATCH, CLASSES))).astype("float32")
    expected = -np.mean((soft * np.log(np_softmax(SCORES))).sum(axis=-1))
    loss = get_loss("softmax_cross_entropy", from_logits=True)
    np.testing.assert_allclose(evaluate(loss, soft, SCORES), expected, rtol=1e-5)


@pytest.mark.parametrize("margin", [1.0, 2.5])
@pytest.mark.parametrize("name", ["svm_hinge", "multiclass_hinge", "squared_svm_hinge"])
def test_multiclass_hinge_matches_weston_watkins_reference(name, margin):
    squared = name == "squared_svm_hinge"
    expected = np_weston_watkins(SCORES, CLASS_IDS, margin, squared)
    loss = get_loss(name, margin=margin)
    np.testing.assert_allclose(evaluate(loss, CLASS_IDS, SCORES), expected, rtol=1e-5)
    one_hot = np.eye(CLASSES, dtype="float32")[CLASS_IDS]
    np.testing.assert_allclose(evaluate(loss, one_hot, SCORES), expected, rtol=1e-5)


def test_svm_hinge_sums_violations_where_keras_categorical_hinge_takes_the_max():
    scores = np.array([[0.0, 0.5, 0.8]], dtype="float32")
    labels = np.array([0])
    ours = evaluate(get_loss("svm_hinge"), labels, scores)
    keras_max = float(keras.losses.categorical_hinge(np.eye(3)[labels], scores)[0])
    assert ours == pytest.approx(1.5 + 1.8)
    assert keras_max == pytest.approx(1.8)


def test_svm_hinge_gradient_counts_margin_violations():
    scores = tf.constant([[2.0, 1.5, -3.0, 1.9]])
    with tf.GradientTape() as tape:
        tape.watch(scores)
        value = get_loss("svm_hinge")(tf.constant([0]), scores)
    # Classes 1 and 3 are within the margin of class 0 and class 2 is not.
    np.testing.assert_allclose(tape.gradient(value, scores).numpy(), [[-2.0, 1.0, 0.0, 1.0]])


@pytest.mark.parametrize("encoding", ["zero_one", "plus_minus_one"])
def test_attribute_hinge_matches_numpy_for_both_label_encodings(encoding):
    labels = ATTRIBUTES if encoding == "zero_one" else 2 * ATTRIBUTES - 1
    for margin in (1.0, 0.5):
        loss = get_loss("attribute_hinge", margin=margin)
        expected = np_attribute_hinge(SCORES, ATTRIBUTES, margin)
        np.testing.assert_allclose(evaluate(loss, labels, SCORES), expected, rtol=1e-5)


def test_attribute_logistic_matches_numpy_from_logits_and_probabilities():
    expected = np_attribute_logistic(SCORES, ATTRIBUTES)
    labels = ATTRIBUTES.astype("float32")
    from_logits = evaluate(get_loss("attribute_logistic", from_logits=True), labels, SCORES)
    probabilities = 1.0 / (1.0 + np.exp(-SCORES))
    from_probabilities = evaluate(get_loss("attribute_logistic"), labels, probabilities)
    np.testing.assert_allclose(from_logits, expected, rtol=1e-5)
    np.testing.assert_allclose(from_probabilities, expected, rtol=1e-3)


def test_regression_losses_sum_over_outputs_and_average_over_batch():
    np.testing.assert_allclose(
        evaluate(get_loss("l2"), TARGETS, OUTPUTS),
        np.mean(((TARGETS - OUTPUTS) ** 2).sum(axis=-1)),
        rtol=1e-5,
    )
    np.testing.assert_allclose(
        evaluate(get_loss("l1"), TARGETS, OUTPUTS),
        np.mean(np.abs(TARGETS - OUTPUTS).sum(axis=-1)),
        rtol=1e-5,
    )


def test_regression_loss_lines_up_flat_targets_with_column_outputs():
    targets, outputs = TARGETS[:, 0], OUTPUTS[:, :1]
    expected = np.mean((targets - outputs[:, 0]) ** 2)
    np.testing.assert_allclose(evaluate(get_loss("l2"), targets, outputs), expected, rtol=1e-5)


def test_unknown_loss_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="Unknown loss 'hinge'") as error:
        get_loss("hinge")
    for name in LOSS_NAMES:
        assert name in str(error.value)


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [
        ("Softmax-Cross-Entropy", "softmax_cross_entropy"),
        ("SVM Hinge", "svm_hinge"),
        ("SquaredSVMHinge", "squared_svm_hinge"),
        ("Cross_Entropy", "softmax_cross_entropy"),
        ("crossentropy", "softmax_cross_entropy"),
        ("multiclass-hinge", "svm_hinge"),
        ("L2", "l2"),
    ],
)
def test_name_spellings(spelling, canonical):
    assert canonical_loss_name(spelling) == canonical
    loss = get_loss(spelling)
    assert loss.name == canonical
    assert loss_label_format(spelling) == loss_label_format(canonical)


@pytest.mark.parametrize(
    ("typo", "suggestion"),
    [
        ("svm_hing", "svm_hinge"),
        ("atribute-logistic", "attribute_logistic"),
        ("squared_hinge", "squared_svm_hinge"),
    ],
)
def test_unknown_name_suggests_the_closest(typo, suggestion):
    with pytest.raises(ValueError, match=f"Unknown loss '{typo}'. Did you mean '{suggestion}'"):
        get_loss(typo)


def test_config_dicts_and_built_losses():
    from_dict = get_loss({"name": "SVM-Hinge", "margin": 2.0}, reduction="sum")
    assert isinstance(from_dict, MulticlassHinge)
    assert (from_dict.options["margin"], from_dict.reduction) == (2.0, "sum")
    assert get_loss(from_dict) is from_dict
    restored = get_loss(keras.saving.serialize_keras_object(from_dict))
    assert type(restored) is MulticlassHinge
    assert restored.get_config() == from_dict.get_config()
    with pytest.raises(ValueError, match="options margin cannot be applied to a built loss"):
        get_loss(from_dict, margin=1.0)
    with pytest.raises(ValueError, match="given both in the config dict and as arguments"):
        get_loss({"name": "svm_hinge", "margin": 2.0}, margin=1.0)


def test_unknown_option_and_bad_margin_are_rejected():
    with pytest.raises(ValueError, match=r"takes no option.*from_logits.*its options: .*margin"):
        get_loss("svm_hinge", from_logits=True)
    with pytest.raises(ValueError, match="AttributeHinge: `margin` must be a number > 0"):
        get_loss("attribute_hinge", margin=-1)
    with pytest.raises(ValueError, match="Received: margin=True"):
        get_loss("svm_hinge", margin=True)
    with pytest.raises(ValueError, match="`from_logits` must be True or False"):
        get_loss("softmax_cross_entropy", from_logits="no")
    with pytest.raises(ValueError, match=r"`order` must be an integer in \[1, 2\]"):
        SummedError(order=3)


def test_label_and_output_contracts():
    formats = {name: loss_label_format(name) for name in LOSS_NAMES}
    assert formats == {
        "softmax_cross_entropy": "sparse",
        "svm_hinge": "sparse",
        "squared_svm_hinge": "sparse",
        "attribute_hinge": "multi_hot",
        "attribute_logistic": "multi_hot",
        "l2": "regression",
        "l1": "regression",
    }
    assert [name for name in LOSS_NAMES if loss_accepts_soft_labels(name)] == [
        "softmax_cross_entropy"
    ]
    assert loss_output_activation("cross_entropy") == "softmax"
    assert loss_output_activation("cross_entropy", from_logits=True) == "linear"
    assert loss_output_activation("attribute_logistic") == "sigmoid"
    assert loss_output_activation("svm_hinge") == "linear"


@pytest.mark.parametrize("label_shape", ["sparse", "one_hot"])
@pytest.mark.parametrize("from_logits", [False, True])
def test_label_smoothing_matches_keras_categorical_crossentropy(label_shape, from_logits):
    one_hot = np.eye(CLASSES, dtype="float32")[CLASS_IDS]
    labels = one_hot if label_shape == "one_hot" else CLASS_IDS
    predictions = SCORES if from_logits else np_softmax(SCORES)
    loss = get_loss("cross_entropy", from_logits=from_logits, label_smoothing=0.2)
    reference = keras.losses.CategoricalCrossentropy(from_logits=from_logits, label_smoothing=0.2)
    expected = evaluate(reference, one_hot, predictions)
    np.testing.assert_allclose(evaluate(loss, labels, predictions), expected, rtol=1e-5)
    # Smoothing moves the loss: the targets are not the one-hot ones any more.
    plain = evaluate(get_loss("cross_entropy", from_logits=from_logits), labels, predictions)
    assert abs(plain - expected) > 1e-3
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert restored.get_config()["label_smoothing"] == 0.2


@pytest.mark.parametrize("value", [-0.1, 1.0, 1.5])
def test_label_smoothing_outside_zero_one_is_rejected(value):
    with pytest.raises(
        ValueError, match=rf"label_smoothing.*\[0, 1\).*Received: label_smoothing={value}"
    ):
        get_loss("softmax_cross_entropy", label_smoothing=value)


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_config_round_trip_keeps_options(name):
    options = {"margin": 2.0} if "hinge" in name else {}
    loss = get_loss(name, **options)
    restored = keras.losses.deserialize(keras.losses.serialize(loss))
    assert type(restored) is type(loss)
    assert restored.get_config() == loss.get_config()
    assert restored.name == name


def test_compiled_model_with_recipe_loss_saves_and_reloads(tmp_path):
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    model.compile("sgd", get_loss("squared_svm_hinge", margin=0.5), metrics=["accuracy"])
    features = RNG.normal(size=(8, 4)).astype("float32")
    labels = RNG.integers(0, 3, size=8)
    model.fit(features, labels, epochs=1, verbose=0)
    path = tmp_path / "hinge.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    assert restored.loss.get_config() == model.loss.get_config()
    assert restored.loss.get_config()["squared"] is True
    np.testing.assert_allclose(
        restored.evaluate(features, labels, verbose=0)[0],
        model.evaluate(features, labels, verbose=0)[0],
        rtol=1e-6,
    )


# ------------------------------------------------------------------------------------------------
# Mixed precision: float16 and bfloat16 predictions are taken in float32.

# Every loss with each of its output kinds: (name, options).
LOSS_FORMS = [(name, {}) for name in LOSS_NAMES] + [
    ("softmax_cross_entropy", {"from_logits": True}),
    ("attribute_logistic", {"from_logits": True}),
]
LABELS = {"sparse": CLASS_IDS, "multi_hot": ATTRIBUTES, "regression": SCORES * 0.5}
ACTIVATIONS = {
    "softmax": np_softmax,
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
    "linear": lambda x: x,
}


def _form_id(form):
    name, options = form
    return name + "".join(f"-{key}" for key in options)


def _predictions(name, options):
    return ACTIVATIONS[loss_output_activation(name, **options)](SCORES).astype("float32")


@pytest.mark.parametrize("policy", MIXED_POLICIES)
@pytest.mark.parametrize("form", LOSS_FORMS, ids=_form_id)
def test_losses_take_narrow_predictions_in_float32(form, policy):
    """The per-sample functions and the loss objects give float32 values, equal to float32 on
    the same (rounded) predictions: no log, square or sum is taken in float16 or bfloat16."""
    name, options = form
    narrow = tf.cast(_predictions(name, options), policy.removeprefix("mixed_"))
    wide = tf.cast(narrow, tf.float32)
    labels = tf.constant(LABELS[loss_label_format(name)])
    loss = get_loss(name, **options)
    for compute in (lambda p: loss.fn(labels, p, **loss.options), lambda p: loss(labels, p)):
        value, reference = compute(narrow), compute(wide)
        assert value.dtype == tf.float32
        np.testing.assert_allclose(value, reference, rtol=1e-6)


@pytest.mark.parametrize("policy", MIXED_POLICIES)
@pytest.mark.parametrize("form", LOSS_FORMS, ids=_form_id)
def test_a_mixed_model_with_a_narrow_output_gets_a_float32_loss_close_to_float32(form, policy):
    """A model whose head computes in float16 or bfloat16 (no float32 last layer): the loss
    `evaluate` reports is within the layer tolerance of the float32 model's (see
    tests/test_layers_common.py)."""
    name, options = form
    labels = LABELS[loss_label_format(name)]
    activation = loss_output_activation(name, **options)
    features = RNG.normal(size=(BATCH, 4)).astype("float32")

    def model(dtype):
        inputs = keras.Input((4,))
        hidden = keras.layers.Dense(8, activation="tanh", dtype=dtype)(inputs)
        outputs = keras.layers.Dense(CLASSES, activation=activation, dtype=dtype)(hidden)
        built = keras.Model(inputs, outputs)
        built.compile(loss=get_loss(name, **options))
        return built

    reference, mixed = model("float32"), model(policy)
    mixed.set_weights(reference.get_weights())
    assert mixed(features).dtype == policy.removeprefix("mixed_")
    loss = mixed.compute_loss(features, labels, mixed(features))
    assert loss.dtype == tf.float32
    expected = reference.evaluate(features, labels, verbose=0)
    tolerance = SCALE_TOLERANCE[policy]
    np.testing.assert_allclose(
        mixed.evaluate(features, labels, verbose=0), expected, rtol=tolerance
    )
    np.testing.assert_allclose(float(loss), expected, rtol=tolerance)


def test_loss_options_flag_reaches_the_compiled_loss():
    from recipes.train import runner
    from recipes.train.config import resolve_config

    argv = ["--loss-option", "label_smoothing=0.1", "--loss-option", "from_logits=true"]
    config = resolve_config({}, argv, "test", "")
    assert config.optim.loss_options == {"label_smoothing": 0.1, "from_logits": True}
    model = runner.build_model(config.updated({"model.name": "mlp"}), (8, 8, 1), CLASSES)
    assert model.layers[-1].activation.__name__ == "linear"  # from_logits: the head emits logits
    runner.compile_model(model, config, steps_per_epoch=10)
    assert model.loss.get_config()["label_smoothing"] == 0.1
    assert model.loss.get_config()["from_logits"] is True
