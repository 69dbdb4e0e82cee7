"""The fine-tuning modes, shared by the ImageNet backbones and the zoo's own trained weights.

- "predict": the trained network as it is, its classifier included (the classes it was trained
  on).
- "head": the trained network frozen, its BatchNormalization layers kept in inference mode, and a
  new classifier for `num_classes`.
- "full": the same model as "head" to start with: train the head first, then unfreeze the network
  (`zoo.unfreeze_backbone`, optionally only its top N blocks), compile again with a lower
  learning rate and train on. BatchNormalization stays in inference mode throughout, so that small
  fine-tuning batches do not wreck the trained statistics.

For a backbone, the trained network is the nested `keras.applications` model (see
`zoo.backbones`); for a small model with trained weights (`weights="fashion_mnist"`), it is every
layer but the classifier, and its blocks are its units: each linear layer (Dense, Conv2D,
DepthwiseConv2D, LocallyConnected2D) with the normalization and nonlinearity after it.
"""

from __future__ import annotations

import keras

from layers.validation import check_choice
from zoo.features import CLASSIFIER_PREFIX

FINE_TUNE_MODES = ("predict", "head", "full")


def resolve_mode(
    requested: str | None, *, classifier: bool, num_classes: int, trained_classes: int
) -> str:
    """The fine-tuning mode of a model built from trained weights.

    Args:
        requested: the `fine_tune` asked for, or None: "predict" when the model keeps a classifier
            for the classes the weights were trained on, "head" otherwise (a new classifier, or
            none: a feature model is cut from the "head" model, frozen).
        classifier: whether the model keeps a classifier (not a feature model).
        num_classes: the classes asked for.
        trained_classes: the classes the weights were trained on.

    Raises:
        ValueError: for an unknown mode, or "predict" with other classes or without a classifier.
    """
    check_choice("fine_tune", requested, FINE_TUNE_MODES, optional=True)
    if not classifier:
        if requested == "predict":
            raise ValueError(
                "fine_tune='predict' keeps the trained classifier; a model without a classifier "
                "(include_top=False, features_only=True or num_classes=0) is built in mode "
                "'head' (frozen) or 'full'. Received: fine_tune='predict'"
            )
        return requested or "head"
    if requested is None:
        return "predict" if num_classes == trained_classes else "head"
    if requested == "predict" and num_classes != trained_classes:
        raise ValueError(
            f"fine_tune='predict' keeps the trained classifier, so num_classes must be "
            f"{trained_classes}, got {num_classes}. Leave fine_tune unset (or use 'head' or "
            "'full') for a new classifier."
        )
    return requested


def keep_batchnorm_in_inference(network: keras.Model) -> None:
    """Freeze every BatchNormalization layer: a frozen Keras 3 BatchNormalization layer runs in
    inference mode (moving statistics) even when the model trains."""
    for layer in network.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False


def _is_classifier(layer: keras.layers.Layer) -> bool:
    return layer.name.startswith(CLASSIFIER_PREFIX)


def _starts_block(layer: keras.layers.Layer) -> bool:
    """A layer with a kernel of its own (not a normalization or activation with weights)."""
    return any(
        weight.path.split("/")[-1] in ("kernel", "depthwise_kernel") for weight in layer.weights
    )


def trunk_blocks(model: keras.Model) -> list[tuple[str, list[keras.layers.Layer]]]:
    """A small model's layers but the classifier, grouped into blocks, bottom to top.

    Each layer with a kernel starts a block named after it; the layers after it (normalization,
    nonlinearity, pooling, dropout) join it. Layers before the first kernel (input, input dropout)
    form no block.
    """
    blocks: list[tuple[str, list[keras.layers.Layer]]] = []
    for layer in model.layers:
        if _is_classifier(layer):
            continue
        if _starts_block(layer):
            blocks.append((layer.name, []))
        if blocks:
            blocks[-1][1].append(layer)
    return blocks


def freeze_trunk(model: keras.Model) -> None:
    """Mode "head" for a small model: every layer but the classifier frozen (BatchNormalization
    therefore in inference mode)."""
    for layer in model.layers:
        layer.trainable = _is_classifier(layer)


def unfreeze_trunk(model: keras.Model, top_n_blocks: int | None = None) -> list[str]:
    """The second phase of mode "full" for a small model: the top `top_n_blocks` blocks of
    `trunk_blocks` (None: all) trainable again, BatchNormalization excepted.

    Returns:
        The names of the unfrozen blocks, bottom to top.
    """
    blocks = trunk_blocks(model)
    chosen = blocks if top_n_blocks is None else blocks[-top_n_blocks:]
    freeze_trunk(model)
    for _, layers in chosen:
        for layer in layers:
            layer.trainable = True
    keep_batchnorm_in_inference(model)
    return [name for name, _ in chosen]
