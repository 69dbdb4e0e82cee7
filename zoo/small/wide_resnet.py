"""Wide residual networks (Zagoruyko & Komodakis, 2016): pre-activation ResNets made wide, not deep.

WRN-d-k has (d - 4) / 6 blocks in each of three stages of 16k, 32k and 64k maps after a 16-map
stem. A block is BN-ReLU-conv3x3-BN-ReLU-(dropout)-conv3x3 plus its input; where the shape
changes, the shortcut is a strided 1x1 convolution of the block's pre-activated input. The network
ends BN-ReLU, global average, classifier. Width buys more accuracy per parameter than depth on
CIFAR-10: the paper's WRN-16-4 (2.7M, 5.02% error) beats the 1.7M-parameter ResNet-110 (6.43%).
"""

from __future__ import annotations

from typing import Any

import keras

from zoo.knobs import Knobs
from zoo.registry import register_model
from zoo.small.common import image_input

_PAPER = "Zagoruyko & Komodakis (2016), Wide Residual Networks"
# The paper's weight decay 5e-4 is l2 = 2.5e-4 in the knobs' convention (l2 * sum(w**2)).
_KNOB_DEFAULTS = {"norm": "batch", "init": "he", "l2": 2.5e-4}
_STEM_MAPS = 16
_STAGE_MAPS = (16, 32, 64)


def _wide_block(x: Any, knobs: Knobs, maps: int, strides: int, name: str) -> Any:
    """Pre-activation block; a changing shape takes its shortcut from the pre-activated input."""
    activated = knobs.norm_activate(x, name=f"{name}_preact")
    y = knobs.conv_layer(activated, maps, 3, strides=strides, name=f"{name}_conv1")
    y = knobs.norm_activate(y, name=f"{name}_mid")
    y = knobs.hidden_dropout(y, name=f"{name}_dropout")
    y = knobs.conv_layer(y, maps, 3, name=f"{name}_conv2")
    shortcut = x
    if strides != 1 or x.shape[-1] != maps:
        shortcut = knobs.conv_layer(activated, maps, 1, strides=strides, name=f"{name}_shortcut")
    return keras.layers.Add(name=f"{name}_out")([shortcut, y])


def wide_resnet(
    input_shape: tuple[int, ...], num_classes: int, knobs: Knobs, depth: int, width: int, name: str
) -> keras.Model:
    """WRN-`depth`-`width`: (depth - 4) / 6 pre-activation blocks per stage, maps times `width`."""
    inputs = image_input(input_shape, model=name, min_size=8)
    x = knobs.input_dropout_layer(inputs)
    x = knobs.conv_layer(x, _STEM_MAPS, 3, name="stem")
    for stage, maps in enumerate(_STAGE_MAPS, start=1):
        for block in range(1, (depth - 4) // 6 + 1):
            strides = 2 if stage > 1 and block == 1 else 1
            x = _wide_block(x, knobs, maps * width, strides, name=f"stage{stage}_block{block}")
    x = knobs.norm_activate(x, name="final")
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    return keras.Model(inputs, knobs.classifier(x, num_classes), name=name)


@register_model(paper=_PAPER, knob_defaults=_KNOB_DEFAULTS)
def wide_resnet16_2(input_shape: tuple[int, ...], num_classes: int, knobs: Knobs) -> keras.Model:
    """WRN-16-2: two blocks per stage of 32, 64, 128 maps (0.69M parameters).

    Source: Zagoruyko & Komodakis (2016), table 4 and section 3: pre-activation blocks, 1x1
    projection shortcuts, weight decay 5e-4 (`l2=2.5e-4`), dropout 0.3 between the convolutions
    optional (`dropout=0.3`). Expected test accuracy: CIFAR-10 about 94% with flip and crop (the
    paper reports the wider WRN-16-4 at 94.98%), Fashion-MNIST 95-95.5%.
    """
    return wide_resnet(input_shape, num_classes, knobs, 16, 2, "wide_resnet16_2")
