"""Model registry: register builders by decorator, create them by name, describe them.

The registry follows timm's pattern: every model family module decorates its builder functions with
`register_model`, and `zoo/__init__.py` imports those modules so that importing `zoo` fills the
registry. A builder is a plain function

    builder(input_shape, num_classes, [knobs,] **options) -> keras.Model

Builders that take a `knobs` argument are the small models; they receive a `zoo.knobs.Knobs` built
from the shared knob arguments (activation, norm, init, regularization, dropout) merged over the
model's own knob defaults. Every other keyword is a model option, validated against the builder's
signature.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import inspect
from collections.abc import Callable, Mapping
from typing import Any

import keras

from layers import naming
from zoo.knobs import KNOB_DEFAULTS, Knobs

_MODELS: dict[str, ModelEntry] = {}
_BUILDER_POSITIONAL = ("input_shape", "num_classes", "knobs")


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    """What the registry knows about one model name.

    Attributes:
        name: the registered name.
        builder: the function that builds the model.
        paper: the source paper (authors, year, title).
        doc: the model's documentation (the builder's docstring unless given).
        default_input_shape: the input shape used when `create` is given none.
        default_num_classes: the class count used when `create` is given none.
        knob_defaults: this model's defaults for the shared knobs; empty for models without knobs.
        options: the model-specific options and their defaults.
        describe_options: options used when `describe` builds the model to count its parameters
            (e.g. `weights=None`, so that describing a backbone downloads nothing).
    """

    name: str
    builder: Callable[..., keras.Model]
    paper: str
    doc: str
    default_input_shape: tuple[int | None, ...]
    default_num_classes: int
    knob_defaults: Mapping[str, Any]
    options: Mapping[str, Any]
    describe_options: Mapping[str, Any]

    @property
    def takes_knobs(self) -> bool:
        return "knobs" in inspect.signature(self.builder).parameters


def _builder_options(builder: Callable[..., keras.Model]) -> dict[str, Any]:
    """Model-specific keyword options of a builder and their defaults, read from its signature."""
    options = {}
    for parameter in inspect.signature(builder).parameters.values():
        if parameter.name in _BUILDER_POSITIONAL:
            continue
        if parameter.kind in (parameter.VAR_KEYWORD, parameter.VAR_POSITIONAL):
            raise TypeError(
                f"Model builder {builder!r} takes *{parameter.name}: list its options explicitly "
                "(or pass options= to register_model) so that create() can validate them."
            )
        if parameter.default is parameter.empty:
            raise TypeError(f"Model option {parameter.name!r} of {builder!r} needs a default.")
        options[parameter.name] = parameter.default
    return options


def register_model(
    builder: Callable[..., keras.Model] | None = None,
    *,
    name: str | None = None,
    paper: str,
    default_input_shape: tuple[int | None, ...] = (32, 32, 3),
    default_num_classes: int = 10,
    knob_defaults: Mapping[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
    describe_options: Mapping[str, Any] | None = None,
    doc: str | None = None,
) -> Any:
    """Register a model builder under `name` (default: the function's name).

    Use as a decorator, `@register_model(paper="...")`, or call it directly with a builder.

    Args:
        builder: the builder function (given when called directly).
        name: the registered name; defaults to `builder.__name__`.
        paper: the source paper, shown by `describe`.
        default_input_shape: input shape used when `create` gets none, and by `describe`.
        default_num_classes: class count used when `create` gets none, and by `describe`.
        knob_defaults: this model's defaults for the shared knobs (e.g. `{"activation": "tanh"}`);
            only for builders that take `knobs`.
        options: the model-specific options and defaults; read from the builder's signature when
            not given.
        describe_options: options `describe` uses to build the model for its parameter count.
        doc: documentation; defaults to the builder's docstring.

    Returns:
        The builder unchanged (decorator use) or a decorator.
    """

    def decorate(function: Callable[..., keras.Model]) -> Callable[..., keras.Model]:
        model_name = name or function.__name__
        # Names are looked up ignoring case, '-' and '_', so those cannot tell two models apart.
        taken = naming.Names("model", _MODELS).find(model_name)
        if taken is not None:
            raise ValueError(f"Model name {model_name!r} is already registered (as {taken!r}).")
        entry = ModelEntry(
            name=model_name,
            builder=function,
            paper=paper,
            doc=inspect.cleandoc(doc or function.__doc__ or ""),
            default_input_shape=tuple(default_input_shape),
            default_num_classes=default_num_classes,
            knob_defaults=dict(knob_defaults or {}),
            options=dict(_builder_options(function) if options is None else options),
            describe_options=dict(describe_options or {}),
        )
        if entry.knob_defaults and not entry.takes_knobs:
            raise TypeError(f"{model_name!r} has knob_defaults but its builder takes no knobs.")
        unknown = set(entry.knob_defaults) - set(KNOB_DEFAULTS)
        if unknown:
            raise ValueError(f"Unknown knob defaults {sorted(unknown)} for {model_name!r}.")
        _MODELS[model_name] = entry
        return function

    return decorate if builder is None else decorate(builder)


def model_names() -> naming.Names:
    """The registered model names as a `layers.naming.Names` table (any spelling resolves)."""
    return naming.Names("model", sorted(_MODELS))


def _entry(name: str) -> ModelEntry:
    return _MODELS[model_names().resolve(name)]


def list_models(pattern: str | None = None) -> list[str]:
    """Registered model names, sorted, optionally filtered by a shell-style pattern.

    The pattern is matched the way names are: case, `-` and `_` ignored, so "ResNet*" and
    "mobilenet-v3*" find "resnet20" and "mobilenet_v3_small".
    """
    names = sorted(_MODELS)
    if pattern is None:
        return names
    key_pattern = naming.name_key(pattern)
    return [name for name in names if fnmatch.fnmatchcase(naming.name_key(name), key_pattern)]


def _split_arguments(entry: ModelEntry, arguments: Mapping[str, Any]) -> tuple[dict, dict]:
    """Split keyword arguments into (knob values, model options), rejecting unknown names."""
    knob_names = set(KNOB_DEFAULTS) if entry.takes_knobs else set()
    unknown = sorted(set(arguments) - knob_names - set(entry.options))
    if unknown:
        accepted = sorted(knob_names | set(entry.options))
        raise TypeError(
            f"Model {entry.name!r} got unknown argument(s) {unknown}. Accepted: {accepted}."
        )
    knob_values = {key: value for key, value in arguments.items() if key in knob_names}
    option_values = {key: value for key, value in arguments.items() if key in entry.options}
    return knob_values, option_values


def create(
    name: str,
    input_shape: tuple[int | None, ...] | None = None,
    num_classes: int | None = None,
    **arguments: Any,
) -> keras.Model:
    """Build the registered model `name`.

    Args:
        name: a name from `list_models()`, in any spelling ("ResNet20", "mobilenet-v2").
        input_shape: the input shape without batch axis, e.g. `(28, 28, 1)`; defaults to the
            model's default (see `describe`).
        num_classes: the number of output classes; defaults to the model's default.
        **arguments: shared knobs (small models: activation, norm, init, l2, dropout, ...) and
            the model's own options (see `describe(name)`).

    Returns:
        A Keras 3 model, not compiled.

    Raises:
        ValueError: for an unknown name (suggesting the closest) or a bad knob value.
        TypeError: for an argument the model does not accept (listing the accepted ones).
    """
    entry = _entry(name)
    knob_values, option_values = _split_arguments(entry, arguments)
    shape = tuple(entry.default_input_shape if input_shape is None else input_shape)
    classes = entry.default_num_classes if num_classes is None else int(num_classes)
    if classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}.")
    if entry.takes_knobs:
        knobs = Knobs(**{**entry.knob_defaults, **knob_values})
        return entry.builder(shape, classes, knobs, **option_values)
    return entry.builder(shape, classes, **option_values)


def describe(name: str) -> dict[str, Any]:
    """Document a registered model.

    Args:
        name: a name from `list_models()`, in any spelling.

    Returns:
        A dict with the model's `name`, `paper`, `doc` (its docstring: source and expected
        accuracy), `options` (model-specific options with defaults), `knobs` (the shared knobs
        with this model's defaults; empty for backbones), `default_input_shape`,
        `default_num_classes` and `num_params` (parameters of the model built with those
        defaults).
    """
    entry = _entry(name)
    model = create(entry.name, **entry.describe_options)
    return {
        "name": entry.name,
        "paper": entry.paper,
        "doc": entry.doc,
        "options": dict(entry.options),
        "knobs": {**KNOB_DEFAULTS, **entry.knob_defaults} if entry.takes_knobs else {},
        "default_input_shape": entry.default_input_shape,
        "default_num_classes": entry.default_num_classes,
        "num_params": model.count_params(),
    }
