"""Stopping a run whose loss has become NaN or exploded, with advice instead of a wall of NaNs."""

from __future__ import annotations

import math

import keras
import numpy as np

from recipes.callbacks.batches import last_batch
from recipes.train.errors import RecipeError


def non_finite_weights(model: keras.Model) -> list[str]:
    """The paths of `model`'s variables (trainable or not) holding a NaN or an infinity.

    A finite loss does not prove finite weights: oneDNN's fused matmul + bias + ReLU (on CPUs
    with AVX-512) turns a NaN into 0, so a unit whose weights went NaN silently outputs 0 and the
    loss stays finite; the saved model would then compute NaN on other hardware.
    """
    return [
        variable.path
        for variable in model.weights
        if not np.all(np.isfinite(keras.ops.convert_to_numpy(variable)))
    ]


class TrainingDiverged(RecipeError, RuntimeError):
    """The training loss became NaN/inf or exploded; the message says what to try."""


class DivergenceGuard(keras.callbacks.Callback):
    """Stops training as soon as the loss is NaN/inf or grows far above its starting value.

    The course's symptom of a learning rate that is too high is a loss that explodes (often to NaN
    within a few steps). Training stops on the offending batch, before the epoch's checkpoint is
    written, so the last good checkpoint survives; `diverged` then holds the reason and advice.
    `RunCheckpoint` records it in the run state, so that `--resume` knows the run diverged.

    The loss it watches is the one Keras reports after each call of the training function: the
    running mean of the epoch so far, which a single NaN or inf batch turns NaN or inf for the
    rest of the epoch. With `steps_per_execution` N > 1 Keras reports once per execution of N
    steps, so the guard checks once per execution: a NaN in any of its steps stops the training
    at the end of that execution, and the message names the execution's batches.

    Args:
        explode_factor: the loss counts as exploded when it exceeds this multiple of the first
            batch's loss (the course's "cost 3x the original is a sign to stop early" rule, made
            lenient because single batches are noisy).
        learning_rate: the run's base learning rate, quoted in the advice.
        first_loss: the starting value to compare with, when the training resumes a run: the
            first loss this session reports may already have exploded, all the more with
            several steps per execution (it is then the mean over the first execution's
            steps, taken at the resumed run's learning rate). None: the first finite loss
            reported.
    """

    def __init__(
        self,
        explode_factor: float = 10.0,
        learning_rate: float | None = None,
        first_loss: float | None = None,
    ):
        super().__init__()
        if explode_factor <= 1.0:
            raise ValueError(f"explode_factor must be > 1, got {explode_factor}")
        self.explode_factor = explode_factor
        self.learning_rate = learning_rate
        self.first_loss = (
            first_loss if first_loss is not None and math.isfinite(first_loss) else None
        )
        self.diverged: str | None = None
        self._first_batch: int | None = None

    def on_train_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        self._first_batch = batch

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        loss = float((logs or {}).get("loss", 0.0))
        if self.first_loss is None and math.isfinite(loss):
            self.first_loss = loss
        last = last_batch(self.params, batch)
        first = last if self._first_batch is None else self._first_batch
        where = f"at batch {last}" if first == last else f"in batches {first}-{last}"
        if not math.isfinite(loss):
            reason = f"the training loss became {loss} {where}"
        elif self.first_loss and loss > self.explode_factor * max(self.first_loss, 1e-8):
            reason = (
                f"the training loss exploded to {loss:.4g} {where} "
                f"({loss / self.first_loss:.1f}x its starting value {self.first_loss:.4g})"
            )
        else:
            return
        self.stop(reason)

    def stop(self, reason: str) -> None:
        """Stops training because of `reason` ("the training loss became nan at batch 3"),
        keeping it with advice in `diverged`."""
        lr = f" (now {self.learning_rate:g})" if self.learning_rate is not None else ""
        self.diverged = (
            f"Training stopped: {reason}. The learning rate is probably too high{lr}: try a "
            "lower --lr (e.g. 3-10x lower) or gradient clipping (--opt clipnorm=1). The last "
            "good checkpoint was kept."
        )
        print(f"\n{self.diverged}")
        self.model.stop_training = True
