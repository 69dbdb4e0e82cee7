"""Training-data augmentation pipelines for tf.data, described by a short spec string.

A spec is a comma-separated list of operations, each optionally followed by colon-separated
parameters (positional, or `name=value`), and/or preset names::

    build_augmentation("flip_h,crop:4,color_jitter:0.2", image_shape=(32, 32, 3), seed=0)
    build_augmentation("standard", image_shape=(28, 28, 1))
    build_augmentation("light,mixup:0.2", image_shape=(32, 32, 3), num_classes=10)

`build_augmentation` returns an `Augmentation`, a callable for
`train_ds.map(aug, num_parallel_calls=tf.data.AUTOTUNE)` on batches of `(images, labels)` with
float images in `[0, 1]`; `aug.apply_to(train_ds)` does the same with fresh randomness every epoch
(see `Augmentation`). Every op draws its randomness statelessly from one seed per batch, so a
pipeline is reproducible under a seed even though tf.data runs the map in parallel.

See docs/augmentation.md for the list of operations, their parameters and the presets.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import random
import warnings
from collections.abc import Callable, Sequence

import keras
import tensorflow as tf

import layers
from layers import naming
from layers.preprocessing import image_statistics
from layers.validation import check_choice, check_integer, check_number, check_shape
from recipes.data import augment_ops
from recipes.data.augment_ops import Op

_UNIT_RANGE = (0.0, 1.0)
BatchFunction = Callable[[tf.Tensor, tf.Tensor], tuple[tf.Tensor, tf.Tensor]]


@dataclasses.dataclass(frozen=True)
class Param:
    """One parameter of an augmentation operation: its type, default and accepted range.

    Args:
        name: the parameter's name, usable as `op:name=value` in a spec.
        kind: `int`, `float` or `str`.
        default: value when the spec leaves it out (`None`: the op derives it from the image).
        low: smallest accepted value (numbers).
        high: largest accepted value (numbers).
        low_open: whether `low` itself is excluded.
        choices: accepted values (strings).
    """

    name: str
    kind: type
    default: object
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    choices: tuple[str, ...] = ()

    def parse(self, op_name: str, text: str) -> int | float | str:
        """The value `text` (from a spec) stands for, checked against the accepted range."""
        owner = f"Augmentation {op_name!r}"
        if self.kind is str:
            return check_choice(self.name, text, self.choices, owner=owner)
        try:
            value = self.kind(text)
        except ValueError:
            # Not even a number of the right kind: the check below refuses the text itself.
            value = text
        if self.kind is int:
            return check_integer(self.name, value, low=self.low, high=self.high, owner=owner)
        return check_number(
            self.name, value, low=self.low, high=self.high, low_open=self.low_open, owner=owner
        )


@dataclasses.dataclass(frozen=True)
class BuildContext:
    """What an operation's builder may need besides its parameters."""

    image_shape: tuple[int, int, int]
    num_classes: int | None
    adapt_data: object


@dataclasses.dataclass(frozen=True)
class OpDef:
    """An augmentation operation the spec language knows.

    Args:
        name: the op's name in a spec.
        summary: one line for error messages and docs.
        params: its parameters, in positional order.
        build: `build(context, **params) -> op`, the op for one image shape.
        colour: whether it needs 3-channel RGB images.
        changes_labels: whether it mixes labels (output labels become soft one-hot).
    """

    name: str
    summary: str
    params: tuple[Param, ...]
    build: Callable[..., Op]
    colour: bool = False
    changes_labels: bool = False


def _fraction(name: str, default: float, high: float = 1.0) -> Param:
    return Param(name, float, default, low=0.0, high=high)


def _keras(layer_factory: Callable[..., keras.layers.Layer]) -> Callable[..., Op]:
    """A builder that wraps the Keras layer made from the op's parameters."""
    return lambda context, **params: augment_ops.KerasLayerOp(layer_factory(**params))


def _build_crop(context: BuildContext, pad: int | None, mode: str) -> Op:
    height, width, _ = context.image_shape
    pad = max(1, min(height, width) // 8) if pad is None else pad
    if pad >= min(height, width):
        raise ValueError(
            f"Augmentation 'crop': pad={pad} must be smaller than the image height and width "
            f"({height}x{width})."
        )
    return augment_ops.PaddedRandomCrop(pad, mode)


def _saturation_layer(factor: float) -> keras.layers.Layer:
    # Keras multiplies saturation by f / (1 - f) for f drawn from its factor range; choose the
    # range whose end points give multipliers 1 - factor and 1 + factor.
    low, high = 1.0 - factor, 1.0 + factor
    return keras.layers.RandomSaturation(
        (low / (1.0 + low), high / (1.0 + high)), value_range=_UNIT_RANGE
    )


def _colour_jitter_parts(strength: float) -> list[Op]:
    layers = [
        keras.layers.RandomBrightness(strength, value_range=_UNIT_RANGE),
        keras.layers.RandomContrast(strength, value_range=_UNIT_RANGE),
        _saturation_layer(strength),
    ]
    return [augment_ops.KerasLayerOp(layer) for layer in layers]


def _build_blur(context: BuildContext, sigma: float, prob: float) -> Op:
    kernel_size = 2 * math.ceil(2.0 * sigma) + 1
    layer = keras.layers.RandomGaussianBlur(
        factor=(prob, prob), kernel_size=kernel_size, sigma=sigma, value_range=_UNIT_RANGE
    )
    return augment_ops.KerasLayerOp(layer)


def _training_images(context: BuildContext, op_name: str, purpose: str) -> object:
    """The op's `adapt_data` with any labels dropped; a clear error when there is none."""
    data = context.adapt_data
    if data is None:
        raise ValueError(
            f"Augmentation {op_name!r} {purpose}: pass adapt_data= (an array of images, or a "
            "dataset of images, of image batches or of (images, labels) batches)."
        )
    if isinstance(data, tf.data.Dataset) and isinstance(data.element_spec, tuple):
        data = data.map(lambda images, *rest: images)
    return data


def _build_erase(context: BuildContext, prob: float, max_area: float, fill: str) -> Op:
    fill_value = None  # Keras' default: Gaussian noise, clipped to the value range
    if fill == "mean":
        channels = context.image_shape[-1]
        if channels not in (1, 3):
            raise ValueError(
                f"Augmentation 'erase': fill='mean' takes images of 1 or 3 channels; "
                f"image_shape={context.image_shape} has {channels}. Use fill='noise'."
            )
        data = _training_images(context, "erase", "with fill='mean' fills with the mean colour")
        if isinstance(data, tf.data.Dataset) and len(data.element_spec.shape) == 3:
            data = data.batch(4096)  # single images: sum them a few thousand at a time
        mean = [float(value) for value in image_statistics(data)["channel_mean"]]
        fill_value = mean[0] if channels == 1 else mean
    layer = keras.layers.RandomErasing(
        factor=(prob, prob),
        scale=(_MIN_ERASE_AREA, max_area),
        fill_value=fill_value,
        value_range=_UNIT_RANGE,
    )
    return augment_ops.KerasLayerOp(layer)


_MIN_ERASE_AREA = 0.02
ERASE_FILLS = ("noise", "mean")


def _build_pca_jitter(context: BuildContext, sigma: float) -> Op:
    data = _training_images(context, "pca_jitter", "fits the principal colour components")
    layer = layers.PCAColorJitter(sigma)
    layer.adapt(data)
    return augment_ops.PCAJitter(layer)


OPS: dict[str, OpDef] = {
    op.name: op
    for op in [
        OpDef(
            "flip_h",
            "mirror left-right with probability 1/2",
            (),
            lambda context: augment_ops.RandomFlip(axis=2),
        ),
        OpDef(
            "flip_v",
            "mirror top-bottom with probability 1/2",
            (),
            lambda context: augment_ops.RandomFlip(axis=1),
        ),
        OpDef(
            "crop",
            "pad by `pad` pixels (default: 1/8 of the side) and crop back at a random offset",
            (
                Param("pad", int, None, low=0),
                Param("mode", str, "constant", choices=("constant", "reflect")),
            ),
            _build_crop,
        ),
        OpDef(
            "resized_crop",
            "crop a box of area in [min_scale, 1] and aspect ratio jitter, resize to full size",
            (
                Param("min_scale", float, 0.08, low=0.0, high=1.0, low_open=True),
                Param("max_ratio", float, 4.0 / 3.0, low=1.0),
            ),
            lambda context, **params: augment_ops.RandomResizedCrop(**params),
        ),
        OpDef(
            "scale",
            "zoom in or out by up to `factor` (fraction of the size), reflecting the border",
            (Param("factor", float, 0.1, low=0.0, high=1.0),),
            _keras(lambda factor: keras.layers.RandomZoom((-factor, factor))),
        ),
        OpDef(
            "translate",
            "shift by up to `fraction` of the height/width, reflecting the border",
            (_fraction("fraction", 0.1),),
            _keras(lambda fraction: keras.layers.RandomTranslation(fraction, fraction)),
        ),
        OpDef(
            "rotate",
            "rotate by up to `degrees` either way, reflecting the border",
            (_fraction("degrees", 15.0, high=180.0),),
            _keras(lambda degrees: keras.layers.RandomRotation(degrees / 360.0)),
        ),
        OpDef(
            "shear",
            "shear both axes by up to `factor`, reflecting the border",
            (_fraction("factor", 0.1),),
            _keras(lambda factor: keras.layers.RandomShear(factor, factor)),
        ),
        OpDef(
            "affine",
            "one random rotation+scale+shear+shift per image, resampled once, reflected border",
            (
                _fraction("degrees", 10.0, high=180.0),
                Param("scale", float, 0.1, low=0.0, high=1.0),
                _fraction("shear", 0.1),
                _fraction("translate", 0.1),
            ),
            lambda context, **params: augment_ops.RandomAffine(**params),
        ),
        OpDef(
            "brightness",
            "add a random offset in [-delta, delta] to all pixels",
            (_fraction("delta", 0.2),),
            _keras(lambda delta: keras.layers.RandomBrightness(delta, value_range=_UNIT_RANGE)),
        ),
        OpDef(
            "contrast",
            "scale the deviation from the per-channel mean by [1 - factor, 1 + factor]",
            (_fraction("factor", 0.2),),
            _keras(lambda factor: keras.layers.RandomContrast(factor, value_range=_UNIT_RANGE)),
        ),
        OpDef(
            "saturation",
            "scale colour saturation by about [1 - factor, 1 + factor]",
            (_fraction("factor", 0.2),),
            _keras(_saturation_layer),
            colour=True,
        ),
        OpDef(
            "hue",
            "rotate the hue by a random fraction up to `factor` of the colour wheel",
            (_fraction("factor", 0.05),),
            _keras(lambda factor: keras.layers.RandomHue(factor, value_range=_UNIT_RANGE)),
            colour=True,
        ),
        OpDef(
            "color_jitter",
            "brightness, contrast and saturation jitter, all of the given strength",
            (_fraction("strength", 0.2),),
            lambda context, strength: augment_ops.ComposedOp(_colour_jitter_parts(strength)),
            colour=True,
        ),
        OpDef(
            "pca_jitter",
            "AlexNet PCA colour jitter, coefficients ~ N(0, sigma); needs adapt_data",
            (_fraction("sigma", 0.1),),
            _build_pca_jitter,
            colour=True,
        ),
        OpDef(
            "noise",
            "add Gaussian noise of standard deviation `stddev`",
            (_fraction("stddev", 0.03),),
            lambda context, stddev: augment_ops.GaussianNoise(stddev),
        ),
        OpDef(
            "blur",
            "Gaussian blur with sigma up to `sigma`, applied with probability `prob`",
            (
                # Keras' RandomGaussianBlur accepts sigma only up to 1.
                Param("sigma", float, 1.0, low=0.0, high=1.0, low_open=True),
                _fraction("prob", 0.5),
            ),
            _build_blur,
        ),
        OpDef(
            "erase",
            "random erasing / cutout: with probability `prob` fill a box of area up to "
            "`max_area` with noise or the training images' mean colour",
            (
                _fraction("prob", 0.5),
                Param("max_area", float, 0.33, low=_MIN_ERASE_AREA, high=1.0, low_open=True),
                Param("fill", str, "noise", choices=ERASE_FILLS),
            ),
            _build_erase,
        ),
        OpDef(
            "mixup",
            "blend each image with another of the batch, Beta(alpha, alpha) weights; soft labels",
            (Param("alpha", float, 0.2, low=0.0, low_open=True),),
            lambda context, alpha: augment_ops.KerasMixOp(keras.layers.MixUp(alpha)),
            changes_labels=True,
        ),
        OpDef(
            "cutmix",
            "paste a box from another image of the batch, area ~ Beta(alpha, alpha); soft labels",
            (Param("alpha", float, 1.0, low=0.0, high=1.0, low_open=True),),
            lambda context, alpha: augment_ops.KerasMixOp(keras.layers.CutMix((alpha, alpha))),
            changes_labels=True,
        ),
    ]
}

ALIASES: dict[str, str] = {"cutout": "erase", "random_erasing": "erase", "hflip": "flip_h"}

PRESETS: dict[str, str] = {
    "none": "",
    "light": "flip_h,crop",
    "standard": "flip_h,crop,color_jitter:0.2",
    "heavy": "flip_h,resized_crop:0.25,affine:15:0.1:0.1:0.05,color_jitter:0.4,erase:0.5",
}


@dataclasses.dataclass(frozen=True)
class OpConfig:
    """One parsed spec item: an op name with all its parameters resolved.

    Args:
        name: canonical op name (aliases resolved).
        params: every parameter of the op, defaults filled in.
        preset: the preset this item came from, or `None` when named directly.
    """

    name: str
    params: dict[str, object]
    preset: str | None = None

    def to_spec(self) -> str:
        values = [f"{key}={value}" for key, value in self.params.items() if value is not None]
        return ":".join([self.name, *values])


# Ops and presets share one namespace: a spec item may be either.
_NAMES = naming.Names("augmentation", (*OPS, *PRESETS), aliases=ALIASES)


def canonical_augmentation_name(name: str) -> str:
    """The operation or preset name (a key of `OPS` or `PRESETS`) that `name` spells.

    Raises:
        ValueError: for an unknown name, suggesting the closest and listing the valid ones.
    """
    return _NAMES.resolve(name)


def _parse_item(item: str, preset: str | None) -> OpConfig:
    name, *arguments = [part.strip() for part in item.split(":")]
    name = canonical_augmentation_name(name)
    if name in PRESETS:
        raise ValueError(f"Augmentation preset {name!r} takes no parameters; got {item!r}.")
    op = OPS[name]
    by_name = {param.name: param for param in op.params}
    params: dict[str, object] = {param.name: param.default for param in op.params}
    if len(arguments) > len(op.params):
        raise ValueError(
            f"Augmentation {name!r} takes at most {len(op.params)} parameter(s) "
            f"({', '.join(by_name) or 'none'}); got {len(arguments)} in {item!r}."
        )
    for position, argument in enumerate(arguments):
        # Parameter names and string values are matched in lower case, as the CLI always has.
        key, sep, text = argument.lower().partition("=")
        if not sep:
            key, text = op.params[position].name, argument.lower()
        if key not in by_name:
            raise ValueError(
                f"Augmentation {name!r} has no parameter {key!r}; "
                f"its parameters: {', '.join(by_name) or 'none'}."
            )
        params[key] = by_name[key].parse(name, text)
    return OpConfig(name, params, preset)


def parse_augment_spec(spec: str | Sequence[str] | None) -> tuple[OpConfig, ...]:
    """Parses a spec such as `"flip_h,crop:4,color_jitter:0.2"` or `"standard"`.

    Args:
        spec: comma-separated items (or a list of items); each is an operation, an alias or a
            preset name, in any spelling (case, `-`, `_` and spaces ignored). `None` and `""`
            mean no augmentation.

    Returns:
        The operations in application order, presets expanded.

    Raises:
        ValueError: for an unknown name (the message lists the valid ones), an empty item, too
            many parameters, an unknown parameter name, or a value of the wrong type or range.
    """
    if spec is None:
        return ()
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    items = [item.strip() for item in items]
    if items == [""]:
        return ()
    configs: list[OpConfig] = []
    for item in items:
        if not item:
            raise ValueError(f"Empty item in augmentation spec {spec!r}.")
        preset = _NAMES.find(item)
        if preset in PRESETS:
            parts = filter(None, PRESETS[preset].split(","))
            configs.extend(_parse_item(part, preset) for part in parts)
        else:
            configs.append(_parse_item(item, None))
    return tuple(configs)


class Augmentation:
    """A seeded augmentation pipeline, applied to training batches inside tf.data.

    Use either form on a dataset of `(images, labels)` batches, images float in `[0, 1]` of shape
    `(batch, *image_shape)` and labels integer class ids of shape `(batch,)` (or, for pipelines
    that mix labels, already one-hot):

    * `train_ds.map(aug, num_parallel_calls=tf.data.AUTOTUNE)`: each batch's random seed is
      derived from the pipeline seed and a fingerprint of the batch's pixels. Reproducible under
      any parallelism; a batch gets new randomness whenever its contents differ, so shuffle the
      training set each epoch (an unshuffled set would be augmented identically every epoch).
    * `aug.apply_to(train_ds)`: each batch's seed comes from `tf.data.Dataset.random` with
      `rerandomize_each_iteration=True`, so every epoch draws afresh, reproducibly, whatever the
      order of the data. Prefer this form.

    Unbatched `(image, label)` elements also work, except with mixup/cutmix which need a batch.

    When `changes_labels` is true (mixup, cutmix) the labels come out as float one-hot vectors of
    length `num_classes`, mixed; train with a loss that accepts soft one-hot targets.

    Built by `build_augmentation`; not constructed directly.
    """

    def __init__(
        self,
        configs: tuple[OpConfig, ...],
        ops: tuple[Op, ...],
        image_shape: tuple[int, int, int],
        seed: int,
        num_classes: int | None,
    ) -> None:
        self.configs = configs
        self.ops = ops
        self.image_shape = image_shape
        self.seed = seed
        self.num_classes = num_classes
        self.changes_labels = any(OPS[config.name].changes_labels for config in configs)

    @property
    def spec(self) -> str:
        """The canonical spec of the ops actually applied (presets expanded, defaults filled)."""
        return ",".join(config.to_spec() for config in self.configs)

    def __repr__(self) -> str:
        return f"Augmentation({self.spec!r}, image_shape={self.image_shape}, seed={self.seed})"

    def augment(self, images: tf.Tensor, labels: tf.Tensor, seed: tf.Tensor):
        """Augments one batch (or one image) as a pure function of `seed`, an int tensor `(2,)`."""
        images = tf.convert_to_tensor(images)
        labels = tf.convert_to_tensor(labels)
        if not images.dtype.is_floating:
            raise TypeError(
                f"Augmentation expects float images in [0, 1]; got dtype {images.dtype.name}. "
                "Convert with tf.image.convert_image_dtype first."
            )
        unbatched = images.shape.rank == 3
        if unbatched:
            if self.changes_labels:
                raise ValueError(f"{self.spec!r} mixes images across a batch: batch the data.")
            images, labels = images[None], labels[None]
        if tuple(images.shape[1:]) != self.image_shape:
            raise ValueError(
                f"Augmentation built for image_shape={self.image_shape} got images of shape "
                f"{tuple(images.shape)}."
            )
        images = tf.cast(images, tf.float32)
        if self.changes_labels:
            labels = self._one_hot(labels)
        seeds = augment_ops.SeedStream(seed)
        for op in self.ops:
            images, labels = op(images, labels, seeds)
        if unbatched:
            return images[0], labels[0]
        return images, labels

    def _one_hot(self, labels: tf.Tensor) -> tf.Tensor:
        if labels.dtype.is_integer:
            return tf.one_hot(tf.reshape(labels, [-1]), self.num_classes, dtype=tf.float32)
        if labels.shape.rank == 2 and labels.shape[-1] == self.num_classes:
            return tf.cast(labels, tf.float32)
        raise ValueError(
            f"{self.spec!r} mixes labels: give integer class ids or one-hot labels of length "
            f"{self.num_classes}; got {labels.dtype.name} labels of shape {labels.shape}."
        )

    def __call__(self, images: tf.Tensor, labels: tf.Tensor):
        """The `Dataset.map` function: seeds each batch from the pipeline seed and its pixels."""
        flat = tf.reshape(tf.cast(images, tf.float32), [1, -1])
        content_key = tf.bitcast(tf.fingerprint(flat)[0], tf.int64)
        seed = tf.stack([tf.constant(self.seed, tf.int64), content_key])
        return self.augment(images, labels, seed)

    def apply_to(
        self,
        dataset: tf.data.Dataset,
        num_parallel_calls: int = tf.data.AUTOTUNE,
        *,
        before: BatchFunction | None = None,
        after: BatchFunction | None = None,
    ) -> tf.data.Dataset:
        """Maps the pipeline over `dataset` with a fresh, reproducible seed per batch and epoch.

        Args:
            dataset: batches of `(images, labels)` (unbatched elements too, see the class).
            num_parallel_calls: batches augmented at once (`tf.data.AUTOTUNE`: tf.data decides).
                The output order, hence the result, does not depend on it.
            before: `(images, labels) -> (images, labels)` run first in the same map call, e.g.
                the conversion of uint8 images to floats in `[0, 1]`.
            after: the same, run last, e.g. the normalization. Doing the work around the
                augmentation in the one map call spares each batch a trip through another
                tf.data stage (its threads and buffer).
        """
        batch_seeds = tf.data.Dataset.random(seed=self.seed, rerandomize_each_iteration=True)
        seeded = tf.data.Dataset.zip(batch_seeds.batch(2), dataset)

        def augment(seed: tf.Tensor, element: tuple[tf.Tensor, tf.Tensor]):
            images, labels = element if before is None else before(*element)
            images, labels = self.augment(images, labels, seed)
            return (images, labels) if after is None else after(images, labels)

        return seeded.map(augment, num_parallel_calls=num_parallel_calls)


def build_augmentation(
    spec: str | Sequence[str] | None,
    image_shape: Sequence[int],
    seed: int | None = None,
    num_classes: int | None = None,
    adapt_data: object = None,
) -> Augmentation:
    """Builds the augmentation pipeline a spec describes, for images of one shape.

    Args:
        spec: see `parse_augment_spec`, e.g. `"flip_h,crop:4,color_jitter:0.2"` or `"standard"`.
        image_shape: `(height, width, channels)` of the training images.
        seed: makes the pipeline reproducible; `None` draws one (kept as `aug.seed` for logs).
        num_classes: number of classes; required when the spec mixes labels (mixup, cutmix).
        adapt_data: training images (array or dataset of images) for ops fitted to the data
            (`pca_jitter`, `erase:fill=mean`); ignored otherwise.

    Returns:
        An `Augmentation`, the map function for the training dataset.

    Raises:
        ValueError: for a bad spec, a colour op named for non-RGB images (colour ops coming from a
            preset are skipped with a warning instead), or a label-mixing op without
            `num_classes`.
    """
    # (height, width, channels)
    image_shape = check_shape("image_shape", tuple(image_shape), rank=3)
    seed = check_integer("seed", seed, low=0, optional=True)
    if seed is None:
        seed = random.SystemRandom().randrange(2**31)
    channels = image_shape[-1]
    kept: list[OpConfig] = []
    for config in parse_augment_spec(spec):
        op = OPS[config.name]
        if op.colour and channels != 3:
            if config.preset is None:
                raise ValueError(
                    f"Augmentation {config.name!r} is a colour operation and needs RGB images; "
                    f"image_shape={image_shape} has {channels} channel(s). Drop it, or use "
                    "'brightness'/'contrast', which work on any number of channels."
                )
            warnings.warn(
                f"Skipping colour augmentation {config.name!r} of preset {config.preset!r}: "
                f"images have {channels} channel(s), not 3.",
                stacklevel=2,
            )
            continue
        has_classes = isinstance(num_classes, numbers.Integral) and num_classes > 1
        if op.changes_labels and not has_classes:
            raise ValueError(
                f"Augmentation {config.name!r} mixes labels into one-hot vectors and needs "
                f"num_classes (an integer > 1); got num_classes={num_classes!r}."
            )
        kept.append(config)
    context = BuildContext(image_shape, num_classes, adapt_data)
    ops = tuple(OPS[config.name].build(context, **config.params) for config in kept)
    return Augmentation(tuple(kept), ops, image_shape, int(seed), num_classes)


__all__ = [
    "ALIASES",
    "OPS",
    "PRESETS",
    "Augmentation",
    "OpConfig",
    "build_augmentation",
    "canonical_augmentation_name",
    "parse_augment_spec",
]
