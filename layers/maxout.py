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
      `C = units * num_pieces` filters) are reduced to `C / num_pieces`.

    Channel `c` of the input is piece `c // units_out` of unit
    `c % units_out` (`units_out = C / num_pieces`): the pieces of one unit are
    `num_pieces` strided blocks, so the max is an element-wise maximum of
    `num_pieces` contiguous slices rather than a reduction over a tiny
    innermost axis. (TensorFlow Addons grouped adjacent channels instead; for
    a learned layer the two are equivalent up to a permutation of the kernel.)

    Args:
        num_pieces: number of linear pieces per unit (>= 1).
        units: output units of the dense form; None for the channel-wise form.
        axis: channel axis of the channel-wise form (the dense form always uses
            the last axis). Default -1.
        use_bias, kernel_initializer, bias_initializer, kernel_regularizer,
        bias_regularizer, kernel_constraint, bias_constraint: as in
            `keras.layers.Dense`; only used by the dense form.
        **kwargs: base `keras.layers.Layer` arguments.
    """

    def __init__(
        self,
        num_pieces: int,
        units: int | None = None,
        axis: int = -1,
        use_bias: bool = True,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        kernel_regularizer=None,
        bias_regularizer=None,
        kernel_constraint=None,
        bias_constraint=None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.num_pieces = validation.check_integer("num_pieces", num_pieces, low=1)
        self.units = validation.check_integer("units", units, low=1, optional=True)
        if isinstance(axis, bool) or not isinstance(axis, int):
            raise ValueError(f"`axis` must be an integer. Received: axis={axis!r}")
        if self.units is not None and axis != -1:
            raise ValueError(
                f"Maxout: the dense form (units={units}) acts on the last axis; "
                f"axis must be -1. Received: axis={axis!r}"
            )
        self.axis = axis
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
        size = validation.axis_size(type(self).__name__, input_shape, self.axis)
        if self.units is None:
            if size % self.num_pieces:
                raise ValueError(
                    f"Maxout: the size of axis {self.axis} ({size}) must be divisible by "
                    f"num_pieces={self.num_pieces}. Input shape: {tuple(input_shape)}."
                )
            return
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
        return _max_over_pieces(pieces, self.num_pieces, self.axis % len(pieces.shape))

    def compute_output_shape(self, input_shape):
        output_shape = list(input_shape)
        if self.units is not None:
            output_shape[-1] = self.units
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
            }
        )
        return config
