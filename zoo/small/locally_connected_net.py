"""A DeepFace-style network: shared-weight convolutions first, locally connected layers after."""

from __future__ import annotations

import keras

from layers.validation import check_bool
from zoo.knobs import Knobs
from zoo.registry import register_model
from zoo.small.common import image_input


@register_model(
    paper="Taigman, Yang, Ranzato & Wolf (2014), DeepFace: Closing the Gap to Human-Level "
    "Performance in Face Verification",
    default_input_shape=(28, 28, 1),
    knob_defaults={"dropout": 0.5},
)
def locally_connected_net(
    input_shape: tuple[int, ...],
    num_classes: int,
    knobs: Knobs,
    conv_filters: tuple[int, ...] = (32, 16),
    local_filters: tuple[int, ...] = (16, 16),
    dense_units: int = 128,
    share_weights: bool = False,
) -> keras.Model:
    """Conv - max pool - conv, then 3x3 locally connected (unshared) layers, dense, softmax.

    Source: DeepFace (Taigman et al., 2014), layers C1-M2-C3 then L4-L6 at a 28..64 px scale:
    the early layers share weights because low-level features are the same everywhere; the later
    layers do not, because in aligned images each location has its own statistics. Expected test
    accuracy: MNIST 99.0-99.3%, Fashion-MNIST 90-92% (aligned inputs suit it best).

    Args:
        conv_filters: feature maps of the convolutional layers (a 2x2 max pool after the first).
        local_filters: feature maps of the locally connected 3x3 layers (valid padding).
        dense_units: units of the dense layer before the classifier.
        share_weights: make the 3x3 layers valid-padding convolutions instead: the same depth,
            shapes and computation, with each layer's weights shared across positions (the
            control that isolates what unshared weights cost and bring).
    """
    check_bool("share_weights", share_weights, owner="locally_connected_net")
    # Each valid 3x3 locally connected layer trims 2 pixels off the pooled map.
    min_size = 2 * (2 * len(local_filters) + 1)
    inputs = image_input(input_shape, model="locally_connected_net", min_size=min_size)
    x = knobs.input_dropout_layer(inputs)
    for index, maps in enumerate(conv_filters, start=1):
        x = knobs.conv_unit(x, maps, 3, name=f"conv{index}")
        if index == 1:
            x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    for index, maps in enumerate(local_filters, start=1):
        if share_weights:
            x = knobs.conv_unit(x, maps, 3, name=f"shared{index}", padding="valid")
        else:
            x = knobs.locally_connected_unit(x, maps, 3, name=f"local{index}")
    x = keras.layers.Flatten(name="flatten")(x)
    x = knobs.hidden_dropout(x, name="flatten_dropout")
    x = knobs.dense_unit(x, dense_units, name="dense")
    x = knobs.hidden_dropout(x, name="dense_dropout")
    return keras.Model(inputs, knobs.classifier(x, num_classes), name="locally_connected_net")
