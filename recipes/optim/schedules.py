"""Learning-rate schedules by name, in epochs, with an optional linear warmup in front.

`get_schedule("step", 0.1, steps_per_epoch=390, epochs=90, boundary_epochs=[30, 60])` returns
what `recipes.optim.optimizers.get_optimizer(..., learning_rate=...)` takes. Schedules are stated in
epochs (what a recipe thinks in) and converted to optimizer steps with `steps_per_epoch` (the
number of batches per epoch; with gradient accumulation, still batches: Keras advances schedules
every batch).

Names (`SCHEDULE_NAMES`):

- `constant`: `base_lr` throughout.
- `step`: "keep it large for a long time, then divide by 10": multiply by `factor` at each of
  `boundary_epochs` (default: at 50% and 75% of `epochs`), or give the `values` outright, or
  drop every `drop_every_epochs` epochs.
- `exponential`: `base_lr * decay_rate ** (epoch / decay_epochs)` (`staircase` floors the exponent).
- `inverse_time`: `base_lr / (1 + decay_rate * epoch / decay_epochs)`.
- `cosine`: half a cosine from `base_lr` down to `alpha * base_lr` over `epochs`.
- `cosine_restarts`: SGDR, cosine cycles of `first_decay_epochs`, each `t_mul` times longer and
  `m_mul` times lower than the last.
- `plateau`: `base_lr` as a plain value, lowered by `factor` when `monitor` stops improving for
  `patience` epochs -- by the callback `get_schedule_callbacks` returns.

`warmup_epochs` replaces the first epochs of any schedule but `plateau` by a linear ramp up to the
schedule's own value at the end of the warmup (`LinearWarmup`); the schedule keeps its absolute
time, so boundaries and cosine lengths count from the first step.

Names are resolved by `layers.naming` (case, `-`, `_` and spaces ignored; "sgdr" is
`cosine_restarts`). Like `keras.optimizers.schedules.get`, `get_schedule` also takes a dict
`{"name": ..., **arguments}`, a Keras config dict, or a built `LearningRateSchedule`.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import keras
from keras import ops

from layers import naming
from layers.validation import check_bool, check_integer, check_number

SCHEDULE_NAMES: tuple[str, ...] = (
    "constant",
    "step",
    "exponential",
    "inverse_time",
    "cosine",
    "cosine_restarts",
    "plateau",
)

# The arguments of `get_schedule` that place a schedule in time rather than shape it; a runner
# sets them from its own settings.
TIMING_ARGUMENTS: tuple[str, ...] = ("base_lr", "steps_per_epoch", "epochs", "warmup_epochs")

Schedule = keras.optimizers.schedules.LearningRateSchedule

_KIND = "learning-rate schedule"
_NAMES = naming.Names(_KIND, SCHEDULE_NAMES, aliases={"sgdr": "cosine_restarts"})


@keras.saving.register_keras_serializable(package="recipes")
class LinearWarmup(Schedule):
    """Ramps the learning rate linearly for `warmup_steps`, then follows `schedule`.

    Step `s < warmup_steps` gets `target * (s + 1) / warmup_steps`, where `target` is the
    schedule's value at step `warmup_steps`, so the ramp ends exactly where the schedule continues
    and no step is wasted at a learning rate of 0. From `warmup_steps` on, the schedule is used
    unchanged (its time is not shifted).

    Large learning rates (and large batches) can blow up the first steps, while the weights are
    random and the adaptive statistics empty; the ramp avoids that (Goyal et al., 2017).

    Args:
        schedule: A float or a `LearningRateSchedule`.
        warmup_steps: Integer >= 1.
    """

    def __init__(self, schedule: float | Schedule, warmup_steps: int) -> None:
        if not isinstance(schedule, Schedule):
            schedule = check_number("schedule", schedule, low=0.0, owner="LinearWarmup")
        self.schedule = schedule
        self.warmup_steps = check_integer("warmup_steps", warmup_steps, low=1, owner="LinearWarmup")

    def _after_warmup(self, step: Any) -> Any:
        if isinstance(self.schedule, Schedule):
            return ops.cast(self.schedule(step), "float32")
        return ops.convert_to_tensor(self.schedule, "float32")

    def __call__(self, step: Any) -> Any:
        target = self._after_warmup(ops.convert_to_tensor(self.warmup_steps, "int64"))
        ramp = target * (ops.cast(step, "float32") + 1.0) / float(self.warmup_steps)
        return ops.where(step < self.warmup_steps, ramp, self._after_warmup(step))

    def get_config(self) -> dict[str, Any]:
        schedule = self.schedule
        if isinstance(schedule, Schedule):
            schedule = keras.optimizers.schedules.serialize(schedule)
        return {"schedule": schedule, "warmup_steps": self.warmup_steps}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> LinearWarmup:
        config = dict(config)
        if isinstance(config["schedule"], dict):
            config["schedule"] = keras.optimizers.schedules.deserialize(config["schedule"])
        return cls(**config)


@dataclasses.dataclass(frozen=True)
class _Timing:
    """Converts the epochs a recipe states into optimizer steps."""

    name: str
    steps_per_epoch: int | None
    epochs: float | None

    def steps(self, argument: str, epochs: float) -> int:
        if self.steps_per_epoch is None:
            raise ValueError(
                f"Schedule {self.name!r}: `{argument}` is in epochs, so `steps_per_epoch` is "
                "needed to convert it to optimizer steps."
            )
        return max(1, round(epochs * self.steps_per_epoch))

    def total_epochs(self, purpose: str) -> float:
        if self.epochs is None:
            raise ValueError(f"Schedule {self.name!r} needs `epochs` {purpose}.")
        return self.epochs


# Argument checks, called as `check(name, value, owner=...)`: layers.validation's, and two shapes
# of value it has no check for.
def _optional_number_list(name: str, value: Any, *, owner: str) -> tuple[float, ...] | None:
    if value is None:
        return None
    if isinstance(value, str | bytes) or not isinstance(value, Sequence) or not value:
        raise ValueError(
            f"{owner}: `{name}` must be None or a non-empty list of numbers. "
            f"Received: {name}={value!r}"
        )
    return tuple(check_number(f"{name}[{i}]", v, low=0.0, owner=owner) for i, v in enumerate(value))


def _metric_name(name: str, value: Any, *, owner: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(
            f"{owner}: `{name}` must be a metric name (a non-empty string). "
            f"Received: {name}={value!r}"
        )
    return value


_POSITIVE = functools.partial(check_number, low=0.0, low_open=True)
_OPTIONAL_POSITIVE = functools.partial(_POSITIVE, optional=True)
_NON_NEGATIVE = functools.partial(check_number, low=0.0)
_FRACTION = functools.partial(check_number, low=0.0, high=1.0)
_DECAY_FACTOR = functools.partial(check_number, low=0.0, high=1.0, low_open=True, high_open=True)
_NON_NEGATIVE_INT = functools.partial(check_integer, low=0)


def _constant(base_lr: float, timing: _Timing) -> float:
    return base_lr


def _step(
    base_lr: float,
    timing: _Timing,
    *,
    factor: float,
    boundary_epochs: tuple[float, ...] | None,
    values: tuple[float, ...] | None,
    drop_every_epochs: float | None,
) -> Schedule:
    if drop_every_epochs is not None:
        if boundary_epochs is not None or values is not None:
            raise ValueError(
                "Schedule 'step': give either `drop_every_epochs` or `boundary_epochs`/`values`, "
                "not both."
            )
        return keras.optimizers.schedules.ExponentialDecay(
            base_lr,
            decay_steps=timing.steps("drop_every_epochs", drop_every_epochs),
            decay_rate=factor,
            staircase=True,
        )
    if boundary_epochs is None:
        epochs = timing.total_epochs("to place the default boundaries (50% and 75%)")
        boundary_epochs = (0.5 * epochs, 0.75 * epochs)
    boundaries = [timing.steps("boundary_epochs", b) for b in boundary_epochs]
    if any(later <= earlier for earlier, later in itertools.pairwise(boundaries)):
        raise ValueError(
            f"Schedule 'step': `boundary_epochs` must increase (by at least one step), got "
            f"{list(boundary_epochs)} = steps {boundaries}."
        )
    if values is None:
        values = tuple(base_lr * factor**i for i in range(len(boundaries) + 1))
    elif len(values) != len(boundaries) + 1:
        raise ValueError(
            f"Schedule 'step': `values` needs one more entry than `boundary_epochs` "
            f"({len(boundaries) + 1}), got {len(values)}: {list(values)}."
        )
    return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, list(values))


def _exponential(
    base_lr: float, timing: _Timing, *, decay_rate: float, decay_epochs: float, staircase: bool
) -> Schedule:
    return keras.optimizers.schedules.ExponentialDecay(
        base_lr,
        decay_steps=timing.steps("decay_epochs", decay_epochs),
        decay_rate=decay_rate,
        staircase=staircase,
    )


def _inverse_time(
    base_lr: float, timing: _Timing, *, decay_rate: float, decay_epochs: float, staircase: bool
) -> Schedule:
    return keras.optimizers.schedules.InverseTimeDecay(
        base_lr,
        decay_steps=timing.steps("decay_epochs", decay_epochs),
        decay_rate=decay_rate,
        staircase=staircase,
    )


def _cosine(base_lr: float, timing: _Timing, *, alpha: float) -> Schedule:
    epochs = timing.total_epochs("(the length of the cosine)")
    return keras.optimizers.schedules.CosineDecay(
        base_lr, decay_steps=timing.steps("epochs", epochs), alpha=alpha
    )


def _cosine_restarts(
    base_lr: float,
    timing: _Timing,
    *,
    first_decay_epochs: float,
    t_mul: float,
    m_mul: float,
    alpha: float,
) -> Schedule:
    return keras.optimizers.schedules.CosineDecayRestarts(
        base_lr,
        first_decay_steps=timing.steps("first_decay_epochs", first_decay_epochs),
        t_mul=t_mul,
        m_mul=m_mul,
        alpha=alpha,
    )


@dataclasses.dataclass(frozen=True)
class _ScheduleSpec:
    """A schedule's keyword arguments (`name -> (default, check)`) and its builder."""

    arguments: dict[str, tuple[Any, Callable[..., Any]]]
    build: Callable[..., float | Schedule]


_PLATEAU_ARGUMENTS: dict[str, tuple[Any, Callable[..., Any]]] = {
    "factor": (0.1, _DECAY_FACTOR),
    "patience": (10, _NON_NEGATIVE_INT),
    "monitor": ("val_loss", _metric_name),
    "min_delta": (1e-4, _NON_NEGATIVE),
    "cooldown": (0, _NON_NEGATIVE_INT),
    "min_lr": (0.0, _NON_NEGATIVE),
}

_SPECS: dict[str, _ScheduleSpec] = {
    "constant": _ScheduleSpec({}, _constant),
    "step": _ScheduleSpec(
        {
            "factor": (0.1, _DECAY_FACTOR),
            "boundary_epochs": (None, _optional_number_list),
            "values": (None, _optional_number_list),
            "drop_every_epochs": (None, _OPTIONAL_POSITIVE),
        },
        _step,
    ),
    "exponential": _ScheduleSpec(
        {
            "decay_rate": (0.96, _DECAY_FACTOR),
            "decay_epochs": (1.0, _POSITIVE),
            "staircase": (False, check_bool),
        },
        _exponential,
    ),
    "inverse_time": _ScheduleSpec(
        {
            "decay_rate": (0.5, _POSITIVE),
            "decay_epochs": (1.0, _POSITIVE),
            "staircase": (False, check_bool),
        },
        _inverse_time,
    ),
    "cosine": _ScheduleSpec({"alpha": (0.0, _FRACTION)}, _cosine),
    "cosine_restarts": _ScheduleSpec(
        {
            "first_decay_epochs": (10.0, _POSITIVE),
            "t_mul": (2.0, _POSITIVE),
            "m_mul": (1.0, _FRACTION),
            "alpha": (0.0, _FRACTION),
        },
        _cosine_restarts,
    ),
    "plateau": _ScheduleSpec(_PLATEAU_ARGUMENTS, _constant),
}


def canonical_schedule_name(name: str) -> str:
    """Returns the canonical schedule name for any accepted spelling ("Cosine-Restarts", ...).

    Raises:
        ValueError: for an unknown name, suggesting the closest and listing the valid ones.
    """
    return _NAMES.resolve(name)


def schedule_hyperparameters(name: str) -> dict[str, Any]:
    """The schedule-specific keyword arguments of `get_schedule(name, ...)`, with defaults.

    `steps_per_epoch`, `epochs` and `warmup_epochs`, which every schedule takes, are not listed.
    """
    return {
        key: default
        for key, (default, _) in _SPECS[canonical_schedule_name(name)].arguments.items()
    }


def get_schedule(
    name: str | Mapping[str, Any] | Schedule,
    base_lr: float | None = None,
    *,
    steps_per_epoch: int | None = None,
    epochs: float | None = None,
    warmup_epochs: float = 0.0,
    **kwargs: Any,
) -> float | Schedule:
    """Returns a learning rate (float) or `LearningRateSchedule` for `get_optimizer`.

    Args:
        name: One of `SCHEDULE_NAMES` (any spelling, see `canonical_schedule_name`); or a dict
            `{"name": ..., **arguments}` (any argument of this function but `name`); or a built
            `LearningRateSchedule` or its Keras config dict
            (`keras.saving.serialize_keras_object`), used as it is, behind a warmup if
            `warmup_epochs` asks for one.
        base_lr: Float > 0, the peak learning rate; needed with a name, refused with a built
            schedule (which has its own).
        steps_per_epoch: Batches per epoch; needed by every schedule stated in epochs.
        epochs: Length of training; needed by `cosine` and by `step`'s default boundaries.
        warmup_epochs: Float >= 0; a linear warmup over that many epochs (may be fractional).
        **kwargs: The schedule's own arguments, see `schedule_hyperparameters(name)`.

    Raises:
        ValueError: For an unknown name or argument, a value out of range, or a missing
            `base_lr`, `steps_per_epoch` or `epochs`.
    """
    timing_arguments = {"steps_per_epoch": steps_per_epoch, "epochs": epochs}
    if isinstance(name, Mapping) and "class_name" not in name:
        given = {key: value for key, value in timing_arguments.items() if value is not None}
        if base_lr is not None:
            given["base_lr"] = base_lr
        if warmup_epochs:
            given["warmup_epochs"] = warmup_epochs
        name, options = naming.split_config(_KIND, name, {**given, **kwargs})
        return get_schedule(name, **options)
    if isinstance(name, Schedule | Mapping):
        return _built_schedule(name, base_lr, steps_per_epoch, epochs, warmup_epochs, kwargs)
    canonical = canonical_schedule_name(name)
    spec = _SPECS[canonical]
    if base_lr is None:
        raise ValueError(f"Schedule {canonical!r} needs `base_lr`, the peak learning rate.")
    base_lr = check_number("base_lr", base_lr, low=0.0, low_open=True, owner=canonical)
    steps_per_epoch = check_integer(
        "steps_per_epoch", steps_per_epoch, low=1, optional=True, owner=canonical
    )
    epochs = check_number("epochs", epochs, low=0.0, low_open=True, optional=True, owner=canonical)
    warmup_epochs = check_number("warmup_epochs", warmup_epochs, low=0.0, owner=canonical)
    arguments = _check_arguments(canonical, spec, kwargs)
    timing = _Timing(canonical, steps_per_epoch, epochs)
    if canonical == "plateau":
        if warmup_epochs > 0:
            raise ValueError(
                "Schedule 'plateau' cannot have a warmup: Keras' ReduceLROnPlateau changes a "
                "plain learning-rate value, and a warmup makes it a schedule."
            )
        return base_lr
    schedule = spec.build(base_lr, timing, **arguments)
    if warmup_epochs > 0:
        schedule = LinearWarmup(schedule, timing.steps("warmup_epochs", warmup_epochs))
    return schedule


def _built_schedule(
    schedule: Schedule | Mapping[str, Any],
    base_lr: float | None,
    steps_per_epoch: int | None,
    epochs: float | None,
    warmup_epochs: float,
    kwargs: dict[str, Any],
) -> Schedule:
    """A schedule given already built (or as its Keras config), behind the warmup asked for."""
    what = "a built schedule" if isinstance(schedule, Schedule) else "a Keras config"
    naming.refuse_options(
        _KIND, what, {**kwargs, **({} if base_lr is None else {"base_lr": base_lr})}
    )
    if not isinstance(schedule, Schedule):
        schedule = keras.optimizers.schedules.deserialize(dict(schedule))
    owner = type(schedule).__name__
    warmup_epochs = check_number("warmup_epochs", warmup_epochs, low=0.0, owner=owner)
    if warmup_epochs > 0:
        timing = _Timing(owner, steps_per_epoch, epochs)
        schedule = LinearWarmup(schedule, timing.steps("warmup_epochs", warmup_epochs))
    return schedule


def get_schedule_callbacks(
    name: str | Mapping[str, Any] | Schedule, **kwargs: Any
) -> list[keras.callbacks.Callback]:
    """The callbacks a schedule needs beside the optimizer: `[ReduceLROnPlateau]` for `plateau`.

    Takes what `get_schedule` takes (the timing arguments are ignored), so a runner can pass one
    set of flags to both. A built schedule needs no callback.
    """
    if isinstance(name, Mapping) and "class_name" not in name:
        name, kwargs = naming.split_config(_KIND, name, kwargs)
    if isinstance(name, Schedule | Mapping):
        return []
    canonical = canonical_schedule_name(name)
    for timing_argument in TIMING_ARGUMENTS:
        kwargs.pop(timing_argument, None)
    arguments = _check_arguments(canonical, _SPECS[canonical], kwargs)
    if canonical != "plateau":
        return []
    return [keras.callbacks.ReduceLROnPlateau(**arguments)]


def _check_arguments(owner: str, spec: _ScheduleSpec, kwargs: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(kwargs) - set(spec.arguments))
    if unknown:
        accepted = ", ".join(spec.arguments) or "none besides steps_per_epoch/epochs/warmup_epochs"
        raise ValueError(
            f"Schedule {owner!r} does not take {', '.join(map(repr, unknown))}. "
            f"It accepts: {accepted}."
        )
    return {
        key: check(key, kwargs.get(key, default), owner=owner)
        for key, (default, check) in spec.arguments.items()
    }
