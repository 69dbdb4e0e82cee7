"""Every registered zoo model converts to TFLite with builtin ops only, and runs as Keras does.

Small models at their default input size, backbones untrained (weights=None) with a new head
(fine_tune="head") on 40x40 images resized inside to 32x32: each is converted, run by the real
TFLite interpreter, and compared with Keras. By default LeNet-5 goes through every format and
MobileNet (alpha 0.25) through float TFLite, the backbone case a resize without a builtin op broke
once; the sweep over every model takes most of an hour on two cores and is marked slow.
"""

import keras
import numpy as np
import pytest

import zoo
from recipes.export.formats import (
    _BUILTIN_NAMES,
    TFLITE_FORMATS,
    ExportError,
    convert_to_tflite,
    tflite_ops,
)
from recipes.export.runtime import TFLiteModel

SMALL_MODELS = [name for name in zoo.list_models() if name not in zoo.BACKBONES]
FAST_FLOAT = {"lenet5", "mobilenet"}
FAST_QUANTIZED = {"lenet5"}
# Largest probability difference to Keras: float conversions keep float32 arithmetic; quantized
# ones round weights (and activations) to 8 bits.
TOLERANCE = {"tflite": 1e-4, "tflite_dynamic": 0.1, "tflite_int8": 0.1}


def build(name: str):
    if name in zoo.BACKBONES:
        options = {"weights": None, "fine_tune": "head", "image_size": 32}
        if name == "mobilenet":
            options["alpha"] = 0.25
        return zoo.create(name, input_shape=(40, 40, 3), num_classes=5, **options)
    return zoo.create(name, num_classes=5)


def check_conversion(model, fmt: str) -> None:
    """Converts, runs the interpreter on random raw images and compares with Keras."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (16, *model.input_shape[1:])).astype(np.float32)
    content = convert_to_tflite(model, fmt, lambda: (image[None] for image in images))
    assert set(tflite_ops(content)) <= set(_BUILTIN_NAMES.values())
    expected = np.asarray(model(images, training=False))
    found = TFLiteModel(content).predict(images)
    assert np.abs(found - expected).max() < TOLERANCE[fmt]
    # Top-1 must agree wherever Keras' top two classes are not a near tie.
    ranked = np.sort(expected, axis=-1)
    clear = ranked[:, -1] - ranked[:, -2] > 2 * TOLERANCE[fmt]
    np.testing.assert_array_equal(found.argmax(-1)[clear], expected.argmax(-1)[clear])


def cases(names, fast):
    return [pytest.param(name, marks=() if name in fast else pytest.mark.slow) for name in names]


@pytest.mark.parametrize("name", cases(zoo.list_models(), FAST_FLOAT))
def test_float_tflite(name):
    check_conversion(build(name), "tflite")


@pytest.mark.parametrize("name", cases([*SMALL_MODELS, "mobilenet"], FAST_QUANTIZED))
@pytest.mark.parametrize("fmt", TFLITE_FORMATS[1:])
def test_quantized_tflite(name, fmt):
    check_conversion(build(name), fmt)


def test_an_op_without_a_builtin_is_refused_by_name():
    # An antialiased resize lowers to ScaleAndTranslate, which only TFLite's Flex delegate has.
    inputs = keras.Input((40, 40, 3))
    resized = keras.layers.Resizing(20, 20, antialias=True)(inputs)
    model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(resized))
    with pytest.raises(ExportError, match=r"ops it could not convert: ScaleAndTranslate\)"):
        convert_to_tflite(model, "tflite")
