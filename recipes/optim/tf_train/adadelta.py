"""tf.train's Adadelta, whose sparse updates leave untouched rows' running averages alone."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf
from keras import ops

from layers.validation import check_number
from recipes.optim.tf_train.elementwise import ElementwiseOptimizer


@keras.saving.register_keras_serializable(package="recipes")
class TFTrainAdadelta(ElementwiseOptimizer):
    """Adadelta exactly as `tf.compat.v1.train.AdadeltaOptimizer` computes it.

        accum        = rho * accum + (1 - rho) * g^2
        update       = sqrt(accum_update + eps) / sqrt(accum + eps) * g
        w           -= lr * update
        accum_update = rho * accum_update + (1 - rho) * update^2

    The dense formula is Keras' `Adadelta(epsilon=1e-8)`; the difference is sparse gradients, where
    tf.train (and this class) update only the touched rows while Keras decays every row's averages.

    Args:
        learning_rate: A float, a `keras.optimizers.schedules.LearningRateSchedule`, or a callable.
            1.0 is the original paper's form.
        rho: Float in [0, 1), the decay of both running averages.
        epsilon: Float > 0.
        **kwargs: Keyword arguments of `keras.optimizers.Optimizer` (`clipnorm`, `clipvalue`,
            `global_clipnorm`, `gradient_accumulation_steps`, `name`, ...).

    Reference: Zeiler, "ADADELTA: An Adaptive Learning Rate Method", 2012.
    """

    def __init__(
        self,
        learning_rate: Any = 0.001,
        rho: float = 0.95,
        epsilon: float = 1e-8,
        name: str = "tf_train_adadelta",
        **kwargs: Any,
    ) -> None:
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        owner = type(self).__name__
        self.rho = check_number("rho", rho, low=0.0, high=1.0, high_open=True, owner=owner)
        self.epsilon = check_number("epsilon", epsilon, low=0.0, low_open=True, owner=owner)

    def _slot_initial_values(self) -> dict[str, float]:
        return {"accumulator": 0.0, "update_accumulator": 0.0}

    def _update_rule(
        self,
        variable: tf.Tensor,
        gradient: tf.Tensor,
        slots: dict[str, tf.Tensor],
        learning_rate: tf.Tensor,
    ) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        rho = self._constant(self.rho, variable)
        epsilon = self._constant(self.epsilon, variable)
        accumulator = slots["accumulator"] * rho + ops.square(gradient) * (1.0 - rho)
        update = (
            ops.sqrt(slots["update_accumulator"] + epsilon)
            * ops.rsqrt(accumulator + epsilon)
            * gradient
        )
        update_accumulator = slots["update_accumulator"] * rho + ops.square(update) * (1.0 - rho)
        new_slots = {"accumulator": accumulator, "update_accumulator": update_accumulator}
        return variable - update * learning_rate, new_slots

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"rho": self.rho, "epsilon": self.epsilon})
        return config
