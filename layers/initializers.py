"""Sparse initialization (Martens, 2010) and the course's named initialization schemes.

`get(name, **kwargs)` turns a scheme name into a Keras initializer, so a model
can say `init="he"` or `init="sparse"`:

| name           | initializer                                            | kwargs                 |
|----------------|--------------------------------------------------------|------------------------|
| `zeros`        | all zeros                                              |                        |
| `constant`     | all `value`                                            | `value=0.0`            |
| `small_random` | `scale * N(0, 1)`                                      | `scale=0.01, seed`     |
| `calibrated`   | `N(0, 1) / sqrt(fan_in)` (LeCun, variance 1/fan_in)    | `seed`                 |
| `xavier`       | Glorot & Bengio uniform, variance 2/(fan_in + fan_out) | `seed`                 |
| `he` (`msra`)  | `N(0, 1) * sqrt(2 / fan_in)` (He et al. 2015)          | `seed`                 |
| `sparse`       | `SparseInitializer`: k non-zero N(0, sigma^2) per unit | `k=10, sigma=1.0, seed`|

`calibrated` and `he` draw from the untruncated normal, exactly the formulas
above (Keras's `LecunNormal`/`HeNormal` use a truncated normal instead).

Every other Keras initializer is available by its Keras name too (`he_normal`,
`glorot_uniform`, `orthogonal`, ...), with that class's own arguments. Names
are resolved by `layers.naming` (case, `-`, `_` and spaces ignored; "msra" is
an alias of "he"), and `get` also takes a config dict or an initializer
instance, as `keras.initializers.get` does.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

import keras
from keras import ops

from layers import naming, validation


@keras.saving.register_keras_serializable(package="layers")
class SparseInitializer(keras.initializers.Initializer):
    """Exactly `k` non-zero incoming weights per output unit (Martens, 2010).

    "Each neuron is connected to a fixed small number of the units below":
    for a kernel of shape `(..., units)` the fan-in is the product of all
    axes but the last (`input_dim` for Dense, `kh * kw * c_in` for Conv2D).
    For every output unit, `k` of its fan-in weights, chosen uniformly
    without replacement, are drawn from N(0, sigma^2); the rest are zero.

    Args:
        k: number of non-zero incoming weights per unit. Default 10.
        sigma: standard deviation of the non-zero weights. Default 1.0.
        seed: int for reproducible draws (the same seed gives the same
            kernel on every call), or None for fresh draws each call.
    """

    def __init__(self, k: int = 10, sigma: float = 1.0, seed: int | None = None) -> None:
        self.k = validation.check_integer("k", k, low=1)
        self.sigma = validation.check_number("sigma", sigma, low=0)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"`seed` must be an int or None. Received: seed={seed!r}")
        self.seed = seed

    def __call__(self, shape, dtype=None):
        shape = tuple(shape)
        if len(shape) < 2:
            raise ValueError(
                f"SparseInitializer needs a kernel of rank >= 2 (fan-in axes, units). "
                f"Received shape {shape}."
            )
        fan_in = math.prod(shape[:-1])
        units = shape[-1]
        if self.k > fan_in:
            raise ValueError(
                f"SparseInitializer: k={self.k} non-zero weights per unit exceeds the fan-in "
                f"{fan_in} of a kernel of shape {shape}."
            )
        # Two different seeds, so which weights are chosen and their values are independent.
        value_seed = None if self.seed is None else self.seed + 1
        keys = keras.random.uniform((units, fan_in), seed=self.seed)
        # The rank of each key within its row; the k smallest keys are the chosen inputs.
        ranks = ops.argsort(ops.argsort(keys, axis=-1), axis=-1)
        values = keras.random.normal((units, fan_in), stddev=self.sigma, seed=value_seed)
        kernel = ops.where(ranks < self.k, values, ops.zeros_like(values))
        dtype = dtype or keras.config.floatx()
        return ops.cast(ops.reshape(ops.transpose(kernel), shape), dtype)

    def get_config(self) -> dict:
        return {"k": self.k, "sigma": self.sigma, "seed": self.seed}


def _zeros() -> keras.initializers.Initializer:
    return keras.initializers.Zeros()


def _constant(value: float = 0.0) -> keras.initializers.Initializer:
    return keras.initializers.Constant(value)


def _small_random(scale: float = 0.01, seed: int | None = None) -> keras.initializers.Initializer:
    return keras.initializers.RandomNormal(mean=0.0, stddev=scale, seed=seed)


def _fan_in_normal(scale: float, seed: int | None) -> keras.initializers.Initializer:
    return keras.initializers.VarianceScaling(
        scale=scale, mode="fan_in", distribution="untruncated_normal", seed=seed
    )


def _calibrated(seed: int | None = None) -> keras.initializers.Initializer:
    return _fan_in_normal(1.0, seed)


def _xavier(seed: int | None = None) -> keras.initializers.Initializer:
    return keras.initializers.GlorotUniform(seed=seed)


def _he(seed: int | None = None) -> keras.initializers.Initializer:
    return _fan_in_normal(2.0, seed)


def _sparse(k: int = 10, sigma: float = 1.0, seed: int | None = None) -> SparseInitializer:
    return SparseInitializer(k=k, sigma=sigma, seed=seed)


_SCHEMES: dict[str, Callable[..., keras.initializers.Initializer]] = {
    "zeros": _zeros,
    "constant": _constant,
    "small_random": _small_random,
    "calibrated": _calibrated,
    "xavier": _xavier,
    "he": _he,
    "sparse": _sparse,
}

SCHEMES: tuple[str, ...] = tuple(_SCHEMES)


def _keras_initializers() -> dict[str, type]:
    """Keras's initializers by their snake_case names, except those a course scheme already is.

    Read from `keras.initializers` itself, so a Keras release that adds one adds it here.
    """
    taken = {naming.name_key(name) for name in _SCHEMES}
    found = {}
    for attribute in dir(keras.initializers):
        value = getattr(keras.initializers, attribute)
        if (
            attribute.islower()
            and not attribute.startswith("_")
            and isinstance(value, type)
            and issubclass(value, keras.initializers.Initializer)
            and naming.name_key(attribute) not in taken
        ):
            found[attribute] = value
    return found


_KERAS_INITIALIZERS = _keras_initializers()

NAMES: tuple[str, ...] = (*SCHEMES, *_KERAS_INITIALIZERS)
_NAMES = naming.Names("initializer", NAMES, aliases={"msra": "he"})


def canonical_name(name: str) -> str:
    """The initializer name (one of `NAMES`) that `name` spells; "msra" gives "he".

    Raises:
        ValueError: for an unknown name, suggesting the closest and listing the valid ones.
    """
    return _NAMES.resolve(name)


def get(identifier: Any, **kwargs: Any) -> keras.initializers.Initializer:
    """Returns the Keras initializer for a named scheme (see the module docstring).

    Args:
        identifier: a name (one of `NAMES`, in any spelling, or the alias "msra"); a dict
            `{"name": ..., **options}`; a Keras config dict as
            `keras.saving.serialize_keras_object` writes it; or an initializer, returned as is.
        **kwargs: the scheme's options, e.g. `value=` for `constant`,
            `k=`, `sigma=`, `seed=` for `sparse`, `seed=` for the random ones; for a Keras
            initializer, its class's arguments.

    Raises:
        ValueError: for an unknown name (suggesting the closest and listing the valid ones), an
            option the scheme does not take (listing the ones it does), or options given with an
            initializer or a Keras config.
    """
    built, identifier, kwargs = naming.from_identifier(
        "initializer",
        identifier,
        kwargs,
        built_type=keras.initializers.Initializer,
        deserialize=keras.initializers.deserialize,
    )
    if built is not None:
        return built
    name = canonical_name(identifier)
    factory = _SCHEMES.get(name) or _KERAS_INITIALIZERS[name]
    accepted = tuple(inspect.signature(factory).parameters)
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise ValueError(
            f"Initializer {name!r} does not take {', '.join(unknown)}. "
            f"It accepts: {', '.join(accepted) or 'no options'}."
        )
    return factory(**kwargs)
