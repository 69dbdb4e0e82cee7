"""A tiny depthwise-separable network in the MobileNet (v1) pattern."""

from __future__ import annotations

import keras

from zoo.knobs import Knobs
from zoo.registry import register_model
from zoo.small.common import image_input

# (pointwise feature maps, stride of the depthwise conv) per depthwise-separable block.
_BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1))


@register_model(
    paper="Howard et al. (2017), MobileNets: Efficient Convolutional Neural Networks for Mobile "
    "Vision Applications",
    default_input_shape=(32, 32, 3),
    knob_defaults={"norm": "batch"},
)
def mobilenet_tiny(
    input_shape: tuple[int, ...],
    num_classes: int,
    knobs: Knobs,
    alpha: float = 1.0,
) -> keras.Model:
    """3x3 conv stem, five depthwise-separable blocks (3x3 depthwise unit, 1x1 pointwise unit),
    global average pooling, softmax.

    Source: Howard et al. (2017), the depthwise-separable block and width multiplier `alpha`,
    cut to five blocks with two downsamplings for 28..64 px inputs. Expected test accuracy:
    CIFAR-10 80-85% without augmentation, Fashion-MNIST 91-93%.

    Args:
        alpha: width multiplier on every layer's feature maps.
    """
    if alpha <= 0:
        raise ValueError(f"mobilenet_tiny needs alpha > 0, got {alpha!r}.")
    inputs = image_input(input_shape, model="mobilenet_tiny", min_size=8)
    x = knobs.input_dropout_layer(inputs)
    x = knobs.conv_unit(x, max(1, round(32 * alpha)), 3, name="stem")
    for index, (maps, strides) in enumerate(_BLOCKS, start=1):
        x = knobs.depthwise_unit(x, 3, strides=strides, name=f"block{index}_depthwise")
        x = knobs.conv_unit(x, max(1, round(maps * alpha)), 1, name=f"block{index}_pointwise")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = knobs.hidden_dropout(x, name="pool_dropout")
    return keras.Model(inputs, knobs.classifier(x, num_classes), name="mobilenet_tiny")
