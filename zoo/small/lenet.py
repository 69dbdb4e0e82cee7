"""LeNet-5 (LeCun et al., 1998)."""

from __future__ import annotations

import keras

from layers.validation import check_choice
from zoo.knobs import Knobs
from zoo.registry import register_model
from zoo.small.common import image_input

_SUBSAMPLINGS = {"avg": keras.layers.AveragePooling2D, "max": keras.layers.MaxPooling2D}


@register_model(
    paper="LeCun, Bottou, Bengio & Haffner (1998), Gradient-based learning applied to document "
    "recognition",
    default_input_shape=(28, 28, 1),
    knob_defaults={"activation": "tanh", "init": "xavier"},
)
def lenet5(
    input_shape: tuple[int, ...],
    num_classes: int,
    knobs: Knobs,
    subsampling: str = "avg",
) -> keras.Model:
    """LeNet-5: conv 5x5 (6) - pool - conv 5x5 (16) - pool - dense 120 - dense 84 - softmax.

    Source: LeCun et al. (1998). The first convolution pads "same", so 28x28 digits get the
    32x32 geometry of the original (which padded the digits by hand); pooling is the original's
    2x2 subsampling ("avg") or max pooling (`subsampling`). Expected test accuracy: MNIST 98.8-99.2%,
    Fashion-MNIST 89-91%, CIFAR-10 60-65%.

    Args:
        subsampling: "avg" (the original subsampling) or "max" (max pooling). Called `pooling`
            before `zoo.create` took `pooling` for the global pooling of a feature model.
    """
    pool = _SUBSAMPLINGS[check_choice("subsampling", subsampling, _SUBSAMPLINGS)]
    inputs = image_input(input_shape, model="lenet5", min_size=16)
    x = knobs.input_dropout_layer(inputs)
    x = knobs.conv_unit(x, 6, 5, name="conv1")
    x = pool(2, name="pool1")(x)
    x = knobs.conv_unit(x, 16, 5, padding="valid", name="conv2")
    x = pool(2, name="pool2")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    for index, units in enumerate((120, 84), start=1):
        x = knobs.dense_unit(x, units, name=f"dense{index}")
        x = knobs.hidden_dropout(x, name=f"dense{index}_dropout")
    return keras.Model(inputs, knobs.classifier(x, num_classes), name="lenet5")
