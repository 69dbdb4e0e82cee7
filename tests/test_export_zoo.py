"""Every registered zoo model converts to TFLite with builtin ops only, and runs as Keras does.

Small models at their default input size on standardized inputs (what the recipes feed them),
backbones untrained (weights=None) with a new head (fine_tune="head") on raw 40x40 images resized
inside to 32x32, all seeded; the small models output raw class scores (linear output), the
backbones their head's probabilities. Each is converted, run by the real TFLite interpreter, and
compared with Keras relative to the outputs' largest value.
By default LeNet-5 goes through every format and MobileNet (alpha 0.25) through float TFLite, the
backbone case a resize without a builtin op broke once; the other small models and
EfficientNet-B0 are marked slow, and the larger backbones (a minute or two each on two cores) are
left to `pytest -m sweep`.
"""

import keras
import numpy as np
import pytest

import zoo
from recipes.export.exporter import accuracy_drop_warning
from recipes.export.formats import (
    _BUILTIN_NAMES,
    ExportError,
    convert_to_tflite,
    tflite_ops,
)
from recipes.export.runtime import TFLiteModel
from recipes.train.execution import dtype_policy, float32_model, model_precision
from tests.conftest import CI_BACKBONES, model_cases

SMALL_MODELS = [name for name in zoo.list_models() if name not in zoo.BACKBONES]
LARGE_BACKBONES = [name for name in zoo.BACKBONES if name not in CI_BACKBONES]
FAST_FLOAT = {"lenet5", "mobilenet"}
FAST_QUANTIZED = {"lenet5"}
# Largest output difference to Keras, as a fraction of the largest output. Float conversions keep
# float32 arithmetic (at most 1.6e-6 measured); quantized ones round weights (and activations)
# to 8 bits: at most 0.061 measured over every small model and 3 seeds (lenet5 int8), 0.03 for
# the ResNets. Untrained ResNets' scores reach the hundreds (their residual sums grow with
# depth), where a fixed tolerance on softmax probabilities fails at random on near ties.
TOLERANCE = {"tflite": 1e-5, "tflite_dynamic": 0.1, "tflite_int8": 0.1}


def build(name: str):
    keras.utils.set_random_seed(0)
    if name in zoo.BACKBONES:
        options = {"weights": None, "fine_tune": "head", "image_size": 32}
        if name == "mobilenet":
            options["alpha"] = 0.25
        return zoo.create(name, input_shape=(40, 40, 3), num_classes=5, **options)
    return zoo.create(name, num_classes=5, output_activation="linear")


def check_conversion(model, fmt: str, raw_pixels: bool) -> None:
    """Converts, runs the interpreter on random images and compares with Keras' scores."""
    rng = np.random.default_rng(0)
    shape = (16, *model.input_shape[1:])
    images = rng.integers(0, 256, shape) if raw_pixels else rng.normal(size=shape)
    images = images.astype(np.float32)
    content = convert_to_tflite(model, fmt, lambda: (image[None] for image in images))
    assert set(tflite_ops(content)) <= set(_BUILTIN_NAMES.values())
    expected = np.asarray(model(images, training=False))
    found = TFLiteModel(content).predict(images)
    tolerance = TOLERANCE[fmt] * np.abs(expected).max()
    assert np.abs(found - expected).max() <= tolerance
    # Top-1 must agree wherever Keras' top two classes are not a near tie.
    ranked = np.sort(expected, axis=-1)
    clear = ranked[:, -1] - ranked[:, -2] > 2 * tolerance
    np.testing.assert_array_equal(found.argmax(-1)[clear], expected.argmax(-1)[clear])


# Measured on 64 standardized images with softmax outputs: top-1 agreement 0.27, max probability
# difference 0.66 (dynamic range quantization: 1.00, 0.05); with the scores above, differences
# of 0.57 to 1.1 of the largest score over 3 seeds. TFLite quantizes a batch matmul's constant operand with one scale for
# the whole tensor, not one per output channel as for a convolution; a single LocallyConnected2D
# already loses ten times a Conv2D's accuracy, and the network stacks them. The export warns.
INT8_KNOWN_FAILURES = {"locally_connected_net": "int8 batch matmul is quantized per tensor"}


@pytest.mark.parametrize(
    "name", model_cases(zoo.list_models(), fast=FAST_FLOAT, sweep=LARGE_BACKBONES)
)
def test_float_tflite(name):
    check_conversion(build(name), "tflite", raw_pixels=name in zoo.BACKBONES)


@pytest.mark.parametrize("name", model_cases([*SMALL_MODELS, "mobilenet"], fast=FAST_QUANTIZED))
def test_dynamic_range_tflite(name):
    check_conversion(build(name), "tflite_dynamic", raw_pixels=name in zoo.BACKBONES)


@pytest.mark.parametrize(
    "name",
    model_cases(
        [*SMALL_MODELS, "mobilenet"], fast=FAST_QUANTIZED, known_failures=INT8_KNOWN_FAILURES
    ),
)
def test_int8_tflite(name):
    check_conversion(build(name), "tflite_int8", raw_pixels=name in zoo.BACKBONES)


def test_an_export_losing_accuracy_warns_with_the_way_out():
    check = {"test_accuracy_keras": 0.90, "test_accuracy_exported": 0.60, "top1_agreement": 0.62}
    warning = accuracy_drop_warning(check, "tflite_int8")
    assert "30.0 points below" in warning and "tflite_dynamic" in warning
    assert accuracy_drop_warning({**check, "test_accuracy_exported": 0.895}, "tflite_int8") is None


def test_an_op_without_a_builtin_is_refused_by_name():
    # An antialiased resize lowers to ScaleAndTranslate, which only TFLite's Flex delegate has.
    inputs = keras.Input((40, 40, 3))
    resized = keras.layers.Resizing(20, 20, antialias=True)(inputs)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(resized))
    with pytest.raises(ExportError, match=r"ops it could not convert: ScaleAndTranslate\)"):
        convert_to_tflite(model, "tflite")


@pytest.mark.parametrize("name", ["lenet5", "mobilenet"])
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_a_mixed_precision_model_exports_as_its_float32_copy(name, policy):
    # TFLite has no builtin float16 or bfloat16 kernels for convolutions: a mixed model does not
    # convert, its float32 copy does, and computes what the mixed model approximates.
    with dtype_policy(policy):
        mixed = build(name)
    with pytest.raises(ExportError, match="ops it could not convert"):
        convert_to_tflite(mixed, "tflite")
    copy = float32_model(mixed)
    assert model_precision(mixed) == policy and model_precision(copy) == "float32"
    assert float32_model(copy) is copy
    images = np.random.default_rng(0).uniform(0, 255, (4, *mixed.input_shape[1:]))
    images = images.astype(np.float32)
    if name not in zoo.BACKBONES:
        images = (images - 128) / 64
    scores = np.asarray(copy(images))
    assert np.abs(np.asarray(mixed(images)) - scores).max() <= 0.05 * np.abs(scores).max()
    check_conversion(copy, "tflite", raw_pixels=name in zoo.BACKBONES)
