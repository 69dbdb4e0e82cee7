"""tf.train's FTRL-Proximal, with its lazy sparse updates and lr-dependent `beta` term."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf
from keras import ops

from layers.validation import check_number
from recipes.optim.tf_train.checks import check_regularization_strengths
from recipes.optim.tf_train.elementwise import ElementwiseOptimizer


@keras.saving.register_keras_serializable(package="recipes")
class TFTrainFtrl(ElementwiseOptimizer):
    """FTRL-Proximal exactly as `tf.compat.v1.train.FtrlOptimizer` computes it.

        n'     = n + g^2
        sigma  = (n'^(-p) - n^(-p)) / lr                 (p = learning_rate_power)
        z     += g + 2 * l2_shrinkage * w - sigma * w
        w      = (sign(z) * l1 - z) / (n'^(-p) / lr + 2 * l2')  if |z| > l1 else 0
        l2'    = l2 + beta / (2 * lr)

    Keras' `Ftrl` implements the same dense formula; the difference is sparse gradients: tf.train
    (and this class) sum duplicate indices before squaring and leave untouched rows alone, while
    Keras squares per occurrence and, with `l2_shrinkage`, moves every row.

    Args:
        learning_rate: A float, a `keras.optimizers.schedules.LearningRateSchedule`, or a callable.
        learning_rate_power: Float <= 0; -0.5 is Adagrad-like.
        initial_accumulator_value: Float >= 0 (must be > 0 unless `learning_rate_power` is 0).
        l1_regularization_strength: Float >= 0.
        l2_regularization_strength: Float >= 0.
        l2_shrinkage_regularization_strength: Float >= 0, an l2 penalty on the weights that enters
            through the gradient (magnitude shrinkage) rather than the closed form.
        beta: Float >= 0, the FTRL paper's beta, folded into l2 as `beta / (2 * lr)`.
        **kwargs: Keyword arguments of `keras.optimizers.Optimizer` (`clipnorm`, `clipvalue`,
            `global_clipnorm`, `gradient_accumulation_steps`, `name`, ...).

    Reference: McMahan et al., "Ad Click Prediction: a View from the Trenches", KDD 2013.
    """

    def __init__(
        self,
        learning_rate: Any = 0.001,
        learning_rate_power: float = -0.5,
        initial_accumulator_value: float = 0.1,
        l1_regularization_strength: float = 0.0,
        l2_regularization_strength: float = 0.0,
        l2_shrinkage_regularization_strength: float = 0.0,
        beta: float = 0.0,
        name: str = "tf_train_ftrl",
        **kwargs: Any,
    ) -> None:
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        owner = type(self).__name__
        self.learning_rate_power = check_number(
            "learning_rate_power", learning_rate_power, high=0.0, owner=owner
        )
        # 0 ** -p is infinite unless the power is 0.
        self.initial_accumulator_value = check_number(
            "initial_accumulator_value",
            initial_accumulator_value,
            low=0.0,
            low_open=self.learning_rate_power != 0.0,
            owner=owner,
        )
        self.l1_regularization_strength, self.l2_regularization_strength = (
            check_regularization_strengths(
                owner, l1_regularization_strength, l2_regularization_strength
            )
        )
        self.l2_shrinkage_regularization_strength = check_number(
            "l2_shrinkage_regularization_strength",
            l2_shrinkage_regularization_strength,
            low=0.0,
            owner=owner,
        )
        self.beta = check_number("beta", beta, low=0.0, owner=owner)

    def _slot_initial_values(self) -> dict[str, float]:
        return {"accumulator": self.initial_accumulator_value, "linear": 0.0}

    def _accumulator_power(self, accumulator: tf.Tensor) -> tf.Tensor:
        if self.learning_rate_power == -0.5:
            return ops.sqrt(accumulator)
        return ops.power(accumulator, self._constant(-self.learning_rate_power, accumulator))

    def _update_rule(
        self,
        variable: tf.Tensor,
        gradient: tf.Tensor,
        slots: dict[str, tf.Tensor],
        learning_rate: tf.Tensor,
    ) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        accumulator = slots["accumulator"]
        new_accumulator = accumulator + ops.square(gradient)
        new_power = self._accumulator_power(new_accumulator)
        shrinkage = self.l2_shrinkage_regularization_strength
        if shrinkage > 0:
            gradient = gradient + self._constant(2.0 * shrinkage, variable) * variable
        sigma = (new_power - self._accumulator_power(accumulator)) / learning_rate
        linear = slots["linear"] + (gradient - sigma * variable)
        l1 = self._constant(self.l1_regularization_strength, variable)
        l2 = self._constant(self.l2_regularization_strength, variable) + self._constant(
            self.beta, variable
        ) / (2.0 * ops.maximum(learning_rate, 1e-36))
        quadratic = new_power / learning_rate + 2.0 * l2
        new_variable = ops.where(
            ops.abs(linear) > l1, (l1 * ops.sign(linear) - linear) / quadratic, 0.0
        )
        return new_variable, {"accumulator": new_accumulator, "linear": linear}

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            {
                "learning_rate_power": self.learning_rate_power,
                "initial_accumulator_value": self.initial_accumulator_value,
                "l1_regularization_strength": self.l1_regularization_strength,
                "l2_regularization_strength": self.l2_regularization_strength,
                "l2_shrinkage_regularization_strength": (self.l2_shrinkage_regularization_strength),
                "beta": self.beta,
            }
        )
        return config
