"""Fully connected networks."""

from __future__ import annotations

import keras

from zoo.knobs import Knobs
from zoo.registry import register_model


@register_model(
    paper="Rumelhart, Hinton & Williams (1986), Learning representations by back-propagating "
    "errors",
    default_input_shape=(28, 28, 1),
)
def mlp(
    input_shape: tuple[int, ...],
    num_classes: int,
    knobs: Knobs,
    depth: int = 2,
    width: int = 256,
) -> keras.Model:
    """Multi-layer perceptron: flatten, `depth` hidden units of `width`, softmax.

    Source: the back-propagation network of Rumelhart et al. (1986); the course's baseline.
    Expected test accuracy (depth 2, width 256, relu, ~10 epochs): MNIST 97.5-98.5%,
    Fashion-MNIST 87-89%, CIFAR-10 50-55%.

    Args:
        depth: number of hidden layers (>= 1).
        width: units per hidden layer.
    """
    if depth < 1 or width < 1:
        raise ValueError(f"mlp needs depth >= 1 and width >= 1, got depth={depth}, width={width}.")
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = knobs.input_dropout_layer(keras.layers.Flatten(name="flatten")(inputs))
    for index in range(1, depth + 1):
        x = knobs.dense_unit(x, width, name=f"dense{index}")
        x = knobs.hidden_dropout(x, name=f"dense{index}_dropout")
    return keras.Model(inputs, knobs.classifier(x, num_classes), name="mlp")
