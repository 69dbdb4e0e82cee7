"""Construction-time checks shared by the optimizers, the resolver and the schedules.

Every check raises `ValueError` naming the owner, the argument, the value received and the accepted
range, so a typo on a command line is reported where it was made rather than as a NaN loss later.
"""

from __future__ import annotations

import math
import numbers


def check_real(
    owner: str,
    name: str,
    value: object,
    *,
    low: float | None = None,
    high: float | None = None,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> float:
    """Returns `value` as a float after checking it is a finite real number in the given range.

    Args:
        owner: What the argument belongs to (an optimizer or schedule name), for the message.
        name: The argument's name, for the message.
        value: The value to check. Booleans are rejected: `True` is not a learning rate.
        low: Lower bound, or `None` for none.
        high: Upper bound, or `None` for none.
        low_inclusive: Whether `low` itself is accepted.
        high_inclusive: Whether `high` itself is accepted.
    """
    interval = _describe_interval(low, high, low_inclusive, high_inclusive)
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(
            f"{owner}: `{name}` must be a real number in {interval}, got {value!r} "
            f"({type(value).__name__})."
        )
    value = float(value)
    too_low = low is not None and (value < low or (value == low and not low_inclusive))
    too_high = high is not None and (value > high or (value == high and not high_inclusive))
    if not math.isfinite(value) or too_low or too_high:
        raise ValueError(f"{owner}: `{name}` must be in {interval}, got {value!r}.")
    return value


def check_initial_accumulator(owner: str, value: object) -> float:
    """Returns an Adagrad-family starting accumulator after checking it is > 0 (tf.train rejects 0:
    the first step would divide by zero)."""
    return check_real(owner, "initial_accumulator_value", value, low=0.0, low_inclusive=False)


def check_regularization_strengths(owner: str, l1: object, l2: object) -> tuple[float, float]:
    """Returns the l1 and l2 regularization strengths after checking each is a real number >= 0."""
    return (
        check_real(owner, "l1_regularization_strength", l1, low=0.0),
        check_real(owner, "l2_regularization_strength", l2, low=0.0),
    )


def check_int(owner: str, name: str, value: object, *, low: int) -> int:
    """Returns `value` after checking it is an integer (not a bool) no smaller than `low`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        raise ValueError(f"{owner}: `{name}` must be an integer >= {low}, got {value!r}.")
    return int(value)


def check_bool(owner: str, name: str, value: object) -> bool:
    """Returns `value` after checking it is a bool (so that the string "False" is not truthy)."""
    if not isinstance(value, bool):
        raise ValueError(f"{owner}: `{name}` must be True or False, got {value!r}.")
    return value


def _describe_interval(
    low: float | None, high: float | None, low_inclusive: bool, high_inclusive: bool
) -> str:
    left = "[" if low_inclusive and low is not None else "("
    right = "]" if high_inclusive and high is not None else ")"
    low_text = "-inf" if low is None else f"{low:g}"
    high_text = "inf" if high is None else f"{high:g}"
    return f"{left}{low_text}, {high_text}{right}"
