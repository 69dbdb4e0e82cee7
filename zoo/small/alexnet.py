"""CIFAR-size AlexNet with local response normalization."""

from __future__ import annotations

import keras

from zoo.knobs import Knobs
from zoo.registry import register_model
from zoo.small.common import image_input


@register_model(
    paper="Krizhevsky, Sutskever & Hinton (2012), ImageNet classification with deep "
    "convolutional neural networks; CIFAR-10 layout of cuda-convnet / the TensorFlow CIFAR-10 "
    "tutorial",
    default_input_shape=(32, 32, 3),
    knob_defaults={"norm": "lrn", "dropout": 0.5},
)
def alexnet_small(
    input_shape: tuple[int, ...],
    num_classes: int,
    knobs: Knobs,
    filters: tuple[int, ...] = (64, 64),
    units: tuple[int, ...] = (384, 192),
) -> keras.Model:
    """AlexNet for 32x32 images: conv 5x5 - LRN - relu - max pool 3/2 (twice), two dense, softmax.

    Source: the AlexNet ingredients (ReLU, LRN, overlapping 3x3/2 max pooling, dropout) at the
    CIFAR-10 size of Krizhevsky's cuda-convnet and the TensorFlow CIFAR-10 tutorial. LRN sits where
    the course puts every normalization (after the convolution, before the nonlinearity). Expected
    test accuracy: CIFAR-10 78-84% without augmentation (86% with), Fashion-MNIST 91-92%.

    Args:
        filters: feature maps of each conv layer.
        units: units of each dense layer.
    """
    inputs = image_input(input_shape, model="alexnet_small", min_size=2 ** len(filters))
    x = knobs.input_dropout_layer(inputs)
    for index, width in enumerate(filters, start=1):
        x = knobs.conv_unit(x, width, 5, name=f"conv{index}")
        x = keras.layers.MaxPooling2D(3, strides=2, padding="same", name=f"pool{index}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    for index, width in enumerate(units, start=1):
        x = knobs.dense_unit(x, width, name=f"dense{index}")
        x = knobs.hidden_dropout(x, name=f"dense{index}_dropout")
    return keras.Model(inputs, knobs.classifier(x, num_classes), name="alexnet_small")
