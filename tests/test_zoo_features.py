"""Feature extraction: include_top=False with pooling, num_classes=0, features_only and
feature_info, for every registered model; the bad combinations; save/load round trips."""

import math

import keras
import numpy as np
import pytest

import zoo
from zoo import features

SMALL = [name for name in zoo.list_models() if name not in zoo.BACKBONES]
FLAT = ["mlp", "maxout_mlp"]  # no feature maps: they flatten their input first
SMALL_CNNS = [name for name in SMALL if name not in FLAT]
BACKBONES = [name for name in zoo.list_models() if name in zoo.BACKBONES]
BACKBONE_TEST_OPTIONS = {"weights": None, "image_size": 64}
SIZE = 32


def small(name, **options):
    return zoo.create(name, input_shape=(SIZE, SIZE, 3), **options)


def tiny_mobilenet(**options):
    settings = {"weights": None, "alpha": 0.25, "image_size": SIZE}
    return zoo.create("mobilenet", input_shape=(28, 28, 1), **settings | options)


def images(shape, scale=1.0):
    return np.random.default_rng(0).uniform(0, scale, (2, *shape)).astype("float32")


def predict(model, x):
    outputs = model(x, training=False)
    if isinstance(outputs, list | tuple):
        return [keras.ops.convert_to_numpy(o) for o in outputs]
    return keras.ops.convert_to_numpy(outputs)


def check_levels(model, size):
    """feature_info matches the outputs: channels, and strides that give the map sizes (a valid
    convolution trims a few pixels, never a whole level); one level per stride, increasing."""
    info = zoo.feature_info(model)
    assert len(info) == len(model.outputs) >= 2
    for item, output in zip(info, model.outputs, strict=True):
        assert item["channels"] == output.shape[-1]
        reduction = item["reduction"]
        assert reduction & (reduction - 1) == 0  # a power of two
        for side in output.shape[1:3]:
            assert size / (2 * reduction) < side <= math.ceil(size / reduction)
    reductions = [item["reduction"] for item in info]
    assert reductions == sorted(set(reductions))
    return info


@pytest.mark.parametrize("name", SMALL_CNNS)
def test_small_cnn_feature_options(name):
    levels = small(name, features_only=True)
    info = check_levels(levels, SIZE)
    last = levels.outputs[-1].shape
    assert small(name, include_top=False).output_shape == tuple(last)
    for pooling in features.FEATURE_POOLINGS:
        pooled = small(name, include_top=False, pooling=pooling)
        assert pooled.output_shape == (None, info[-1]["channels"])
        assert zoo.feature_info(pooled)[0]["reduction"] is None
    assert len(small(name, num_classes=0).output_shape) == 2


@pytest.mark.parametrize("name", SMALL_CNNS)
def test_feature_models_compute_what_the_classifier_computes(name):
    # Cut from one model, so that they share its weights: the last level is the include_top=False
    # map, the pooled maps are its averages and maxima, and the classifier of the full model
    # applied to the num_classes=0 features gives the full model's output.
    full = small(name, num_classes=7)
    x = images((SIZE, SIZE, 3))
    levels = predict(features.feature_model(full, features_only=True), x)
    no_top = predict(features.feature_model(full), x)
    np.testing.assert_allclose(no_top, levels[-1], rtol=1e-5, atol=1e-6)
    averaged = predict(features.feature_model(full, pooling="avg"), x)
    np.testing.assert_allclose(averaged, no_top.mean(axis=(1, 2)), rtol=1e-4, atol=1e-6)
    maxima = predict(features.feature_model(full, pooling="max"), x)
    np.testing.assert_allclose(maxima, no_top.max(axis=(1, 2)), rtol=1e-5, atol=1e-6)
    pooled = predict(features.feature_model(full, pooled_classifier_input=True), x)
    names = [layer.name for layer in full.layers]
    classifier = full.get_layer(
        "predictions_conv" if "predictions_conv" in names else "predictions"
    )
    kernel, bias = (keras.ops.convert_to_numpy(w) for w in classifier.weights)
    logits = pooled @ kernel.reshape(-1, 7) + bias
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(probabilities, predict(full, x), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", FLAT)
def test_mlps_give_pooled_features_but_no_maps(name):
    model = zoo.create(name, num_classes=0)
    width = 256 if name == "mlp" else 240
    assert model.output_shape == (None, width)
    assert zoo.feature_info(model) == [
        {"layer": model.layers[-1].name, "channels": width, "reduction": None}
    ]
    for request in ({"features_only": True}, {"include_top": False}):
        with pytest.raises(ValueError, match=f"'{name}' has no feature maps.*num_classes=0"):
            zoo.create(name, **request)


def test_lenet5_levels():
    # The table in docs/zoo.md.
    info = zoo.feature_info(zoo.create("lenet5", features_only=True))
    assert info == [
        {"layer": "conv1_tanh", "channels": 6, "reduction": 1},
        {"layer": "conv2_tanh", "channels": 16, "reduction": 2},
        {"layer": "pool2", "channels": 16, "reduction": 4},
    ]
    assert zoo.create("lenet5", num_classes=0).output_shape == (None, 84)


def test_resnet20_levels_follow_its_stages():
    info = zoo.feature_info(zoo.create("resnet20", input_shape=(28, 28, 1), features_only=True))
    assert info == [
        {"layer": f"stage{s}_block3_out", "channels": 8 * 2**s, "reduction": 2 ** (s - 1)}
        for s in (1, 2, 3)
    ]


def test_wide_resnet_levels_are_pre_activated_stage_outputs():
    model = zoo.create("wide_resnet16_2", input_shape=(28, 28, 1), features_only=True)
    assert zoo.feature_info(model) == [
        {"layer": "stage2_block1_preact_relu", "channels": 32, "reduction": 1},
        {"layer": "stage3_block1_preact_relu", "channels": 64, "reduction": 2},
        {"layer": "final_relu", "channels": 128, "reduction": 4},
    ]


def test_backbone_feature_options():
    levels = tiny_mobilenet(features_only=True)
    info = check_levels(levels, SIZE)
    assert [item["layer"] for item in info] == [
        f"conv_pw_{block}_relu" for block in (1, 3, 5, 11, 13)
    ]
    assert [item["reduction"] for item in info] == [2, 4, 8, 16, 32]
    # The network stays nested and frozen, as in fine-tuning mode "head": unfreeze_backbone works.
    assert not levels.trainable_weights
    assert zoo.unfreeze_backbone(levels, top_n_blocks=1) == ["13"]
    assert levels.trainable_weights
    # alpha=0.25: a quarter of MobileNet's 1024 maps.
    assert tiny_mobilenet(include_top=False).output_shape == (None, 1, 1, 256)
    assert tiny_mobilenet(include_top=False, pooling="max").output_shape == (None, 256)
    assert tiny_mobilenet(num_classes=0).output_shape == (None, 256)


def test_backbone_pooled_features_are_the_head_input():
    head = tiny_mobilenet(num_classes=3, head_dropout=0.5)
    raw = images((28, 28, 1), scale=255.0)
    pooled = predict(features.feature_model(head, pooled_classifier_input=True), raw)
    averaged = predict(features.feature_model(head, pooling="avg"), raw)
    np.testing.assert_allclose(pooled, averaged, rtol=1e-5, atol=1e-6)
    dense = head.get_layer("predictions")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(dense(pooled)), predict(head, raw), rtol=1e-5, atol=1e-6
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", BACKBONES)
def test_every_backbone_features(name):
    levels = zoo.create(name, input_shape=(40, 40, 1), features_only=True, **BACKBONE_TEST_OPTIONS)
    info = check_levels(levels, BACKBONE_TEST_OPTIONS["image_size"])
    assert info[-1]["reduction"] == 32
    pooled = zoo.create(name, input_shape=(40, 40, 3), num_classes=0, **BACKBONE_TEST_OPTIONS)
    assert pooled.output_shape == (None, info[-1]["channels"])


def test_backbone_with_other_classes_gets_a_new_head():
    # fine_tune unset: the ImageNet classifier for 1000 classes, mode "head" for any other count.
    assert tiny_mobilenet().name == "mobilenet_predict"
    head = tiny_mobilenet(num_classes=10)
    assert head.name == "mobilenet_head" and head.output_shape == (None, 10)
    assert not head.get_layer("backbone").trainable
    assert tiny_mobilenet(num_classes=1000, fine_tune="head").output_shape == (None, 1000)


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ({"features_only": True, "include_top": True}, "leave `include_top` unset"),
        ({"pooling": "avg"}, "include_top=False"),
        ({"pooling": "avg", "include_top": True}, "include_top=False"),
        ({"pooling": "avg", "features_only": True}, "unpooled"),
        ({"pooling": "mean", "include_top": False}, "`pooling` must be None or one of 'avg'"),
        ({"include_top": "no"}, "`include_top` must be True or False"),
        ({"features_only": 1}, "`features_only` must be True or False"),
        ({"include_top": False, "num_classes": 10}, "`num_classes` must be left unset"),
        ({"features_only": True, "num_classes": 0}, "`num_classes` must be left unset"),
        ({"num_classes": -1}, "`num_classes` must be None or an integer >= 0"),
        ({"num_classes": 2.0}, "`num_classes` must be None or an integer >= 0"),
    ],
)
def test_contradictory_requests_are_refused(request_, message):
    with pytest.raises(ValueError, match=message):
        zoo.create("lenet5", **request_)


def test_predict_mode_has_no_headless_variant():
    for request in ({"num_classes": 0}, {"include_top": False}, {"features_only": True}):
        with pytest.raises(ValueError, match="fine_tune='predict' keeps the trained classifier"):
            tiny_mobilenet(fine_tune="predict", **request)


def test_lenet5_subsampling_option():
    assert isinstance(
        zoo.create("lenet5", subsampling="max").get_layer("pool1"), keras.layers.MaxPooling2D
    )
    with pytest.raises(ValueError, match="`subsampling` must be one of 'avg', 'max'"):
        zoo.create("lenet5", subsampling="min")


def round_trip(model, x, tmp_path):
    path = tmp_path / f"{model.name}.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    assert zoo.feature_info(restored) == zoo.feature_info(model)
    expected, got = predict(model, x), predict(restored, x)
    for a, b in zip(*(v if isinstance(v, list) else [v] for v in (expected, got)), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    return restored


@pytest.mark.parametrize(
    ("name", "request_"),
    [
        ("resnet20", {"features_only": True}),
        ("lenet5", {"include_top": False, "pooling": "max"}),
        ("mobilenet_tiny", {"num_classes": 0}),
        ("mlp", {"num_classes": 0}),
    ],
)
def test_small_feature_models_round_trip(name, request_, tmp_path):
    model = zoo.create(name, input_shape=(28, 28, 1), **request_)
    round_trip(model, images((28, 28, 1)), tmp_path)


def test_backbone_feature_model_round_trips(tmp_path):
    model = tiny_mobilenet(features_only=True)
    restored = round_trip(model, images((28, 28, 1), scale=255.0), tmp_path)
    assert [layer.name for layer in restored.layers[:5]] == [
        "image",
        "resize",
        "gray_to_rgb",
        "preprocess",
        "backbone",
    ]
    assert zoo.backbone_blocks(restored)[-1][0] == "13"
