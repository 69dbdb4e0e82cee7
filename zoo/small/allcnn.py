"""All-CNN-C (Springenberg et al., 2014): strided convolutions instead of pooling."""

from __future__ import annotations

import keras

from zoo.knobs import Knobs
from zoo.registry import register_model
from zoo.small.common import image_input


@register_model(
    paper="Springenberg, Dosovitskiy, Brox & Riedmiller (2014), Striving for Simplicity: The All "
    "Convolutional Net",
    default_input_shape=(32, 32, 3),
    knob_defaults={"input_dropout": 0.2, "dropout": 0.5},
)
def allcnn(
    input_shape: tuple[int, ...],
    num_classes: int,
    knobs: Knobs,
    width: float = 1.0,
) -> keras.Model:
    """All-CNN-C: 3x3 conv stacks whose last conv has stride 2 in place of pooling, then
    3x3 valid conv, 1x1 convs, one 1x1 map per class, global average pooling.

    Source: Springenberg et al. (2014), model C: 96-96-96/2, 192-192-192/2, 192(3x3 valid)-192
    (1x1)-classes(1x1), dropout 0.2 on the input and 0.5 after each strided conv. Expected test
    accuracy: CIFAR-10 87-90.9% without augmentation (paper 90.92%, 350 epochs), Fashion-MNIST
    92-93.5%.

    Args:
        width: multiplier on every layer's feature maps (96 and 192 at 1.0).
    """
    if width <= 0:
        raise ValueError(f"allcnn needs width > 0, got {width!r}.")
    inputs = image_input(input_shape, model="allcnn", min_size=12)
    x = knobs.input_dropout_layer(inputs)
    for stage, maps in enumerate((96, 192), start=1):
        maps = max(1, round(maps * width))
        x = knobs.conv_unit(x, maps, 3, name=f"stage{stage}_conv1")
        x = knobs.conv_unit(x, maps, 3, name=f"stage{stage}_conv2")
        x = knobs.conv_unit(x, maps, 3, strides=2, name=f"stage{stage}_conv3_stride2")
        x = knobs.hidden_dropout(x, name=f"stage{stage}_dropout")
    maps = max(1, round(192 * width))
    x = knobs.conv_unit(x, maps, 3, padding="valid", name="head_conv1")
    x = knobs.conv_unit(x, maps, 1, name="head_conv2")
    return keras.Model(inputs, knobs.conv_classifier(x, num_classes), name="allcnn")
