"""The course's knobs, shared by every small model: activation, normalization, init, regularization.

A `Knobs` value holds one choice for each knob and builds the model's units from it, so every small
model gets the same behaviour from one piece of code. A unit is

    linear layer (Dense / Conv2D / DepthwiseConv2D / LocallyConnected2D)
        -> normalization (the course's placement: after the linear layer, before the nonlinearity)
        -> nonlinearity

Maxout needs `pieces` linear outputs per unit, so a maxout unit widens its linear layer by `pieces`
and the `Maxout` layer takes the max over each group (Goodfellow et al., 2013).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import keras

import layers
from layers import (
    GroupNormalization,
    LocallyConnected2D,
    LocalResponseNormalization,
    Maxout,
    WeightNormalization,
    naming,
)
from layers.validation import check_integer, check_number

ACTIVATIONS = (
    "sigmoid",
    "tanh",
    "relu",
    "leaky_relu",
    "prelu",
    "elu",
    "softplus",
    "maxout",
    "linear",
)
NORMS = ("none", "batch", "group", "layer", "lrn", "weight")
OUTPUT_ACTIVATIONS = ("softmax", "sigmoid", "linear")
# The course's schemes; `init` also takes every other name `layers.initializers.get` knows.
INITS = layers.initializers.SCHEMES

_ACTIVATION_NAMES = naming.Names("activation", ACTIVATIONS)
_NORM_NAMES = naming.Names(
    "norm",
    NORMS,
    aliases={f"{norm}_norm": norm for norm in ("batch", "group", "layer", "weight")},
)
_OUTPUT_ACTIVATION_NAMES = naming.Names("output activation", OUTPUT_ACTIVATIONS)

# The knob names and their library-wide defaults; a model overrides some via `knob_defaults`.
KNOB_DEFAULTS: dict[str, Any] = {
    "activation": "relu",
    "negative_slope": 0.01,
    "pieces": 2,
    "norm": "none",
    "groups": 8,
    "init": "he",
    "init_value": 0.01,
    "init_stddev": 0.01,
    "sparse_k": 15,
    "bias_init": 0.0,
    "l1": 0.0,
    "l2": 0.0,
    "max_norm": None,
    "input_dropout": 0.0,
    "dropout": 0.0,
    "output_activation": "softmax",
}

# The layers WeightNormalization reparametrizes; depthwise and locally connected ones stay plain.
_WEIGHT_NORMALIZABLE = (keras.layers.Dense, keras.layers.Conv2D)
# Normalizations with their own learned shift make a bias in the preceding linear layer redundant.
_SHIFTING_NORMS = ("batch", "group", "layer")


def largest_divisor_at_most(channels: int, limit: int) -> int:
    """The largest divisor of `channels` not above `limit` (the group count GroupNorm can use)."""
    return max(d for d in range(1, min(channels, limit) + 1) if channels % d == 0)


@dataclasses.dataclass(frozen=True)
class Knobs:
    """One setting of the course's knobs; builds units (linear -> norm -> nonlinearity) from it.

    Names are resolved by `layers.naming` (case, `-`, `_` and spaces ignored) and stored in their
    canonical spelling: `Knobs(activation="Leaky-ReLU").activation == "leaky_relu"`.

    Args:
        activation: one of `ACTIVATIONS`: sigmoid, tanh, relu, leaky_relu (slope
            `negative_slope`), prelu (learned slope, one per channel), elu, softplus, maxout
            (`pieces` linear pieces per unit), linear.
        negative_slope: slope of leaky_relu for negative inputs (Keras's `LeakyReLU` name; not
            MobileNet's width multiplier `alpha`, which is a model option).
        pieces: linear pieces per maxout unit (>= 2).
        norm: one of `NORMS` (or `batch_norm`, `group_norm`, `layer_norm`, `weight_norm`): none;
            batch (BatchNormalization); group (GroupNormalization with
            `groups` groups, lowered to the largest divisor of the channel count); layer
            (per-sample statistics over all of a unit's outputs: LayerNormalization for dense
            units, one-group GroupNormalization for feature maps, as Ba et al. define it); lrn
            (LocalResponseNormalization, feature maps only; dense units stay unnormalized);
            weight (WeightNormalization reparametrizes the Dense or Conv2D layer itself;
            depthwise and locally connected layers stay plain).
        groups: group count for norm="group".
        init: kernel initializer, one of `INITS`: zeros, constant (`init_value`), small_random
            (normal, `init_stddev`), calibrated (variance 1/fan_in), xavier (Glorot), he (alias
            msra; variance 2/fan_in), sparse (`sparse_k` nonzero incoming weights per unit); or
            any other name `layers.initializers.get` takes (`he_normal`, `orthogonal`, ...),
            with that initializer's defaults.
        init_value: the constant for init="constant".
        init_stddev: the standard deviation for init="small_random".
        sparse_k: nonzero incoming weights per unit for init="sparse".
        bias_init: constant initial bias (0, or a small constant such as 0.01 that keeps ReLU
            units active at the start).
        l1: L1 weight penalty on kernels (with `l2` > 0 too: elastic net).
        l2: L2 weight penalty on kernels: adds l2 * sum(w**2) to the loss, like SGD weight
            decay of 2 * l2 (Caffe's and PyTorch's `weight_decay` 1e-4 is `l2=5e-5`).
        max_norm: if set, each unit's incoming weight vector is rescaled to norm <= max_norm
            after every update (Srebro & Shraibman 2005; Hinton et al. 2012).
        input_dropout: dropout rate on the model input.
        dropout: dropout rate on hidden layers (where each model places it).
        output_activation: the classifier's last activation, one of `OUTPUT_ACTIVATIONS`:
            softmax (probabilities, for cross-entropy), sigmoid (per-attribute probabilities),
            or linear (raw scores, for the margin losses: multiclass SVM hinge and friends).
    """

    activation: str = KNOB_DEFAULTS["activation"]
    negative_slope: float = KNOB_DEFAULTS["negative_slope"]
    pieces: int = KNOB_DEFAULTS["pieces"]
    norm: str = KNOB_DEFAULTS["norm"]
    groups: int = KNOB_DEFAULTS["groups"]
    init: str = KNOB_DEFAULTS["init"]
    init_value: float = KNOB_DEFAULTS["init_value"]
    init_stddev: float = KNOB_DEFAULTS["init_stddev"]
    sparse_k: int = KNOB_DEFAULTS["sparse_k"]
    bias_init: float = KNOB_DEFAULTS["bias_init"]
    l1: float = KNOB_DEFAULTS["l1"]
    l2: float = KNOB_DEFAULTS["l2"]
    max_norm: float | None = KNOB_DEFAULTS["max_norm"]
    input_dropout: float = KNOB_DEFAULTS["input_dropout"]
    dropout: float = KNOB_DEFAULTS["dropout"]
    output_activation: str = KNOB_DEFAULTS["output_activation"]

    def __post_init__(self) -> None:
        # Stored canonical, so that the rest of the class (and a saved config) sees one spelling.
        for knob, names in (
            ("activation", _ACTIVATION_NAMES),
            ("norm", _NORM_NAMES),
            ("output_activation", _OUTPUT_ACTIVATION_NAMES),
        ):
            object.__setattr__(self, knob, names.resolve(getattr(self, knob)))
        object.__setattr__(self, "init", layers.initializers.canonical_name(self.init))
        # Booleans are refused: `l2=True` is a mistake, not a penalty of 1.
        for knob, bounds in (
            ("negative_slope", {"low": 0.0}),
            ("init_stddev", {"low": 0.0}),
            ("init_value", {}),
            ("bias_init", {}),
            ("l1", {"low": 0.0}),
            ("l2", {"low": 0.0}),
            ("max_norm", {"low": 0.0, "low_open": True, "optional": True}),
            ("input_dropout", {"low": 0.0, "high": 1.0, "high_open": True}),
            ("dropout", {"low": 0.0, "high": 1.0, "high_open": True}),
        ):
            object.__setattr__(self, knob, check_number(knob, getattr(self, knob), **bounds))
        for knob, low in (("pieces", 2), ("groups", 1), ("sparse_k", 1)):
            object.__setattr__(self, knob, check_integer(knob, getattr(self, knob), low=low))

    # ----------------------------------------------------------------------------------------
    # Units

    def dense_unit(self, x: Any, units: int, *, name: str, activate: bool = True) -> Any:
        """Dense(units) -> norm -> nonlinearity."""

        def make(width: int, **kwargs: Any) -> keras.layers.Layer:
            return keras.layers.Dense(width * units, **self._kernel_kwargs("kernel", [0]), **kwargs)

        return self._unit(x, make, spatial=False, name=name, activate=activate)

    def conv_unit(
        self,
        x: Any,
        filters: int,
        kernel_size: int,
        *,
        name: str,
        strides: int = 1,
        padding: str = "same",
        activate: bool = True,
    ) -> Any:
        """Conv2D(filters, kernel_size) -> norm -> nonlinearity."""
        make = self._conv_factory(filters, kernel_size, strides=strides, padding=padding)
        return self._unit(x, make, spatial=True, name=name, activate=activate)

    def conv_layer(
        self, x: Any, filters: int, kernel_size: int, *, name: str, strides: int = 1
    ) -> Any:
        """Conv2D(filters, kernel_size) alone ("same" padding), for pre-activation networks, where
        the unit after it normalizes and activates its input (He et al. 2016, Identity Mappings;
        Zagoruyko & Komodakis 2016)."""
        make = self._conv_factory(filters, kernel_size, strides=strides, padding="same")
        return self._linear(make, 1, name=name)(x)

    def depthwise_unit(
        self, x: Any, kernel_size: int, *, name: str, strides: int = 1, activate: bool = True
    ) -> Any:
        """DepthwiseConv2D(kernel_size) -> norm -> nonlinearity.

        A maxout unit uses depth multiplier `pieces`, so that Maxout gives back the input's
        channel count.
        """

        def make(width: int, **kwargs: Any) -> keras.layers.Layer:
            return keras.layers.DepthwiseConv2D(
                kernel_size,
                strides=strides,
                padding="same",
                depth_multiplier=width,
                **self._kernel_kwargs("depthwise", [0, 1]),
                **kwargs,
            )

        return self._unit(x, make, spatial=True, name=name, activate=activate)

    def locally_connected_unit(
        self, x: Any, filters: int, kernel_size: int, *, name: str, strides: int = 1
    ) -> Any:
        """LocallyConnected2D(filters, kernel_size) (unshared weights) -> norm -> nonlinearity."""

        def make(width: int, **kwargs: Any) -> keras.layers.Layer:
            return LocallyConnected2D(
                width * filters,
                kernel_size,
                strides=strides,
                **self._kernel_kwargs("kernel", [1]),
                **kwargs,
            )

        return self._unit(x, make, spatial=True, name=name, activate=True)

    def activate(self, x: Any, *, name: str) -> Any:
        """The nonlinearity alone, for places without a linear layer before it (after a residual
        addition). Maxout cannot be used there: it needs a linear layer to supply its pieces."""
        if self.activation == "maxout":
            raise ValueError(
                "activation='maxout' needs a linear layer supplying its pieces, but this model "
                f"applies a nonlinearity without one ({name}, e.g. after a residual addition). "
                f"Choose one of: {', '.join(a for a in ACTIVATIONS if a != 'maxout')}."
            )
        return self._nonlinearity(x, spatial=len(x.shape) == 4, name=name)

    def norm_activate(self, x: Any, *, name: str) -> Any:
        """norm -> nonlinearity with no linear layer before it: the first half of a pre-activation
        unit. Maxout cannot be used here either (see `activate`)."""
        spatial = len(x.shape) == 4
        y = self._normalize(x, spatial=spatial, name=f"{name}_{self.norm}norm")
        return self.activate(y, name=f"{name}_{self.activation}")

    def classifier(self, x: Any, num_classes: int, *, name: str = "predictions") -> Any:
        """The output layer: Dense(num_classes) with the init and weight penalties, then
        `output_activation`; in float32 under any policy, so that a model built under a mixed
        precision policy still outputs float32 probabilities and scores."""
        return keras.layers.Dense(
            num_classes,
            activation=self.output_activation,
            name=name,
            dtype="float32",
            **self._kernel_kwargs("kernel", [0]),
        )(x)

    def conv_classifier(self, x: Any, num_classes: int, *, name: str = "predictions") -> Any:
        """The all-convolutional output: 1x1 conv to one map per class, global average, then
        `output_activation` (Lin et al. 2013; Springenberg et al. 2014), in float32 (see
        `classifier`)."""
        x = keras.layers.Conv2D(
            num_classes, 1, name=f"{name}_conv", **self._kernel_kwargs("kernel", [0, 1, 2])
        )(x)
        x = keras.layers.GlobalAveragePooling2D(name=f"{name}_pool")(x)
        return keras.layers.Activation(self.output_activation, name=name, dtype="float32")(x)

    def input_dropout_layer(self, x: Any) -> Any:
        """Dropout on the model input when `input_dropout` > 0."""
        return (
            keras.layers.Dropout(self.input_dropout, name="input_dropout")(x)
            if (self.input_dropout)
            else x
        )

    def hidden_dropout(self, x: Any, *, name: str) -> Any:
        """Dropout on hidden activations when `dropout` > 0."""
        return keras.layers.Dropout(self.dropout, name=name)(x) if self.dropout else x

    # ----------------------------------------------------------------------------------------
    # Pieces

    def _unit(
        self,
        x: Any,
        make: Callable[..., keras.layers.Layer],
        *,
        spatial: bool,
        name: str,
        activate: bool,
    ) -> Any:
        """linear -> norm -> nonlinearity, with `make(width_multiplier, **kwargs)` the linear
        layer factory (the multiplier is `pieces` for maxout units, 1 otherwise)."""
        width = self.pieces if activate and self.activation == "maxout" else 1
        linear = self._linear(make, width, name=name)
        y = self._normalize(linear(x), spatial=spatial, name=f"{name}_{self.norm}norm")
        if not activate:
            return y
        if self.activation == "maxout":
            return Maxout(num_pieces=self.pieces, name=f"{name}_maxout")(y)
        return self._nonlinearity(y, spatial=spatial, name=f"{name}_{self.activation}")

    def _linear(
        self, make: Callable[..., keras.layers.Layer], width: int, *, name: str
    ) -> keras.layers.Layer:
        """The linear layer `make` builds, without a bias where the norm supplies the shift,
        wrapped in WeightNormalization under norm="weight"."""
        linear = make(width, use_bias=self.norm not in _SHIFTING_NORMS, name=name)
        if self.norm == "weight" and isinstance(linear, _WEIGHT_NORMALIZABLE):
            linear = WeightNormalization(linear, name=f"{name}_weightnorm")
        return linear

    def _conv_factory(
        self, filters: int, kernel_size: int, *, strides: int, padding: str
    ) -> Callable[..., keras.layers.Layer]:
        def make(width: int, **kwargs: Any) -> keras.layers.Layer:
            return keras.layers.Conv2D(
                width * filters,
                kernel_size,
                strides=strides,
                padding=padding,
                **self._kernel_kwargs("kernel", [0, 1, 2]),
                **kwargs,
            )

        return make

    def _normalize(self, x: Any, *, spatial: bool, name: str) -> Any:
        channels = x.shape[-1]
        if self.norm == "batch":
            return keras.layers.BatchNormalization(name=name)(x)
        if self.norm == "group":
            groups = largest_divisor_at_most(channels, self.groups)
            return GroupNormalization(groups=groups, name=name)(x)
        if self.norm == "layer":
            if spatial:
                return GroupNormalization(groups=1, name=name)(x)
            return keras.layers.LayerNormalization(name=name)(x)
        if self.norm == "lrn" and spatial:
            return LocalResponseNormalization(name=name)(x)
        return x

    def _nonlinearity(self, x: Any, *, spatial: bool, name: str) -> Any:
        if self.activation == "leaky_relu":
            return keras.layers.LeakyReLU(negative_slope=self.negative_slope, name=name)(x)
        if self.activation == "prelu":
            # One learned slope per channel, shared over positions, as in He et al. (2015).
            shared_axes = [1, 2] if spatial else None
            return keras.layers.PReLU(shared_axes=shared_axes, name=name)(x)
        return keras.layers.Activation(self.activation, name=name)(x)

    def kernel_initializer(self) -> keras.initializers.Initializer:
        """The kernel initializer chosen by `init` (and its parameter), from
        `layers.initializers`."""
        parameters = {
            "constant": {"value": self.init_value},
            "small_random": {"scale": self.init_stddev},
            "sparse": {"k": self.sparse_k},
        }.get(self.init, {})
        return layers.initializers.get(self.init, **parameters)

    def _kernel_kwargs(self, prefix: str, norm_axes: list[int]) -> dict[str, Any]:
        """Initializer, penalty and max-norm constraint for a layer's kernel named `prefix`.

        `norm_axes` are the kernel axes spanning one unit's incoming weights (the max-norm axes).
        """
        penalty = keras.regularizers.L1L2(l1=self.l1, l2=self.l2) if self.l1 or self.l2 else None
        constraint = None
        if self.max_norm is not None:
            constraint = keras.constraints.MaxNorm(self.max_norm, axis=norm_axes)
        return {
            f"{prefix}_initializer": self.kernel_initializer(),
            f"{prefix}_regularizer": penalty,
            f"{prefix}_constraint": constraint,
            "bias_initializer": keras.initializers.Constant(self.bias_init),
        }
