"""Registry: names, creation errors, describe, registration by decorator."""

import keras
import pytest

import zoo
from zoo import registry

SMALL_MODELS = (
    "mlp",
    "maxout_mlp",
    "lenet5",
    "alexnet_small",
    "vgg_small",
    "nin",
    "allcnn",
    "resnet20",
    "resnet32",
    "resnet56",
    "wide_resnet16_2",
    "maxout_conv",
    "locally_connected_net",
    "mobilenet_tiny",
)
REQUIRED_BACKBONES = (
    "mobilenet",
    "mobilenet_v2",
    "mobilenet_v3_small",
    "efficientnet_b0",
    "resnet50",
)


def test_every_required_model_is_registered():
    names = zoo.list_models()
    assert names == sorted(names)
    assert set(SMALL_MODELS) | set(REQUIRED_BACKBONES) <= set(names)


def test_list_models_filters_by_pattern():
    assert zoo.list_models("resnet*") == [
        "resnet20",
        "resnet32",
        "resnet50",
        "resnet50_v2",
        "resnet56",
    ]
    assert zoo.list_models("no_such_*") == []


def test_list_models_matches_patterns_the_way_names_are_matched():
    assert zoo.list_models("ResNet*") == zoo.list_models("resnet*")
    assert zoo.list_models("mobilenet-v3*") == ["mobilenet_v3_large", "mobilenet_v3_small"]


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [
        ("LeNet5", "lenet5"),
        ("LeNet-5", "lenet5"),
        ("ResNet20", "resnet20"),
        ("MobileNet V2", "mobilenet_v2"),
        ("VGG-Small", "vgg_small"),
    ],
)
def test_model_name_spellings(spelling, canonical):
    assert registry.model_names().resolve(spelling) == canonical
    assert zoo.describe(spelling)["name"] == canonical


def test_create_accepts_any_spelling():
    model = zoo.create("LeNet-5", input_shape=(28, 28, 1))
    assert model.count_params() == zoo.create("lenet5", input_shape=(28, 28, 1)).count_params()


@pytest.mark.parametrize(
    ("typo", "suggestion"),
    [("resnet2", "resnet20"), ("lenett5", "lenet5"), ("mobilenet_v4_small", "mobilenet_v3_small")],
)
def test_unknown_name_suggests_the_closest(typo, suggestion):
    with pytest.raises(ValueError, match=f"Unknown model '{typo}'. Did you mean '{suggestion}'"):
        zoo.create(typo)


def test_unknown_argument_lists_accepted_ones():
    with pytest.raises(TypeError, match="depth_multiplier") as error:
        zoo.create("mlp", depth_multiplier=2)
    assert "activation" in str(error.value) and "width" in str(error.value)
    with pytest.raises(TypeError, match="activation"):
        zoo.create("mobilenet", activation="relu", weights=None)


def test_bad_knob_value_names_accepted_values():
    with pytest.raises(ValueError, match=r"swish.*sigmoid, tanh, relu"):
        zoo.create("mlp", activation="swish")


@pytest.mark.parametrize("name", SMALL_MODELS)
def test_describe_documents_small_models(name):
    info = zoo.describe(name)
    assert info["paper"] and "accuracy" in info["doc"].lower()
    assert info["knobs"]["activation"] in zoo.knobs.ACTIVATIONS
    model = zoo.create(name)
    assert model.input_shape[1:] == info["default_input_shape"]
    assert info["num_params"] == model.count_params() > 0


def test_describe_backbone_counts_params_without_weights():
    info = zoo.describe("mobilenet")
    assert info["knobs"] == {}
    assert info["options"]["alpha"] == 1.0 and info["options"]["fine_tune"] is None
    # keras.applications.MobileNet(alpha=1.0) has 4,253,864 parameters.
    assert info["num_params"] == 4_253_864
    assert "preprocess_input" in info["doc"]


def test_locally_connected_net_has_a_shared_weight_twin_of_the_same_shapes():
    local = zoo.create("locally_connected_net")
    shared = zoo.create("locally_connected_net", share_weights=True)
    for index in (1, 2):
        unshared, conv = local.get_layer(f"local{index}"), shared.get_layer(f"shared{index}")
        assert isinstance(conv, keras.layers.Conv2D) and conv.padding == "valid"
        assert unshared.output.shape == conv.output.shape
        # One 3x3 kernel per output position against one for the whole map.
        positions = unshared.output.shape[1] * unshared.output.shape[2]
        assert unshared.kernel.shape[0] == positions
    assert shared.count_params() < local.count_params()
    with pytest.raises(ValueError, match="`share_weights` must be True or False"):
        zoo.create("locally_connected_net", share_weights="yes")


def test_model_defaults_reach_the_knobs():
    lenet = zoo.create("lenet5")
    assert lenet.get_layer("conv1_tanh").get_config()["activation"] == "tanh"
    relu_lenet = zoo.create("lenet5", activation="relu")
    assert relu_lenet.get_layer("conv1_relu").get_config()["activation"] == "relu"


def test_register_model_decorator(monkeypatch):
    monkeypatch.setattr(registry, "_MODELS", dict(registry._MODELS))

    @zoo.register_model(paper="test", default_input_shape=(8,), knob_defaults={"l2": 0.5})
    def tiny_dense(input_shape, num_classes, knobs, units: int = 4):
        """A tiny test model. Expected accuracy: none."""
        inputs = keras.Input(input_shape)
        return keras.Model(inputs, knobs.classifier(knobs.dense_unit(inputs, units, name="h"), 3))

    assert "tiny_dense" in zoo.list_models()
    model = zoo.create("tiny_dense", num_classes=3, units=5)
    assert model.get_layer("h").units == 5
    assert model.get_layer("h").kernel_regularizer.l2 == 0.5
    assert zoo.describe("tiny_dense")["options"] == {"units": 4}
    with pytest.raises(ValueError, match="already registered"):
        zoo.register_model(tiny_dense, paper="again")
    # Names are matched ignoring case and separators, so those cannot make a second model.
    with pytest.raises(
        ValueError, match="'Tiny-Dense' is already registered \\(as 'tiny_dense'\\)"
    ):
        zoo.register_model(tiny_dense, name="Tiny-Dense", paper="again")


def test_register_model_rejects_options_without_defaults(monkeypatch):
    monkeypatch.setattr(registry, "_MODELS", dict(registry._MODELS))

    def no_default(input_shape, num_classes, knobs, units):
        raise AssertionError("never built")

    with pytest.raises(TypeError, match="units"):
        zoo.register_model(no_default, paper="test")
