"""tf.train's Momentum: the velocity accumulates raw gradients and the learning rate scales it."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from layers.validation import check_bool, check_number
from recipes.optim.tf_train.elementwise import ElementwiseOptimizer


@keras.saving.register_keras_serializable(package="recipes")
class TFTrainMomentum(ElementwiseOptimizer):
    """Momentum in tf.train's form: `accum = m * accum + g; w -= lr * accum`.

    Keras' `SGD(momentum=m)` keeps `v = m * v - lr * g; w += v` instead: the same trajectory for a
    constant learning rate, but under a schedule tf.train applies today's rate to the whole
    accumulated velocity while Keras keeps each step's own rate inside it. With `nesterov=True`:
    `w -= lr * g + lr * m * accum`. For a sparse gradient only the touched rows (and their
    velocity) move. Same update as `tf.compat.v1.train.MomentumOptimizer`.

    Args:
        learning_rate: A float, a `keras.optimizers.schedules.LearningRateSchedule`, or a callable.
        momentum: Float in [0, 1).
        nesterov: Whether to use Nesterov momentum (tf.train's `use_nesterov`).
        **kwargs: Keyword arguments of `keras.optimizers.Optimizer` (`clipnorm`, `clipvalue`,
            `global_clipnorm`, `gradient_accumulation_steps`, `name`, ...).
    """

    def __init__(
        self,
        learning_rate: Any = 0.01,
        momentum: float = 0.9,
        nesterov: bool = False,
        name: str = "tf_train_momentum",
        **kwargs: Any,
    ) -> None:
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        owner = type(self).__name__
        self.momentum = check_number(
            "momentum", momentum, low=0.0, high=1.0, high_open=True, owner=owner
        )
        self.nesterov = check_bool("nesterov", nesterov, owner=owner)

    def _slot_initial_values(self) -> dict[str, float]:
        return {"momentum": 0.0}

    def _update_rule(
        self,
        variable: tf.Tensor,
        gradient: tf.Tensor,
        slots: dict[str, tf.Tensor],
        learning_rate: tf.Tensor,
    ) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        momentum = self._constant(self.momentum, variable)
        accumulator = slots["momentum"] * momentum + gradient
        if self.nesterov:
            step = gradient * learning_rate + accumulator * momentum * learning_rate
        else:
            step = accumulator * learning_rate
        return variable - step, {"momentum": accumulator}

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"momentum": self.momentum, "nesterov": self.nesterov})
        return config
