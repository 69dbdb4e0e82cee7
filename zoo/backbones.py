"""ImageNet backbones from `keras.applications`, with the course's three fine-tuning modes.

Every backbone model takes raw images (any size, 1 or 3 channels, values 0..255): it resizes them
to the backbone's input size, repeats a gray channel into RGB, and applies the backbone's own
`preprocess_input`, all inside the model. The `keras.applications` network sits inside as one
nested layer named "backbone".

Fine-tuning modes (`fine_tune=`, see also `zoo.finetune`, which the zoo's own trained weights
share):

- "predict": the pretrained network as is, ImageNet classifier included (num_classes 1000), for
  labelling new images with `predict_labels`. The default when num_classes is 1000 (or unset).
- "head": the backbone frozen, its BatchNormalization layers kept in inference mode, and a new
  softmax head for `num_classes` on the globally pooled features. The default for any other
  num_classes, and the model feature extraction (`include_top=False`, `features_only=True`,
  `num_classes=0`) is cut from.
- "full": the same model as "head" to start with: train the head first, then call
  `unfreeze_backbone` (optionally only the top N blocks), compile again with a lower learning rate
  and train on. The recipe runner runs both phases (`recipes.finetune_imagenet --fine-tune full`,
  `--head-epochs`, `--unfreeze-blocks`, `--full-lr-factor`). BatchNormalization stays in inference
  mode throughout, so that small fine-tuning batches do not wreck the pretrained statistics.

`weights=` is "imagenet" (Keras downloads and caches the file under `$KERAS_HOME/models`), a path
to a weights file for the backbone (with the classifier top for "predict", without for the other
modes), or None for random initialisation.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import json
import os
import re
import urllib.error
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import keras
import numpy as np

from zoo.finetune import (
    keep_batchnorm_in_inference,
    resolve_mode,
    trunk_blocks,
    unfreeze_trunk,
)
from zoo.pretrained import fine_tune_needs_weights, pretrained_card
from zoo.registry import create, model_entry, register_model

BACKBONE_LAYER = "backbone"
IMAGENET_CLASSES = 1000


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    """How to build one `keras.applications` backbone and find its blocks.

    Attributes:
        name: the zoo name.
        constructor: the `keras.applications` function, e.g. "MobileNet".
        module: the `keras.applications` module with its `preprocess_input` and
            `decode_predictions`, e.g. "mobilenet".
        paper: the source paper.
        block_pattern: a regular expression; a layer whose name matches it starts or continues
            the block named by the match's first group (the whole match if it has no group).
            Layers that do not match belong to the block before.
        image_size: the backbone's native input size.
        options: extra constructor options this backbone accepts, with their defaults.
    """

    name: str
    constructor: str
    module: str
    paper: str
    block_pattern: str
    image_size: int = 224
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def build(self, **kwargs: Any) -> keras.Model:
        """The `keras.applications` model; ImageNet weights come from Keras' cache or download.

        Raises:
            WeightsUnavailable: the weights are neither cached nor downloadable (offline, say).
        """
        with _keras_download(WeightsUnavailable):
            return getattr(keras.applications, self.constructor)(**kwargs)

    @property
    def applications_module(self) -> Any:
        return importlib.import_module(f"keras.applications.{self.module}")


_MOBILENET_V3_OPTIONS = {"alpha": 1.0, "minimalistic": False}
_EFFICIENTNET = (
    "Tan & Le (2019), EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks"
)
_RESNET = "He, Zhang, Ren & Sun (2016), Deep Residual Learning for Image Recognition"

BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        BackboneSpec(
            "mobilenet",
            "MobileNet",
            "mobilenet",
            "Howard et al. (2017), MobileNets: Efficient Convolutional Neural Networks for Mobile "
            "Vision Applications",
            r"^conv_(?:dw|pw)_(\d+)",
            options={"alpha": 1.0, "depth_multiplier": 1},
        ),
        BackboneSpec(
            "mobilenet_v2",
            "MobileNetV2",
            "mobilenet_v2",
            "Sandler et al. (2018), MobileNetV2: Inverted Residuals and Linear Bottlenecks",
            r"^block_\d+_",
            options={"alpha": 1.0},
        ),
        BackboneSpec(
            "mobilenet_v3_small",
            "MobileNetV3Small",
            "mobilenet_v3",
            "Howard et al. (2019), Searching for MobileNetV3",
            r"^expanded_conv(?:_\d+)?_",
            options=_MOBILENET_V3_OPTIONS,
        ),
        BackboneSpec(
            "mobilenet_v3_large",
            "MobileNetV3Large",
            "mobilenet_v3",
            "Howard et al. (2019), Searching for MobileNetV3",
            r"^expanded_conv(?:_\d+)?_",
            options=_MOBILENET_V3_OPTIONS,
        ),
        BackboneSpec(
            "efficientnet_b0", "EfficientNetB0", "efficientnet", _EFFICIENTNET, r"^block\d+[a-z]_"
        ),
        BackboneSpec(
            "efficientnet_b1",
            "EfficientNetB1",
            "efficientnet",
            _EFFICIENTNET,
            r"^block\d+[a-z]_",
            image_size=240,
        ),
        BackboneSpec(
            "efficientnet_b2",
            "EfficientNetB2",
            "efficientnet",
            _EFFICIENTNET,
            r"^block\d+[a-z]_",
            image_size=260,
        ),
        BackboneSpec("resnet50", "ResNet50", "resnet50", _RESNET, r"^conv\d_block\d+_"),
        BackboneSpec(
            "resnet50_v2",
            "ResNet50V2",
            "resnet_v2",
            "He, Zhang, Ren & Sun (2016), Identity Mappings in Deep Residual Networks",
            r"^conv\d_block\d+_",
        ),
        BackboneSpec(
            "densenet121",
            "DenseNet121",
            "densenet",
            "Huang, Liu, van der Maaten & Weinberger (2017), Densely Connected Convolutional "
            "Networks",
            r"^(?:conv\d_block\d+|pool\d)_",
        ),
        BackboneSpec(
            "vgg16",
            "VGG16",
            "vgg16",
            "Simonyan & Zisserman (2014), Very deep convolutional networks for large-scale image "
            "recognition",
            r"^block\d_",
        ),
    )
}


def backbone_spec(name: str) -> BackboneSpec:
    """The `BackboneSpec` of a backbone name, with a clear error for unknown names."""
    if name not in BACKBONES:
        raise ValueError(f"Unknown backbone {name!r}. Accepted: {', '.join(BACKBONES)}.")
    return BACKBONES[name]


@keras.saving.register_keras_serializable(package="zoo")
class BackbonePreprocessing(keras.layers.Layer):
    """Applies a backbone's own `keras.applications.<module>.preprocess_input` inside a model.

    Keeping it in the model means users hand raw 0..255 images, and a saved model carries its
    preprocessing with it. The layer also records which backbone the model holds, so that
    `predict_labels` can find the matching `decode_predictions`.

    Args:
        backbone: a name from `BACKBONES`.
    """

    def __init__(self, backbone: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.spec = backbone_spec(backbone)

    def call(self, images: Any) -> Any:
        images = keras.ops.cast(images, self.compute_dtype)
        return self.spec.applications_module.preprocess_input(images)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "backbone": self.spec.name}


def _check_weights(weights: Any) -> str | None:
    if weights is None or weights == "imagenet":
        return weights
    if isinstance(weights, str | os.PathLike) and Path(weights).is_file():
        return os.fspath(weights)
    raise ValueError(
        f'weights must be "imagenet", None, or the path of an existing weights file; got '
        f"{weights!r}."
    )


def _raw_image_front(
    input_shape: tuple[int | None, ...], image_size: int, spec: BackboneSpec
) -> tuple[Any, Any]:
    """Input -> resize (central crop to square) -> gray to RGB -> the backbone's preprocessing."""
    if len(input_shape) != 3 or input_shape[-1] not in (1, 3):
        raise ValueError(
            "Backbones take images of shape (height, width, 1 or 3 channels); height and width "
            f"may be None. Got input_shape={input_shape!r}."
        )
    inputs = keras.Input(shape=tuple(input_shape), name="image")
    # Plain bilinear: an antialiased resize lowers to ScaleAndTranslate, which TFLite has no
    # builtin for, so no fine-tuned backbone could go to a phone. Antialiasing only matters when
    # shrinking; the input pipeline (recipes.data) and `predict_labels` shrink large images with
    # it first, so that photos reach this layer near its size.
    x = keras.layers.Resizing(
        image_size, image_size, crop_to_aspect_ratio=True, antialias=False, name="resize"
    )(inputs)
    if input_shape[-1] == 1:
        x = keras.layers.Concatenate(name="gray_to_rgb")([x, x, x])
    return inputs, BackbonePreprocessing(spec.name, name="preprocess")(x)


def build_backbone(
    spec: BackboneSpec,
    input_shape: tuple[int | None, ...],
    num_classes: int,
    *,
    weights: str | os.PathLike | None = "imagenet",
    fine_tune: str | None = None,
    image_size: int | None = None,
    head_dropout: float = 0.2,
    **constructor_options: Any,
) -> keras.Model:
    """Build `spec`'s backbone behind a raw-image front, in one of the fine-tuning modes
    (None: "predict" for the 1000 ImageNet classes, "head" for any other count)."""
    fine_tune = resolve_mode(
        fine_tune, classifier=True, num_classes=num_classes, trained_classes=IMAGENET_CLASSES
    )
    if not 0.0 <= head_dropout < 1.0:
        raise ValueError(f"head_dropout must be in [0, 1), got {head_dropout!r}.")
    with_top = fine_tune == "predict"
    size = spec.image_size if image_size is None else int(image_size)
    inputs, x = _raw_image_front(input_shape, size, spec)
    backbone = spec.build(
        include_top=with_top,
        weights=_check_weights(weights),
        input_shape=(size, size, 3),
        pooling=None if with_top else "avg",
        name=BACKBONE_LAYER,
        **constructor_options,
    )
    if with_top:
        return keras.Model(inputs, backbone(x), name=f"{spec.name}_predict")
    backbone.trainable = False
    keep_batchnorm_in_inference(backbone)
    features = backbone(x)
    if head_dropout:
        features = keras.layers.Dropout(head_dropout, name="head_dropout")(features)
    # float32 under any policy: a mixed-precision model still outputs float32 probabilities.
    outputs = keras.layers.Dense(
        num_classes, activation="softmax", name="predictions", dtype="float32"
    )(features)
    return keras.Model(inputs, outputs, name=f"{spec.name}_{fine_tune}")


_COMMON_OPTIONS = {
    "weights": "imagenet",
    "fine_tune": None,
    "image_size": None,
    "head_dropout": 0.2,
}
_BACKBONE_DOC = """{name}: keras.applications.{constructor} behind a raw-image front.

Source: {paper}. Native input {image_size}x{image_size}; inputs of any size and 1 or 3 channels
are resized and converted inside the model, then put through
keras.applications.{module}.preprocess_input. Expected accuracy: the ImageNet figures of the Keras
applications table in "predict" mode; fine-tuned ("head" / "full") on small datasets, typically
well above the same network trained from random initialisation.

Args:
    weights: "imagenet" (Keras' cached download), a weights file path, or None (random).
    fine_tune: "predict" (ImageNet classifier, num_classes=1000), "head" (frozen backbone, new
        head) or "full" (as "head"; then unfreeze_backbone and train on with a lower rate);
        None (default): "predict" for 1000 classes, "head" for any other num_classes.
    image_size: the square size images are resized to; default {image_size}.
    head_dropout: dropout rate before the new head ("head" / "full").
{extra}"""

for _spec in BACKBONES.values():
    register_model(
        functools.partial(build_backbone, _spec),
        name=_spec.name,
        paper=_spec.paper,
        default_input_shape=(None, None, 3),
        default_num_classes=IMAGENET_CLASSES,
        options={**_COMMON_OPTIONS, **_spec.options},
        describe_options={"weights": None},
        doc=_BACKBONE_DOC.format(
            name=_spec.name,
            constructor=_spec.constructor,
            paper=_spec.paper,
            image_size=_spec.image_size,
            module=_spec.module,
            extra="".join(
                f"    {option}: keras.applications.{_spec.constructor}'s {option} "
                f"(default {default!r}).\n"
                for option, default in _spec.options.items()
            ),
        ),
    )


def fine_tune_preprocessing(name: str, weights: str | None) -> str | None:
    """The data preprocessing (`recipes.data`) a model fine-tuned ("head" or "full") needs.

    Args:
        name: a model name, any spelling.
        weights: the weights it starts from: for a small model, a tag of its trained weights.

    Returns:
        "none" for a backbone (raw 0..255 images: the model resizes them and applies the
        backbone's own `preprocess_input`); for a small model, the preprocessing its trained
        weights' card records (e.g. "scale"); None for a name the zoo does not know (building the
        model reports it).

    Raises:
        ValueError: for a small model without trained weights (nothing to fine-tune), or a tag it
            has no weights for.
    """
    try:
        entry = model_entry(name)
    except ValueError:
        return None
    if entry.name in BACKBONES:
        return "none"
    card = pretrained_card(entry.name, weights)
    if card is None:
        raise ValueError(fine_tune_needs_weights(entry.name, "head or full"))
    return card.preprocessing["mode"]


# --------------------------------------------------------------------------------------------
# Working with built backbone models


def _find_preprocessing_layer(model: keras.Model) -> BackbonePreprocessing | None:
    for layer in model.layers:
        if isinstance(layer, BackbonePreprocessing):
            return layer
    return None


def _preprocessing_layer(model: keras.Model) -> BackbonePreprocessing:
    layer = _find_preprocessing_layer(model)
    if layer is None:
        raise ValueError(
            f"Model {model.name!r} is not a zoo backbone model (no preprocessing layer)."
        )
    return layer


def backbone_blocks(model: keras.Model) -> list[tuple[str, list[keras.layers.Layer]]]:
    """The backbone's layers grouped into blocks, bottom to top: [(block name, layers), ...].

    Layers before the first block form the block "stem"; a layer that matches no block name
    belongs to the block before it (e.g. the final 1x1 conv joins the last block). For a small
    model (fine-tuned from the zoo's trained weights) the blocks are its units, each linear layer
    with what follows it (`zoo.finetune.trunk_blocks`).
    """
    front = _find_preprocessing_layer(model)
    if front is None:
        return trunk_blocks(model)
    spec = front.spec
    pattern = re.compile(spec.block_pattern)
    blocks: list[tuple[str, list[keras.layers.Layer]]] = [("stem", [])]
    for layer in model.get_layer(BACKBONE_LAYER).layers:
        match = pattern.match(layer.name)
        block = match and match.group(1 if pattern.groups else 0)
        if block and block != blocks[-1][0]:
            blocks.append((block, []))
        blocks[-1][1].append(layer)
    return [block for block in blocks if block[1]]


def unfreeze_backbone(model: keras.Model, top_n_blocks: int | None = None) -> list[str]:
    """Make the backbone (or its top `top_n_blocks` blocks) trainable, BatchNorm excepted.

    The second phase of fine_tune="full": call it after training the head, then compile the model
    again (Keras fixes the trainable weights at compile time) with a learning rate about 10x
    lower, and train on.

    Args:
        model: a model from `zoo.create(<backbone>, fine_tune="head" or "full")`, or from
            `zoo.create(<small model>, weights=<tag>, fine_tune="head" or "full")` (whose
            layers but the classifier are then the "backbone").
        top_n_blocks: unfreeze only the last N blocks (see `backbone_blocks`); None: all.

    Returns:
        The names of the unfrozen blocks, bottom to top.
    """
    if top_n_blocks is not None and (not isinstance(top_n_blocks, int) or top_n_blocks < 1):
        raise ValueError(f"top_n_blocks must be None or an integer >= 1, got {top_n_blocks!r}.")
    if _find_preprocessing_layer(model) is None:
        return unfreeze_trunk(model, top_n_blocks)
    blocks = backbone_blocks(model)
    chosen = blocks if top_n_blocks is None else blocks[-top_n_blocks:]
    backbone = model.get_layer(BACKBONE_LAYER)
    backbone.trainable = True
    for layer in backbone.layers:
        layer.trainable = False
    for _, block_layers in chosen:
        for layer in block_layers:
            layer.trainable = True
    keep_batchnorm_in_inference(backbone)
    return [name for name, _ in chosen]


# --------------------------------------------------------------------------------------------
# Predict mode: labelling images with ImageNet classes


def load_class_index(path: str | os.PathLike) -> dict[int, tuple[str, str]]:
    """Read an ImageNet class index JSON (`{"0": ["n01440764", "tench"], ...}`).

    Keras' `decode_predictions` downloads this file; offline, hand its path to
    `predict_labels(class_index=...)` instead.
    """
    with open(path, encoding="utf-8") as handle:
        raw = json.load(handle)
    index = {int(key): (str(value[0]), str(value[1])) for key, value in raw.items()}
    if sorted(index) != list(range(IMAGENET_CLASSES)):
        raise ValueError(
            f"{path} is not an ImageNet class index: expected keys 0..{IMAGENET_CLASSES - 1}, "
            f"got {len(index)} keys."
        )
    return index


class DownloadUnavailable(RuntimeError):
    """Keras has no cached copy of a file it downloads on first use, and could not download it.

    Attributes:
        what: the missing file, in words.
        reason: why the download failed, as Keras reported it (with the URL), on one line.
        remedy: what to do instead, in the Python API's terms.
        command_remedy: the same with command-line flags.
    """

    what = "a file"
    remedy = command_remedy = ""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(self.advice(self.remedy))

    def advice(self, remedy: str) -> str:
        """The message, on one line, ending in `remedy`."""
        return f"Keras has no cached copy of {self.what} and could not download it ({self.reason}); {remedy}"


class ClassIndexUnavailable(DownloadUnavailable):
    """Keras' `decode_predictions` has no cached ImageNet class index and could not download one."""

    what = "the ImageNet class index"
    remedy = "pass class_index= the path of an imagenet_class_index.json"
    command_remedy = "pass --class-index PATH, the path of an imagenet_class_index.json"


class WeightsUnavailable(DownloadUnavailable):
    """A backbone's ImageNet weights are not in Keras' cache and could not be downloaded."""

    what = "the backbone's ImageNet weights"

    @property
    def remedy(self) -> str:
        return (
            f"copy that file into {keras_cache_dir()}, or pass weights= the path of a weights file"
        )

    @property
    def command_remedy(self) -> str:
        return f"copy that file into {keras_cache_dir()}, or pass --weights PATH"


def keras_cache_dir() -> Path:
    """Where Keras' `get_file` caches downloaded models: $KERAS_HOME/models, or ~/.keras/models."""
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models"


def _download_failure(error: BaseException) -> urllib.error.URLError | None:
    """The URLError behind `error`, if there is one: Keras' `get_file` turns a failed download
    into a plain `Exception` raised while handling urllib's `URLError` (or `HTTPError`)."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, urllib.error.URLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


@contextlib.contextmanager
def _keras_download(unavailable: type[DownloadUnavailable]) -> Iterator[None]:
    """Raises `unavailable` (with Keras' reason on one line) for a download Keras failed inside;
    other errors pass unchanged."""
    try:
        yield
    except Exception as error:
        if _download_failure(error) is None:
            raise
        raise unavailable(" ".join(str(error).split())) from error


def _keras_decode(
    spec: BackboneSpec, probabilities: np.ndarray, top_k: int
) -> list[list[tuple[str, str, float]]]:
    """The backbone's own `decode_predictions`, which downloads Keras' class index once."""
    with _keras_download(ClassIndexUnavailable):
        decoded = spec.applications_module.decode_predictions(probabilities, top=top_k)
    return [[(wnid, label, float(p)) for wnid, label, p in row] for row in decoded]


def decode_top_k(
    probabilities: np.ndarray, top_k: int, class_index: Mapping[int, tuple[str, str]]
) -> list[list[tuple[str, str, float]]]:
    """`decode_predictions` with a given class index: per row, the top-k (wnid, name, p)."""
    results = []
    for row in np.asarray(probabilities):
        best = np.argsort(row)[::-1][:top_k]
        results.append([(*class_index[int(i)], float(row[i])) for i in best])
    return results


def _load_image(path: str | os.PathLike, color_mode: str) -> np.ndarray:
    if not Path(path).is_file():
        raise FileNotFoundError(f"No image file {os.fspath(path)!r}.")
    try:
        return keras.utils.img_to_array(keras.utils.load_img(path, color_mode=color_mode))
    except OSError as error:  # Pillow's UnidentifiedImageError, a truncated file
        raise OSError(f"{os.fspath(path)!r} is not an image Pillow can read: {error}") from error


def _image_arrays(images: Any, channels: int) -> list[np.ndarray]:
    """Images as a list of (1, H, W, C) float arrays: from an array batch, one image, or paths."""
    if isinstance(images, np.ndarray):
        batch = images[None] if images.ndim == 3 else images
        if batch.ndim != 4:
            raise ValueError(
                f"Expected images of shape (N, H, W, C) or (H, W, C), got {images.shape}."
            )
        return [batch[i : i + 1].astype("float32") for i in range(len(batch))]
    color_mode = "grayscale" if channels == 1 else "rgb"
    arrays = []
    for image in images:
        if isinstance(image, str | os.PathLike):
            image = _load_image(image, color_mode)
        arrays.append(np.asarray(image, dtype="float32")[None])
    return arrays


def predict_labels(
    model_or_name: keras.Model | str,
    images: Any,
    top_k: int = 5,
    class_index: str | os.PathLike | Mapping[int, tuple[str, str]] | None = None,
    **create_options: Any,
) -> list[list[tuple[str, str, float]]]:
    """Label images with ImageNet classes: the "predict" fine-tuning mode.

    Args:
        model_or_name: a model from `zoo.create(<backbone>, fine_tune="predict")`, or a backbone
            name to create one (with `create_options`, e.g. `alpha=0.25`, `weights=...`).
        images: raw images, values 0..255: an array (N, H, W, C) or (H, W, C), or a sequence of
            arrays or image file paths (of any sizes).
        top_k: how many labels per image.
        class_index: the ImageNet class index (a JSON path or a loaded mapping); None uses the
            backbone's own `decode_predictions`, which downloads Keras' copy once (offline, pass
            the path).
        **create_options: options for `zoo.create` when a name is given.

    Returns:
        Per image, the top-k `(wordnet id, class name, probability)` tuples, most likely first
        (the format of `keras.applications.<module>.decode_predictions`).

    Raises:
        ClassIndexUnavailable: `class_index` is None, Keras has no cached class index and its
            download failed (offline, say).
    """
    if isinstance(model_or_name, str):
        model = create(model_or_name, fine_tune="predict", **create_options)
    elif create_options:
        raise TypeError(f"create options {sorted(create_options)} need a model name, not a model.")
    else:
        model = model_or_name
    if model.output_shape[-1] != IMAGENET_CLASSES:
        raise ValueError(
            f"Model {model.name!r} has {model.output_shape[-1]} outputs; predict_labels needs the "
            "ImageNet classifier (create it with fine_tune='predict')."
        )
    if not 1 <= top_k <= IMAGENET_CLASSES:
        raise ValueError(f"top_k must be in 1..{IMAGENET_CLASSES}, got {top_k!r}.")
    spec = _preprocessing_layer(model).spec
    arrays = _image_arrays(images, channels=model.input_shape[-1])
    # A photo of 2000 pixels shrunk to 224 by plain bilinear aliases (a cat photo reads as a
    # cheetah): shrink it here with antialiasing, cropped the way the model's resize crops.
    resize = model.get_layer("resize")
    shrink = keras.layers.Resizing(
        resize.height, resize.width, crop_to_aspect_ratio=True, antialias=True
    )
    probabilities = np.concatenate(
        [keras.ops.convert_to_numpy(model(shrink(array), training=False)) for array in arrays]
    )
    if class_index is None:
        return _keras_decode(spec, probabilities, top_k)
    if not isinstance(class_index, Mapping):
        class_index = load_class_index(class_index)
    return decode_top_k(probabilities, top_k, class_index)
