"""The course's loss functions as serializable Keras losses, selectable by name.

`get_loss(name, **options)` builds one; `LOSS_NAMES` lists the names. Each loss states what
labels it wants (`loss_label_format`) and what the model's last layer should output
(`loss_output_activation`). Per sample, with scores `f`, true class `y`:

- `softmax_cross_entropy` (alias `cross_entropy`): `-log p_y`; sparse ids or (soft) one-hot;
  softmax probabilities, or linear logits with `from_logits=True`; `label_smoothing=e` trains on
  `(1 - e) t + e / C` instead of the one-hot `t`.
- `svm_hinge` (alias `multiclass_hinge`): `sum_{j != y} max(0, f_j - f_y + margin)`; sparse ids;
  linear scores.
- `squared_svm_hinge`: the same with each violation squared.
- `attribute_hinge`: `sum_j max(0, margin - y_j f_j)`, `y_j = +1` if attribute j is present else
  `-1`; multi-hot labels; linear scores.
- `attribute_logistic`: `sum_j log(1 + exp(-y_j f_j))`, i.e. per-attribute binary cross-entropy,
  summed; multi-hot labels; sigmoid probabilities, or linear logits with `from_logits=True`.
- `l2`: `sum_j (y_j - f_j)^2`; `l1`: `sum_j |y_j - f_j|`; real targets; linear outputs.

Sums run over the last axis (classes, attributes or outputs), as in the course; the batch is
then averaged by the Keras reduction. Multi-hot attribute labels may be `{0, 1}` or `{-1, +1}`
(anything `> 0` counts as present). Sparse labels may have shape `(batch,)` or `(batch, 1)`;
one-hot labels are accepted everywhere sparse ones are (hinge losses take their argmax, so soft
mixup labels are only meaningful for `softmax_cross_entropy`).

Names are resolved by `layers.naming` (case, `-`, `_` and spaces ignored); `get_loss` also takes a
dict `{"name": ..., **options}`, a Keras config dict or a built `keras.losses.Loss`.

The probabilistic losses follow Keras' convention `from_logits=False`: the model ends in
softmax/sigmoid. Margin losses have no such option: they are defined on raw scores, so the model
must end in a linear layer (`loss_output_activation` says which, for the runner to build the head).

Under mixed precision every loss computes in float32: the functions cast float16 and bfloat16
predictions to float32 (`layers.precision.upcast`) before any log, square or sum, and the loss
classes, like every `keras.losses.Loss` with the default `dtype`, convert their inputs to float32
first; the per-sample values and the reduced loss are float32. A mixed-precision model should
still end in a float32 activation (`dtype="float32"` on its last layer, Keras' convention):
a softmax computed in float16 has already rounded the probabilities the loss takes the log of.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping
from typing import Any

import keras
from keras import ops

from layers import naming
from layers.precision import upcast
from layers.validation import check_bool, check_integer, check_number

_PACKAGE = "recipes"


def _class_ids(y_true, y_pred):
    """Class ids from sparse `(batch,)`/`(batch, 1)` or one-hot `(batch, classes)` labels."""
    if _is_dense(y_true, y_pred):
        return ops.argmax(y_true, axis=-1)
    return ops.cast(ops.reshape(y_true, ops.shape(y_pred)[:-1]), "int32")


def _is_dense(y_true, y_pred) -> bool:
    return len(y_true.shape) == len(y_pred.shape) and y_true.shape[-1] == y_pred.shape[-1] != 1


def softmax_cross_entropy(y_true, y_pred, from_logits: bool = False, label_smoothing: float = 0.0):
    """Per-sample softmax cross-entropy `-sum_j t_j log p_j` for sparse, one-hot or soft labels.

    With `label_smoothing` e, the target is `(1 - e) t + e / C` over the C classes.
    """
    y_pred = upcast(y_pred)
    y_true = ops.convert_to_tensor(y_true)
    if not _is_dense(y_true, y_pred):
        ids = _class_ids(y_true, y_pred)
        if not label_smoothing:
            return ops.sparse_categorical_crossentropy(ids, y_pred, from_logits=from_logits)
        y_true = ops.one_hot(ids, ops.shape(y_pred)[-1])
    targets = ops.cast(y_true, y_pred.dtype)
    if label_smoothing:
        targets = targets * (1.0 - label_smoothing) + label_smoothing / ops.shape(y_pred)[-1]
    return ops.categorical_crossentropy(targets, y_pred, from_logits=from_logits)


def multiclass_svm_hinge(y_true, y_pred, margin: float = 1.0, squared: bool = False):
    """Per-sample Weston-Watkins hinge `sum_{j != y} max(0, f_j - f_y + margin)` (or its square)."""
    scores = upcast(y_pred)
    ids = _class_ids(ops.convert_to_tensor(y_true), scores)
    num_classes = scores.shape[-1]
    correct = ops.take_along_axis(scores, ops.expand_dims(ids, -1), axis=-1)
    violations = ops.relu(scores - correct + ops.cast(margin, scores.dtype))
    violations = violations * (1.0 - ops.one_hot(ids, num_classes, dtype=scores.dtype))
    if squared:
        violations = ops.square(violations)
    return ops.sum(violations, axis=-1)


def _signed_attributes(y_true, y_pred):
    y_pred = upcast(y_pred)
    present = ops.reshape(ops.convert_to_tensor(y_true), ops.shape(y_pred)) > 0
    return y_pred, present


def attribute_hinge(y_true, y_pred, margin: float = 1.0):
    """Per-sample multi-label hinge `sum_j max(0, margin - y_j f_j)`, `y_j = +1` if present else
    `-1`."""
    scores, present = _signed_attributes(y_true, y_pred)
    signs = ops.cast(ops.where(present, 1.0, -1.0), scores.dtype)
    return ops.sum(ops.relu(ops.cast(margin, scores.dtype) - signs * scores), axis=-1)


def attribute_logistic(y_true, y_pred, from_logits: bool = False):
    """Per-sample multi-label logistic loss `sum_j log(1 + exp(-y_j f_j))` (summed binary CE)."""
    y_pred, present = _signed_attributes(y_true, y_pred)
    targets = ops.cast(present, y_pred.dtype)
    return ops.sum(ops.binary_crossentropy(targets, y_pred, from_logits=from_logits), axis=-1)


def summed_error(y_true, y_pred, order: int = 2):
    """Per-sample `sum_j |y_j - f_j|^order` over the output vector (order 1: L1, order 2: L2)."""
    y_pred = upcast(y_pred)
    y_true = ops.cast(ops.reshape(ops.convert_to_tensor(y_true), ops.shape(y_pred)), y_pred.dtype)
    error = ops.abs(y_true - y_pred)
    error = error if order == 1 else ops.square(error)
    # A rank-1 prediction is one scalar output per sample: nothing to sum over.
    return ops.sum(error, axis=-1) if len(y_pred.shape) > 1 else error


class _OptionLoss(keras.losses.Loss):
    """A Keras loss calling `fn(y_true, y_pred, **options)`, with the options in its config.

    Subclasses set `fn` and pass their validated options to `__init__`.
    """

    def __init__(self, reduction="sum_over_batch_size", name=None, dtype=None, **options):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.options = options

    def call(self, y_true, y_pred):
        return self.fn(y_true, y_pred, **self.options)

    def get_config(self) -> dict:
        return {**super().get_config(), **self.options}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SoftmaxCrossEntropy(_OptionLoss):
    """Softmax cross-entropy for sparse class ids or (soft) one-hot targets.

    Args:
        from_logits: whether `y_pred` are logits (linear outputs) rather than softmax
            probabilities.
        label_smoothing: in [0, 1): the share of each target moved from its class to all C
            classes equally, `(1 - e) t + e / C` (Szegedy et al., 2016): the model is no longer
            pushed toward infinite logits on the training labels.
        reduction, name, dtype: as for any `keras.losses.Loss`.
    """

    fn = staticmethod(softmax_cross_entropy)

    def __init__(
        self,
        from_logits: bool = False,
        label_smoothing: float = 0.0,
        reduction="sum_over_batch_size",
        name="softmax_cross_entropy",
        dtype=None,
    ):
        owner = type(self).__name__
        from_logits = check_bool("from_logits", from_logits, owner=owner)
        label_smoothing = check_number(
            "label_smoothing", label_smoothing, low=0.0, high=1.0, high_open=True, owner=owner
        )
        super().__init__(
            reduction, name, dtype, from_logits=from_logits, label_smoothing=label_smoothing
        )


@keras.saving.register_keras_serializable(package=_PACKAGE)
class MulticlassHinge(_OptionLoss):
    """Weston-Watkins multiclass SVM hinge on raw class scores (not Keras' `categorical_hinge`).

    `sum_{j != y} max(0, f_j - f_y + margin)`: every wrong class within `margin` of the correct one
    is penalised, where Keras' `categorical_hinge` penalises only the largest.

    Args:
        margin: the required score gap, `> 0`.
        squared: square each violation (the "L2-SVM" form).
        reduction, name, dtype: as for any `keras.losses.Loss`.
    """

    fn = staticmethod(multiclass_svm_hinge)

    def __init__(
        self,
        margin: float = 1.0,
        squared: bool = False,
        reduction="sum_over_batch_size",
        name="svm_hinge",
        dtype=None,
    ):
        owner = type(self).__name__
        margin = check_number("margin", margin, low=0.0, low_open=True, owner=owner)
        squared = check_bool("squared", squared, owner=owner)
        super().__init__(reduction, name, dtype, margin=margin, squared=squared)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class AttributeHinge(_OptionLoss):
    """Multi-label (attribute) hinge `sum_j max(0, margin - y_j f_j)` on raw scores.

    Args:
        margin: the required signed score, `> 0`.
        reduction, name, dtype: as for any `keras.losses.Loss`.
    """

    fn = staticmethod(attribute_hinge)

    def __init__(
        self,
        margin: float = 1.0,
        reduction="sum_over_batch_size",
        name="attribute_hinge",
        dtype=None,
    ):
        margin = check_number("margin", margin, low=0.0, low_open=True, owner=type(self).__name__)
        super().__init__(reduction, name, dtype, margin=margin)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class AttributeLogistic(_OptionLoss):
    """Multi-label (attribute) logistic loss: independent binary cross-entropies, summed.

    Args:
        from_logits: whether `y_pred` are logits rather than sigmoid probabilities.
        reduction, name, dtype: as for any `keras.losses.Loss`.
    """

    fn = staticmethod(attribute_logistic)

    def __init__(
        self,
        from_logits: bool = False,
        reduction="sum_over_batch_size",
        name="attribute_logistic",
        dtype=None,
    ):
        from_logits = check_bool("from_logits", from_logits, owner=type(self).__name__)
        super().__init__(reduction, name, dtype, from_logits=from_logits)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SummedError(_OptionLoss):
    """Regression loss `sum_j |y_j - f_j|^order`: L1 for order 1, (squared) L2 for order 2.

    Args:
        order: 1 or 2.
        reduction, name, dtype: as for any `keras.losses.Loss`.
    """

    fn = staticmethod(summed_error)

    def __init__(self, order: int = 2, reduction="sum_over_batch_size", name=None, dtype=None):
        order = check_integer("order", order, low=1, high=2, owner=type(self).__name__)
        super().__init__(reduction, name or f"l{order}", dtype, order=order)


@dataclasses.dataclass(frozen=True)
class LossSpec:
    """How a named loss is built and what it expects.

    Args:
        loss_class: the Keras loss class.
        fixed: constructor arguments the name implies (e.g. `squared=True`).
        label_format: "sparse", "multi_hot" or "regression".
        activation: the model's last activation for the default options ("softmax", "sigmoid" or
            "linear"); `from_logits=True` turns a probabilistic loss's into "linear".
    """

    loss_class: type
    fixed: dict
    label_format: str
    activation: str


LOSSES: dict[str, LossSpec] = {
    "softmax_cross_entropy": LossSpec(SoftmaxCrossEntropy, {}, "sparse", "softmax"),
    "svm_hinge": LossSpec(MulticlassHinge, {}, "sparse", "linear"),
    "squared_svm_hinge": LossSpec(MulticlassHinge, {"squared": True}, "sparse", "linear"),
    "attribute_hinge": LossSpec(AttributeHinge, {}, "multi_hot", "linear"),
    "attribute_logistic": LossSpec(AttributeLogistic, {}, "multi_hot", "sigmoid"),
    "l2": LossSpec(SummedError, {"order": 2}, "regression", "linear"),
    "l1": LossSpec(SummedError, {"order": 1}, "regression", "linear"),
}
LOSS_ALIASES: dict[str, str] = {
    "cross_entropy": "softmax_cross_entropy",
    "multiclass_hinge": "svm_hinge",
}
LOSS_NAMES: tuple[str, ...] = tuple(LOSSES)


_NAMES = naming.Names("loss", LOSS_NAMES, aliases=LOSS_ALIASES)


def canonical_loss_name(name: str) -> str:
    """The loss name (one of `LOSS_NAMES`) that `name` spells, aliases included.

    Raises:
        ValueError: for an unknown name, suggesting the closest and listing the valid ones.
    """
    return _NAMES.resolve(name)


def _spec(name: str) -> LossSpec:
    return LOSSES[canonical_loss_name(name)]


def get_loss(name: str | Mapping[str, Any] | keras.losses.Loss, **options) -> keras.losses.Loss:
    """Builds the named loss, e.g. `get_loss("svm_hinge", margin=2.0)`.

    Args:
        name: one of `LOSS_NAMES` or an alias (`cross_entropy`, `multiclass_hinge`), in any
            spelling; or a dict `{"name": ..., **options}`; or a Keras config dict
            (`keras.saving.serialize_keras_object`) or a built loss, used as it is.
        **options: constructor options of that loss (`from_logits`, `margin`, `reduction`, ...).

    Raises:
        ValueError: for an unknown name (suggesting the closest and listing the valid ones), an
            option the loss does not take (the message lists the ones it does), or options given
            with a built loss or a Keras config.
    """
    built, name, options = naming.from_identifier(
        "loss", name, options, built_type=keras.losses.Loss, deserialize=keras.losses.deserialize
    )
    if built is not None:
        return built
    canonical = canonical_loss_name(name)
    spec = LOSSES[canonical]
    accepted = set(inspect.signature(spec.loss_class).parameters) - set(spec.fixed)
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ValueError(
            f"Loss {canonical!r} takes no option(s) {', '.join(unknown)}; "
            f"its options: {', '.join(sorted(accepted))}."
        )
    options.setdefault("name", canonical)
    return spec.loss_class(**spec.fixed, **options)


def loss_label_format(name: str) -> str:
    """The labels the named loss expects: "sparse" (class ids; one-hot also accepted),
    "multi_hot" (one 0/1 per attribute) or "regression" (real targets)."""
    return _spec(name).label_format


def loss_accepts_soft_labels(name: str) -> bool:
    """Whether the loss is meaningful on soft one-hot targets (mixup/cutmix output)."""
    return _spec(name).loss_class is SoftmaxCrossEntropy


def loss_output_activation(name: str, **options) -> str:
    """The activation the model's last layer needs for this loss and options: "softmax",
    "sigmoid" or "linear" (logits / raw scores)."""
    return "linear" if options.get("from_logits") else _spec(name).activation


__all__ = [
    "LOSSES",
    "LOSS_ALIASES",
    "LOSS_NAMES",
    "AttributeHinge",
    "AttributeLogistic",
    "MulticlassHinge",
    "SoftmaxCrossEntropy",
    "SummedError",
    "canonical_loss_name",
    "get_loss",
    "loss_accepts_soft_labels",
    "loss_label_format",
    "loss_output_activation",
]
