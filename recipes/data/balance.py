"""Class-balanced resampling ("label shuffle") for imbalanced training sets, on tf.data.

The course's label shuffle draws every training example by first picking a class uniformly, then
an example of that class, so rare classes are seen as often as common ones. tf.data has both
ingredients; this module only wires them up.
"""

from __future__ import annotations

import tensorflow as tf

METHODS = ("sample", "reject")


def _class_of(_image: tf.Tensor, label: tf.Tensor) -> tf.Tensor:
    return tf.cast(tf.reshape(label, []), tf.int32)


def balanced_resample(
    dataset: tf.data.Dataset,
    num_classes: int,
    seed: int | None = None,
    method: str = "sample",
    epoch_size: int | None = None,
) -> tf.data.Dataset:
    """Turns an unbatched `(image, label)` dataset into a class-balanced stream.

    Args:
        dataset: unbatched elements `(image, label)` with an integer class id label (scalar or
            shape `(1,)`). Shuffle it (with reshuffling each iteration) before calling: the
            stream walks through each class in that order.
        num_classes: number of classes; every class in `[0, num_classes)` is drawn with
            probability `1 / num_classes`. A class with no examples is skipped and the others
            share its probability.
        seed: makes the sequence of class choices reproducible.
        method: "sample" (default): one filtered, repeated view of `dataset` per class, mixed by
            `tf.data.Dataset.sample_from_datasets`; exact balance, but it iterates `dataset`
            once per class in parallel, so keep upstream shuffle buffers small when there are
            many classes. "reject": `tf.data.Dataset.rejection_resample` on a single repeated
            stream, learning the class frequencies on the fly; one pass's worth of memory, but
            it discards examples of common classes and balances only approximately at first.
        epoch_size: cut the stream to this many elements per iteration; `None` leaves it
            infinite (then give Keras `steps_per_epoch`).

    Returns:
        The balanced dataset of `(image, label)` elements, unbatched.

    Raises:
        ValueError: for `num_classes < 2`, an unknown `method` or a non-positive `epoch_size`.
    """
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2; got {num_classes!r}.")
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}.")
    if epoch_size is not None and (not isinstance(epoch_size, int) or epoch_size < 1):
        raise ValueError(f"epoch_size must be a positive integer or None; got {epoch_size!r}.")
    if method == "sample":
        per_class = [
            dataset.filter(lambda image, label, c=c: tf.equal(_class_of(image, label), c)).repeat()
            for c in range(num_classes)
        ]
        balanced = tf.data.Dataset.sample_from_datasets(
            per_class, weights=[1.0 / num_classes] * num_classes, seed=seed
        )
    else:
        uniform = tf.fill([num_classes], 1.0 / num_classes)
        balanced = (
            dataset.repeat()
            .rejection_resample(_class_of, target_dist=uniform, seed=seed)
            .map(lambda _class, element: element)
        )
    return balanced if epoch_size is None else balanced.take(epoch_size)
