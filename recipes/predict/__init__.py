"""Labelling new images with a trained run, or with a model exported from one.

    python -m recipes.predict RUN_DIR photos/ shirt.png --top-k 3
    from recipes.predict import load_predictor, predict_images
    predictions = predict_images(load_predictor("runs/lenet5/..."), ["shirt.png"], top_k=3)

A source is a run directory (its final or best model), a `.keras` file in one, or an exported
model (`.tflite` file or SavedModel directory, with the export.json `recipes.export` wrote beside
it). Images are prepared as the run's own pipeline prepared them: decoded, converted to the run's
channels, resized to its image size (bilinear with antialiasing, `recipes.data.datasets`), and
handed as raw pixels to a model that holds the run's preprocessing
(`recipes.train.inference.raw_image_model`, or the exported file). A gray image given to a colour
model has its channel repeated; a colour image given to a gray model is refused, unless its
channels are equal within `GRAY_TOLERANCE` levels (a gray image stored as RGB); an alpha channel
is dropped.

Predictions are written as `recipes.train.predictions` writes them: a CSV (file, rank, class_id,
label, probability) and the same in JSON.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from layers.validation import check_integer
from recipes.data.datasets import resize_uint8
from recipes.data.image_folder import IMAGE_EXTENSIONS, check_image_file, list_images
from recipes.export.runtime import load_exported
from recipes.train.errors import ConfigurationError, DataError
from recipes.train.inference import load_run, raw_image_model

# Colour channels this far apart at most (in levels 0..255) still make a gray image: JPEG's
# rounding leaves a gray image stored as RGB a level or two off.
GRAY_TOLERANCE = 2


class ImageChannelsError(DataError):
    """An image whose colours the model cannot take (a colour image for a grayscale model)."""


@dataclasses.dataclass(frozen=True)
class Predictor:
    """A classifier of raw images and what it expects.

    Attributes:
        probabilities: maps raw images (N, H, W, C), 0..255, to class probabilities (N, classes).
        class_names: the classes in output order.
        image_shape: (height, width, channels) of the images it takes.
        source: what it is, for messages (a run's model file, or an exported file).
    """

    probabilities: Callable[[np.ndarray], np.ndarray]
    class_names: tuple[str, ...]
    image_shape: tuple[int, int, int]
    source: str


def _is_exported(path: Path) -> bool:
    return path.suffix == ".tflite" or (path / "saved_model.pb").is_file()


def load_predictor(
    source: str | os.PathLike,
    model: str = "final",
    data_overrides: Mapping[str, str] | None = None,
) -> Predictor:
    """The classifier a source names (see the module docstring).

    Args:
        source: a run directory, a `.keras` file in one, a `.tflite` file or a SavedModel
            directory written by `recipes.export`.
        model: of a run directory: "final" (model.keras) or "best" (checkpoints/best.keras).
        data_overrides: `data.data_dir` / `data.manual_dir`, for a run whose preprocessing
            statistics must be recomputed from its data (runs from before they were saved).
    """
    path = Path(source)
    if path.exists() and _is_exported(path):
        exported, record = load_exported(path)
        return Predictor(
            probabilities=exported.predict,
            class_names=tuple(record["class_names"]),
            image_shape=tuple(exported.input_shape),
            source=str(path),
        )
    run = load_run(path, model, data_overrides)
    keras_model = raw_image_model(run)
    return Predictor(
        probabilities=lambda images: np.asarray(keras_model.predict_on_batch(images)),
        class_names=run.class_names,
        image_shape=run.image_shape,
        source=str(run.model_file),
    )


def find_images(inputs: Sequence[str | os.PathLike]) -> list[str]:
    """The image files among `inputs`: files as given, folders' images (not recursive), in order.

    Raises:
        ConfigurationError: an input does not exist, is not an image file, or nothing was found.
        recipes.data.image_folder.ImageFolderError: a file is not the image its name says.
    """
    found = []
    for given in inputs:
        path = Path(given)
        if path.is_dir():
            found += list_images(path)
        elif path.is_file():
            if path.suffix.lower() not in IMAGE_EXTENSIONS:
                raise ConfigurationError(
                    f"{path} is not an image file (accepted extensions: "
                    f"{', '.join(IMAGE_EXTENSIONS)})"
                )
            check_image_file(path)
            found.append(str(path))
        else:
            raise ConfigurationError(f"{path} does not exist")
    if not found:
        raise ConfigurationError("no images found: give image files or folders of images")
    return found


def load_image(path: str | os.PathLike, image_shape: Sequence[int]) -> np.ndarray:
    """An image file as the model takes it: uint8, (height, width, channels) of `image_shape`
    (see the module docstring for the channel rules).

    Raises:
        ImageChannelsError: a colour image for a grayscale model.
        recipes.train.errors.DataError: the file does not decode.
    """
    height, width, channels = image_shape
    try:
        image = tf.io.decode_image(tf.io.read_file(str(path)), expand_animations=False)
    except tf.errors.InvalidArgumentError:
        raise DataError(f"{path}: cannot be decoded as an image (corrupt or truncated)") from None
    if image.shape[-1] in (2, 4):  # gray or colour, with alpha
        image = image[..., :-1]
    if image.shape[-1] == 3 and channels == 1:
        spread = tf.reduce_max(tf.abs(tf.cast(image, tf.int32) - tf.cast(image[..., :1], tf.int32)))
        if int(spread) > GRAY_TOLERANCE:
            raise ImageChannelsError(
                f"{path} is a colour image (3 channels) but the model takes grayscale images (1 "
                "channel): convert it to grayscale first"
            )
        image = image[..., :1]
    elif image.shape[-1] == 1 and channels == 3:
        image = tf.image.grayscale_to_rgb(image)
    if tuple(image.shape[:2]) != (height, width):
        image = resize_uint8(image, (height, width))
    return image.numpy()


def predict_images(
    predictor: Predictor, images: Sequence[str], top_k: int = 5, batch_size: int = 64
) -> dict[str, list[dict[str, Any]]]:
    """Per image file, its `top_k` classes, most likely first: {"class_id", "label",
    "probability"} each (the format `recipes.train.predictions.write_predictions` writes)."""
    classes = len(predictor.class_names)
    try:
        check_integer("top_k", top_k, low=1, high=classes)
    except ValueError as error:
        raise ConfigurationError(f"{error} (the model has {classes} classes)") from None
    predictions = {}
    for start in range(0, len(images), batch_size):
        files = images[start : start + batch_size]
        batch = np.stack([load_image(file, predictor.image_shape) for file in files])
        for file, row in zip(files, predictor.probabilities(batch), strict=True):
            best = np.argsort(-row, kind="stable")[:top_k]
            predictions[file] = [
                {
                    "class_id": int(index),
                    "label": predictor.class_names[index],
                    "probability": float(row[index]),
                }
                for index in best
            ]
    return predictions


__all__ = [
    "ImageChannelsError",
    "Predictor",
    "find_images",
    "load_image",
    "load_predictor",
    "predict_images",
]
