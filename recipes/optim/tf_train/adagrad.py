"""tf.train's Adagrad: no epsilon, and lazy (touched-rows-only) sparse updates."""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf
from keras import ops

from recipes.optim.tf_train.checks import check_positive_accumulator
from recipes.optim.tf_train.elementwise import ElementwiseOptimizer


@keras.saving.register_keras_serializable(package="recipes")
class TFTrainAdagrad(ElementwiseOptimizer):
    """Adagrad exactly as `tf.compat.v1.train.AdagradOptimizer` computes it.

        accum += g^2;  w -= lr * g / sqrt(accum)

    Keras' `Adagrad` adds epsilon (1e-7) inside the square root and, for a sparse gradient with
    repeated indices, squares each occurrence before summing (tf.train sums first). It is also
    `ProximalAdagrad` without regularization, up to the association of `lr * g / sqrt(accum)`,
    which tf.train's two kernels evaluate differently; this class follows Adagrad's.

    Args:
        learning_rate: A float, a `keras.optimizers.schedules.LearningRateSchedule`, or a callable.
        initial_accumulator_value: Float > 0 (tf.train rejects 0: the first step would divide by
            zero where a gradient is zero).
        **kwargs: Keyword arguments of `keras.optimizers.Optimizer` (`clipnorm`, `clipvalue`,
            `global_clipnorm`, `gradient_accumulation_steps`, `name`, ...).

    Reference: Duchi, Hazan & Singer, "Adaptive Subgradient Methods", JMLR 2011.
    """

    def __init__(
        self,
        learning_rate: Any = 0.001,
        initial_accumulator_value: float = 0.1,
        name: str = "tf_train_adagrad",
        **kwargs: Any,
    ) -> None:
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.initial_accumulator_value = check_positive_accumulator(
            type(self).__name__, initial_accumulator_value
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
        new_variable = variable - gradient * learning_rate * ops.rsqrt(accumulator)
        return new_variable, {"accumulator": accumulator}

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update({"initial_accumulator_value": self.initial_accumulator_value})
        return config
