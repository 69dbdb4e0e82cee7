"""The shared knobs: each choice builds the layers it names, with the course's placement."""

import re

import keras
import numpy as np
import pytest

import layers
import zoo
from zoo.knobs import ACTIVATIONS, INITS, NORMS, Knobs, largest_divisor_at_most


def layer_types(model):
    return [type(layer) for layer in model.layers]


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("name", ["mlp", "lenet5", "mobilenet_tiny"])
def test_every_activation_builds(name, activation):
    model = zoo.create(name, input_shape=(28, 28, 1), activation=activation)
    assert model.output_shape == (None, 10)
    if activation == "maxout":
        assert layers.Maxout in layer_types(model)


def test_activation_parameters_reach_layers():
    leaky = zoo.create("lenet5", activation="leaky_relu", negative_slope=0.2)
    assert leaky.get_layer("conv1_leaky_relu").negative_slope == pytest.approx(0.2)
    prelu = zoo.create("lenet5", activation="prelu")
    assert prelu.get_layer("conv1_prelu").shared_axes == [1, 2]
    assert prelu.get_layer("dense1_prelu").alpha.shape == (120,)
    maxout = zoo.create("mlp", activation="maxout", pieces=3, width=16)
    assert maxout.get_layer("dense1").units == 48
    assert maxout.get_layer("dense1_maxout").output.shape[-1] == 16


@pytest.mark.parametrize("norm", NORMS)
def test_norm_sits_between_linear_layer_and_nonlinearity(norm):
    model = zoo.create("lenet5", norm=norm, activation="relu")
    conv_output = model.get_layer("conv1_relu").input
    producer = conv_output._keras_history.operation
    expected = {
        "none": keras.layers.Conv2D,
        "batch": keras.layers.BatchNormalization,
        "group": layers.GroupNormalization,
        "layer": layers.GroupNormalization,
        "lrn": layers.LocalResponseNormalization,
        "weight": layers.WeightNormalization,
    }[norm]
    assert isinstance(producer, expected)
    conv = (
        model.get_layer("conv1_weightnorm").layer if norm == "weight" else model.get_layer("conv1")
    )
    assert conv.use_bias is (norm not in ("batch", "group", "layer"))


@pytest.mark.parametrize("norm", NORMS)
def test_pre_activation_puts_norm_and_nonlinearity_before_the_conv(norm):
    model = zoo.create("wide_resnet16_2", input_shape=(28, 28, 1), norm=norm, activation="elu")
    wrapped = "_weightnorm" if norm == "weight" else ""
    conv_input = model.get_layer(f"stage1_block1_conv1{wrapped}").input
    assert conv_input._keras_history.operation.name == "stage1_block1_preact_elu"
    normalized = model.get_layer("stage1_block1_preact_elu").input._keras_history.operation
    unnormalized = norm in ("none", "weight")
    assert normalized.name == (
        f"stem{wrapped}" if unnormalized else f"stage1_block1_preact_{norm}norm"
    )
    stem = model.get_layer(f"stem{wrapped}")
    stem = stem.layer if norm == "weight" else stem
    assert stem.use_bias is (norm not in ("batch", "group", "layer"))


def test_group_norm_uses_a_divisor_of_the_channels():
    model = zoo.create("lenet5", norm="group", groups=4)
    assert model.get_layer("conv1_groupnorm").groups == 3  # 6 channels
    assert model.get_layer("conv2_groupnorm").groups == 4  # 16 channels
    assert largest_divisor_at_most(7, 4) == 1


def test_layer_norm_and_lrn_on_dense_units():
    dense_layer_norm = zoo.create("lenet5", norm="layer")
    assert isinstance(
        dense_layer_norm.get_layer("dense1_layernorm"), keras.layers.LayerNormalization
    )
    lrn = zoo.create("lenet5", norm="lrn")
    # LRN normalizes across feature maps: dense units are left unnormalized.
    assert "dense1_lrnnorm" not in [layer.name for layer in lrn.layers]


def test_weight_norm_leaves_depthwise_layers_plain():
    model = zoo.create("mobilenet_tiny", norm="weight")
    assert isinstance(model.get_layer("block1_depthwise"), keras.layers.DepthwiseConv2D)
    assert isinstance(model.get_layer("block1_pointwise_weightnorm"), layers.WeightNormalization)


def dense_kernel(init, **knobs):
    model = zoo.create("mlp", input_shape=(400,), init=init, width=300, depth=1, **knobs)
    return keras.ops.convert_to_numpy(model.get_layer("dense1").kernel)


@pytest.mark.parametrize("init", INITS)
def test_every_init(init):
    kernel = dense_kernel(init)
    fan_in, fan_out = kernel.shape
    if init == "zeros":
        assert not kernel.any()
    elif init == "constant":
        np.testing.assert_allclose(kernel, 0.01)
    elif init == "sparse":
        assert (np.count_nonzero(kernel, axis=0) == 15).all()
    else:
        expected_variance = {
            "small_random": 0.01**2,
            "calibrated": 1 / fan_in,
            "xavier": 2 / (fan_in + fan_out),
            "he": 2 / fan_in,
        }[init]
        assert kernel.var() == pytest.approx(expected_variance, rel=0.05)


def test_init_parameters_and_bias_init():
    np.testing.assert_allclose(dense_kernel("constant", init_value=0.5), 0.5)
    assert dense_kernel("small_random", init_stddev=0.1).std() == pytest.approx(0.1, rel=0.05)
    assert (np.count_nonzero(dense_kernel("sparse", sparse_k=3), axis=0) == 3).all()
    model = zoo.create("lenet5", bias_init=0.01)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model.get_layer("conv2").bias), 0.01)


def test_weight_penalties():
    def penalty(**knobs):
        model = zoo.create("mlp", input_shape=(20,), depth=1, width=8, init="constant", **knobs)
        model(np.zeros((1, 20), "float32"))
        return float(sum(keras.ops.convert_to_numpy(loss) for loss in model.losses))

    # Two kernels of constant 0.01: 20x8 hidden and 8x10 output, 240 weights.
    assert penalty() == 0.0
    assert penalty(l2=1.0) == pytest.approx(240 * 0.01**2)
    assert penalty(l1=1.0) == pytest.approx(240 * 0.01)
    assert penalty(l1=1.0, l2=1.0) == pytest.approx(240 * (0.01 + 0.01**2))


def test_max_norm_holds_after_training():
    keras.utils.set_random_seed(0)
    model = zoo.create("lenet5", max_norm=0.5, init="constant", init_value=1.0)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    images = np.random.default_rng(0).uniform(0, 1, (8, 28, 28, 1)).astype("float32")
    model.fit(images, np.arange(8) % 10, epochs=1, verbose=0)
    conv = keras.ops.convert_to_numpy(model.get_layer("conv2").kernel)
    dense = keras.ops.convert_to_numpy(model.get_layer("dense1").kernel)
    assert np.sqrt((conv**2).sum(axis=(0, 1, 2))).max() <= 0.5 + 1e-5
    assert np.sqrt((dense**2).sum(axis=0)).max() <= 0.5 + 1e-5


def test_dropout_rates():
    model = zoo.create("mlp", input_dropout=0.2, dropout=0.5)
    assert model.get_layer("input_dropout").rate == 0.2
    assert model.get_layer("dense1_dropout").rate == 0.5
    plain = zoo.create("mlp")
    assert keras.layers.Dropout not in layer_types(plain)


@pytest.mark.parametrize(
    ("knob", "value", "message"),
    [
        ("norm", "instance", "none, batch, group"),
        ("init", "orthogonall", "Did you mean 'orthogonal'.*zeros, constant"),
        ("dropout", 1.0, "dropout"),
        ("l2", -1.0, "l2"),
        ("pieces", 1, "pieces"),
        ("max_norm", 0, "max_norm"),
    ],
)
def test_invalid_knob_values(knob, value, message):
    with pytest.raises(ValueError, match=message):
        Knobs(**{knob: value})


@pytest.mark.parametrize(
    ("knob", "message"),
    [
        ("l2", "`l2` must be a number >= 0. Received: l2=True"),
        ("negative_slope", "`negative_slope` must be a number >= 0. Received: negative_slope=True"),
        ("groups", "`groups` must be an integer >= 1. Received: groups=True"),
        ("pieces", "`pieces` must be an integer >= 2. Received: pieces=True"),
        ("dropout", "`dropout` must be a number in [0, 1). Received: dropout=True"),
        ("max_norm", "`max_norm` must be None or a number > 0. Received: max_norm=True"),
        ("init_value", "`init_value` must be a number. Received: init_value=True"),
    ],
)
def test_booleans_are_not_numbers(knob, message):
    # bool is an int in Python, so `l2=True` used to pass as a penalty of 1.
    with pytest.raises(ValueError, match=re.escape(message)):
        Knobs(**{knob: True})


def test_integer_knobs_refuse_floats():
    with pytest.raises(ValueError, match=re.escape("Received: sparse_k=3.0")):
        Knobs(sparse_k=3.0)


@pytest.mark.parametrize(
    ("knob", "spelling", "canonical"),
    [
        ("activation", "ReLU", "relu"),
        ("activation", "Leaky-ReLU", "leaky_relu"),
        ("activation", "leaky relu", "leaky_relu"),
        ("norm", "Batch", "batch"),
        ("norm", "batch_norm", "batch"),
        ("norm", "GroupNorm", "group"),
        ("norm", "LRN", "lrn"),
        ("init", "MSRA", "he"),
        ("init", "Small-Random", "small_random"),
        ("init", "HeNormal", "he_normal"),
        ("output_activation", "Softmax", "softmax"),
    ],
)
def test_knob_names_are_stored_canonical(knob, spelling, canonical):
    assert getattr(Knobs(**{knob: spelling}), knob) == canonical


@pytest.mark.parametrize(
    ("knob", "typo", "suggestion"),
    [
        ("activation", "reluu", "relu"),
        ("activation", "leaky_rel", "leaky_relu"),
        ("norm", "groupp", "group"),
        ("init", "he_normall", "he_normal"),
        ("output_activation", "sigmoidd", "sigmoid"),
    ],
)
def test_unknown_knob_names_suggest_the_closest(knob, typo, suggestion):
    with pytest.raises(ValueError, match=f"'{typo}'. Did you mean '{suggestion}'"):
        Knobs(**{knob: typo})


def test_a_spelled_knob_builds_the_same_model_as_its_canonical_name():
    spelled = zoo.create("lenet5", activation="Leaky-ReLU", norm="Batch_Norm", init="MSRA")
    canonical = zoo.create("lenet5", activation="leaky_relu", norm="batch", init="he")
    assert [layer.name for layer in spelled.layers] == [layer.name for layer in canonical.layers]


@pytest.mark.parametrize("name", ["resnet20", "wide_resnet16_2"])
def test_maxout_needs_a_linear_layer(name):
    with pytest.raises(ValueError, match="maxout"):
        zoo.create(name, activation="maxout")


@pytest.mark.parametrize(
    "knobs",
    [
        {"activation": "maxout", "norm": "lrn", "init": "sparse"},
        {"activation": "prelu", "norm": "weight", "max_norm": 2.0, "l2": 1e-4},
        {"activation": "leaky_relu", "norm": "group", "bias_init": 0.01, "l1": 1e-5},
        {"activation": "elu", "norm": "layer", "dropout": 0.3},
    ],
)
def test_knob_combinations_round_trip(knobs, tmp_path):
    model = zoo.create("lenet5", input_shape=(28, 28, 1), **knobs)
    images = np.random.default_rng(0).uniform(0, 1, (2, 28, 28, 1)).astype("float32")
    model.save(tmp_path / "model.keras")
    restored = keras.models.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(
        restored.predict(images, verbose=0), model.predict(images, verbose=0)
    )
