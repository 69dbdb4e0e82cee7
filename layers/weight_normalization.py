"""Weight normalization (Salimans & Kingma, 2016) as a wrapper around Dense, Conv and RNN layers."""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops

from layers import validation
from layers.precision import upcast

_CONVOLUTIONS = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)
_TRANSPOSED = (
    keras.layers.Conv1DTranspose,
    keras.layers.Conv2DTranspose,
    keras.layers.Conv3DTranspose,
)
_SUPPORTED = (keras.layers.Dense, *_CONVOLUTIONS, *_TRANSPOSED)
# Recurrent layers are supported through their cell's recurrent kernel, as TensorFlow Addons did.
_RECURRENT_CELLS = (keras.layers.SimpleRNNCell, keras.layers.LSTMCell, keras.layers.GRUCell)
# Keeps the data-dependent scale finite for a unit whose first-batch output is constant.
_INIT_EPSILON = 1e-6


def _along(vector, rank: int, axis: int):
    """Reshapes a vector so it broadcasts along `axis` of a tensor of `rank` axes."""
    shape = [1] * rank
    shape[axis] = -1
    return ops.reshape(vector, shape)


def _unit_scale(kernel, gains, unit_axis: int):
    """`gains / ||kernel||` per output unit, with a hand-written gradient.

    Autodiff through `sqrt(sum(square(v)))` materializes several kernel-sized
    temporaries (the broadcast sum gradient, `2 * v`, their product); the
    closed form `d scale_u / d v_u = -scale_u / ||v_u||^2 * v_u` needs one
    kernel-sized multiply, which keeps the wrapper close to the plain layer's
    speed in training.
    """
    rank = len(kernel.shape)
    norm_axes = tuple(a for a in range(rank) if a != unit_axis % rank)

    @ops.custom_gradient
    def scale_and_gradient(kernel, gains):
        inverse_norm = ops.rsqrt(ops.sum(ops.square(kernel), axis=norm_axes))
        scale = gains * inverse_norm

        def gradient(*args, upstream=None):
            upstream = args[0] if upstream is None else upstream
            per_unit = -upstream * scale * ops.square(inverse_norm)
            return kernel * _along(per_unit, rank, unit_axis), upstream * inverse_norm

        return scale, gradient

    return scale_and_gradient(kernel, gains)


def _is_recurrent(layer) -> bool:
    return isinstance(layer, keras.layers.RNN) and isinstance(layer.cell, _RECURRENT_CELLS)


@keras.saving.register_keras_serializable(package="layers")
class WeightNormalization(keras.layers.Wrapper):
    """Reparameterizes a layer's kernel as `w = g * v / ||v||` per output unit.

    The direction `v` and the length `g` are learned separately, which
    decouples the norm of each unit's weight vector from its direction and
    speeds up optimization. `v` is the wrapped layer's own kernel variable
    (so its initializer, regularizer and constraint apply to `v`); `g` is a
    new vector with one entry per output unit, initialized to `||v||` so the
    wrapped layer starts out computing exactly what it would unwrapped. The
    wrapper computes `w` and applies the layer's linear map, bias and
    activation itself; the kernel is never trained as a free parameter.

    With `data_init=True` (the paper's data-dependent initialization), the
    first *training* call sets, for each output unit with pre-activation
    `t = x . v / ||v||` over that batch, `g = 1 / std(t)` and
    `bias = -mean(t) / std(t)`, so the initial pre-activations have zero mean
    and unit variance per unit. Under a distribution strategy the statistics
    are all-reduced, so they are those of the whole global batch. A
    non-trainable `initialized` flag records this, so it runs once and is not
    repeated after saving and loading.
    Inference calls before training use the plain initialization.

    Supported layers: `Dense`, `Conv1D`, `Conv2D`, `Conv3D` and their
    `Conv*Transpose` counterparts (for which the output unit is the
    second-to-last kernel axis), and the recurrent layers `SimpleRNN`, `LSTM`
    and `GRU` (or `keras.layers.RNN` around one of their cells). For a
    recurrent layer the normalized weight is the cell's *recurrent* kernel
    (one `g` per column of the fused gate kernel, `4 * units` for an LSTM), as
    in TensorFlow Addons; the input kernel and the bias stay plain weights and
    the layer runs its own loop (cuDNN included) with `w` in place of the
    recurrent kernel. The data-dependent initialization is not used for
    recurrent layers: the paper leaves recurrent models to standard
    initialization, and TensorFlow Addons warned against it and only scaled
    `g` by an ad hoc statistic of the layer's final output, so `data_init=True`
    is refused for them.

    `remove()` returns a plain copy of the wrapped layer with `w` as its
    kernel, for inference and export.

    Mixed precision: the wrapper takes the wrapped layer's dtype policy
    unless given its own `dtype`. Under `"mixed_float16"` or
    `"mixed_bfloat16"` the norm `||v||` and the kernel `g * v / ||v||` are
    computed in float32 and cast once to the compute dtype for the layer's
    linear map: `||v||` grows during training (the gradient is orthogonal to
    `v`), and its square overflows float16 once `||v||` passes 256. The
    data-dependent statistics are float32 too.

    Args:
        layer: an instance of one of the supported layers.
        data_init: whether to run the data-dependent initialization on the
            first training batch. Default None: True (TensorFlow Addons'
            default) for Dense and convolution layers, False for recurrent
            layers.
        **kwargs: base `keras.layers.Layer` arguments.
    """

    def __init__(self, layer: keras.layers.Layer, data_init: bool | None = None, **kwargs) -> None:
        recurrent = _is_recurrent(layer)
        if not (recurrent or isinstance(layer, _SUPPORTED)):
            names = ", ".join(cls.__name__ for cls in _SUPPORTED)
            raise ValueError(
                f"WeightNormalization wraps one of {names}, or a SimpleRNN, LSTM or GRU "
                f"layer. Received: layer={layer!r} of type {type(layer).__name__}"
            )
        if data_init is not None:
            validation.check_bool("data_init", data_init, owner="WeightNormalization")
        if recurrent and data_init:
            raise ValueError(
                "WeightNormalization: the data-dependent initialization is not used for "
                f"recurrent layers ({type(layer).__name__}); the paper leaves recurrent models "
                "to standard initialization. Use data_init=False (the default for recurrent "
                "layers). "
                f"Received: data_init={data_init!r}"
            )
        # The wrapper computes the layer's linear map itself, so it computes in the layer's dtype.
        kwargs.setdefault("dtype", layer.dtype_policy)
        super().__init__(layer, **kwargs)
        self.data_init = not recurrent if data_init is None else data_init
        self._recurrent = recurrent
        self._unit_axis = -2 if isinstance(layer, _TRANSPOSED) else -1
        self.supports_masking = layer.supports_masking

    def _kernel_variable(self):
        """`v`: the variable that is normalized (the recurrent kernel for an RNN layer)."""
        if self._recurrent:
            return self.layer.cell.recurrent_kernel
        return self.layer.kernel

    def build(self, input_shape=None) -> None:
        super().build(input_shape)
        self._built_input_shape = input_shape
        kernel = self._kernel_variable()
        rank = len(kernel.shape)
        self._norm_axes = tuple(a for a in range(rank) if a != self._unit_axis % rank)
        units = kernel.shape[self._unit_axis]
        self.g = self.add_weight(name="g", shape=(units,), initializer="ones")
        self.g.assign(ops.sqrt(ops.sum(ops.square(kernel), axis=self._norm_axes)))
        self.initialized = None
        if self.data_init:
            self.initialized = self.add_weight(
                name="initialized", shape=(), dtype="bool", initializer="zeros", trainable=False
            )

    def _channel_axis(self, rank: int) -> int:
        if isinstance(self.layer, keras.layers.Dense):
            return rank - 1
        return 1 if self.layer.data_format == "channels_first" else rank - 1

    def _normalized_linear(self, inputs, gains):
        """The layer's linear map with kernel `gains * v / ||v||` (per output unit).

        Each output unit depends only on its own kernel slice, so the per-unit
        factor can be applied to the kernel or to the outputs with the same
        result. A Dense kernel is usually larger than a batch of its outputs,
        so Dense scales the outputs; a conv kernel is much smaller than its
        output maps, so convolutions scale the kernel. Under mixed precision
        the kernel is normalized in float32 and cast once, Dense's too, so
        that neither `||v||^2` nor `x . v` can overflow float16 before the
        scaling.
        """
        # Read the variables into tensors: TF's custom_gradient must not see variables.
        kernel = upcast(ops.copy(self.layer.kernel))
        scale = _unit_scale(kernel, upcast(ops.copy(gains)), self._unit_axis)
        if isinstance(self.layer, keras.layers.Dense) and kernel.dtype == inputs.dtype:
            return self._linear(inputs, kernel) * scale
        normalized = kernel * _along(scale, len(kernel.shape), self._unit_axis)
        return self._linear(inputs, ops.cast(normalized, inputs.dtype))

    def _linear(self, inputs, kernel):
        layer = self.layer
        if isinstance(layer, keras.layers.Dense):
            return ops.matmul(inputs, kernel)
        if isinstance(layer, _TRANSPOSED):
            return ops.conv_transpose(
                inputs,
                kernel,
                strides=list(layer.strides),
                padding=layer.padding,
                output_padding=layer.output_padding,
                dilation_rate=layer.dilation_rate,
                data_format=layer.data_format,
            )
        return layer.convolution_op(inputs, kernel)

    def _first_batch_sums(self, inputs):
        """Per-unit count, sum and sum of squares of the unit-gain pre-activations."""
        pre_activations = ops.cast(
            self._normalized_linear(inputs, ops.ones_like(self.g)), "float32"
        )
        rank = len(pre_activations.shape)
        channel_axis = self._channel_axis(rank)
        axes = [a for a in range(rank) if a != channel_axis]
        count = ops.cast(
            ops.size(pre_activations) // pre_activations.shape[channel_axis], "float32"
        )
        return ops.stack(
            [
                ops.full_like(self.g, count, dtype="float32"),
                ops.sum(pre_activations, axis=axes),
                ops.sum(ops.square(pre_activations), axis=axes),
            ]
        )

    def _initialize_from_sums(self, sums):
        count, total, total_of_squares = ops.unstack(sums)
        count = ops.maximum(count, 1.0)
        mean = total / count
        variance = ops.maximum(total_of_squares / count - ops.square(mean), 0.0)
        inverse_std = ops.rsqrt(variance + _INIT_EPSILON)
        self.g.assign(ops.cast(inverse_std, self.g.dtype))
        if self.layer.use_bias:
            self.layer.bias.assign(ops.cast(-mean * inverse_std, self.layer.bias.dtype))
        self.initialized.assign(True)
        return ops.zeros((), "float32")

    def _initialize_from_data(self, inputs):
        """Data-dependent init from the whole (global) first batch.

        Under a distribution strategy each replica sees a slice of the batch, so the sums are
        all-reduced across replicas. The all-reduce is a synchronization point and must not sit
        inside a conditional, so it runs on every training step (on zeros once initialized); the
        expensive pre-activations are computed only while uninitialized.
        """
        not_initialized = ops.logical_not(self.initialized)
        sums = ops.cond(
            not_initialized,
            lambda: self._first_batch_sums(inputs),
            lambda: ops.zeros((3, self.g.shape[0]), "float32"),
        )
        replica_context = tf.distribute.get_replica_context()
        if replica_context is not None and replica_context.num_replicas_in_sync > 1:
            sums = replica_context.all_reduce(tf.distribute.ReduceOp.SUM, sums)
        ops.cond(
            not_initialized,
            lambda: self._initialize_from_sums(sums),
            lambda: ops.zeros((), "float32"),
        )

    def _recurrent_call(self, inputs, training, mask):
        """Runs the RNN layer with `g * v / ||v||` in place of its cell's recurrent kernel.

        The cell reads `recurrent_kernel` while the layer traces its loop, so the
        attribute holds the normalized tensor for the duration of this call only
        (set without Keras' attribute tracking, so the variable stays the
        tracked, saved weight) and is restored afterwards, also on errors.
        """
        cell = self.layer.cell
        variable = cell.recurrent_kernel
        kernel = upcast(ops.copy(variable))
        scale = _unit_scale(kernel, upcast(ops.copy(self.g)), self._unit_axis)
        normalized = ops.cast(kernel * scale, cell.compute_dtype)
        object.__setattr__(cell, "recurrent_kernel", normalized)
        try:
            return self.layer(inputs, training=training, mask=mask)
        finally:
            object.__setattr__(cell, "recurrent_kernel", variable)

    def call(self, inputs, training=None, mask=None):
        if self._recurrent:
            return self._recurrent_call(inputs, training, mask)
        if self.initialized is not None and training:
            self._initialize_from_data(inputs)
        outputs = self._normalized_linear(inputs, self.g)
        if self.layer.use_bias:
            rank = len(outputs.shape)
            outputs = outputs + _along(self.layer.bias, rank, self._channel_axis(rank))
        if self.layer.activation is not None:
            outputs = self.layer.activation(outputs)
        return outputs

    def compute_mask(self, inputs, mask=None):
        return self.layer.compute_mask(inputs, mask)

    def effective_kernel(self):
        """The kernel the wrapped layer computes with, `g * v / ||v||`, as a tensor."""
        if not self.built:
            raise ValueError(
                "WeightNormalization: build or call the wrapper before reading its kernel."
            )
        kernel = ops.convert_to_tensor(self._kernel_variable())
        norm = ops.sqrt(ops.sum(ops.square(kernel), axis=self._norm_axes))
        return kernel * _along(self.g / norm, len(kernel.shape), self._unit_axis)

    def remove(self) -> keras.layers.Layer:
        """A plain layer that computes what the wrapper computes, without the wrapper.

        Returns a new layer of the wrapped layer's class and configuration,
        built, whose kernel (the recurrent kernel for an RNN layer) is
        `g * v / ||v||` and whose other weights (bias, input kernel) are copies
        of the wrapped layer's. Use it for inference and export, where the
        reparameterization only costs time. The wrapper and its variables are
        left unchanged (unlike TensorFlow Addons' `remove()`, which swapped the
        kernel of the wrapped layer itself).
        """
        kernel = self.effective_kernel()
        variable = self._kernel_variable()
        plain = type(self.layer).from_config(self.layer.get_config())
        plain.build(self._built_input_shape)
        matches = [source is variable for source in self.layer.weights]
        if len(plain.weights) != len(matches) or sum(matches) != 1:
            raise RuntimeError(
                f"WeightNormalization.remove(): cannot match the weights of the "
                f"{type(self.layer).__name__} copy to the wrapped layer's (kernel variable "
                f"found {sum(matches)} times among {len(matches)} weights)."
            )
        for source, target, is_kernel in zip(
            self.layer.weights, plain.weights, matches, strict=True
        ):
            target.assign(kernel if is_kernel else source)
        return plain

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"data_init": self.data_init})
        return config
