"""The end of stochastic weight averaging: the averaged weights in, BatchNorm statistics redone.

`recipes.optim.StochasticWeightAveraging` keeps the running mean of the weights while the model
trains on its own. At the end, Izmailov et al. (2018) use the mean, and, since BatchNormalization's
moving statistics were collected for other weights, recompute them with one pass over the training
data in training mode. `SWACallback` does both when `fit` ends:

    model.compile(optimizer=StochasticWeightAveraging(get_optimizer("Momentum", 0.05),
                                                      start_step=30 * steps, average_period=steps),
                  ...)
    swa = SWACallback(train_data, final_epoch=40, validation_data=validation_data)
    model.fit(train_data, epochs=40, callbacks=[..., swa])
    swa.report  # {"averaged_snapshots": 11, "batch_norm_layers": 19, ...}

`recompute_batch_norm_statistics` is the second half on its own.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from recipes.optim.wrappers import StochasticWeightAveraging

__all__ = ["SWACallback", "find_swa_optimizer", "recompute_batch_norm_statistics"]


def find_swa_optimizer(optimizer: Any) -> StochasticWeightAveraging | None:
    """The `StochasticWeightAveraging` in a chain of wrapped optimizers (through `Lookahead`,
    Keras' `LossScaleOptimizer`, ...), or None."""
    while optimizer is not None:
        if isinstance(optimizer, StochasticWeightAveraging):
            return optimizer
        optimizer = getattr(optimizer, "inner_optimizer", None)
    return None


def _inputs(element: Any) -> Any:
    # A dataset yields (x, y), (x, y, sample_weight) or x alone.
    return element[0] if isinstance(element, tuple | list) else element


def _numbers(logs: dict[str, Any]) -> list[float]:
    numbers = []
    for value in logs.values():
        try:
            numbers.append(float(value))
        except (TypeError, ValueError):
            continue
    return numbers


def _batch_size(inputs: Any) -> int:
    return int(tf.shape(tf.nest.flatten(inputs)[0])[0])


def recompute_batch_norm_statistics(model: keras.Model, data: Iterable[Any]) -> dict[str, int]:
    """Replaces the moving mean and variance of `model`'s BatchNormalization layers by the
    average of the batch statistics over one pass of `data`, as Izmailov et al. (2018) do for
    averaged weights (PyTorch's `torch.optim.swa_utils.update_bn` does the same).

    The model runs in training mode (dropout included, as when the statistics were collected).
    Each batch's statistics are the ones the layer itself computes (Keras' biased variance),
    weighted by the batch's size. Layers that would not update their statistics in training mode
    (`trainable=False`, e.g. a frozen backbone's) and batch renormalization layers keep theirs.

    Args:
        model: the model, with the weights the statistics are for.
        data: batches of inputs, or of `(inputs, targets[, sample_weights])`, e.g. the training
            split as `fit` reads it.

    Returns:
        `{"layers": recomputed layers, "examples": examples seen}`.
    """
    layers = [
        layer
        for layer in model._flatten_layers(include_self=False, recursive=True)
        if isinstance(layer, keras.layers.BatchNormalization)
        and layer.trainable
        and not layer.renorm
    ]
    if not layers:
        return {"layers": 0, "examples": 0}
    momenta = [layer.momentum for layer in layers]
    # With momentum 0 a training-mode call leaves each layer's moving statistics equal to the
    # batch's, which are read back and averaged here; a new tf.function sees the 0.
    for layer in layers:
        layer.momentum = 0.0

    @tf.function
    def batch_statistics(inputs: Any) -> list[tuple[tf.Tensor, tf.Tensor]]:
        model(inputs, training=True)
        return [
            (tf.identity(layer.moving_mean.value), tf.identity(layer.moving_variance.value))
            for layer in layers
        ]

    sums = [
        (np.zeros(layer.moving_mean.shape), np.zeros(layer.moving_variance.shape))
        for layer in layers
    ]
    examples = 0
    try:
        for element in data:
            inputs = _inputs(element)
            size = _batch_size(inputs)
            for (mean_sum, variance_sum), (mean, variance) in zip(
                sums, batch_statistics(inputs), strict=True
            ):
                mean_sum += size * mean.numpy().astype(np.float64)
                variance_sum += size * variance.numpy().astype(np.float64)
            examples += size
    finally:
        for layer, momentum in zip(layers, momenta, strict=True):
            layer.momentum = momentum
    if not examples:
        raise ValueError("recompute_batch_norm_statistics: the data yielded no batch")
    for layer, (mean_sum, variance_sum) in zip(layers, sums, strict=True):
        layer.moving_mean.assign(mean_sum / examples)
        layer.moving_variance.assign(variance_sum / examples)
    return {"layers": len(layers), "examples": examples}


class SWACallback(keras.callbacks.Callback):
    """Ends stochastic weight averaging: when `fit` ends, puts the model's
    `StochasticWeightAveraging` averages into its weights and recomputes its BatchNormalization
    statistics over `train_data` (see `recompute_batch_norm_statistics`).

    It keeps no state of its own: the averages live in the optimizer, saved with the model, so
    a callback made afresh for a resumed run finishes it the same way.

    Args:
        train_data: the training data, for the BatchNormalization statistics.
        final_epoch: the epoch training ends after; a `fit` that stops before it (an early stop,
            a first training phase) leaves the weights alone. None: act whenever `fit` ends.
        validation_data: if given, the averaged model is evaluated on it and the results
            (`val_loss`, `val_accuracy`, ...) go into the report.
        verbose: 1 prints what was done, 0 nothing.

    Attributes:
        report: None until done, then what was done: `averaged_snapshots`, `start_step`,
            `average_period`, `batch_norm_layers`, `batch_norm_examples`, and the validation
            metrics of the averaged model.
    """

    def __init__(
        self,
        train_data: Iterable[Any],
        *,
        final_epoch: int | None = None,
        validation_data: Iterable[Any] | None = None,
        verbose: int = 1,
    ) -> None:
        super().__init__()
        self.train_data = train_data
        self.final_epoch = final_epoch
        self.validation_data = validation_data
        self.verbose = verbose
        self.report: dict[str, Any] | None = None
        self._epochs_done = 0
        self._finite = True

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        self._epochs_done = epoch + 1
        self._finite = all(math.isfinite(value) for value in _numbers(logs or {}))

    def on_train_end(self, logs: dict | None = None) -> None:
        if self.final_epoch is not None and self._epochs_done < self.final_epoch:
            return  # stopped early, or a phase before the last
        if not self._finite:
            if self.verbose:
                print("SWA: the last epoch's metrics are not finite; the weights are left as is")
            return
        self.finish()

    def finish(self, model: keras.Model | None = None) -> dict[str, Any]:
        """Puts the averages in and recomputes the BatchNorm statistics, once; returns the
        report. `model` defaults to the model `fit` set (pass it when no `fit` ran, e.g. a
        finished run resumed only to be evaluated)."""
        if self.report is not None:
            return self.report
        if model is not None:
            self.set_model(model)
        model = self.model
        optimizer = find_swa_optimizer(model.optimizer)
        if optimizer is None:
            raise ValueError(
                "SWACallback: the model's optimizer is not a StochasticWeightAveraging (nor "
                f"wraps one): {type(model.optimizer).__name__}"
            )
        snapshots = optimizer.assign_averages()
        batch_norm = recompute_batch_norm_statistics(model, self.train_data)
        report: dict[str, Any] = {
            "averaged_snapshots": snapshots,
            "start_step": optimizer.start_step,
            "average_period": optimizer.average_period,
            "batch_norm_layers": batch_norm["layers"],
            "batch_norm_examples": batch_norm["examples"],
        }
        if self.validation_data is not None:
            results = model.evaluate(self.validation_data, verbose=0, return_dict=True)
            report.update({f"val_{key}": float(value) for key, value in results.items()})
        if self.verbose:
            statistics = (
                f"BatchNorm statistics of {batch_norm['layers']} layers recomputed over "
                f"{batch_norm['examples']} training examples"
                if batch_norm["layers"]
                else "no BatchNorm statistics to recompute"
            )
            validation = (
                f"; validation accuracy {report['val_accuracy']:.4f}"
                if "val_accuracy" in report
                else ""
            )
            print(
                f"SWA: the model now holds the average of {snapshots} snapshots of its weights "
                f"(from step {optimizer.start_step}, every {optimizer.average_period}); "
                f"{statistics}{validation}"
            )
        self.report = report
        return report
