"""Argument checks several tf.train optimizers share, so each is worded and bounded once."""

from __future__ import annotations

from layers.validation import check_number


def check_positive_accumulator(owner: str, value: object) -> float:
    """An Adagrad-family starting accumulator: positive, or the first step divides by zero
    where a gradient is zero (tf.train refuses 0 too)."""
    return check_number("initial_accumulator_value", value, low=0.0, low_open=True, owner=owner)


def check_regularization_strengths(owner: str, l1: object, l2: object) -> tuple[float, float]:
    """The l1 and l2 regularization strengths of the proximal and dual-averaging updates, >= 0."""
    return (
        check_number("l1_regularization_strength", l1, low=0.0, owner=owner),
        check_number("l2_regularization_strength", l2, low=0.0, owner=owner),
    )
