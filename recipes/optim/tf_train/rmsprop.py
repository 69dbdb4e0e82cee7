"""tf.train's RMSProp: mean square starts at 1, epsilon inside the sqrt, optional momentum."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf
from keras import ops

from layers.validation import check_bool, check_number
from recipes.optim.tf_train.elementwise import ElementwiseOptimizer


@keras.saving.register_keras_serializable(package="recipes")
class TFTrainRMSProp(ElementwiseOptimizer):
    """RMSProp exactly as `tf.compat.v1.train.RMSPropOptimizer` computes it.

        ms  = ms + (g^2 - ms) * (1 - rho)               (ms starts at 1.0, not 0.0)
        mg  = mg + (g - mg) * (1 - rho)                 (centered only)
        mom = momentum * mom + lr * g / sqrt(ms [- mg^2] + epsilon)
        w  -= mom

    Keras' `RMSprop` starts the mean square at 0, which makes its first steps about
    `1/sqrt(1 - rho)` (3x for rho=0.9) larger, and defaults to epsilon 1e-7 against tf.train's
    1e-10. For a sparse gradient only the touched rows and their statistics are updated.

    Args:
        learning_rate: A float, a `keras.optimizers.schedules.LearningRateSchedule`, or a callable.
        rho: Float in [0, 1), the moving-average decay (tf.train's `decay`).
        momentum: Float in [0, 1).
        epsilon: Float >= 0, added to the mean square inside the square root.
        centered: Whether to normalize by the estimated variance instead of the second moment.
        **kwargs: Keyword arguments of `keras.optimizers.Optimizer` (`clipnorm`, `clipvalue`,
            `global_clipnorm`, `gradient_accumulation_steps`, `name`, ...).
    """

    def __init__(
        self,
        learning_rate: Any = 0.001,
        rho: float = 0.9,
        momentum: float = 0.0,
        epsilon: float = 1e-10,
        centered: bool = False,
        name: str = "tf_train_rmsprop",
        **kwargs: Any,
    ) -> None:
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        owner = type(self).__name__
        self.rho = check_number("rho", rho, low=0.0, high=1.0, high_open=True, owner=owner)
        self.momentum = check_number(
            "momentum", momentum, low=0.0, high=1.0, high_open=True, owner=owner
        )
        self.epsilon = check_number("epsilon", epsilon, low=0.0, owner=owner)
        self.centered = check_bool("centered", centered, owner=owner)

    def _slot_initial_values(self) -> dict[str, float]:
        slots = {"mean_square": 1.0, "momentum": 0.0}
        if self.centered:
            slots["mean_gradient"] = 0.0
        return slots

    def _update_rule(
        self,
        variable: tf.Tensor,
        gradient: tf.Tensor,
        slots: dict[str, tf.Tensor],
        learning_rate: tf.Tensor,
    ) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        one_minus_rho = 1.0 - self._constant(self.rho, variable)
        mean_square = slots["mean_square"]
        mean_square = mean_square + (ops.square(gradient) - mean_square) * one_minus_rho
        new_slots = {"mean_square": mean_square}
        if self.centered:
            mean_gradient = slots["mean_gradient"]
            mean_gradient = mean_gradient + (gradient - mean_gradient) * one_minus_rho
            new_slots["mean_gradient"] = mean_gradient
            denominator = (mean_square - ops.square(mean_gradient)) + self.epsilon
        else:
            denominator = mean_square + self.epsilon
        momentum = self._constant(self.momentum, variable)
        step = slots["momentum"] * momentum + (gradient * learning_rate) / ops.sqrt(denominator)
        new_slots["momentum"] = step
        return variable - step, new_slots

    def _sparse_update_rule(
        self,
        variable: tf.Tensor,
        gradient: tf.Tensor,
        slots: dict[str, tf.Tensor],
        learning_rate: tf.Tensor,
    ) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        # tf.train's sparse RMSProp kernels order the same arithmetic differently; when the centered
        # variance is near zero, `(ms + eps) - mg^2` and `(ms - mg^2) + eps` differ well beyond
        # rounding, so the sparse path follows that kernel's order.
        rho = self._constant(self.rho, variable)
        one_minus_rho = 1.0 - rho
        mean_square = slots["mean_square"] * rho + ops.square(gradient) * one_minus_rho
        new_slots = {"mean_square": mean_square}
        denominator = mean_square + self.epsilon
        if self.centered:
            mean_gradient = slots["mean_gradient"] * rho + gradient * one_minus_rho
            new_slots["mean_gradient"] = mean_gradient
            denominator = denominator - ops.square(mean_gradient)
        momentum = self._constant(self.momentum, variable)
        step = slots["momentum"] * momentum + ops.rsqrt(denominator) * learning_rate * gradient
        new_slots["momentum"] = step
        return variable - step, new_slots

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "rho": self.rho,
                "momentum": self.momentum,
                "epsilon": self.epsilon,
                "centered": self.centered,
            }
        )
        return config
