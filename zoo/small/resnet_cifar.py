"""CIFAR ResNets (He et al., 2016, section 4.2): 6n+2 layers in three stages of 16, 32, 64 maps."""

from __future__ import annotations

from typing import Any

import keras

from zoo.knobs import Knobs
from zoo.registry import register_model
from zoo.small.common import image_input

_PAPER = "He, Zhang, Ren & Sun (2016), Deep Residual Learning for Image Recognition"
_KNOB_DEFAULTS = {"norm": "batch", "init": "he", "l2": 1e-4}
_STAGE_MAPS = (16, 32, 64)


def _residual_block(x: Any, knobs: Knobs, maps: int, strides: int, name: str) -> Any:
    """Two 3x3 conv units; the second's nonlinearity comes after adding the shortcut."""
    shortcut = x
    if strides != 1 or x.shape[-1] != maps:
        # Projection shortcut (the paper's option B) where the shape changes.
        shortcut = knobs.conv_unit(
            x, maps, 1, strides=strides, activate=False, name=f"{name}_shortcut"
        )
    y = knobs.conv_unit(x, maps, 3, strides=strides, name=f"{name}_conv1")
    y = knobs.conv_unit(y, maps, 3, activate=False, name=f"{name}_conv2")
    y = keras.layers.Add(name=f"{name}_add")([shortcut, y])
    return knobs.activate(y, name=f"{name}_out")


def cifar_resnet(
    input_shape: tuple[int, ...], num_classes: int, knobs: Knobs, blocks_per_stage: int, name: str
) -> keras.Model:
    """The 6n+2-layer CIFAR ResNet with n = `blocks_per_stage`."""
    inputs = image_input(input_shape, model=name, min_size=8)
    x = knobs.input_dropout_layer(inputs)
    x = knobs.conv_unit(x, _STAGE_MAPS[0], 3, name="stem")
    for stage, maps in enumerate(_STAGE_MAPS, start=1):
        for block in range(1, blocks_per_stage + 1):
            strides = 2 if stage > 1 and block == 1 else 1
            x = _residual_block(x, knobs, maps, strides, name=f"stage{stage}_block{block}")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    x = knobs.hidden_dropout(x, name="pool_dropout")
    return keras.Model(inputs, knobs.classifier(x, num_classes), name=name)


@register_model(paper=_PAPER, knob_defaults=_KNOB_DEFAULTS)
def resnet20(input_shape: tuple[int, ...], num_classes: int, knobs: Knobs) -> keras.Model:
    """ResNet-20 for CIFAR (n=3, 0.27M parameters).

    Source: He et al. (2016), section 4.2, with projection shortcuts where the shape changes.
    Expected test accuracy: CIFAR-10 91.25% in the paper (augmentation, 164 epochs; 85-88%
    without augmentation), Fashion-MNIST 93-94%.
    """
    return cifar_resnet(input_shape, num_classes, knobs, 3, "resnet20")


@register_model(paper=_PAPER, knob_defaults=_KNOB_DEFAULTS)
def resnet32(input_shape: tuple[int, ...], num_classes: int, knobs: Knobs) -> keras.Model:
    """ResNet-32 for CIFAR (n=5, 0.46M parameters).

    Source: He et al. (2016), section 4.2. Expected test accuracy: CIFAR-10 92.49% in the paper
    (with augmentation), Fashion-MNIST 93-94.5%.
    """
    return cifar_resnet(input_shape, num_classes, knobs, 5, "resnet32")


@register_model(paper=_PAPER, knob_defaults=_KNOB_DEFAULTS)
def resnet56(input_shape: tuple[int, ...], num_classes: int, knobs: Knobs) -> keras.Model:
    """ResNet-56 for CIFAR (n=9, 0.85M parameters).

    Source: He et al. (2016), section 4.2. Expected test accuracy: CIFAR-10 93.03% in the paper
    (with augmentation), Fashion-MNIST 93.5-94.5%.
    """
    return cifar_resnet(input_shape, num_classes, knobs, 9, "resnet56")
