"""Argument checks shared by the layers, so every layer words its errors the same way."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import keras


def positive_int(name: str, value: object) -> int:
    """Returns `value` if it is a positive int, else raises a ValueError naming it."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive integer. Received: {name}={value!r}")
    return value


def non_negative_float(name: str, value: object) -> float:
    """Returns `value` as a float if it is a real number >= 0, else raises a ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"`{name}` must be a number >= 0. Received: {name}={value!r}")
    return float(value)


def positive_float(name: str, value: object) -> float:
    """Returns `value` as a float if it is a real number > 0, else raises a ValueError."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"`{name}` must be a number > 0. Received: {name}={value!r}")
    return float(value)


def one_of(name: str, value: object, accepted: Iterable[str]) -> str:
    """Returns `value` if it is one of `accepted`, else raises a ValueError listing them."""
    accepted = tuple(accepted)
    if value not in accepted:
        raise ValueError(
            f"`{name}` must be one of {', '.join(repr(a) for a in accepted)}. "
            f"Received: {name}={value!r}"
        )
    return value


def data_format(value: str | None) -> str:
    """Resolves None to Keras's global image data format and validates the rest."""
    if value is None:
        return keras.config.image_data_format()
    return one_of("data_format", value, ("channels_last", "channels_first"))


def int_tuple(name: str, value: int | Sequence[int], rank: int) -> tuple[int, ...]:
    """Expands an int to a `rank`-tuple of positive ints, or validates a given tuple."""
    values = (value,) * rank if isinstance(value, int) else tuple(value)
    if len(values) != rank:
        raise ValueError(
            f"`{name}` must be an int or a tuple of {rank} ints. Received: {name}={value!r}"
        )
    for item in values:
        positive_int(name, item)
    return values


def axis_size(layer_name: str, input_shape: Sequence[int | None], axis: int) -> int:
    """The static size of `axis` of `input_shape`; layers need it to create their weights."""
    if not -len(input_shape) <= axis < len(input_shape):
        raise ValueError(
            f"{layer_name}: axis={axis} is out of range for an input of rank "
            f"{len(input_shape)} (shape {tuple(input_shape)})."
        )
    size = input_shape[axis]
    if size is None:
        raise ValueError(
            f"{layer_name}: the size of axis {axis} must be known. "
            f"Received input shape {tuple(input_shape)}."
        )
    return int(size)
