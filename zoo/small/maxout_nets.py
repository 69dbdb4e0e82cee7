"""Maxout networks (Goodfellow et al., 2013): maxout units trained with dropout and max-norm."""

from __future__ import annotations

import keras

from zoo.knobs import Knobs
from zoo.registry import register_model
from zoo.small.common import image_input

_PAPER = "Goodfellow, Warde-Farley, Mirza, Courville & Bengio (2013), Maxout Networks"
# The paper's regularization: dropout 0.2 on inputs, 0.5 on hidden layers, max-norm on weights.
_MAXOUT_KNOBS = {
    "activation": "maxout",
    "input_dropout": 0.2,
    "dropout": 0.5,
    "max_norm": 1.9365,
    "init": "xavier",
}


@register_model(
    paper=_PAPER,
    default_input_shape=(28, 28, 1),
    knob_defaults={**_MAXOUT_KNOBS, "pieces": 5},
)
def maxout_mlp(
    input_shape: tuple[int, ...],
    num_classes: int,
    knobs: Knobs,
    depth: int = 2,
    width: int = 240,
) -> keras.Model:
    """Permutation-invariant maxout MLP: `depth` maxout layers of `width` units x 5 pieces.

    Source: Goodfellow et al. (2013), section 5.1 (two 240-unit, 5-piece layers, dropout, max-norm
    1.9365). Expected test accuracy: MNIST ~99.0% (paper 99.06% after long training),
    Fashion-MNIST 89-90%.

    Args:
        depth: number of maxout layers (>= 1).
        width: maxout units per layer.
    """
    if depth < 1 or width < 1:
        raise ValueError(
            f"maxout_mlp needs depth >= 1 and width >= 1, got depth={depth}, width={width}."
        )
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = knobs.input_dropout_layer(keras.layers.Flatten(name="flatten")(inputs))
    for index in range(1, depth + 1):
        x = knobs.dense_unit(x, width, name=f"maxout{index}")
        x = knobs.hidden_dropout(x, name=f"maxout{index}_dropout")
    return keras.Model(inputs, knobs.classifier(x, num_classes), name="maxout_mlp")


@register_model(
    paper=_PAPER,
    default_input_shape=(28, 28, 1),
    knob_defaults={**_MAXOUT_KNOBS, "max_norm": None},
)
def maxout_conv(
    input_shape: tuple[int, ...],
    num_classes: int,
    knobs: Knobs,
    filters: tuple[int, ...] = (48, 48, 24),
    kernel_size: int = 5,
) -> keras.Model:
    """Convolutional maxout network: maxout conv layers, each followed by 2x2 max pooling.

    Source: Goodfellow et al. (2013), section 5.1 (three convolutional maxout layers of 48, 48
    and 24 units, max pooling, dropout, softmax). Expected test accuracy: MNIST 99.4-99.55%
    (paper 99.55%), Fashion-MNIST 91-92%, CIFAR-10 (wider, with augmentation) 85-88%.

    Args:
        filters: maxout units (feature maps) per conv layer.
        kernel_size: convolution kernel size.
    """
    inputs = image_input(input_shape, model="maxout_conv", min_size=2 ** len(filters))
    x = knobs.input_dropout_layer(inputs)
    for index, width in enumerate(filters, start=1):
        x = knobs.conv_unit(x, width, kernel_size, name=f"conv{index}")
        x = keras.layers.MaxPooling2D(2, padding="same", name=f"pool{index}")(x)
        x = knobs.hidden_dropout(x, name=f"conv{index}_dropout")
    x = keras.layers.Flatten(name="flatten")(x)
    return keras.Model(inputs, knobs.classifier(x, num_classes), name="maxout_conv")
