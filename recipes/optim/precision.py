"""Loss scaling for mixed precision: which optimizer `model.compile` gets under a dtype policy.

Under `"mixed_float16"` small gradients underflow float16, so the loss is multiplied by a large
scale before differentiation and the gradients divided by it before the update: Keras'
`keras.optimizers.LossScaleOptimizer`, which `model.compile` puts around the optimizer by itself
when the model's dtype policy is `"mixed_float16"` (its `auto_scale_loss=True`).
`wrap_for_policy(optimizer, policy)` does the wrapping explicitly, for a model whose policy is
not the one its layers use, a custom training loop, or a run that checks its step counts (below);
it is idempotent, so compiling the result does not wrap twice. `"mixed_bfloat16"` needs no loss
scaling (bfloat16 has float32's exponent range) and float32 none at all: the optimizer is
returned as it is.

The loss scale optimizer is exact for the ten tf.train optimizers (`recipes.optim.tf_train`)
and the wrappers (`Lookahead`, `StochasticWeightAveraging`): the scale is a power of two, so
unscaling a float32 gradient is exact and the update is the one the unscaled gradient gives, bit
for bit; a sparse gradient (an `Embedding`'s) stays sparse. A step whose gradients are not finite
is skipped whole: the inner optimizer is not called, so its slots, its `iterations`, Adam's beta
powers and the wrappers' counters do not move, and the scale is halved. It must be the outermost
wrapper, `LossScaleOptimizer(Lookahead(...))`: the wrappers refuse to wrap one, since
`Lookahead(LossScaleOptimizer(...))` would count skipped steps and `model.compile` would scale
the loss a second time around it.

Skipped steps do not advance `optimizer.iterations`, so after a run with skipped steps it is less
than the number of batches trained: code that checks a checkpoint's step count against the
epochs trained (the runner's resume) needs the skipped ones too. `wrap_for_policy` therefore
returns `CountingLossScaleOptimizer`, Keras' loss scale optimizer that also counts the steps it
skips (saved with the model), and `applied_batches(optimizer)` is `iterations` plus that count.
"""

from __future__ import annotations

from typing import Any

import keras

__all__ = [
    "LOSS_SCALED_POLICIES",
    "CountingLossScaleOptimizer",
    "applied_batches",
    "check_not_loss_scaled",
    "wrap_for_policy",
]

# The policies under which `model.compile` adds loss scaling (Keras' `auto_scale_loss`).
LOSS_SCALED_POLICIES = ("mixed_float16",)
# The name `model.compile` gives the loss scale optimizer it adds (its variables' paths).
_LOSS_SCALE_NAME = "loss_scale_optimizer"


@keras.saving.register_keras_serializable(package="recipes")
class CountingLossScaleOptimizer(keras.optimizers.LossScaleOptimizer):
    """Keras' `LossScaleOptimizer` that also counts the steps it skips.

    A step whose gradients are not finite is skipped whole (the inner optimizer, whose
    `iterations` this optimizer reports, is not called) and counted in `skipped_steps`, an
    optimizer variable saved with the model: `iterations + skipped_steps` is the number of
    batches the optimizer was applied to. Everything else is Keras' class (arguments, dynamic
    scale, distribution, saving).
    """

    def build(self, var_list: list[keras.Variable]) -> None:
        super().build(var_list)
        self._skipped_steps = self.add_variable(
            shape=(), dtype="int", initializer="zeros", aggregation="none", name="skipped_steps"
        )

    def _stateful_handle_non_finite_grads(self) -> None:
        super()._stateful_handle_non_finite_grads()
        self._skipped_steps.assign_add(1)

    @property
    def skipped_steps(self) -> int:
        """The steps skipped for non-finite gradients (0 before the first step)."""
        return int(self._skipped_steps.numpy()) if self.built else 0


def applied_batches(optimizer: keras.optimizers.Optimizer) -> int:
    """The batches `optimizer` was applied to: its `iterations`, plus the steps a
    `CountingLossScaleOptimizer` skipped (a plain `LossScaleOptimizer` does not count them)."""
    steps = int(optimizer.iterations.numpy())  # a MirroredVariable too
    if isinstance(optimizer, CountingLossScaleOptimizer):
        steps += optimizer.skipped_steps
    return steps


def _policy(policy: Any) -> keras.DTypePolicy:
    if policy is None:
        return keras.mixed_precision.global_policy()
    try:
        return keras.dtype_policies.get(policy)
    except ValueError:
        raise ValueError(
            "`policy` must be a keras.DTypePolicy or the name of one ('float32', "
            f"'mixed_float16', 'mixed_bfloat16', ...). Received: policy={policy!r}"
        ) from None


def check_not_loss_scaled(optimizer: keras.optimizers.Optimizer, owner: str) -> None:
    """Refuses a `LossScaleOptimizer` as the inner optimizer of the wrapper `owner`.

    Raises:
        ValueError: `optimizer` is a `keras.optimizers.LossScaleOptimizer`.
    """
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        raise ValueError(
            f"{owner} cannot wrap a LossScaleOptimizer: loss scaling must be the outermost "
            f"wrapper, LossScaleOptimizer({owner}(...)), so that a skipped step skips {owner} too; "
            "model.compile adds it under the 'mixed_float16' policy, or use "
            f"recipes.optim.wrap_for_policy. Received: optimizer={optimizer!r}"
        )


def wrap_for_policy(
    optimizer: keras.optimizers.Optimizer, policy: Any = None
) -> keras.optimizers.Optimizer:
    """The optimizer to compile a model of dtype policy `policy` with.

    Args:
        optimizer: a built optimizer (ours, a wrapper, any of Keras'), or a
            `LossScaleOptimizer` already, which is returned as it is.
        policy: a `keras.DTypePolicy` or its name; None means the global policy
            (`keras.mixed_precision.global_policy()`).

    Returns:
        Under `"mixed_float16"`, `CountingLossScaleOptimizer(optimizer)` (Keras' dynamic loss
        scale with its defaults: initial scale 2**15, doubled after 2000 finite steps, halved
        and the step skipped on a non-finite gradient; skipped steps counted), named as
        `model.compile` names the one it adds; under any other policy, `optimizer` itself.

    Raises:
        ValueError: an unknown policy.
        TypeError: `optimizer` is not a `keras.optimizers.Optimizer`.
    """
    policy = _policy(policy)
    if not isinstance(optimizer, keras.optimizers.Optimizer):
        raise TypeError(
            "`optimizer` must be a keras.optimizers.Optimizer (see recipes.optim.get_optimizer). "
            f"Received: optimizer={optimizer!r}"
        )
    if policy.name not in LOSS_SCALED_POLICIES or isinstance(
        optimizer, keras.optimizers.LossScaleOptimizer
    ):
        return optimizer
    return CountingLossScaleOptimizer(optimizer, name=_LOSS_SCALE_NAME)
