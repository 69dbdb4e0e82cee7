"""Input validation shared by the small models."""

from __future__ import annotations

from typing import Any

import keras


def image_input(input_shape: tuple[int | None, ...], *, model: str, min_size: int = 16) -> Any:
    """A `keras.Input` for (height, width, channels) images, checked for the model's needs.

    Small models expect images already scaled by the data pipeline (e.g. to [0, 1]).

    Args:
        input_shape: (height, width, channels) with 1 or 3 channels.
        model: the model's name, for error messages.
        min_size: the smallest height/width the model's downsampling supports.
    """
    if len(input_shape) != 3:
        raise ValueError(
            f"{model} expects input_shape=(height, width, channels), got {input_shape!r}."
        )
    height, width, channels = input_shape
    if channels is None or channels < 1:
        raise ValueError(f"{model} needs a known channel count, got input_shape={input_shape!r}.")
    for size in (height, width):
        if size is None or size < min_size:
            raise ValueError(
                f"{model} needs height and width >= {min_size}, got input_shape={input_shape!r}."
            )
    return keras.Input(shape=tuple(input_shape), name="image")
