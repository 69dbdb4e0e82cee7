"""The search space: one `ParamSpec` per searched recipe option, parsed from `NAME=KIND:ARGS` text.

A spec names a config key of the recipe (`lr`, `l2`, `activation`, `batch_size`, ...) or an entry of
one of its dict-valued options (`model_options.width`, `optimizer_options.momentum`) and a range:

    lr=log:1e-4:1e-1            float, sampled log-uniformly (learning rates, penalties)
    dropout=float:0.0:0.5       float, sampled uniformly
    batch_size=logint:32:256    integer, sampled log-uniformly
    model_options.depth=int:1:4 integer, sampled uniformly
    activation=choice:relu,tanh one of the listed values (YAML scalars: 0.5, true, relu)

Random search samples the ranges with KerasTuner's `Float`/`Int` (`sampling="log"` for the log
kinds). Grid search needs a finite set, so a numeric range becomes `POINTS` values evenly spaced in
its sampling space (log or linear), given as a fourth field (`lr=log:1e-4:1e-1:4` gives 1e-4, 1e-3,
1e-2, 1e-1) or taken from the search's default number of grid points.

The course's coarse-to-fine advice is `ParamSpec.narrowed`: a numeric range shrinks to the span of
the best trials' values (in its sampling space), widened a little; a choice keeps the values that
the best trials used.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Sequence
from typing import Any

import keras_tuner
import yaml

from recipes.train.config import RunConfig, option_key

NUMERIC_KINDS = ("float", "log", "int", "logint")
KINDS = (*NUMERIC_KINDS, "choice")
# Options that belong to each trial's run (set by the search), not to the space searched.
RESERVED_KEYS = ("run.out_dir", "run.resume", "run.dry_run")


def check_name(name: str) -> str:
    """Validates a searched option's name; returns it with dashes as underscores.

    Args:
        name: any name `recipes.train.config.option_key` accepts: a flat option name (`lr`,
            `batch-size`, `l2`), a dotted key (`optim.lr`, `model.knobs.l2`), or one entry of a
            dict-valued option (`model_options.width`, `optim.options.momentum`).

    Raises:
        ValueError: the name is not an option, names a dict option without an entry, or is one
            the search sets itself.
    """
    name = name.strip().replace("-", "_")
    key = option_key(name, "--param")
    if key in RESERVED_KEYS:
        raise ValueError(f"{name!r} is set by the search for each trial and cannot be searched")
    if isinstance(RunConfig().get(key), dict):
        raise ValueError(f"{name!r} is a dict of options; search one entry of it, e.g. {name}.NAME")
    return name


def _number(text: str, kind: str, spec: str) -> float | int:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{spec!r}: {text!r} is not a number") from None
    if kind in ("int", "logint"):
        if not value.is_integer():
            raise ValueError(f"{spec!r}: {kind} ranges need integer bounds, got {text!r}")
        return int(value)
    return value


def _scalar(text: str) -> Any:
    # Numbers first: YAML 1.1 reads "1e-3" (no dot) as a string.
    for number in (int, float):
        try:
            return number(text)
        except ValueError:
            pass
    return yaml.safe_load(text)


def _choice_values(text: str, spec: str) -> tuple[Any, ...]:
    values = [_scalar(part.strip()) for part in text.split(",") if part.strip()]
    if len(values) < 2:
        raise ValueError(
            f"{spec!r}: a choice needs at least two values separated by commas; a single value "
            "is not a search, pass it as a recipe flag"
        )
    is_number = [isinstance(v, (int, float)) and not isinstance(v, bool) for v in values]
    if all(is_number) and any(isinstance(v, float) for v in values):
        values = [float(v) for v in values]
    kinds = {type(v).__name__ for v in values}
    if len(kinds) > 1 or not isinstance(values[0], (bool, int, float, str)):
        raise ValueError(
            f"{spec!r}: choice values must all be numbers, all booleans or all strings, got "
            f"{', '.join(sorted(kinds))}"
        )
    if len(set(values)) != len(values):
        raise ValueError(f"{spec!r}: choice values repeat")
    return tuple(values)


@dataclasses.dataclass(frozen=True)
class ParamSpec:
    """One searched option and its range.

    Args:
        name: the option (see `check_name`).
        kind: `float`, `log`, `int`, `logint` (numeric ranges) or `choice`.
        low: the range's lower bound (numeric kinds).
        high: the range's upper bound (numeric kinds).
        values: the candidates (choice).
        points: grid points for grid search (numeric kinds); None uses the search's default.
    """

    name: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    values: tuple[Any, ...] = ()
    points: int | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(
                f"unknown range kind {self.kind!r}; expected one of {', '.join(KINDS)}"
            )
        if self.kind == "choice":
            if not self.values:
                raise ValueError(f"{self.name}: a choice needs at least one value")
            return
        if self.low is None or self.high is None or not self.low < self.high:
            raise ValueError(
                f"{self.name}: the range needs low < high, got low={self.low}, high={self.high}"
            )
        if self.is_log and self.low <= 0:
            raise ValueError(
                f"{self.name}: {self.kind} ranges are sampled in log space and need positive "
                f"bounds, got low={self.low}"
            )
        if self.points is not None and self.points < 2:
            raise ValueError(f"{self.name}: a grid needs at least 2 points, got {self.points}")

    @property
    def is_numeric(self) -> bool:
        return self.kind in NUMERIC_KINDS

    @property
    def is_log(self) -> bool:
        return self.kind in ("log", "logint")

    @property
    def is_int(self) -> bool:
        return self.kind in ("int", "logint")

    def to_text(self) -> str:
        """The spec in the `NAME=KIND:ARGS` syntax that `parse_param` reads."""
        if self.kind == "choice":
            values = ",".join(
                str(v).lower() if isinstance(v, bool) else str(v) for v in self.values
            )
            return f"{self.name}=choice:{values}"
        points = f":{self.points}" if self.points is not None else ""
        return f"{self.name}={self.kind}:{self.low!r}:{self.high!r}{points}"

    def to_space(self, value: float) -> float:
        """A value in the range's sampling space (its logarithm for the log kinds)."""
        return math.log(value) if self.is_log else float(value)

    def from_space(self, value: float) -> float:
        """The inverse of `to_space`."""
        return math.exp(value) if self.is_log else value

    def grid_values(self, default_points: int) -> tuple[Any, ...]:
        """The finite set grid search tries: the choices, or points evenly spaced in the range."""
        if self.kind == "choice":
            return self.values
        points = self.points or default_points
        low, high = self.to_space(self.low), self.to_space(self.high)
        values = [self.from_space(low + (high - low) * i / (points - 1)) for i in range(points)]
        # Exact end points, free of exp(log(x)) rounding.
        values[0], values[-1] = self.low, self.high
        if self.is_int:
            return tuple(dict.fromkeys(round(v) for v in values))
        return tuple(float(f"{v:.6g}") for v in values)

    def add_to(
        self, hyperparameters: keras_tuner.HyperParameters, grid: bool, default_points: int
    ) -> None:
        """Declares this spec in a KerasTuner search space (a `Choice` of grid values for grid)."""
        if grid or self.kind == "choice":
            values = list(self.grid_values(default_points))
            hyperparameters.Choice(self.name, values, ordered=self.is_numeric or None)
        elif self.is_int:
            hyperparameters.Int(
                self.name, self.low, self.high, sampling="log" if self.is_log else "linear"
            )
        else:
            hyperparameters.Float(
                self.name, self.low, self.high, sampling="log" if self.is_log else "linear"
            )

    def at_edge(self, value: Any, fraction: float = 0.05) -> bool:
        """Whether a numeric value lies in the outer `fraction` of the range (in sampling space).

        The course's warning: a best value at the edge of its range means the best may lie outside.
        """
        if not self.is_numeric:
            return False
        low, high = self.to_space(self.low), self.to_space(self.high)
        position = (self.to_space(value) - low) / (high - low)
        return position < fraction or position > 1 - fraction

    def narrowed(self, best_values: Sequence[Any], widen: float) -> ParamSpec:
        """The range around the best trials' values, for the next, finer stage.

        A numeric range becomes the span of `best_values` in sampling space, widened on each side
        by `widen` times that span (or times the whole range when the values coincide), clipped to
        this range. A choice keeps the values that appear in `best_values`, in their given order.

        Args:
            best_values: this option's values in the best trials.
            widen: fraction of the span added on each side (>= 0).
        """
        if not best_values:
            raise ValueError(f"{self.name}: narrowing needs the values of at least one trial")
        if widen < 0:
            raise ValueError(f"widen must be >= 0, got {widen}")
        if self.kind == "choice":
            kept = tuple(v for v in self.values if v in set(best_values))
            return dataclasses.replace(self, values=kept)
        low, high = self.to_space(self.low), self.to_space(self.high)
        best = [self.to_space(v) for v in best_values]
        span = max(best) - min(best)
        margin = widen * (span if span > 0 else high - low)
        new_low = self.from_space(max(low, min(best) - margin))
        new_high = self.from_space(min(high, max(best) + margin))
        if self.is_int:
            new_low, new_high = math.floor(new_low), math.ceil(new_high)
            if new_low == new_high:  # a single integer: keep a range the oracle can sample
                new_low, new_high = max(self.low, new_low - 1), min(self.high, new_high + 1)
        return dataclasses.replace(self, low=new_low, high=new_high)


def parse_param(text: str) -> ParamSpec:
    """Parses `NAME=KIND:LOW:HIGH[:POINTS]` or `NAME=choice:V1,V2,...` into a `ParamSpec`.

    Raises:
        ValueError: with the offending spec and what is accepted.
    """
    name, equals, range_text = text.partition("=")
    if not equals or not name.strip() or not range_text.strip():
        raise ValueError(
            f"expected NAME=KIND:LOW:HIGH or NAME=choice:A,B,..., got {text!r} "
            "(e.g. lr=log:1e-4:1e-1)"
        )
    name = check_name(name)
    kind, _, args = range_text.strip().partition(":")
    kind = kind.strip().lower()
    if kind not in KINDS:
        raise ValueError(
            f"{text!r}: unknown range kind {kind!r}; expected one of {', '.join(KINDS)}"
        )
    if kind == "choice":
        return ParamSpec(name, kind, values=_choice_values(args, text))
    fields = args.split(":")
    if len(fields) not in (2, 3):
        raise ValueError(
            f"{text!r}: a {kind} range is {kind}:LOW:HIGH or {kind}:LOW:HIGH:POINTS, "
            f"got {len(fields)} field(s) after {kind!r}"
        )
    low, high = (_number(field, kind, text) for field in fields[:2])
    points = None
    if len(fields) == 3:
        count = _number(fields[2], "int", text)
        points = int(count)
    try:
        return ParamSpec(name, kind, low=low, high=high, points=points)
    except ValueError as error:
        raise ValueError(f"{text!r}: {error}") from None


def parse_params(texts: Iterable[str]) -> list[ParamSpec]:
    """Parses several specs, rejecting an option searched twice."""
    specs = [parse_param(text) for text in texts]
    names = [spec.name for spec in specs]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"--param given more than once for {', '.join(repeated)}")
    if not specs:
        raise ValueError("nothing to search: give at least one --param NAME=KIND:...")
    return specs


def build_hyperparameters(
    specs: Sequence[ParamSpec], grid: bool, default_points: int
) -> keras_tuner.HyperParameters:
    """The KerasTuner search space of `specs`."""
    hyperparameters = keras_tuner.HyperParameters()
    for spec in specs:
        spec.add_to(hyperparameters, grid=grid, default_points=default_points)
    return hyperparameters


def apply_values(config: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """`config` (sectioned, as `RunConfig.to_dict` gives it) with searched values set, checked.

    Names are any `check_name` accepts; `a.b` names set entry b of dict option a.
    """
    return RunConfig.from_dict(config).updated(values, "the searched values").to_dict()
