"""Network in Network (Lin, Chen & Yan, 2013)."""

from __future__ import annotations

import keras

from zoo.knobs import Knobs
from zoo.registry import register_model
from zoo.small.common import image_input

# (kernel size, feature maps) of each mlpconv block: one spatial conv, then two 1x1 convs.
_BLOCKS = (((5, 192), (1, 160), (1, 96)), ((5, 192), (1, 192), (1, 192)), ((3, 192), (1, 192)))


@register_model(
    paper="Lin, Chen & Yan (2013), Network In Network",
    default_input_shape=(32, 32, 3),
    knob_defaults={"dropout": 0.5},
)
def nin(
    input_shape: tuple[int, ...],
    num_classes: int,
    knobs: Knobs,
    width: float = 1.0,
) -> keras.Model:
    """Network in Network: three mlpconv blocks (conv + two 1x1 convs), global average pooling.

    Source: Lin et al. (2013), the CIFAR-10 model: mlpconv blocks of 192-160-96, 192-192-192 and
    192-192-classes maps, 3x3/2 pooling and dropout between blocks, the last block's 1x1 conv
    producing one map per class, averaged globally into the softmax. Expected test accuracy:
    CIFAR-10 85-89.6% (paper 89.59% with dropout, no augmentation), Fashion-MNIST 92-93%.

    Args:
        width: multiplier on every block's feature maps (e.g. 0.5 for a quick version).
    """
    if width <= 0:
        raise ValueError(f"nin needs width > 0, got {width!r}.")
    inputs = image_input(input_shape, model="nin", min_size=8)
    x = knobs.input_dropout_layer(inputs)
    pools = (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D)
    for block, layers_spec in enumerate(_BLOCKS, start=1):
        for index, (kernel, maps) in enumerate(layers_spec, start=1):
            maps = max(1, round(maps * width))
            x = knobs.conv_unit(x, maps, kernel, name=f"block{block}_conv{index}")
        if block <= len(pools):
            x = pools[block - 1](3, strides=2, padding="same", name=f"block{block}_pool")(x)
            x = knobs.hidden_dropout(x, name=f"block{block}_dropout")
    return keras.Model(inputs, knobs.conv_classifier(x, num_classes), name="nin")
