"""ProximalAdagrad: Adagrad's per-element step size followed by an l1/l2 proximal step."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf
from keras import ops

from recipes.optim.tf_train.checks import check_positive_accumulator, check_regularization_strengths
from recipes.optim.tf_train.elementwise import ElementwiseOptimizer
from recipes.optim.tf_train.proximal_operator import proximal_l1_l2


@keras.saving.register_keras_serializable(package="recipes")
class ProximalAdagrad(ElementwiseOptimizer):
    """Adagrad with l1/l2 regularization applied as a proximal step (FOBOS with Adagrad rates).

    Per element: `accum += g^2; step = lr / sqrt(accum); w <- prox_{step*l1, step*l2}(w - step*g)`.
    Same update as `tf.compat.v1.train.ProximalAdagradOptimizer`; with `l1 = l2 = 0` it is
    tf.train's Adagrad (no epsilon).

    Args:
        learning_rate: A float, a `keras.optimizers.schedules.LearningRateSchedule`, or a callable.
        initial_accumulator_value: Float > 0, the starting value of the squared-gradient sums
            (positive so the first step is finite).
        l1_regularization_strength: Float >= 0.
        l2_regularization_strength: Float >= 0.
        **kwargs: Keyword arguments of `keras.optimizers.Optimizer` (`clipnorm`, `clipvalue`,
            `global_clipnorm`, `gradient_accumulation_steps`, `name`, ...).

    References: Duchi, Hazan & Singer, "Adaptive Subgradient Methods", JMLR 2011; Duchi & Singer,
    "Efficient Learning using Forward-Backward Splitting", NIPS 2009.
    """

    def __init__(
        self,
        learning_rate: Any = 0.001,
        initial_accumulator_value: float = 0.1,
        l1_regularization_strength: float = 0.0,
        l2_regularization_strength: float = 0.0,
        name: str = "proximal_adagrad",
        **kwargs: Any,
    ) -> None:
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        owner = type(self).__name__
        self.initial_accumulator_value = check_positive_accumulator(
            owner, initial_accumulator_value
        )
        self.l1_regularization_strength, self.l2_regularization_strength = (
            check_regularization_strengths(
                owner, l1_regularization_strength, l2_regularization_strength
            )
        )

    def _slot_initial_values(self) -> dict[str, float]:
        return {"accumulator": self.initial_accumulator_value}

    def _update_rule(
        self,
        variable: tf.Tensor,
        gradient: tf.Tensor,
        slots: dict[str, tf.Tensor],
        learning_rate: tf.Tensor,
    ) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        accumulator = slots["accumulator"] + ops.square(gradient)
        step = learning_rate * ops.rsqrt(accumulator)
        new_variable = proximal_l1_l2(
            variable - gradient * step,
            step,
            self.l1_regularization_strength,
            self.l2_regularization_strength,
        )
        return new_variable, {"accumulator": accumulator}

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "initial_accumulator_value": self.initial_accumulator_value,
                "l1_regularization_strength": self.l1_regularization_strength,
                "l2_regularization_strength": self.l2_regularization_strength,
            }
        )
        return config
