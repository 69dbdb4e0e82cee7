"""Base class for optimizers whose update is an element-wise rule over a variable and its slots.

tf.train's optimizers are all of this shape: each keeps per-element "slots" (accumulators,
momenta) beside every variable and moves the variable by a formula evaluated element by element.
Writing that formula once, as a pure function, lets one piece of code apply it to a dense gradient
and to a sparse one (`tf.IndexedSlices`, e.g. from an `Embedding`) the way tf.train's sparse kernels
do: duplicate indices summed first, then only the touched rows -- and their slots -- updated.
Keras' own optimizers differ there (they square a sparse gradient before summing its duplicates and
let untouched rows' momenta and averages decay), which is why exact tf.train behaviour needs this.
"""

from __future__ import annotations

from typing import Any, ClassVar

import keras
import tensorflow as tf
from keras import ops


class ElementwiseOptimizer(keras.optimizers.Optimizer):
    """A Keras optimizer defined by slot initial values and an element-wise update rule.

    Subclasses implement:

    - `_slot_initial_values()`: `{slot_name: initial value}`, one slot of the variable's shape each.
    - `_update_rule(variable, gradient, slots, learning_rate)`: returns `(new_variable, new_slots)`
      from tensors (the whole variable for a dense gradient, the touched rows for a sparse one);
      `new_slots` maps slot names to their new values. It must not assign anything itself.

    Subclasses whose tf.train counterpart updates every row even for a sparse gradient (Adam) set
    `sparse_updates_touched_rows_only = False`; the gradient is then densified (duplicates summed).
    Those whose tf.train sparse kernel orders its arithmetic differently from the dense one
    (RMSProp) override `_sparse_update_rule`, which defaults to `_update_rule`.

    Args:
        learning_rate: A float, a `keras.optimizers.schedules.LearningRateSchedule`, or a callable.
        **kwargs: Keyword arguments of `keras.optimizers.Optimizer` (`clipnorm`, `clipvalue`,
            `global_clipnorm`, `gradient_accumulation_steps`, `name`, ...).
    """

    sparse_updates_touched_rows_only: ClassVar[bool] = True

    def _slot_initial_values(self) -> dict[str, float]:
        raise NotImplementedError(f"{type(self).__name__} must define _slot_initial_values().")

    def _update_rule(
        self,
        variable: tf.Tensor,
        gradient: tf.Tensor,
        slots: dict[str, tf.Tensor],
        learning_rate: tf.Tensor,
    ) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        raise NotImplementedError(f"{type(self).__name__} must define _update_rule().")

    def _sparse_update_rule(
        self,
        variable: tf.Tensor,
        gradient: tf.Tensor,
        slots: dict[str, tf.Tensor],
        learning_rate: tf.Tensor,
    ) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        """The rule applied to the rows touched by a sparse gradient (duplicates already summed)."""
        return self._update_rule(variable, gradient, slots, learning_rate)

    def build(self, var_list: list[keras.Variable]) -> None:
        if self.built:
            return
        super().build(var_list)
        initial_values = self._slot_initial_values()
        per_slot = self.add_optimizer_variables(
            var_list,
            list(initial_values),
            initializer=[keras.initializers.Constant(v) for v in initial_values.values()],
        )
        self._slots = dict(zip(initial_values, per_slot, strict=True))

    def update_step(
        self, gradient: tf.Tensor | tf.IndexedSlices, variable: Any, learning_rate: Any
    ) -> None:
        index = self._get_variable_index(variable)
        slots = {name: variables[index] for name, variables in self._slots.items()}
        learning_rate = ops.cast(learning_rate, variable.dtype)
        if isinstance(gradient, tf.IndexedSlices):
            if self.sparse_updates_touched_rows_only:
                self._update_touched_rows(gradient, variable, slots, learning_rate)
                return
            gradient = tf.convert_to_tensor(gradient)
        new_variable, new_slots = self._update_rule(
            ops.convert_to_tensor(variable),
            ops.cast(gradient, variable.dtype),
            {name: ops.convert_to_tensor(slot) for name, slot in slots.items()},
            learning_rate,
        )
        for name, value in new_slots.items():
            self.assign(slots[name], value)
        self.assign(variable, new_variable)

    def _update_touched_rows(
        self,
        gradient: tf.IndexedSlices,
        variable: Any,
        slots: dict[str, Any],
        learning_rate: tf.Tensor,
    ) -> None:
        rows, positions = tf.unique(gradient.indices)
        row_gradients = tf.math.unsorted_segment_sum(gradient.values, positions, tf.shape(rows)[0])
        new_rows, new_slot_rows = self._sparse_update_rule(
            tf.gather(_as_tf_variable(variable), rows),
            ops.cast(row_gradients, variable.dtype),
            {name: tf.gather(_as_tf_variable(slot), rows) for name, slot in slots.items()},
            learning_rate,
        )
        for name, value in new_slot_rows.items():
            self.assign(slots[name], tf.IndexedSlices(value, rows))
        self.assign(variable, tf.IndexedSlices(new_rows, rows))

    def _constant(self, value: float, like: tf.Tensor) -> tf.Tensor:
        """`value` in `like`'s dtype, so arithmetic on it rounds as tf.train's kernels do."""
        return ops.cast(value, like.dtype)


def _as_tf_variable(variable: Any) -> tf.Variable:
    # A keras.Variable wraps a tf.Variable; gathering from the latter reads only the needed rows.
    return variable.value if isinstance(variable, keras.Variable) else variable
