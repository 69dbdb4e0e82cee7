"""Optimizers by name: `get_optimizer("Momentum", learning_rate=0.1, momentum=0.9)`.

Recipes, the command line and the hyperparameter search name optimizers the way TensorFlow
practitioners know them -- the ten `tf.compat.v1.train.<Name>Optimizer`s (`OPTIMIZER_NAMES`) --
and get a Keras 3 optimizer that works with `model.fit`, `tf.distribute` and
`keras.models.load_model`. Every other optimizer Keras has (AdamW, Lion, Lamb, Nadam, ...:
`KERAS_OPTIMIZER_NAMES`, read from `keras.optimizers`) is available by its name too.

By default (`tf_train_compat=True`) a tf.train name reproduces tf.train's own optimizer to
float32 rounding: its defaults (RMSProp's decay 0.9 and epsilon 1e-10, Adam's epsilon 1e-8,
Adagrad's initial accumulator 0.1 and no epsilon), its formulas (Momentum's
`accum = m * accum + g; w -= lr * accum`, RMSProp's mean square starting at 1, Adam's running beta
powers) and its sparse-gradient behaviour (duplicate indices summed first; only touched rows
updated). `tf_train_compat=False` gives Keras' own optimizer, with Keras' arguments and defaults,
where Keras has the algorithm: so "Adam" is tf.train's exact Adam unless `tf_train_compat=False`.
See docs/optimizers.md.

Defaults live in one place, the signature of the class built (`recipes.optim.tf_train`'s classes
or Keras'), which `optimizer_hyperparameters` reads. Hyperparameters use short names (`momentum`,
`nesterov`, `l1`, `l2`, `rho`, `beta_1`, ...); tf.train's and Keras' spellings (`use_nesterov`,
`l1_regularization_strength`, `beta1`, RMSProp's `decay`, ...) are accepted too. Every optimizer
also takes `clipnorm`, `clipvalue`, `global_clipnorm` (gradient clipping) and `accumulate_steps`
(gradient accumulation: average the gradients of N batches and apply them once, for an effective
batch N times larger); Keras' classes also take Keras' own (`weight_decay`, `use_ema`,
`ema_momentum`, ...).
"""

from __future__ import annotations

import dataclasses
import inspect
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

LearningRate = float | keras.optimizers.schedules.LearningRateSchedule | Callable[[], Any]


@dataclasses.dataclass(frozen=True)
class _Algorithm:
    """How one optimizer name is built; its defaults are its classes' signature defaults.

    Args:
        name: the canonical name.
        tf_train: the class under `tf_train_compat=True`.
        keras: the class under `tf_train_compat=False` (the same class where tf.train and Keras
            do not both have the algorithm).
        fixed: parameters of `tf_train` that tf.train's algorithm does not have, left at the
            class default under `tf_train_compat=True` (GradientDescent is Keras' SGD without
            momentum).
        implied: hyperparameters whose default is `tf_train`'s even under Keras' class, because
            the name implies them (Momentum means momentum; Keras' SGD defaults to none).
        aliases: spellings of hyperparameters that only this optimizer accepts.
    """

    name: str
    tf_train: type
    keras: type
    fixed: tuple[str, ...] = ()
    implied: tuple[str, ...] = ()
    aliases: dict[str, str] = dataclasses.field(default_factory=dict)


_TF_TRAIN_ALGORITHMS = (
    # Keras' SGD without momentum is tf.train's update, dense and sparse, bit for bit.
    _Algorithm(
        "GradientDescent",
        keras.optimizers.SGD,
        keras.optimizers.SGD,
        fixed=("momentum", "nesterov"),
    ),
    _Algorithm("Adadelta", TFTrainAdadelta, keras.optimizers.Adadelta),
    _Algorithm("Adagrad", TFTrainAdagrad, keras.optimizers.Adagrad),
    _Algorithm("AdagradDA", AdagradDA, AdagradDA),
    _Algorithm("Momentum", TFTrainMomentum, keras.optimizers.SGD, implied=("momentum",)),
    _Algorithm("Adam", TFTrainAdam, keras.optimizers.Adam),
    _Algorithm("Ftrl", TFTrainFtrl, keras.optimizers.Ftrl),
    _Algorithm("ProximalGradientDescent", ProximalGradientDescent, ProximalGradientDescent),
    _Algorithm("ProximalAdagrad", ProximalAdagrad, ProximalAdagrad),
    # tf.train calls RMSProp's moving-average decay `decay`; elsewhere `decay` meant
    # learning-rate decay, so the alias is RMSProp's alone.
    _Algorithm("RMSProp", TFTrainRMSProp, keras.optimizers.RMSprop, aliases={"decay": "rho"}),
)
OPTIMIZER_NAMES: tuple[str, ...] = tuple(algorithm.name for algorithm in _TF_TRAIN_ALGORITHMS)


def _signature_defaults(cls: type) -> dict[str, Any]:
    """The named keyword parameters of `cls` and their defaults, in order (`name` left out)."""
    return {
        parameter.name: parameter.default
        for parameter in inspect.signature(cls).parameters.values()
        if parameter.kind not in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
        and parameter.name != "name"
    }


def _builds_from_learning_rate(cls: type) -> bool:
    """Whether `cls` is a whole optimizer: it takes a learning rate and needs nothing else.

    This leaves out the base class and the wrappers around another optimizer
    (`LossScaleOptimizer`, `MultiOptimizer`), which need that optimizer.
    """
    parameters = inspect.signature(cls).parameters.values()
    return any(parameter.name == "learning_rate" for parameter in parameters) and all(
        parameter.default is not parameter.empty
        or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD)
        for parameter in parameters
    )


def _keras_only_optimizers() -> dict[str, type]:
    """Keras' optimizers that no tf.train name already stands for, by class name.

    Read from `keras.optimizers` itself, so a Keras release that adds one adds it here.
    """
    covered = {algorithm.keras for algorithm in _TF_TRAIN_ALGORITHMS}
    found = {}
    for attribute in dir(keras.optimizers):
        value = getattr(keras.optimizers, attribute)
        if (
            isinstance(value, type)
            and issubclass(value, keras.optimizers.Optimizer)
            and value not in covered
            and _builds_from_learning_rate(value)
        ):
            found[value.__name__] = value
    return found


_KERAS_ONLY = _keras_only_optimizers()
KERAS_OPTIMIZER_NAMES: tuple[str, ...] = tuple(sorted(_KERAS_ONLY))

_ALGORITHMS: dict[str, _Algorithm] = {
    **{algorithm.name: algorithm for algorithm in _TF_TRAIN_ALGORITHMS},
    **{name: _Algorithm(name, cls, cls) for name, cls in _KERAS_ONLY.items()},
}


def _base_optimizer_defaults() -> dict[str, Any]:
    """The keyword arguments Keras' base optimizer takes, with their defaults.

    Keras' optimizer classes repeat them in their own signatures; the tf.train classes pass them
    on through `**kwargs`.
    """
    for cls in keras.optimizers.Optimizer.__mro__:
        parameters = inspect.signature(cls.__init__).parameters
        if "clipnorm" in parameters:
            defaults = _signature_defaults(cls)
            defaults.pop("learning_rate")
            return defaults
    raise RuntimeError("Keras' base optimizer takes no `clipnorm`: this Keras is not supported.")


_BASE_DEFAULTS = _base_optimizer_defaults()
# The base optimizer's arguments every name takes, tf.train's exact ones included (the others,
# weight decay and EMA, are not tf.train's algorithms and come with Keras' classes only).
_COMMON = ("clipnorm", "clipvalue", "global_clipnorm", "gradient_accumulation_steps")
# How hyperparameters are listed, where that differs from the class's parameter name.
_SHORT_NAMES = {
    "l1_regularization_strength": "l1",
    "l2_regularization_strength": "l2",
    "l2_shrinkage_regularization_strength": "l2_shrinkage",
    "gradient_accumulation_steps": "accumulate_steps",
}
# tf.train's spellings, accepted by every optimizer that has the target hyperparameter.
_ALIASES = {
    "use_nesterov": "nesterov",
    "beta1": "beta_1",
    "beta2": "beta_2",
    "initial_gradient_squared_accumulator_value": "initial_accumulator_value",
}


def _listed(parameter: str, default: Any) -> tuple[str, Any]:
    """A class parameter and its default as `optimizer_hyperparameters` lists them."""
    if parameter == "gradient_accumulation_steps":
        # Keras' None means what `accumulate_steps=1` says: one batch per update.
        return "accumulate_steps", 1 if default is None else default
    return _SHORT_NAMES.get(parameter, parameter), default


COMMON_HYPERPARAMETERS: dict[str, Any] = dict(
    _listed(parameter, _BASE_DEFAULTS[parameter]) for parameter in _COMMON
)

# Range checks by hyperparameter name, for every optimizer that has it (Keras' classes check few
# of their arguments; the tf.train classes check their own again). A hyperparameter whose default
# is a bool must be a bool.
_UNIT_INTERVAL = {"low": 0.0, "high": 1.0, "high_open": True}
_NON_NEGATIVE = {"low": 0.0}
_OPTIONAL_POSITIVE = {"low": 0.0, "low_open": True, "optional": True}
_NUMBER_RANGES: dict[str, dict[str, Any]] = {
    "momentum": _UNIT_INTERVAL,
    "rho": _UNIT_INTERVAL,
    "beta_1": _UNIT_INTERVAL,
    "beta_2": _UNIT_INTERVAL,
    "epsilon": _NON_NEGATIVE,
    "initial_accumulator_value": _NON_NEGATIVE,
    "l1": _NON_NEGATIVE,
    "l2": _NON_NEGATIVE,
    "l2_shrinkage": _NON_NEGATIVE,
    "beta": _NON_NEGATIVE,
    "learning_rate_power": {"high": 0.0},
    "weight_decay": {"low": 0.0, "optional": True},
    "ema_momentum": {"low": 0.0, "high": 1.0},
    "clipnorm": _OPTIONAL_POSITIVE,
    "clipvalue": _OPTIONAL_POSITIVE,
    "global_clipnorm": _OPTIONAL_POSITIVE,
}
_INTEGER_RANGES: dict[str, dict[str, Any]] = {
    "accumulate_steps": {"low": 1},
    "ema_overwrite_frequency": {"low": 1, "optional": True},
}


@dataclasses.dataclass(frozen=True)
class _Implementation:
    """An optimizer name resolved for one value of `tf_train_compat`.

    Args:
        algorithm: what the name stands for.
        cls: the class built.
        defaults: hyperparameter -> default as listed, starting with `learning_rate` and ending
            with `COMMON_HYPERPARAMETERS`.
        parameters: hyperparameter as listed -> the class's parameter name.
        exact: whether this is tf.train's exact optimizer (a tf.train name, compat mode).
    """

    algorithm: _Algorithm
    cls: type
    defaults: dict[str, Any]
    parameters: dict[str, str]
    exact: bool


def _implementation(name: str, tf_train_compat: bool) -> _Implementation:
    algorithm = _ALGORITHMS[name]
    cls = algorithm.tf_train if tf_train_compat else algorithm.keras
    # tf.train's exact optimizers take tf.train's hyperparameters, not Keras' extras.
    exact = tf_train_compat and name in OPTIMIZER_NAMES
    kept = {}
    for parameter, default in _signature_defaults(cls).items():
        if parameter in _COMMON or (
            exact and (parameter in _BASE_DEFAULTS or parameter in algorithm.fixed)
        ):
            continue
        if not tf_train_compat and parameter in algorithm.implied:
            default = _signature_defaults(algorithm.tf_train)[parameter]
        kept[parameter] = default
    kept.update({parameter: _BASE_DEFAULTS[parameter] for parameter in _COMMON})
    defaults, parameters = {}, {}
    for parameter, default in kept.items():
        listed, listed_default = _listed(parameter, default)
        defaults[listed], parameters[listed] = listed_default, parameter
    return _Implementation(algorithm, cls, defaults, parameters, exact)


def _without_tf_train_affixes(name: str) -> str:
    """Reduces tf.train's spelling to the name: "tf.train.MomentumOptimizer" -> "Momentum"."""
    name = re.sub(r"^(tf\.)?(compat\.v1\.)?train\.", "", name)
    return re.sub(r"(?<=.)optimizer$", "", name, flags=re.IGNORECASE)


_NAMES = naming.Names(
    "optimizer",
    _ALGORITHMS,
    aliases={"sgd": "GradientDescent"},
    spelling=_without_tf_train_affixes,
)


def canonical_optimizer_name(name: str) -> str:
    """Returns the canonical name (one of `OPTIMIZER_NAMES` or `KERAS_OPTIMIZER_NAMES`).

    Case, `-`, `_` and spaces are ignored, and tf.train's `tf.train.<Name>Optimizer` (with or
    without `tf.compat.v1.`) is accepted: "momentum", "tf.train.MomentumOptimizer",
    "proximal-adagrad", "Proximal Adagrad" and "adamw" all resolve. Keras' names of the
    algorithms tf.train also has ("SGD", "RMSprop") resolve to the tf.train name.

    Raises:
        ValueError: For an unknown name; the message suggests the closest and lists the valid
            names.
    """
    return _NAMES.resolve(name)


def optimizer_hyperparameters(name: str, *, tf_train_compat: bool = True) -> dict[str, Any]:
    """The hyperparameters `get_optimizer(name, ...)` accepts, with their defaults.

    The defaults are read from the signature of the class `get_optimizer` builds. Canonical names
    only (aliases such as `use_nesterov` or `l1_regularization_strength` are accepted but not
    listed). The dict starts with `learning_rate`, then the algorithm's own hyperparameters (and,
    for Keras' classes, Keras' `weight_decay`, `use_ema`, ...), then the ones every optimizer
    takes (`COMMON_HYPERPARAMETERS`: clipping and gradient accumulation).

    Args:
        name: Any accepted spelling of an optimizer name.
        tf_train_compat: Whether the tf.train names mean tf.train's exact classes (True) or
            Keras' (False); the other names mean Keras' class either way.
    """
    check_bool("tf_train_compat", tf_train_compat)
    return dict(_implementation(canonical_optimizer_name(name), tf_train_compat).defaults)


def get_optimizer(
    name: str | Mapping[str, Any] | keras.optimizers.Optimizer,
    learning_rate: LearningRate | None = None,
    *,
    tf_train_compat: bool = True,
    **hyperparameters: Any,
) -> keras.optimizers.Optimizer:
    """Returns a Keras 3 optimizer by name: a tf.train name, or any other Keras optimizer's.

    Args:
        name: One of `OPTIMIZER_NAMES` or `KERAS_OPTIMIZER_NAMES` in any spelling: "Momentum",
            "momentum", "tf.train.MomentumOptimizer", "proximal_adagrad", "AdamW", "lion", ...
            ("sgd" means GradientDescent). Or a dict `{"name": ..., **hyperparameters}` (it may
            hold `learning_rate` and `tf_train_compat` too), or a Keras config dict
            (`keras.saving.serialize_keras_object`) or a built optimizer, used as they are.
        learning_rate: A float > 0, a `keras.optimizers.schedules.LearningRateSchedule` (see
            `recipes.optim.schedules.get_schedule`) or a no-argument callable. `None` takes the
            optimizer's default from `optimizer_hyperparameters(name)`.
        tf_train_compat: True (default) makes a tf.train name reproduce
            `tf.compat.v1.train.<Name>Optimizer` exactly, defaults included; False gives Keras'
            own optimizer, with Keras' arguments and defaults, where Keras has the algorithm
            (AdagradDA and the proximal ones exist only in tf.train's form). The other names are
            Keras' optimizers either way.
        **hyperparameters: The optimizer's hyperparameters (see `optimizer_hyperparameters`),
            which always include `clipnorm`, `clipvalue`, `global_clipnorm` and
            `accumulate_steps`; tf.train's and Keras' spellings of them are accepted too.

    Raises:
        ValueError: For an unknown name, an unknown hyperparameter (the message lists the
            accepted ones), or a value out of range; or for hyperparameters given with a built
            optimizer or a Keras config.
    """
    given = dict(hyperparameters)
    if learning_rate is not None:
        given["learning_rate"] = learning_rate
    if not tf_train_compat:
        given["tf_train_compat"] = tf_train_compat
    if not isinstance(name, str):
        built, name, options = naming.from_identifier(
            "optimizer",
            name,
            given,
            built_type=keras.optimizers.Optimizer,
            deserialize=keras.optimizers.deserialize,
        )
        return built if built is not None else get_optimizer(name, **options)
    canonical = canonical_optimizer_name(name)
    check_bool("tf_train_compat", tf_train_compat, owner=canonical)
    implementation = _implementation(canonical, tf_train_compat)
    values = dict(implementation.defaults)
    default_learning_rate = values.pop("learning_rate")
    learning_rate = _check_learning_rate(
        canonical, default_learning_rate if learning_rate is None else learning_rate
    )
    for key, target in _hyperparameter_names(implementation, hyperparameters).items():
        values[target] = _check_hyperparameter(
            canonical, target, hyperparameters[key], implementation.defaults[target]
        )
    accumulate_steps = values.pop("accumulate_steps")
    # Keras counts accumulation from 2; one batch per update is no accumulation.
    values["accumulate_steps"] = accumulate_steps if accumulate_steps > 1 else None
    arguments = {implementation.parameters[key]: value for key, value in values.items()}
    return implementation.cls(learning_rate=learning_rate, **arguments)


def _hyperparameter_names(
    implementation: _Implementation, hyperparameters: Mapping[str, Any]
) -> dict[str, str]:
    """Maps each hyperparameter given to the listed name it sets (resolving aliases).

    Raises:
        ValueError: for a hyperparameter the optimizer does not take (listing the ones it does,
            and saying so when Keras' class would take it), or one set twice.
    """
    accepted = implementation.defaults
    aliases = {
        **_ALIASES,
        **implementation.algorithm.aliases,
        **{parameter: listed for listed, parameter in implementation.parameters.items()},
    }
    owner = implementation.algorithm.name
    targets: dict[str, str] = {}
    for key in hyperparameters:
        target = aliases.get(key, key) if aliases.get(key) in accepted else key
        if target not in accepted:
            raise ValueError(_not_taken(implementation, key))
        if target in targets.values():
            first = next(given for given, taken in targets.items() if taken == target)
            raise ValueError(f"{owner}: {first!r} and {key!r} are the same setting.")
        targets[key] = target
    return targets


def _not_taken(implementation: _Implementation, key: str) -> str:
    name = implementation.algorithm.name
    accepted = ", ".join(key for key in implementation.defaults if key != "learning_rate")
    message = f"{name} does not take hyperparameter {key!r}. It accepts: {accepted}."
    if implementation.exact:
        keras_form = _implementation(name, tf_train_compat=False)
        if key in keras_form.defaults or key in keras_form.parameters.values():
            message += (
                f" Keras' {keras_form.cls.__name__}, which tf_train_compat=False gives, takes it."
            )
    return message


def _check_hyperparameter(owner: str, name: str, value: Any, default: Any) -> Any:
    if isinstance(default, bool):
        return check_bool(name, value, owner=owner)
    if name in _NUMBER_RANGES:
        return check_number(name, value, owner=owner, **_NUMBER_RANGES[name])
    if name in _INTEGER_RANGES:
        return check_integer(name, value, owner=owner, **_INTEGER_RANGES[name])
    return value


def _check_learning_rate(owner: str, learning_rate: Any) -> LearningRate:
    if isinstance(learning_rate, keras.optimizers.schedules.LearningRateSchedule) or (
        callable(learning_rate)
    ):
        return learning_rate
    # Keras rejects ints ("1" from a config file is a float learning rate).
    return check_number("learning_rate", learning_rate, low=0.0, low_open=True, owner=owner)
