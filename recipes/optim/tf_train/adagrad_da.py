"""AdagradDA: Adagrad dual averaging, the sparse-model optimizer of tf.train."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf
from keras import ops

from recipes.optim.tf_train.checks import check_positive_accumulator, check_regularization_strengths
from recipes.optim.tf_train.elementwise import ElementwiseOptimizer
from recipes.optim.tf_train.proximal_operator import soft_threshold


@keras.saving.register_keras_serializable(package="recipes")
class AdagradDA(ElementwiseOptimizer):
    """Adagrad dual averaging (regularized dual averaging with Adagrad's proximal term).

    Instead of stepping from the current weights, each weight is recomputed in closed form from the
    sum of all its gradients `G` and of their squares `H`, at global step `t` (1-based):

        w = -sign(G) * lr * max(|G| - t * l1, 0) / (t * lr * l2 + sqrt(H))

    so the l1 term zeroes every weight whose average gradient stays below `l1`: it gives truly
    sparse linear models. Rows of a sparse gradient that are not touched keep their old value
    (tf.train's "lazy" behaviour). Same update as `tf.compat.v1.train.AdagradDAOptimizer`, whose
    `global_step` is this optimizer's own step counter (`iterations + 1`), so nothing has to be
    passed in. As tf.train warns, it only guarantees sparsity for linear models, and for deep
    networks needs care with `initial_accumulator_value`.

    Args:
        learning_rate: A float, a `keras.optimizers.schedules.LearningRateSchedule`, or a callable.
        initial_accumulator_value: Float > 0, the starting value of `H` (tf.train's
            `initial_gradient_squared_accumulator_value`).
        l1_regularization_strength: Float >= 0.
        l2_regularization_strength: Float >= 0.
        **kwargs: Keyword arguments of `keras.optimizers.Optimizer` (`clipnorm`, `clipvalue`,
            `global_clipnorm`, `gradient_accumulation_steps`, `name`, ...).

    Reference: Duchi, Hazan & Singer, "Adaptive Subgradient Methods for Online Learning and
    Stochastic Optimization", JMLR 2011; Xiao, "Dual Averaging Methods for Regularized Stochastic
    Learning and Online Optimization", JMLR 2010.
    """

    def __init__(
        self,
        learning_rate: Any = 0.001,
        initial_accumulator_value: float = 0.1,
        l1_regularization_strength: float = 0.0,
        l2_regularization_strength: float = 0.0,
        name: str = "adagrad_da",
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
        return {
            "gradient_accumulator": 0.0,
            "gradient_squared_accumulator": self.initial_accumulator_value,
        }

    def _update_rule(
        self,
        variable: tf.Tensor,
        gradient: tf.Tensor,
        slots: dict[str, tf.Tensor],
        learning_rate: tf.Tensor,
    ) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        gradient_sum = slots["gradient_accumulator"] + gradient
        squared_sum = slots["gradient_squared_accumulator"] + ops.square(gradient)
        # `iterations` already counts applied updates only under gradient accumulation.
        global_step = ops.cast(self.iterations + 1, variable.dtype)
        l2 = self._constant(self.l2_regularization_strength, variable)
        denominator = l2 * (global_step * learning_rate) + ops.sqrt(squared_sum)
        if self.l1_regularization_strength > 0:
            l1 = self._constant(self.l1_regularization_strength, variable)
            numerator = -learning_rate * soft_threshold(gradient_sum, global_step * l1)
        else:
            numerator = -(learning_rate * gradient_sum)
        new_slots = {
            "gradient_accumulator": gradient_sum,
            "gradient_squared_accumulator": squared_sum,
        }
        return numerator / denominator, new_slots

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
