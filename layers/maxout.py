"""Maxout units (Goodfellow et al., 2013)."""

from __future__ import annotations

import functools

import keras
from keras import ops

from layers import validation


def _max_over_pieces(values, num_pieces: int, axis: int):
    """The maximum over `num_pieces` contiguous blocks of `axis`, with a hand-written gradient.

    The forward pass is an element-wise maximum of the blocks. Autodiff of
    that chain routes the gradient back through every `maximum` (a comparison,
    a zero tensor and two selects each) and concatenates the blocks' gradients;
    the closed form needs one comparison of the input, viewed as
    `(..., num_pieces, units, ...)`, with the output, and one multiply. Ties
    share the gradient equally, as TensorFlow's `reduce_max` gradient does.
    `axis` must be non-negative.
    """

    @ops.custom_gradient
    def maximum(values):
        outputs = functools.reduce(ops.maximum, ops.split(values, num_pieces, axis=axis))

        def gradient(*args, upstream=None):
            upstream = args[0] if upstream is None else upstream
            shape = ops.shape(values)
            grouped_shape = (
                *shape[:axis],
                num_pieces,
                shape[axis] // num_pieces,
                *shape[axis + 1 :],
            )
            grouped = ops.reshape(values, grouped_shape)
            hits = ops.cast(ops.equal(grouped, ops.expand_dims(outputs, axis)), upstream.dtype)
            share = upstream / ops.sum(hits, axis=axis)
            return ops.reshape(hits * ops.expand_dims(share, axis), shape)

        return outputs, gradient

    return maximum(values)


def _max_by_reshape(values, axis: int, outer: int, inner: int, over_inner: bool):
    """Views `axis` as `(outer, inner)` (one of them may be -1) and takes the max over one.

    Works when the size of `axis` is only known at run time. Autodiff of the
    reduction shares the gradient equally between tied pieces, like the
    hand-written gradient of `_max_over_pieces`.
    """
    shape = ops.shape(values)
    grouped = ops.reshape(values, (*shape[:axis], outer, inner, *shape[axis + 1 :]))
    return ops.max(grouped, axis=axis + 1 if over_inner else axis)


@keras.saving.register_keras_serializable(package="layers")
class Maxout(keras.layers.Layer):
    """The maximum over `num_pieces` linear pieces.

    Two forms, chosen by `units`:

    - Dense form (`units` given): `h_i(x) = max_j (x W_ij + b_ij)` for
      `i < units`, `j < num_pieces`. The layer owns a kernel of shape
      `(input_dim, units * num_pieces)` and acts on the last axis, like
      `keras.layers.Dense(units * num_pieces)` followed by the channel-wise max.
    - Channel-wise form (`units=None`): no weights; the `C` channels along
      `axis` of an existing feature map (e.g. a convolution with
      `C = units * num_pieces` filters) are reduced to `C / num_pieces`. Give
      either `num_pieces` (pieces per output unit) or, as TensorFlow Addons'
      `Maxout(num_units, axis)` took it, `num_units` (output units along
      `axis`; the pieces are `C / num_units`). With `num_units` the size of
      `axis` may be unknown until the layer is called, as in TFA.

    Which channels form a unit (`U = C / num_pieces` output units, `k =
    num_pieces` pieces each):

    - `grouping="strided"` (default): unit `i` is the maximum of channels
      `i, i + U, ..., i + (k - 1) U` (piece `j` is the contiguous block of
      channels `j U ... (j + 1) U - 1`). This is exactly TensorFlow Addons'
      `tfa.layers.Maxout` (it viewed the channels as `(k, U)` and reduced over
      `k`), and lets the max be an element-wise maximum of `k` contiguous
      slices rather than a reduction over a tiny innermost axis.
    - `grouping="adjacent"`: unit `i` is the maximum of the adjacent channels
      `i k, ..., i k + k - 1` (channels viewed as `(U, k)`, reduced over `k`),
      as TensorFlow 1's `tf.contrib.layers.maxout` and most PyTorch
      implementations (`view(..., U, k).max(-1)`) group them. Use it to run
      weights trained with that layout.

    For a learned layer the two groupings are equivalent up to a permutation
    of the kernel's output columns.

    Args:
        num_pieces: number of linear pieces per unit (>= 1). Required unless
            `num_units` is given.
        units: output units of the dense form; None for the channel-wise form.
        axis: channel axis of the channel-wise form (the dense form always uses
            the last axis). Default -1.
        use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
        bias_regularizer, kernel_constraint, bias_constraint: as in
            `keras.layers.Dense`; only used by the dense form.
        num_units: TensorFlow Addons' argument for the channel-wise form: the
            number of output units along `axis`, which must divide its size.
            Exclusive with `num_pieces` and `units`. Pass it by keyword:
            TFA's first positional argument was `num_units`, this layer's is
            `num_pieces`.
        grouping: `"strided"` (default, TensorFlow Addons') or `"adjacent"`
            (`tf.contrib.layers.maxout`'s), see above.
        **kwargs: base `keras.layers.Layer` arguments.
    """

    def __init__(
        self,
        num_pieces: int | None = None,
        units: int | None = None,
        axis: int = -1,
        use_bias: bool = True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        num_units: int | None = None,
        grouping: str = "strided",
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.num_pieces = validation.check_integer("num_pieces", num_pieces, low=1, optional=True)
        self.units = validation.check_integer("units", units, low=1, optional=True)
        self.num_units = validation.check_integer("num_units", num_units, low=1, optional=True)
        if (self.num_pieces is None) == (self.num_units is None):
            raise ValueError(
                "Maxout takes either `num_pieces` (linear pieces per unit) or `num_units` "
                "(TensorFlow Addons' argument: output units along `axis`), not both and not "
                f"neither. Received: num_pieces={num_pieces!r}, num_units={num_units!r}"
            )
        if self.num_units is not None and self.units is not None:
            raise ValueError(
                "Maxout: `num_units` sets the output size of the channel-wise form; the dense "
                f"form takes `units` and `num_pieces`. Received: units={units!r}, "
                f"num_units={num_units!r}"
            )
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise ValueError(f"`axis` must be an integer. Received: axis={axis!r}")
        if self.units is not None and axis != -1:
            raise ValueError(
                f"Maxout: the dense form (units={units}) acts on the last axis; "
                f"axis must be -1. Received: axis={axis!r}"
            )
        self.axis = axis
        self.grouping = validation.check_choice("grouping", grouping, ("strided", "adjacent"))
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)
        self.bias_constraint = keras.constraints.get(bias_constraint)
        self.kernel = None
        self.bias = None

    def build(self, input_shape) -> None:
        owner = type(self).__name__
        if self.units is None:
            if not -len(input_shape) <= self.axis < len(input_shape):
                validation.axis_size(owner, input_shape, self.axis)  # raises: out of range
            size = input_shape[self.axis]
            if self.num_pieces is not None:
                size = validation.axis_size(owner, input_shape, self.axis)
                if size % self.num_pieces:
                    raise ValueError(
                        f"Maxout: the size of axis {self.axis} ({size}) must be divisible by "
                        f"num_pieces={self.num_pieces}. Input shape: {tuple(input_shape)}."
                    )
            elif size is not None and size % self.num_units:
                raise ValueError(
                    f"Maxout: the size of axis {self.axis} ({size}) must be divisible by "
                    f"num_units={self.num_units}. Input shape: {tuple(input_shape)}."
                )
            return
        size = validation.axis_size(owner, input_shape, self.axis)
        width = self.units * self.num_pieces
        self.kernel = self.add_weight(
            shape=(size, width),
            name="kernel",
            initializer=self.kernel_initializer,
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        if self.use_bias:
            self.bias = self.add_weight(
                shape=(width,),
                name="bias",
                initializer=self.bias_initializer,
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
            )

    def call(self, inputs):
        pieces = inputs
        if self.kernel is not None:
            pieces = ops.matmul(inputs, self.kernel)
            if self.bias is not None:
                pieces = pieces + self.bias
        axis = self.axis % len(pieces.shape)
        size = pieces.shape[axis]
        # Exactly one of num_pieces / num_units is known; -1 lets reshape infer the other.
        per_unit = self.num_pieces or -1
        units = self.num_units or -1
        if self.grouping == "adjacent":
            return _max_by_reshape(pieces, axis, units, per_unit, over_inner=True)
        if size is None:
            return _max_by_reshape(pieces, axis, per_unit, units, over_inner=False)
        return _max_over_pieces(pieces, self.num_pieces or size // self.num_units, axis)

    def compute_output_shape(self, input_shape):
        output_shape = list(input_shape)
        if self.units is not None:
            output_shape[-1] = self.units
        elif self.num_units is not None:
            output_shape[self.axis] = self.num_units
        elif output_shape[self.axis] is not None:
            output_shape[self.axis] //= self.num_pieces
        return tuple(output_shape)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "num_pieces": self.num_pieces,
                "units": self.units,
                "axis": self.axis,
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "bias_initializer": keras.initializers.serialize(self.bias_initializer),
                "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer),
                "bias_regularizer": keras.regularizers.serialize(self.bias_regularizer),
                "kernel_constraint": keras.constraints.serialize(self.kernel_constraint),
                "bias_constraint": keras.constraints.serialize(self.bias_constraint),
                "num_units": self.num_units,
                "grouping": self.grouping,
            }
        )
        return config
