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
from layers.validation import check_integer
from zoo.features import check_feature_request, feature_model
from zoo.finetune import freeze_trunk, resolve_mode
from zoo.knobs import KNOB_DEFAULTS, Knobs
from zoo.pretrained import (
    assign_weights,
    fine_tune_needs_weights,
    pretrained_arguments,
    pretrained_card,
    pretrained_cards,
    read_weights,
)

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


def model_entry(name: str) -> ModelEntry:
    """The registry entry of a model name, any spelling (what `create` builds from)."""
    return _MODELS[model_names().resolve(name)]


def list_models(pattern: str | None = None, pretrained: bool = False) -> list[str]:
    """Registered model names, sorted, optionally filtered by a shell-style pattern.

    The pattern is matched the way names are: case, `-` and `_` ignored, so "ResNet*" and
    "mobilenet-v3*" find "resnet20" and "mobilenet_v3_small".

    Args:
        pattern: a shell-style pattern, or None for every name.
        pretrained: only the models the zoo ships trained weights for (`weights=<tag>`; their
            cards are in `describe(name)["pretrained"]`).
    """
    names = sorted(set(pretrained_cards()) & set(_MODELS) if pretrained else _MODELS)
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
    *,
    include_top: bool | None = None,
    pooling: str | None = None,
    features_only: bool = False,
    **arguments: Any,
) -> keras.Model:
    """Build the registered model `name`, or a feature extractor made of it.

    Args:
        name: a name from `list_models()`, in any spelling ("ResNet20", "mobilenet-v2").
        input_shape: the input shape without batch axis, e.g. `(28, 28, 1)`; defaults to the
            model's default (see `describe`).
        num_classes: the number of output classes; defaults to the model's default. 0 returns
            the pooled features the classifier reads instead (timm's `num_classes=0`).
        include_top: False returns the model up to its last feature map, without the classifier
            and the dense layers before it (`keras.applications`' `include_top`); default True
            (False with `features_only`).
        pooling: with `include_top=False`: None (the 4-D map), "avg" or "max" (global pooling).
        features_only: return a model whose outputs are the feature maps at each stride
            (timm's `features_only`); `zoo.feature_info(model)` names their layers, channels and
            strides.
        **arguments: shared knobs (small models: activation, norm, init, l2, dropout, ...) and
            the model's own options (see `describe(name)`). Small models also take `weights`
            (None, or a tag of their shipped trained weights, e.g. "fashion_mnist": the card's
            architecture, input shape and classes become the defaults; see `zoo.pretrained`) and,
            with weights, `fine_tune` ("predict", "head", "full"; see `zoo.finetune`).

    Returns:
        A Keras 3 model, not compiled. A feature model shares the layers of the model it is cut
        from; for a backbone, that is the model of fine-tuning mode "head" (or "full"): frozen,
        like `keras.applications` feature extraction with `trainable = False`.

    Raises:
        ValueError: for an unknown name (suggesting the closest), a bad knob value, or a feature
            request that contradicts itself (see `zoo.features.check_feature_request`).
        TypeError: for an argument the model does not accept (listing the accepted ones).
    """
    entry = model_entry(name)
    num_classes = check_integer("num_classes", num_classes, low=0, optional=True)
    keeps_top = check_feature_request(include_top, pooling, features_only, num_classes)
    classifier = keeps_top and num_classes != 0
    card, fine_tune = None, None
    if "weights" not in entry.options:
        # Models without their own `weights` option take the zoo's trained weights by tag, and
        # the fine-tuning modes with them.
        card = pretrained_card(entry.name, arguments.pop("weights", None))
        fine_tune = arguments.pop("fine_tune", None)
        if card is None and fine_tune is not None:
            raise ValueError(fine_tune_needs_weights(entry.name, fine_tune))
    knob_values, option_values = _split_arguments(entry, arguments)
    default_shape = entry.default_input_shape if card is None else card.input_shape
    shape = tuple(default_shape if input_shape is None else input_shape)
    classes = num_classes or (entry.default_num_classes if card is None else card.num_classes)
    if not classifier and "fine_tune" in entry.options:
        # A backbone's features come from its fine-tuning model: the network without its top.
        option_values["fine_tune"] = resolve_mode(
            option_values.get("fine_tune"),
            classifier=False,
            num_classes=classes,
            trained_classes=classes,
        )
    new_head = False
    if card is not None:
        fine_tune = resolve_mode(
            fine_tune, classifier=classifier, num_classes=classes, trained_classes=card.num_classes
        )
        new_head = classifier and fine_tune != "predict"
        knob_values, option_values = pretrained_arguments(
            card, knob_values, option_values, new_head=new_head
        )
    if entry.takes_knobs:
        knobs = Knobs(**{**entry.knob_defaults, **knob_values})
        model = entry.builder(shape, classes, knobs, **option_values)
    else:
        model = entry.builder(shape, classes, **option_values)
    if card is not None:
        assign_weights(model, read_weights(card), new_head=new_head, source=card.provenance())
        if fine_tune != "predict":
            freeze_trunk(model)
    if classifier:
        return model
    return feature_model(
        model,
        features_only=features_only,
        pooling=pooling,
        pooled_classifier_input=keeps_top,
    )


def describe(name: str) -> dict[str, Any]:
    """Document a registered model.

    Args:
        name: a name from `list_models()`, in any spelling.

    Returns:
        A dict with the model's `name`, `paper`, `doc` (its docstring: source and expected
        accuracy), `options` (model-specific options with defaults), `knobs` (the shared knobs
        with this model's defaults; empty for backbones), `default_input_shape`,
        `default_num_classes`, `num_params` (parameters of the model built with those
        defaults) and `pretrained` (the cards of its shipped trained weights, by tag: see
        `zoo.pretrained.PretrainedCard`).
    """
    entry = model_entry(name)
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
        "pretrained": {
            tag: card.summary() for tag, card in pretrained_cards().get(entry.name, {}).items()
        },
    }
