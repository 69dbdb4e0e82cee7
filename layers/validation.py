"""Argument checks shared by `layers`, `zoo` and `recipes`, worded the way Keras words its own.

Every check returns the value it accepted (converted where that is safe: an int learning rate
becomes a float) and raises `ValueError` in Keras's style, naming the argument, what it accepts and
what it received:

    `groups` must be an integer >= 1. Received: groups=0
    Momentum: `momentum` must be a number in [0, 1). Received: momentum=1.5

Booleans are never numbers here (`True` is not a learning rate, nor a count of groups), and the
string "false" is not a boolean. `owner` (a layer, optimizer or schedule name) prefixes the message
when the argument's name alone would not say where it went wrong.

This module sits at the bottom of the package graph (it imports only Keras), so the layers, the zoo
and the training machinery can all use it.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence
from typing import Any

import keras


def _fail(name: str, requirement: str, value: Any, owner: str | None) -> ValueError:
    prefix = f"{owner}: " if owner else ""
    return ValueError(f"{prefix}`{name}` must be {requirement}. Received: {name}={value!r}")


def _interval(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        left, right = "(" if low_open else "[", ")" if high_open else "]"
        return f" in {left}{low:g}, {high:g}{right}"
    if low is not None:
        return f" {'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f" {'<' if high_open else '<='} {high:g}"
    return ""


def check_number(
    name: str,
    value: Any,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    optional: bool = False,
    owner: str | None = None,
) -> float | None:
    """A finite real number within the given bounds, returned as a float.

    Args:
        name: the argument's name, for the message.
        value: the value to check.
        low, high: the bounds, or None for none.
        low_open, high_open: whether the bound itself is excluded.
        optional: whether None is accepted (and returned).
        owner: what the argument belongs to, for the message.
    """
    if value is None and optional:
        return None
    requirement = ("None or " if optional else "") + "a number"
    requirement += _interval(low, high, low_open, high_open)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise _fail(name, requirement, value, owner)
    number = float(value)
    too_low = low is not None and (number < low or (low_open and number == low))
    too_high = high is not None and (number > high or (high_open and number == high))
    if not math.isfinite(number) or too_low or too_high:
        raise _fail(name, requirement, value, owner)
    return number


def check_integer(
    name: str,
    value: Any,
    *,
    low: int | None = None,
    high: int | None = None,
    optional: bool = False,
    owner: str | None = None,
) -> int | None:
    """An integer (not a bool, not a float such as 2.0) within the inclusive bounds."""
    if value is None and optional:
        return None
    requirement = ("None or " if optional else "") + "an integer"
    requirement += _interval(low, high, False, False)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise _fail(name, requirement, value, owner)
    if (low is not None and value < low) or (high is not None and value > high):
        raise _fail(name, requirement, value, owner)
    return int(value)


def check_bool(name: str, value: Any, *, owner: str | None = None) -> bool:
    """True or False itself: the string "False" and the number 0 are refused."""
    if not isinstance(value, bool):
        raise _fail(name, "True or False", value, owner)
    return value


def check_choice(
    name: str,
    value: Any,
    choices: Iterable[Any],
    *,
    optional: bool = False,
    owner: str | None = None,
) -> Any:
    """One of `choices` exactly (names given by users go through `layers.naming` first)."""
    choices = tuple(choices)
    if value is None and optional:
        return None
    if isinstance(value, bool) or value not in choices:
        accepted = ", ".join(repr(choice) for choice in choices)
        raise _fail(name, ("None or " if optional else "") + f"one of {accepted}", value, owner)
    return value


def check_shape(
    name: str,
    value: Any,
    *,
    rank: int | Sequence[int] | None = None,
    allow_unknown: bool = False,
    owner: str | None = None,
) -> tuple[int | None, ...]:
    """A shape: a sequence of positive integers (None for unknown sizes where allowed).

    Args:
        rank: the accepted length, or lengths; None accepts any.
        allow_unknown: whether None stands for a size only known at run time.
    """
    ranks = (rank,) if isinstance(rank, int) else tuple(rank or ())
    what = "unknown (None) or " if allow_unknown else ""
    rank_text = f" of length {' or '.join(map(str, ranks))}" if ranks else ""
    requirement = f"a tuple{rank_text} of {what}positive integers"
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise _fail(name, requirement, value, owner)
    if ranks and len(value) not in ranks:
        raise _fail(name, requirement, value, owner)
    for size in value:
        if size is None and allow_unknown:
            continue
        if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
            raise _fail(name, requirement, value, owner)
    return tuple(None if size is None else int(size) for size in value)


def check_int_tuple(
    name: str, value: Any, rank: int, *, owner: str | None = None
) -> tuple[int, ...]:
    """An int expanded to a `rank`-tuple of positive ints, or a given `rank`-tuple checked."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = (value,) * rank
    return check_shape(name, value, rank=rank, owner=owner)


def check_data_format(value: str | None) -> str:
    """None resolves to Keras's global image data format; anything else must name one."""
    if value is None:
        return keras.config.image_data_format()
    return check_choice("data_format", value, ("channels_last", "channels_first"))


def axis_size(owner: str, input_shape: Sequence[int | None], axis: int) -> int:
    """The static size of `axis` of `input_shape`: layers need it to create their weights."""
    if not -len(input_shape) <= axis < len(input_shape):
        raise ValueError(
            f"{owner}: axis={axis} is out of range for an input of rank {len(input_shape)} "
            f"(shape {tuple(input_shape)})."
        )
    size = input_shape[axis]
    if size is None:
        raise ValueError(
            f"{owner}: the size of axis {axis} must be known. "
            f"Received input shape {tuple(input_shape)}."
        )
    return int(size)
