"""Learning-rate schedules by name: values at known steps, warmup, plateau callback, errors."""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
import pytest

from recipes.optim.optimizers import get_optimizer
from recipes.optim.schedules import (
    SCHEDULE_NAMES,
    LinearWarmup,
    canonical_schedule_name,
    get_schedule,
    get_schedule_callbacks,
    schedule_hyperparameters,
)

STEPS_PER_EPOCH = 10


def _values(schedule: Any, steps: list[int]) -> list[float]:
    return [float(schedule(step)) for step in steps]


def test_constant_is_a_plain_float() -> None:
    assert get_schedule("constant", 0.1) == 0.1


def test_step_default_boundaries_divide_by_ten_at_half_and_three_quarters() -> None:
    schedule = get_schedule("step", 0.1, steps_per_epoch=STEPS_PER_EPOCH, epochs=8)
    # Boundaries at epochs 4 and 6 = steps 40 and 60; Keras switches after the boundary step.
    np.testing.assert_allclose(
        _values(schedule, [0, 40, 41, 60, 61, 79]), [0.1, 0.1, 0.01, 0.01, 0.001, 0.001], rtol=1e-6
    )


def test_step_with_explicit_boundaries_and_values() -> None:
    schedule = get_schedule(
        "step",
        0.1,
        steps_per_epoch=STEPS_PER_EPOCH,
        boundary_epochs=[1, 3],
        values=[0.5, 0.2, 0.05],
    )
    np.testing.assert_allclose(_values(schedule, [0, 11, 31]), [0.5, 0.2, 0.05], rtol=1e-6)


def test_step_drop_every_n_epochs() -> None:
    schedule = get_schedule(
        "step", 1.0, steps_per_epoch=STEPS_PER_EPOCH, drop_every_epochs=2, factor=0.5
    )
    np.testing.assert_allclose(_values(schedule, [0, 19, 20, 39, 40]), [1, 1, 0.5, 0.5, 0.25])


def test_exponential_and_inverse_time_per_epoch() -> None:
    exponential = get_schedule(
        "exponential", 1.0, steps_per_epoch=STEPS_PER_EPOCH, decay_rate=0.5, decay_epochs=2
    )
    np.testing.assert_allclose(_values(exponential, [0, 10, 20]), [1, 0.5**0.5, 0.5], rtol=1e-6)
    inverse = get_schedule(
        "inverse_time", 1.0, steps_per_epoch=STEPS_PER_EPOCH, decay_rate=1.0, staircase=True
    )
    np.testing.assert_allclose(_values(inverse, [0, 9, 10, 20]), [1, 1, 0.5, 1 / 3], rtol=1e-6)


def test_cosine_reaches_alpha_at_the_last_epoch() -> None:
    schedule = get_schedule("cosine", 0.2, steps_per_epoch=STEPS_PER_EPOCH, epochs=5, alpha=0.1)
    expected_middle = 0.2 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    np.testing.assert_allclose(
        _values(schedule, [0, 25, 50]), [0.2, expected_middle, 0.02], rtol=1e-5
    )


def test_cosine_restarts_jumps_back_up() -> None:
    schedule = get_schedule(
        "cosine_restarts", 0.1, steps_per_epoch=STEPS_PER_EPOCH, first_decay_epochs=1, t_mul=1.0
    )
    before, after = _values(schedule, [9, 10])
    assert before < 0.01 and after == pytest.approx(0.1)


@pytest.mark.parametrize("name", [n for n in SCHEDULE_NAMES if n != "plateau"])
def test_warmup_ramps_linearly_into_every_schedule(name: str) -> None:
    plain = get_schedule(name, 0.1, steps_per_epoch=STEPS_PER_EPOCH, epochs=6)
    warmed = get_schedule(name, 0.1, steps_per_epoch=STEPS_PER_EPOCH, epochs=6, warmup_epochs=2)
    assert isinstance(warmed, LinearWarmup)
    target = float(plain(20)) if callable(plain) else plain
    np.testing.assert_allclose(
        _values(warmed, [0, 9, 19]), [target / 20, target / 2, target], rtol=1e-5
    )
    # After the warmup the schedule continues on its own clock.
    later = [20, 35, 59]
    expected = _values(plain, later) if callable(plain) else [plain] * 3
    np.testing.assert_allclose(_values(warmed, later), expected, rtol=1e-6)


def test_fractional_warmup_epochs() -> None:
    warmed = get_schedule("constant", 1.0, steps_per_epoch=STEPS_PER_EPOCH, warmup_epochs=0.5)
    assert warmed.warmup_steps == 5
    np.testing.assert_allclose(_values(warmed, [0, 4, 5]), [0.2, 1.0, 1.0], rtol=1e-6)


def test_warmup_serializes_with_its_inner_schedule() -> None:
    warmed = get_schedule("cosine", 0.1, steps_per_epoch=STEPS_PER_EPOCH, epochs=3, warmup_epochs=1)
    restored = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(warmed))
    assert isinstance(restored, LinearWarmup)
    steps = [0, 5, 10, 17, 29]
    np.testing.assert_allclose(_values(restored, steps), _values(warmed, steps), rtol=1e-7)


def test_plateau_lowers_the_learning_rate_of_a_fitting_model() -> None:
    kwargs = {"factor": 0.5, "patience": 0, "monitor": "loss", "min_delta": 1e3}
    learning_rate = get_schedule("plateau", 0.1, **kwargs)
    callbacks = get_schedule_callbacks("plateau", **kwargs)
    assert learning_rate == 0.1 and len(callbacks) == 1
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=get_optimizer("Momentum", learning_rate=learning_rate), loss="mse")
    data = np.ones((8, 3), "float32")
    # min_delta is huge, so no epoch counts as an improvement and every epoch halves the rate.
    model.fit(data, data[:, :1], epochs=3, callbacks=callbacks, verbose=0)
    assert float(model.optimizer.learning_rate) == pytest.approx(0.1 * 0.5**2)


def test_other_schedules_need_no_callbacks() -> None:
    assert get_schedule_callbacks("cosine", alpha=0.1, steps_per_epoch=5, epochs=2) == []


def test_listing_covers_every_name_and_is_accepted() -> None:
    for name in SCHEDULE_NAMES:
        listed = schedule_hyperparameters(name)
        get_schedule(name, 0.1, steps_per_epoch=STEPS_PER_EPOCH, epochs=4, **listed)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: get_schedule("linear_decay", 0.1), "Valid names: constant, step"),
        (lambda: get_schedule("cosine", 0.1, steps_per_epoch=10), "needs `epochs`"),
        (lambda: get_schedule("exponential", 0.1), "`steps_per_epoch` is needed"),
        (lambda: get_schedule("constant", 0.1, warmup_epochs=1), "`steps_per_epoch` is needed"),
        (lambda: get_schedule("constant", -0.1), r"`base_lr` must be a number > 0\. Received"),
        (lambda: get_schedule("constant", True), "Received: base_lr=True"),
        (
            lambda: get_schedule("cosine", 0.1, epochs=2, steps_per_epoch=True),
            "steps_per_epoch=True",
        ),
        (lambda: get_schedule("exponential", 0.1, steps_per_epoch=5, staircase=1), "True or False"),
        (
            lambda: get_schedule("step", 0.1, steps_per_epoch=5, boundary_epochs=[1, "2"]),
            r"`boundary_epochs\[1\]` must be a number >= 0",
        ),
        (lambda: get_schedule_callbacks("plateau", monitor=""), "`monitor` must be a metric name"),
        (lambda: get_schedule("cosine", 0.1, epochs=2, steps_per_epoch=0), "integer >= 1"),
        (lambda: get_schedule("step", 0.1, factor=10, epochs=4, steps_per_epoch=2), r"\(0, 1\)"),
        (
            lambda: get_schedule("step", 0.1, steps_per_epoch=10, boundary_epochs=[3, 2]),
            "must increase",
        ),
        (
            lambda: get_schedule(
                "step", 0.1, steps_per_epoch=10, boundary_epochs=[1], values=[0.1]
            ),
            "one more entry",
        ),
        (
            lambda: get_schedule(
                "step", 0.1, steps_per_epoch=10, drop_every_epochs=2, boundary_epochs=[1]
            ),
            "not both",
        ),
        (
            lambda: get_schedule("cosine", 0.1, epochs=2, steps_per_epoch=5, beta=1),
            "accepts: alpha",
        ),
        (lambda: get_schedule("plateau", 0.1, warmup_epochs=1), "cannot have a warmup"),
        (lambda: get_schedule_callbacks("plateau", patience=-1), "integer >= 0"),
        (lambda: LinearWarmup(0.1, warmup_steps=0), "integer >= 1"),
    ],
)
def test_clear_errors(call: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [
        ("Cosine-Restarts", "cosine_restarts"),
        ("cosine restarts", "cosine_restarts"),
        ("CosineRestarts", "cosine_restarts"),
        ("SGDR", "cosine_restarts"),
        (" STEP ", "step"),
        ("Inverse-Time", "inverse_time"),
    ],
)
def test_name_spellings(spelling: str, canonical: str) -> None:
    assert canonical_schedule_name(spelling) == canonical


@pytest.mark.parametrize(
    ("typo", "suggestion"),
    [("cosine_restart", "cosine_restarts"), ("expnential", "exponential"), ("platau", "plateau")],
)
def test_unknown_name_suggests_the_closest(typo: str, suggestion: str) -> None:
    with pytest.raises(
        ValueError, match=f"schedule '{typo}'. Did you mean '{suggestion}'?"
    ) as error:
        get_schedule(typo, 0.1)
    assert ", ".join(SCHEDULE_NAMES) in str(error.value)


def test_config_dicts_and_built_schedules() -> None:
    from_dict = get_schedule(
        {"name": "Step", "factor": 0.5, "boundary_epochs": [1]}, 0.1, steps_per_epoch=10
    )
    np.testing.assert_allclose(_values(from_dict, [10, 11]), [0.1, 0.05], rtol=1e-6)
    built = keras.optimizers.schedules.CosineDecay(0.1, decay_steps=100)
    assert get_schedule(built) is built
    restored = get_schedule(keras.saving.serialize_keras_object(built))
    assert type(restored) is keras.optimizers.schedules.CosineDecay
    assert restored.get_config() == built.get_config()
    warmed = get_schedule(built, steps_per_epoch=10, warmup_epochs=1)
    assert isinstance(warmed, LinearWarmup) and warmed.schedule is built
    np.testing.assert_allclose(float(warmed(0)), float(built(10)) / 10, rtol=1e-6)
    assert get_schedule_callbacks(built) == []
    (callback,) = get_schedule_callbacks({"name": "Plateau", "patience": 3})
    assert callback.patience == 3
    with pytest.raises(ValueError, match="options base_lr cannot be applied to a built schedule"):
        get_schedule(built, 0.1)
    with pytest.raises(ValueError, match="options alpha cannot be applied to a Keras config"):
        get_schedule(keras.saving.serialize_keras_object(built), alpha=0.1)
    with pytest.raises(ValueError, match="'step' needs `base_lr`"):
        get_schedule("step", steps_per_epoch=10, epochs=4)
