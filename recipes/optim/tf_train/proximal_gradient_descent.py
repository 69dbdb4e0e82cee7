"""ProximalGradientDescent: gradient descent followed by an l1/l2 proximal step (FOBOS)."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from recipes.optim.tf_train.checks import check_regularization_strengths
from recipes.optim.tf_train.elementwise import ElementwiseOptimizer
from recipes.optim.tf_train.proximal_operator import proximal_l1_l2


@keras.saving.register_keras_serializable(package="recipes")
class ProximalGradientDescent(ElementwiseOptimizer):
    """Gradient descent with l1/l2 regularization applied as a proximal step.

    `w <- prox_{lr*l1, lr*l2}(w - lr * g)`: the regularizers are not differentiated but solved for
    in closed form after each step, so l1 drives weights to exactly zero instead of making them
    oscillate around it. Same update as `tf.compat.v1.train.ProximalGradientDescentOptimizer`.
    With `l1 = l2 = 0` it is plain gradient descent.

    Args:
        learning_rate: A float, a `keras.optimizers.schedules.LearningRateSchedule`, or a callable.
        l1_regularization_strength: Float >= 0.
        l2_regularization_strength: Float >= 0.
        **kwargs: Keyword arguments of `keras.optimizers.Optimizer` (`clipnorm`, `clipvalue`,
            `global_clipnorm`, `gradient_accumulation_steps`, `name`, ...).

    Reference: Duchi & Singer, "Efficient Learning using Forward-Backward Splitting", NIPS 2009.
    """

    def __init__(
        self,
        learning_rate: Any = 0.01,
        l1_regularization_strength: float = 0.0,
        l2_regularization_strength: float = 0.0,
        name: str = "proximal_gradient_descent",
        **kwargs: Any,
    ) -> None:
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        owner = type(self).__name__
        self.l1_regularization_strength, self.l2_regularization_strength = (
            check_regularization_strengths(
                owner, l1_regularization_strength, l2_regularization_strength
            )
        )

    def _slot_initial_values(self) -> dict[str, float]:
        return {}

    def _update_rule(
        self,
        variable: tf.Tensor,
        gradient: tf.Tensor,
        slots: dict[str, tf.Tensor],
        learning_rate: tf.Tensor,
    ) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        prox = variable - gradient * learning_rate
        new_variable = proximal_l1_l2(
            prox, learning_rate, self.l1_regularization_strength, self.l2_regularization_strength
        )
        return new_variable, {}

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "l1_regularization_strength": self.l1_regularization_strength,
                "l2_regularization_strength": self.l2_regularization_strength,
            }
        )
        return config
