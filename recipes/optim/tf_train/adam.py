"""tf.train's Adam: bias correction from running beta powers, epsilon added after the sqrt."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf
from keras import ops

from layers.validation import check_number
from recipes.optim.tf_train.elementwise import ElementwiseOptimizer


@keras.saving.register_keras_serializable(package="recipes")
class TFTrainAdam(ElementwiseOptimizer):
    """Adam exactly as `tf.compat.v1.train.AdamOptimizer` computes it.

        lr_t = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)
        m   += (g - m) * (1 - beta_1);  v += (g^2 - v) * (1 - beta_2)
        w   -= lr_t * m / (sqrt(v) + epsilon)           ("epsilon hat" of the paper)

    Keras' `Adam` has the same formula but defaults to epsilon 1e-7 (tf.train: 1e-8) and computes
    `beta^t` with `pow` each step, where tf.train keeps the powers as running products in float32;
    the two drift apart by ~1e-5 relative within 50 steps. This class keeps the running products.
    As in tf.train, a sparse gradient updates every row's moments (Adam is not lazy there).

    Args:
        learning_rate: A float, a `keras.optimizers.schedules.LearningRateSchedule`, or a callable.
        beta_1: Float in [0, 1), decay of the first moment (tf.train's `beta1`).
        beta_2: Float in [0, 1), decay of the second moment (tf.train's `beta2`).
        epsilon: Float >= 0, added to `sqrt(v)`.
        **kwargs: Keyword arguments of `keras.optimizers.Optimizer` (`clipnorm`, `clipvalue`,
            `global_clipnorm`, `gradient_accumulation_steps`, `name`, ...).

    Reference: Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015.
    """

    sparse_updates_touched_rows_only = False

    def __init__(
        self,
        learning_rate: Any = 0.001,
        beta_1: float = 0.9,
        beta_2: float = 0.999,
        epsilon: float = 1e-8,
        name: str = "tf_train_adam",
        **kwargs: Any,
    ) -> None:
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        owner = type(self).__name__
        self.beta_1 = check_number("beta_1", beta_1, low=0.0, high=1.0, high_open=True, owner=owner)
        self.beta_2 = check_number("beta_2", beta_2, low=0.0, high=1.0, high_open=True, owner=owner)
        self.epsilon = check_number("epsilon", epsilon, low=0.0, owner=owner)

    def build(self, var_list: list[keras.Variable]) -> None:
        if self.built:
            return
        super().build(var_list)
        self._beta_1_power, self._beta_2_power = (
            self.add_variable(
                shape=(),
                initializer=keras.initializers.Constant(beta),
                name=name,
                aggregation="only_first_replica",
            )
            for beta, name in ((self.beta_1, "beta_1_power"), (self.beta_2, "beta_2_power"))
        )

    def _slot_initial_values(self) -> dict[str, float]:
        return {"m": 0.0, "v": 0.0}

    def _update_rule(
        self,
        variable: tf.Tensor,
        gradient: tf.Tensor,
        slots: dict[str, tf.Tensor],
        learning_rate: tf.Tensor,
    ) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        beta_1 = self._constant(self.beta_1, variable)
        beta_2 = self._constant(self.beta_2, variable)
        beta_1_power = ops.cast(self._beta_1_power, variable.dtype)
        beta_2_power = ops.cast(self._beta_2_power, variable.dtype)
        alpha = learning_rate * ops.sqrt(1.0 - beta_2_power) / (1.0 - beta_1_power)
        m = slots["m"] + (gradient - slots["m"]) * (1.0 - beta_1)
        v = slots["v"] + (ops.square(gradient) - slots["v"]) * (1.0 - beta_2)
        new_variable = variable - (m * alpha) / (ops.sqrt(v) + self.epsilon)
        return new_variable, {"m": m, "v": v}

    def _backend_update_step(
        self, grads: list[Any], trainable_variables: list[Any], learning_rate: Any
    ) -> None:
        # tf.train advances the beta powers once per applied update, after all variables.
        super()._backend_update_step(grads, trainable_variables, learning_rate)
        self._beta_1_power.assign(self._beta_1_power * self.beta_1)
        self._beta_2_power.assign(self._beta_2_power * self.beta_2)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon})
        return config
