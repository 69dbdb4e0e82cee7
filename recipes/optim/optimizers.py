"""Optimizers by their tf.train names: `get_optimizer("Momentum", learning_rate=0.1, momentum=0.9)`.

Recipes, the command line and the hyperparameter search name optimizers the way TensorFlow
practitioners know them -- the ten `tf.compat.v1.train.<Name>Optimizer`s -- and get a Keras 3
optimizer that works with `model.fit`, `tf.distribute` and `keras.models.load_model`.

By default (`tf_train_compat=True`) the optimizer reproduces tf.train's own to float32 rounding:
its defaults (RMSProp's decay 0.9 and epsilon 1e-10, Adam's epsilon 1e-8, Adagrad's initial
accumulator 0.1 and no epsilon), its formulas (Momentum's `accum = m * accum + g; w -= lr * accum`,
RMSProp's mean square starting at 1, Adam's running beta powers) and its sparse-gradient
behaviour (duplicate indices summed first; only touched rows updated). `tf_train_compat=False`
gives Keras' own optimizer with Keras' defaults where Keras has one. See docs/optimizers.md.

Hyperparameters use short names (`momentum`, `nesterov`, `l1`, `l2`, `rho`, `beta_1`, ...);
tf.train's and Keras' spellings (`use_nesterov`, `l1_regularization_strength`, `beta1`, RMSProp's
`decay`, ...) are accepted too. Every optimizer also takes `clipnorm`, `clipvalue`,
`global_clipnorm` (gradient clipping) and `accumulate_steps` (gradient accumulation: average the
gradients of N batches and apply them once, for an effective batch N times larger).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Mapping
from typing import Any

import keras

from layers import naming
from layers.validation import check_bool, check_integer, check_number
from recipes.optim.tf_train import (
    AdagradDA,
    ProximalAdagrad,
    ProximalGradientDescent,
    TFTrainAdadelta,
    TFTrainAdagrad,
    TFTrainAdam,
    TFTrainFtrl,
    TFTrainMomentum,
    TFTrainRMSProp,
)

OPTIMIZER_NAMES: tuple[str, ...] = (
    "GradientDescent",
    "Adadelta",
    "Adagrad",
    "AdagradDA",
    "Momentum",
    "Adam",
    "Ftrl",
    "ProximalGradientDescent",
    "ProximalAdagrad",
    "RMSProp",
)

LearningRate = float | keras.optimizers.schedules.LearningRateSchedule | Callable[[], Any]


@dataclasses.dataclass(frozen=True)
class _Hyperparameter:
    """A hyperparameter's tf.train default and its check `(name, value, owner=...) -> value`."""

    default: Any
    check: Callable[..., Any]


_OPTIONAL_POSITIVE = functools.partial(check_number, low=0.0, low_open=True, optional=True)
_UNIT_INTERVAL = functools.partial(check_number, low=0.0, high=1.0, high_open=True)
_NON_NEGATIVE = functools.partial(check_number, low=0.0)
_POSITIVE = functools.partial(check_number, low=0.0, low_open=True)


def _unit(default: float) -> _Hyperparameter:
    return _Hyperparameter(default, _UNIT_INTERVAL)


def _non_negative(default: float) -> _Hyperparameter:
    return _Hyperparameter(default, _NON_NEGATIVE)


def _positive(default: float) -> _Hyperparameter:
    return _Hyperparameter(default, _POSITIVE)


def _flag(default: bool) -> _Hyperparameter:
    return _Hyperparameter(default, check_bool)


_L1_L2 = {"l1": _non_negative(0.0), "l2": _non_negative(0.0)}

COMMON_HYPERPARAMETERS: dict[str, Any] = {
    "clipnorm": None,
    "clipvalue": None,
    "global_clipnorm": None,
    "accumulate_steps": 1,
}
_COMMON_CHECKS: dict[str, Callable[..., Any]] = {
    "clipnorm": _OPTIONAL_POSITIVE,
    "clipvalue": _OPTIONAL_POSITIVE,
    "global_clipnorm": _OPTIONAL_POSITIVE,
    "accumulate_steps": functools.partial(check_integer, low=1),
}

# Other spellings of the canonical hyperparameter names, from tf.train and Keras. An alias is only
# accepted by optimizers that have its target.
_ALIASES = {
    "use_nesterov": "nesterov",
    "l1_regularization_strength": "l1",
    "l2_regularization_strength": "l2",
    "l2_shrinkage_regularization_strength": "l2_shrinkage",
    "beta1": "beta_1",
    "beta2": "beta_2",
    "initial_gradient_squared_accumulator_value": "initial_accumulator_value",
    "gradient_accumulation_steps": "accumulate_steps",
}


@dataclasses.dataclass(frozen=True)
class _OptimizerSpec:
    """How one tf.train optimizer is offered.

    `tf_train` and `keras` build the optimizer from the learning rate, the canonical
    hyperparameters and Keras' base keyword arguments; `keras_defaults` overrides the tf.train
    defaults when `tf_train_compat=False`.
    """

    learning_rate: float
    hyperparameters: dict[str, _Hyperparameter]
    tf_train: Callable[..., keras.optimizers.Optimizer]
    keras: Callable[..., keras.optimizers.Optimizer]
    keras_defaults: dict[str, Any] = dataclasses.field(default_factory=dict)
    aliases: dict[str, str] = dataclasses.field(default_factory=dict)


def _ftrl(cls: type, learning_rate: LearningRate, **kwargs: Any) -> keras.optimizers.Optimizer:
    return cls(
        learning_rate=learning_rate,
        learning_rate_power=kwargs.pop("learning_rate_power"),
        initial_accumulator_value=kwargs.pop("initial_accumulator_value"),
        l1_regularization_strength=kwargs.pop("l1"),
        l2_regularization_strength=kwargs.pop("l2"),
        l2_shrinkage_regularization_strength=kwargs.pop("l2_shrinkage"),
        beta=kwargs.pop("beta"),
        **kwargs,
    )


def _with_l1_l2(
    cls: type, learning_rate: LearningRate, l1: float, l2: float, **kwargs: Any
) -> keras.optimizers.Optimizer:
    return cls(
        learning_rate=learning_rate,
        l1_regularization_strength=l1,
        l2_regularization_strength=l2,
        **kwargs,
    )


_SPECS: dict[str, _OptimizerSpec] = {
    "GradientDescent": _OptimizerSpec(
        learning_rate=0.01,
        hyperparameters={},
        # Keras' SGD without momentum is tf.train's update, dense and sparse, bit for bit.
        tf_train=keras.optimizers.SGD,
        keras=keras.optimizers.SGD,
    ),
    "Momentum": _OptimizerSpec(
        learning_rate=0.01,
        hyperparameters={"momentum": _unit(0.9), "nesterov": _flag(False)},
        tf_train=TFTrainMomentum,
        keras=keras.optimizers.SGD,
    ),
    "Adagrad": _OptimizerSpec(
        learning_rate=0.001,
        hyperparameters={"initial_accumulator_value": _positive(0.1)},
        tf_train=TFTrainAdagrad,
        keras=keras.optimizers.Adagrad,
    ),
    "Adadelta": _OptimizerSpec(
        learning_rate=0.001,
        hyperparameters={"rho": _unit(0.95), "epsilon": _positive(1e-8)},
        tf_train=TFTrainAdadelta,
        keras=keras.optimizers.Adadelta,
        keras_defaults={"epsilon": 1e-7},
    ),
    "Adam": _OptimizerSpec(
        learning_rate=0.001,
        hyperparameters={
            "beta_1": _unit(0.9),
            "beta_2": _unit(0.999),
            "epsilon": _non_negative(1e-8),
        },
        tf_train=TFTrainAdam,
        keras=keras.optimizers.Adam,
        keras_defaults={"epsilon": 1e-7},
    ),
    "RMSProp": _OptimizerSpec(
        learning_rate=0.001,
        hyperparameters={
            "rho": _unit(0.9),
            "momentum": _unit(0.0),
            "epsilon": _non_negative(1e-10),
            "centered": _flag(False),
        },
        tf_train=TFTrainRMSProp,
        keras=keras.optimizers.RMSprop,
        keras_defaults={"epsilon": 1e-7},
        # tf.train calls RMSProp's moving-average decay `decay`; elsewhere `decay` meant
        # learning-rate decay, so the alias is RMSProp's alone.
        aliases={"decay": "rho"},
    ),
    "Ftrl": _OptimizerSpec(
        learning_rate=0.001,
        hyperparameters={
            "learning_rate_power": _Hyperparameter(-0.5, functools.partial(check_number, high=0.0)),
            "initial_accumulator_value": _non_negative(0.1),
            **_L1_L2,
            "l2_shrinkage": _non_negative(0.0),
            "beta": _non_negative(0.0),
        },
        tf_train=functools.partial(_ftrl, TFTrainFtrl),
        keras=functools.partial(_ftrl, keras.optimizers.Ftrl),
    ),
    "ProximalGradientDescent": _OptimizerSpec(
        learning_rate=0.01,
        hyperparameters=dict(_L1_L2),
        tf_train=functools.partial(_with_l1_l2, ProximalGradientDescent),
        keras=functools.partial(_with_l1_l2, ProximalGradientDescent),
    ),
    "ProximalAdagrad": _OptimizerSpec(
        learning_rate=0.001,
        hyperparameters={"initial_accumulator_value": _positive(0.1), **_L1_L2},
        tf_train=functools.partial(_with_l1_l2, ProximalAdagrad),
        keras=functools.partial(_with_l1_l2, ProximalAdagrad),
    ),
    "AdagradDA": _OptimizerSpec(
        learning_rate=0.001,
        hyperparameters={"initial_accumulator_value": _positive(0.1), **_L1_L2},
        tf_train=functools.partial(_with_l1_l2, AdagradDA),
        keras=functools.partial(_with_l1_l2, AdagradDA),
    ),
}


def _without_tf_train_affixes(name: str) -> str:
    """Reduces tf.train's spelling to the name: "tf.train.MomentumOptimizer" -> "Momentum"."""
    name = re.sub(r"^(tf\.)?(compat\.v1\.)?train\.", "", name)
    return re.sub(r"(?<=.)optimizer$", "", name, flags=re.IGNORECASE)


_NAMES = naming.Names(
    "optimizer",
    OPTIMIZER_NAMES,
    aliases={"sgd": "GradientDescent"},
    spelling=_without_tf_train_affixes,
)


def canonical_optimizer_name(name: str) -> str:
    """Returns the canonical name (one of `OPTIMIZER_NAMES`) for any accepted spelling.

    Case, `-`, `_` and spaces are ignored, and tf.train's `tf.train.<Name>Optimizer` (with or
    without `tf.compat.v1.`) is accepted: "momentum", "tf.train.MomentumOptimizer",
    "proximal-adagrad" and "Proximal Adagrad" all resolve.

    Raises:
        ValueError: For an unknown name; the message suggests the closest and lists the valid
            names.
    """
    return _NAMES.resolve(name)


def optimizer_hyperparameters(name: str, *, tf_train_compat: bool = True) -> dict[str, Any]:
    """The hyperparameters `get_optimizer(name, ...)` accepts, with their defaults.

    Canonical names only (aliases such as `use_nesterov` are accepted but not listed). The dict
    starts with `learning_rate`, then the algorithm's own hyperparameters, then the ones every
    optimizer takes (`COMMON_HYPERPARAMETERS`: clipping and gradient accumulation).

    Args:
        name: Any accepted spelling of an optimizer name.
        tf_train_compat: Whether the defaults are tf.train's (True) or Keras' (False).
    """
    spec = _SPECS[canonical_optimizer_name(name)]
    defaults = {key: param.default for key, param in spec.hyperparameters.items()}
    if not tf_train_compat:
        defaults.update(spec.keras_defaults)
    return {"learning_rate": spec.learning_rate, **defaults, **COMMON_HYPERPARAMETERS}


def get_optimizer(
    name: str | Mapping[str, Any] | keras.optimizers.Optimizer,
    learning_rate: LearningRate | None = None,
    *,
    tf_train_compat: bool = True,
    **hyperparameters: Any,
) -> keras.optimizers.Optimizer:
    """Returns a Keras 3 optimizer for a tf.train optimizer name.

    Args:
        name: One of `OPTIMIZER_NAMES` in any spelling: "Momentum", "momentum",
            "tf.train.MomentumOptimizer", "proximal_adagrad", ... ("sgd" means GradientDescent).
            Or a dict `{"name": ..., **hyperparameters}` (it may hold `learning_rate` and
            `tf_train_compat` too), or a Keras config dict
            (`keras.saving.serialize_keras_object`) or a built optimizer, used as they are.
        learning_rate: A float > 0, a `keras.optimizers.schedules.LearningRateSchedule` (see
            `recipes.optim.schedules.get_schedule`) or a no-argument callable. `None` takes the
            optimizer's default from `optimizer_hyperparameters(name)`.
        tf_train_compat: True (default) reproduces `tf.compat.v1.train.<Name>Optimizer` exactly,
            defaults included; False gives Keras' own optimizer and defaults where Keras has the
            algorithm (AdagradDA and the proximal ones exist only in tf.train's form).
        **hyperparameters: The algorithm's hyperparameters (see `optimizer_hyperparameters`),
            plus `clipnorm`, `clipvalue`, `global_clipnorm` and `accumulate_steps`.

    Raises:
        ValueError: For an unknown name, an unknown hyperparameter, or a value out of range; or
            for hyperparameters given with a built optimizer or a Keras config.
    """
    given = dict(hyperparameters)
    if learning_rate is not None:
        given["learning_rate"] = learning_rate
    if not tf_train_compat:
        given["tf_train_compat"] = tf_train_compat
    if isinstance(name, keras.optimizers.Optimizer):
        naming.refuse_options("optimizer", "a built optimizer", given)
        return name
    if isinstance(name, Mapping):
        if "class_name" in name:
            naming.refuse_options("optimizer", "a Keras config", given)
            return keras.optimizers.deserialize(dict(name))
        name, options = naming.split_config("optimizer", name, given)
        return get_optimizer(name, **options)
    canonical = canonical_optimizer_name(name)
    spec = _SPECS[canonical]
    check_bool("tf_train_compat", tf_train_compat, owner=canonical)
    values = optimizer_hyperparameters(canonical, tf_train_compat=tf_train_compat)
    values["learning_rate"] = _check_learning_rate(
        canonical, spec.learning_rate if learning_rate is None else learning_rate
    )
    aliases = {**_ALIASES, **spec.aliases}
    given: dict[str, str] = {}
    for key, value in hyperparameters.items():
        target = aliases.get(key, key)
        if target not in values:
            accepted = ", ".join(k for k in values if k != "learning_rate")
            raise ValueError(
                f"{canonical} does not take hyperparameter {key!r}. It accepts: {accepted}."
            )
        if target in given:
            raise ValueError(f"{canonical}: {given[target]!r} and {key!r} are the same setting.")
        given[target] = key
        values[target] = value
    learning_rate = values.pop("learning_rate")
    for key, param in spec.hyperparameters.items():
        values[key] = param.check(key, values[key], owner=canonical)
    for key, check in _COMMON_CHECKS.items():
        values[key] = check(key, values[key], owner=canonical)
    accumulate_steps = values.pop("accumulate_steps")
    # Keras counts accumulation from 2; one step is no accumulation.
    values["gradient_accumulation_steps"] = accumulate_steps if accumulate_steps > 1 else None
    build = spec.tf_train if tf_train_compat else spec.keras
    return build(learning_rate=learning_rate, **values)


def _check_learning_rate(owner: str, learning_rate: Any) -> LearningRate:
    if isinstance(learning_rate, keras.optimizers.schedules.LearningRateSchedule) or (
        callable(learning_rate)
    ):
        return learning_rate
    # Keras rejects ints ("1" from a config file is a float learning rate).
    return check_number("learning_rate", learning_rate, low=0.0, low_open=True, owner=owner)
