"""Optimizer wrappers: Lookahead and stochastic weight averaging around any Keras 3 optimizer.

    from recipes.optim import Lookahead, StochasticWeightAveraging, get_optimizer

    model.compile(optimizer=Lookahead(get_optimizer("Momentum", 0.1), k=5, alpha=0.5), ...)
    model.compile(optimizer=StochasticWeightAveraging("Adam", start_step=1000, average_period=100))

Both take an optimizer (built or not: ours from `get_optimizer`, any of Keras', or a name or
config `get_optimizer` resolves), let it compute and apply every update, and then act on the
weights it moved:

- `Lookahead` (Zhang et al. 2019, "Lookahead Optimizer: k steps forward, 1 step back") keeps
  slow weights: after every `k` updates of the inner optimizer (the fast weights) the slow weights
  move `alpha` of the way toward the fast ones, `slow += alpha * (fast - slow)`, and the fast
  weights restart from there.
- `StochasticWeightAveraging` (Izmailov et al. 2018, "Averaging Weights Leads to Wider Optima and
  Better Generalization") keeps the running mean of the weights at steps `start_step`,
  `start_step + average_period`, ...; `assign_averages()` puts it into the model at the end. The
  paper then recomputes BatchNormalization statistics with one pass over the training data:
  `recipes.callbacks.swa.SWACallback` does both.

They follow Keras' own wrapper, `keras.optimizers.LossScaleOptimizer`: the wrapper is a
`keras.optimizers.Optimizer` whose `variables` are its own (slow weights, averages, counters)
followed by the inner optimizer's, so `model.save` / `keras.models.load_model` store and restore
the whole state and a resumed run continues exactly. `iterations`, `learning_rate` (which
`ReduceLROnPlateau` sets) and `scale_loss` are the inner optimizer's. Both are registered as
`recipes>Lookahead` and `recipes>StochasticWeightAveraging`, and nest:
`StochasticWeightAveraging(Lookahead(...))` averages the weights Lookahead leaves.

Steps count the batches the wrapper is applied to (as Keras' learning-rate schedules do). With
gradient accumulation in the inner optimizer (`accumulate_steps=N`), the weights move once every N
batches: Lookahead's `k` counts those updates (it synchronizes every `k * N` batches), while SWA's
`start_step` and `average_period` stay in batches.

Under `tf.distribute` (MirroredStrategy, MultiWorkerMirroredStrategy) the inner optimizer updates
the weights as usual; the wrapper's own updates then run in cross-replica context, on every
replica's copy, like Keras' optimizers do theirs (`tests/optimizer_wrappers_mirrored.py`). The
TensorFlow backend only, as the rest of `recipes.optim`.

Under the `"mixed_float16"` policy, loss scaling goes outside them: `model.compile` makes
`LossScaleOptimizer(Lookahead(...))`, which skips a step with non-finite gradients before the
wrapper sees it. They refuse to wrap a `LossScaleOptimizer` (see `recipes.optim.precision`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import keras
import tensorflow as tf
from keras import ops

from layers.validation import check_integer, check_number
from recipes.optim.optimizers import get_optimizer
from recipes.optim.precision import check_not_loss_scaled

__all__ = ["Lookahead", "StochasticWeightAveraging", "swa_steps"]


def _inner(optimizer: Any, owner: str) -> keras.optimizers.Optimizer:
    """The optimizer to wrap: a built one as is, a name or config through `get_optimizer`."""
    if isinstance(optimizer, str | Mapping):
        optimizer = get_optimizer(optimizer)
    if not isinstance(optimizer, keras.optimizers.Optimizer):
        raise TypeError(
            f"{owner}: `optimizer` must be a keras.optimizers.Optimizer, or a name or config "
            f"that get_optimizer accepts. Received: optimizer={optimizer!r}"
        )
    check_not_loss_scaled(optimizer, owner)
    return optimizer


def _unwrapped(variable: Any) -> Any:
    # tf.distribute's update() takes the tf.Variable (a MirroredVariable under a strategy).
    return variable.value if isinstance(variable, keras.Variable) else variable


class _OptimizerWrapper(keras.optimizers.Optimizer):
    """An optimizer that lets `inner_optimizer` update the weights, then acts on them.

    Subclasses create their companion variables in `_build_companions(var_list)` and act in
    `_after_inner_step(distribution, variables)`, and in `_before_inner_step` if they set
    `acts_before_inner_step`; both run in cross-replica context (see `_update_each`).
    `self._iterations` counts the batches applied through the wrapper; it is read there before it
    counts the current one.
    """

    acts_before_inner_step: ClassVar[bool] = False

    def __init__(self, optimizer: Any, name: str) -> None:
        # Like LossScaleOptimizer: the base class's learning rate is unused; the inner one rules.
        super().__init__(learning_rate=0.0, name=name)
        self.inner_optimizer = _inner(optimizer, type(self).__name__)

    @property
    def variables(self) -> list[keras.Variable]:
        return self._variables + self.inner_optimizer.variables

    # A saved model stores the wrapper's own variables here and the inner optimizer's under its
    # own path (Keras' saving visits `inner_optimizer` as a child object). LossScaleOptimizer
    # stores the inner variables in both places, which nested wrappers would multiply.
    def save_own_variables(self, store: Any) -> None:
        for i, variable in enumerate(self._variables):
            store[str(i)] = variable.numpy()

    def load_own_variables(self, store: Any) -> None:
        if len(store.keys()) != len(self._variables):
            raise ValueError(
                f"{type(self).__name__} {self.name!r}: the saved optimizer has "
                f"{len(store.keys())} variables of its own, this one {len(self._variables)} "
                "(is it built on the same model?)"
            )
        for i, variable in enumerate(self._variables):
            variable.assign(store[str(i)])

    def _build_companions(self, var_list: list[keras.Variable]) -> None:
        raise NotImplementedError

    def build(self, var_list: list[keras.Variable]) -> None:
        if self.built:
            return
        self._build_companions(var_list)
        self.inner_optimizer.build(var_list)
        super().build(var_list)

    def apply(self, grads: list[Any], trainable_variables: list[Any] | None = None) -> None:
        if len(grads) == 0:
            return
        if trainable_variables is None:
            if not self.built:
                raise ValueError(
                    f"{type(self).__name__}: pass trainable_variables with the gradients on "
                    "the first call, or build the optimizer first."
                )
            variables = list(self._trainable_variables)
        else:
            variables = list(trainable_variables)
            if not self.built:
                with keras.name_scope(self.name, caller=self):
                    self.build(variables)
        if self.acts_before_inner_step:
            self._cross_replica(self._before_inner_step, variables)
        self.inner_optimizer.apply(grads, trainable_variables)
        self._cross_replica(self._after_inner_step, variables)
        self._iterations.assign_add(1)

    def _cross_replica(self, step: Callable[[Any, list[Any]], None], variables: list[Any]) -> None:
        """Runs `step(distribution, variables)` once, in cross-replica context when a
        strategy needs it (a replica's `merge_call`), as Keras' TensorFlow optimizers update."""
        tf.__internal__.distribute.interim.maybe_merge_call(
            lambda distribution: step(distribution, variables), self._distribution_strategy
        )

    @staticmethod
    def _update_each(distribution: Any, target: Any, update: Callable, *args: Any) -> None:
        """`update(target, *args)` on every replica's copy of `target`, with each replica's
        copies of the variables in `args`."""
        distribution.extended.update(
            _unwrapped(target), update, args=tuple(_unwrapped(a) for a in args), group=False
        )

    def _before_inner_step(self, distribution: Any, variables: list[Any]) -> None:
        pass

    def _after_inner_step(self, distribution: Any, variables: list[Any]) -> None:
        pass

    def _companion(self, companions: list[keras.Variable], variable: Any) -> keras.Variable:
        return companions[self._get_variable_index(variable)]

    @property
    def iterations(self) -> Any:
        return self.inner_optimizer.iterations

    @property
    def learning_rate(self) -> Any:
        return self.inner_optimizer.learning_rate

    @learning_rate.setter
    def learning_rate(self, learning_rate: Any) -> None:
        self.inner_optimizer.learning_rate = learning_rate

    def scale_loss(self, loss: Any) -> Any:
        return self.inner_optimizer.scale_loss(loss)

    def finalize_variable_values(self, var_list: list[Any]) -> None:
        # The inner optimizer's end-of-fit step (its EMA, if it keeps one).
        self.inner_optimizer.finalize_variable_values(var_list)

    def get_config(self) -> dict[str, Any]:
        # Not the base config: learning rate, clipping, EMA... belong to the inner optimizer.
        return {
            "name": self.name,
            "optimizer": keras.saving.serialize_keras_object(self.inner_optimizer),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any], custom_objects: Any = None) -> Any:
        config = dict(config)
        optimizer = keras.saving.deserialize_keras_object(
            config.pop("optimizer"), custom_objects=custom_objects
        )
        return cls(optimizer, **config)


@keras.saving.register_keras_serializable(package="recipes")
class Lookahead(_OptimizerWrapper):
    """Lookahead (Zhang et al. 2019): k fast steps of any optimizer, then one step back.

    The inner optimizer moves the model's weights (the fast weights) as it always does. The
    wrapper keeps a copy, the slow weights, taken before the first step; after every `k` updates
    of the inner optimizer the slow weights move `alpha` of the way toward the fast ones and the
    fast weights are reset to them:

        slow <- slow + alpha * (fast - slow);  fast <- slow

    Between synchronizations the model holds the fast weights; the inner optimizer's own state
    (momentum, Adam's moments) carries on across them, as in the paper. The slow weights and the
    step count are optimizer variables, saved with the model.

    Args:
        optimizer: the inner optimizer: a `keras.optimizers.Optimizer`, or a name or config
            `recipes.optim.get_optimizer` accepts ("Momentum", {"name": "Adam", ...}).
        k: inner updates between synchronizations (an integer >= 1; the paper's default 5).
            With gradient accumulation, updates rather than batches.
        alpha: the slow weights' step toward the fast ones, in (0, 1] (the paper's 0.5; 1 makes
            the wrapper do nothing).
        name: the optimizer's name.
    """

    def __init__(
        self, optimizer: Any, k: int = 5, alpha: float = 0.5, name: str = "lookahead"
    ) -> None:
        super().__init__(optimizer, name)
        owner = type(self).__name__
        self.k = check_integer("k", k, low=1, owner=owner)
        self.alpha = check_number("alpha", alpha, low=0.0, high=1.0, low_open=True, owner=owner)

    acts_before_inner_step: ClassVar[bool] = True

    def _build_companions(self, var_list: list[keras.Variable]) -> None:
        self._slow_weights = self.add_optimizer_variables(var_list, "slow")

    def _batches_per_sync(self) -> int:
        return self.k * (self.inner_optimizer.gradient_accumulation_steps or 1)

    @property
    def slow_weights(self) -> list[keras.Variable]:
        """The slow weights, in the order of the variables the optimizer was built with."""
        return list(self._slow_weights)

    def _before_inner_step(self, distribution: Any, variables: list[Any]) -> None:
        def start_from_the_weights() -> None:
            for variable in variables:
                slow = self._companion(self._slow_weights, variable)
                self._update_each(distribution, slow, lambda s, v: s.assign(v), variable)

        # The slow weights start as the weights the first step starts from, whatever changed
        # them after the optimizer was built (set_weights, a loaded checkpoint).
        ops.cond(ops.equal(self._iterations, 0), start_from_the_weights, lambda: None)

    def _after_inner_step(self, distribution: Any, variables: list[Any]) -> None:
        alpha = self.alpha

        def step_back() -> None:
            for variable in variables:
                slow = self._companion(self._slow_weights, variable)
                self._update_each(
                    distribution,
                    slow,
                    lambda s, v: s.assign(s + ops.cast(alpha, s.dtype) * (v - s)),
                    variable,
                )
                self._update_each(distribution, variable, lambda v, s: v.assign(s), slow)

        synchronize = ops.equal((self._iterations + 1) % self._batches_per_sync(), 0)
        ops.cond(synchronize, step_back, lambda: None)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "k": self.k, "alpha": self.alpha}


@keras.saving.register_keras_serializable(package="recipes")
class StochasticWeightAveraging(_OptimizerWrapper):
    """Stochastic weight averaging (Izmailov et al. 2018) around any optimizer.

    The inner optimizer trains as usual; the wrapper keeps the running mean of the weights at
    steps `start_step`, `start_step + average_period`, `start_step + 2 * average_period`, ...
    (after the inner update of that step), `mean += (weights - mean) / (n + 1)`. The model keeps
    training on its own weights; `assign_averages()` replaces them with the mean, after which
    BatchNormalization statistics must be recomputed with a pass over the training data, as the
    paper does (`recipes.callbacks.swa.SWACallback` does both at the end of `fit`). The paper
    averages once per epoch from a start epoch, with a constant or cyclical learning rate; see
    `swa_steps` for the steps of that. The means and their count are optimizer variables, saved
    with the model.

    Args:
        optimizer: the inner optimizer: a `keras.optimizers.Optimizer`, or a name or config
            `recipes.optim.get_optimizer` accepts.
        start_step: the step (counted from 1, in batches) whose weights are averaged first.
        average_period: steps between two averaged snapshots (>= 1).
        name: the optimizer's name.
    """

    def __init__(
        self,
        optimizer: Any,
        start_step: int = 1,
        average_period: int = 1,
        name: str = "stochastic_weight_averaging",
    ) -> None:
        super().__init__(optimizer, name)
        owner = type(self).__name__
        self.start_step = check_integer("start_step", start_step, low=1, owner=owner)
        self.average_period = check_integer("average_period", average_period, low=1, owner=owner)

    def _build_companions(self, var_list: list[keras.Variable]) -> None:
        self._snapshots = self.add_variable(
            shape=(), dtype="int", initializer="zeros", name="averaged_snapshots"
        )
        self._averages = self.add_optimizer_variables(var_list, "average")

    @property
    def averaged_snapshots(self) -> int:
        """How many snapshots of the weights the averages hold (0 before `start_step`)."""
        return int(self._snapshots.numpy()) if self.built else 0

    @property
    def averages(self) -> list[keras.Variable]:
        """The averaged weights, in the order of the variables the optimizer was built with."""
        return list(self._averages)

    def _after_inner_step(self, distribution: Any, variables: list[Any]) -> None:
        step = self._iterations + 1
        due = ops.logical_and(
            ops.greater_equal(step, self.start_step),
            ops.equal((step - self.start_step) % self.average_period, 0),
        )

        def take_snapshot() -> None:
            count = ops.convert_to_tensor(self._snapshots)

            def add(mean: Any, weights: Any) -> Any:
                n = ops.cast(count, mean.dtype)
                return mean.assign(mean + (weights - mean) / (n + 1))

            for variable in variables:
                average = self._companion(self._averages, variable)
                self._update_each(distribution, average, add, variable)
            self._snapshots.assign(count + 1)

        ops.cond(due, take_snapshot, lambda: None)

    def assign_averages(self, variables: list[Any] | None = None) -> int:
        """Puts the averaged weights into the model; returns how many snapshots they average.

        Args:
            variables: the model's variables to overwrite, each one the optimizer was built with
                (default: all of them).

        Raises:
            ValueError: the optimizer holds no average yet (not built, or before `start_step`).
        """
        snapshots = self.averaged_snapshots
        if not snapshots:
            raise ValueError(
                f"{type(self).__name__}: no weights averaged yet (averaging starts at step "
                f"{self.start_step}; the optimizer took {int(self._iterations.numpy())})"
            )
        for variable in self._trainable_variables if variables is None else variables:
            variable.assign(self._companion(self._averages, variable))
        return snapshots

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "start_step": self.start_step,
            "average_period": self.average_period,
        }


def swa_steps(
    start_epoch: int,
    steps_per_epoch: int,
    every_steps: int | None = None,
    first_epoch: int = 0,
) -> tuple[int, int]:
    """`(start_step, average_period)` of `StochasticWeightAveraging` for a schedule in epochs.

    Args:
        start_epoch: the first epoch (counted from 1) whose weights are averaged.
        steps_per_epoch: batches per epoch.
        every_steps: average every this many steps from the start of `start_epoch`; None
            averages the weights at the end of every epoch, as the paper does.
        first_epoch: epochs done before the optimizer's first step (a later training phase
            with a new optimizer), which its steps do not count.

    Raises:
        ValueError: `start_epoch` is not after `first_epoch`.
    """
    check_integer("steps_per_epoch", steps_per_epoch, low=1)
    check_integer("first_epoch", first_epoch, low=0)
    check_integer("start_epoch", start_epoch, low=first_epoch + 1)
    check_integer("every_steps", every_steps, low=1, optional=True)
    epochs_before = start_epoch - 1 - first_epoch
    if every_steps is None:
        return (epochs_before + 1) * steps_per_epoch, steps_per_epoch
    return epochs_before * steps_per_epoch + every_steps, every_steps
