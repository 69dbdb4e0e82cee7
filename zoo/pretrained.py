"""Trained weights shipped with the zoo, each described by a card.

    model = zoo.create("lenet5", weights="fashion_mnist")  # the trained classifier
    zoo.list_models(pretrained=True)  # the models with shipped weights
    zoo.describe("lenet5")["pretrained"]["fashion_mnist"]  # the card

`zoo/weights/` holds, per trained model and tag, `<model>-<tag>.weights.npz` (every weight of the
model under its Keras path, e.g. "conv1/kernel", stored as float16) and `<model>-<tag>.json`, its
card (`PretrainedCard`): the architecture (input shape, classes, knobs, options), the input the
weights expect (preprocessing, class names), the test accuracy measured with the stored float16
weights on the full test set (single view and with test-time augmentation), the parameter count,
the file's sha256 and the recipe command that trained it. `scripts/ship_weights.py` writes both
from a finished run directory; the list of trained models comes from the cards found here.

Loading checks the file's sha256 against the card first, and refuses a file that differs (a
corrupted download, a file replaced by hand) with an error naming both digests.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import keras
import numpy as np

from layers import naming
from zoo.knobs import Knobs

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
CARD_SUFFIX = ".json"
WEIGHTS_SUFFIX = ".weights.npz"
STORAGE_DTYPE = "float16"


@dataclasses.dataclass(frozen=True)
class PretrainedCard:
    """What a shipped weight file holds and how it was made.

    Attributes:
        model: the zoo model name.
        tag: the weights' name, e.g. "fashion_mnist" (`zoo.create(model, weights=tag)`).
        weights_file: the file name beside the card.
        sha256: the file's SHA-256 digest, checked on every load.
        storage_dtype: the dtype the weights are stored in (float16); they load into float32.
        num_params: the model's parameter count.
        input_shape: (height, width, channels) of the images it was trained on.
        num_classes: the classifier's output count.
        class_names: the class of each output.
        knobs: every knob of the trained model (`zoo.knobs.Knobs` fields).
        options: the model options it was built with.
        preprocessing: what the input must be: `mode` (the data pipeline's preprocessing, e.g.
            "scale"), `input` (in words: "float32 pixels / 255, in [0, 1]") and `statistics`
            (the training set's mean and scale, for the normalizing modes).
        test_accuracy: accuracy of the stored weights on the full test set, single view.
        tta: the test-time augmentation of `test_accuracy_tta` (`recipes.data.tta`).
        test_accuracy_tta: the accuracy with predictions averaged over `tta`'s views.
        dataset: the test data measured on: name, source, test image count, fingerprint.
        recipe: the recipe that trained the weights.
        command: the command line that trained them.
        training: figures of the training run (epochs, seed, the precision it trained in, its
            weights' test accuracy computing in float32, time).
    """

    model: str
    tag: str
    weights_file: str
    sha256: str
    storage_dtype: str
    num_params: int
    input_shape: tuple[int, int, int]
    num_classes: int
    class_names: tuple[str, ...]
    knobs: Mapping[str, Any]
    options: Mapping[str, Any]
    preprocessing: Mapping[str, Any]
    test_accuracy: float
    tta: str
    test_accuracy_tta: float
    dataset: Mapping[str, Any]
    recipe: str
    command: str
    training: Mapping[str, Any]

    def __post_init__(self) -> None:
        object.__setattr__(self, "input_shape", tuple(self.input_shape))
        object.__setattr__(self, "class_names", tuple(self.class_names))
        if len(self.class_names) != self.num_classes:
            raise ValueError(
                f"Card {self.model}-{self.tag}: {len(self.class_names)} class names for "
                f"num_classes={self.num_classes}."
            )

    @classmethod
    def from_json(cls, text: str, origin: str = "card") -> PretrainedCard:
        """A card from its JSON text, with a clear error for a missing or unknown field."""
        values = json.loads(text)
        fields = {field.name for field in dataclasses.fields(cls)}
        missing, unknown = sorted(fields - set(values)), sorted(set(values) - fields)
        if missing or unknown:
            raise ValueError(f"{origin}: missing fields {missing}, unknown fields {unknown}.")
        return cls(**values)

    def to_json(self) -> str:
        """The card as indented JSON (the file format)."""
        return json.dumps(dataclasses.asdict(self), indent=2) + "\n"

    def provenance(self) -> str:
        """The weights and the architecture they were trained with, for error messages."""
        return (
            f"the weights {self.model}-{self.tag} (trained with input_shape={self.input_shape}, "
            f"knobs={dict(self.knobs)}, options={dict(self.options)})"
        )

    def summary(self) -> dict[str, Any]:
        """The card as a plain dict (what `zoo.describe` shows)."""
        return json.loads(self.to_json())


def card_path(model: str, tag: str, directory: str | os.PathLike = WEIGHTS_DIR) -> Path:
    return Path(directory) / f"{model}-{tag}{CARD_SUFFIX}"


def weights_path(model: str, tag: str, directory: str | os.PathLike = WEIGHTS_DIR) -> Path:
    return Path(directory) / f"{model}-{tag}{WEIGHTS_SUFFIX}"


@functools.cache
def _cards_in(directory: Path) -> dict[str, dict[str, PretrainedCard]]:
    cards: dict[str, dict[str, PretrainedCard]] = {}
    for path in sorted(directory.glob(f"*{CARD_SUFFIX}")):
        card = PretrainedCard.from_json(path.read_text(encoding="utf-8"), str(path))
        if path != card_path(card.model, card.tag, directory):
            raise ValueError(f"{path} holds the card of {card.model}-{card.tag}: rename it.")
        cards.setdefault(card.model, {})[card.tag] = card
    return cards


def pretrained_cards(directory: str | os.PathLike | None = None) -> dict[str, dict[str, Any]]:
    """Every shipped card: `{model name: {tag: PretrainedCard}}`.

    Args:
        directory: where the cards are; default `WEIGHTS_DIR`, the package's own.
    """
    return _cards_in(Path(WEIGHTS_DIR if directory is None else directory).resolve())


def clear_card_cache() -> None:
    """Forget the cards read so far (after shipping new weights into a directory)."""
    _cards_in.cache_clear()


def pretrained_tags(model: str) -> list[str]:
    """The tags of `model`'s shipped weights (empty if none)."""
    return sorted(pretrained_cards().get(model, {}))


def pretrained_card(model: str, weights: Any) -> PretrainedCard | None:
    """The card `zoo.create(model, weights=...)` asks for: None for `weights=None` (random
    initialisation), else the card of `model`'s weights of that tag, in any spelling.

    Raises:
        ValueError: for a tag `model` has no weights for, listing the tags it has (or the models
            that have weights, when it has none).
    """
    if weights is None:
        return None
    tags = pretrained_cards().get(model, {})
    if not isinstance(weights, str) or not tags:
        shipped = "; ".join(
            f"{name}: {', '.join(sorted(cards))}" for name, cards in pretrained_cards().items()
        )
        accepted = f"None or one of {', '.join(map(repr, sorted(tags)))}" if tags else "None"
        raise ValueError(
            f"`weights` must be {accepted} for {model!r}. Received: weights={weights!r}. "
            f"Trained weights ship for: {shipped or 'no model'}."
        )
    return tags[naming.Names(f"{model} weights", sorted(tags)).resolve(weights)]


def fine_tune_needs_weights(model: str, fine_tune: Any) -> str:
    """The error for a fine-tuning mode asked of a small model without trained weights."""
    tags = ", ".join(pretrained_tags(model)) or "none ship for it"
    return (
        f"`fine_tune` starts from trained weights: pass weights=<tag> with it ({model}'s tags: "
        f"{tags}), or leave it unset to train {model} from scratch. Received: "
        f"fine_tune={fine_tune!r}"
    )


# Knobs that change what the trained weights compute: they must stay as trained.
ARCHITECTURE_KNOBS = ("activation", "negative_slope", "pieces", "norm", "groups")


def pretrained_arguments(
    card: PretrainedCard,
    knob_values: Mapping[str, Any],
    option_values: Mapping[str, Any],
    *,
    new_head: bool,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The knobs and options to build the card's model with: the card's, with the user's
    training-only knobs (dropout, weight penalties, max-norm, initialisation of a new head) laid
    over them.

    Args:
        card: the weights' card.
        knob_values, option_values: what the user passed to `zoo.create`.
        new_head: whether the classifier is new (other classes), so that its output activation
            may change too.

    Raises:
        ValueError: for a knob or option that would change what the trained layers compute.
    """
    knobs = Knobs(**{**card.knobs, **knob_values})
    fixed = ARCHITECTURE_KNOBS + (() if new_head else ("output_activation",))
    for knob in fixed:
        if getattr(knobs, knob) != card.knobs[knob]:
            raise ValueError(
                f"`{knob}` must be {card.knobs[knob]!r} with weights={card.tag!r}, the value "
                f"{card.model} was trained with. Received: {knob}={knob_values[knob]!r}"
            )
    for option, value in option_values.items():
        trained = card.options.get(option, _MISSING)
        if trained is _MISSING or _plain(value) != _plain(trained):
            raise ValueError(
                f"`{option}` must be left unset with weights={card.tag!r}: {card.model} was "
                f"trained with options {dict(card.options)}. Received: {option}={value!r}"
            )
    return dataclasses.asdict(knobs), dict(card.options)


_MISSING = object()


def _plain(value: Any) -> Any:
    """A value as JSON holds it (tuples as lists), so that a card's options compare equal."""
    return json.loads(json.dumps(value))


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 hex digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_weights(card: PretrainedCard, directory: str | os.PathLike | None = None) -> dict:
    """The card's weights, `{Keras weight path: float16 array}`, after checking the sha256.

    Raises:
        FileNotFoundError: when the weights file is missing.
        ValueError: when the file's digest is not the card's.
    """
    path = Path(WEIGHTS_DIR if directory is None else directory) / card.weights_file
    if not path.is_file():
        raise FileNotFoundError(
            f"The weights file of card {card.model}-{card.tag} is missing: {path}"
        )
    digest = file_sha256(path)
    if digest != card.sha256:
        raise ValueError(
            f"{path} is not the weights file its card describes: its sha256 is {digest}, the "
            f"card records {card.sha256}. The file is corrupted or was replaced; reinstall the "
            "package (or ship the run again with scripts/ship_weights.py)."
        )
    with np.load(path, allow_pickle=False) as stored:
        return {key: stored[key] for key in stored.files}


def is_classifier_weight(path: str) -> bool:
    """Whether a Keras weight path belongs to the classifier (the layers named "predictions...")."""
    return path.startswith("predictions")


def assign_weights(
    model: keras.Model,
    stored: Mapping[str, np.ndarray],
    *,
    new_head: bool = False,
    source: str = "the stored weights",
) -> None:
    """Sets `model`'s weights from `stored`, by Keras weight path.

    With `new_head`, the classifier's weights are left as initialised (a new head for other
    classes); every other weight must be stored, with the same shape.

    Args:
        model: the model to set.
        stored: `{Keras weight path: array}`; arrays are cast to each weight's dtype.
        new_head: leave the classifier's weights alone.
        source: what the weights are, for error messages (e.g. `PretrainedCard.provenance()`).

    Raises:
        ValueError: when the model's weights and the stored ones do not match one to one, naming
            the first mismatch.
    """
    expected = {
        weight.path: weight
        for weight in model.weights
        if not (new_head and is_classifier_weight(weight.path))
    }
    stored_keys = {key for key in stored if not (new_head and is_classifier_weight(key))}
    if set(expected) != stored_keys:
        extra = sorted(set(expected) - stored_keys)
        missing = sorted(stored_keys - set(expected))
        raise ValueError(
            f"Model {model.name!r} does not match {source}: weights not stored {extra[:3]}, "
            f"stored weights the model lacks {missing[:3]}."
        )
    for path, weight in expected.items():
        if tuple(weight.shape) != stored[path].shape:
            raise ValueError(
                f"Model {model.name!r} does not match {source}: {path} has shape "
                f"{tuple(weight.shape)}, the stored weight {stored[path].shape}."
            )
        weight.assign(stored[path].astype(weight.dtype))


def stored_weights(model: keras.Model) -> dict[str, np.ndarray]:
    """`model`'s weights as `{Keras weight path: float16 array}`, the stored form."""
    return {
        weight.path: keras.ops.convert_to_numpy(weight).astype(STORAGE_DTYPE)
        for weight in model.weights
    }


def save_weights(weights: Mapping[str, np.ndarray], path: str | os.PathLike) -> str:
    """Writes weights in the stored form (an uncompressed `.npz`); returns the file's sha256.

    The archive's entries carry no timestamps, so that the same weights give the same bytes.
    """
    np.savez(path, **weights)
    return file_sha256(path)
