"""Test-time augmentation (TTA): averaging a classifier's predictions over views of each image.

A network trained on randomly mirrored images is close to, but not exactly, mirror-invariant;
averaging its class probabilities for an image and for the image's mirror image cancels part of
its remaining error, for the price of a second forward pass. It is the cheapest of the ensembles
the course recommends for the last percent of accuracy. Only views that keep the label are
meaningful: a horizontal flip keeps a shirt a shirt, but not a "3" a "3".

    model = with_test_time_augmentation(trained_model, "flip")
    tta_metrics(trained_model, test_dataset, "flip")  # {"tta": "flip", "test_accuracy_tta": ...}

The recipes report the single-view test accuracy as `test_accuracy` always, and the averaged one
as `test_accuracy_tta` when their `tta` setting is not "none".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras

# Views of a batch of NHWC images; each mode averages the predictions over its views.
_VIEWS: dict[str, Callable[[Any], Any]] = {
    "identity": lambda images: images,
    "flip_h": lambda images: keras.ops.flip(images, axis=2),
}
TTA_MODES: dict[str, tuple[str, ...]] = {
    "none": ("identity",),
    "flip": ("identity", "flip_h"),
}


def check_tta(mode: str) -> None:
    """Rejects a mode that is not one of `TTA_MODES`, naming the accepted ones."""
    if mode not in TTA_MODES:
        raise ValueError(f"unknown tta {mode!r}; accepted: {', '.join(TTA_MODES)}")


def with_test_time_augmentation(model: keras.Model, mode: str) -> keras.Model:
    """A model that averages `model`'s outputs over the views of test-time mode `mode`.

    The returned model shares `model`'s layers and weights (nothing is copied); mode "none"
    returns `model` itself.

    Args:
        model: a classifier of images, input `(batch, height, width, channels)`.
        mode: one of `TTA_MODES`.

    Returns:
        A Keras model with `model`'s input and output shapes.
    """
    check_tta(mode)
    views = TTA_MODES[mode]
    if len(views) == 1:
        return model
    input_shape = tuple(model.inputs[0].shape)
    if len(input_shape) != 4:
        raise ValueError(
            f"tta {mode!r} transforms images (batch, height, width, channels); "
            f"{model.name} takes inputs of shape {input_shape}"
        )
    images = keras.Input(shape=input_shape[1:], dtype=model.inputs[0].dtype)
    outputs = keras.layers.Average()([model(_VIEWS[view](images)) for view in views])
    return keras.Model(images, outputs, name=f"{model.name}_tta_{mode}")


def tta_metrics(model: keras.Model, dataset: Any, mode: str) -> dict[str, Any]:
    """Loss and accuracy of `model` on `dataset` with its predictions averaged over `mode`'s views.

    Args:
        model: a compiled classifier; its loss scores the averaged predictions.
        dataset: batches of `(images, labels)`, labels in the format `model`'s loss expects.
        mode: one of `TTA_MODES`.

    Returns:
        `{"tta": mode, "test_loss_tta": ..., "test_accuracy_tta": ...}`, the keys a run's
        metrics.json holds them under.
    """
    if model.loss is None:
        raise ValueError(f"{model.name} is not compiled: its loss scores the averaged predictions")
    averaged = with_test_time_augmentation(model, mode)
    if averaged is not model:
        averaged.compile(loss=model.loss, metrics=["accuracy"])
    result = averaged.evaluate(dataset, verbose=0, return_dict=True)
    return {
        "tta": mode,
        "test_loss_tta": float(result["loss"]),
        "test_accuracy_tta": float(result["accuracy"]),
    }
