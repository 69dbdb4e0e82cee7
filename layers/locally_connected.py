"""Locally connected layers: convolutions whose weights are not shared across positions."""

from __future__ import annotations

import itertools
import math

import keras
from keras import ops

from layers import validation

PADDINGS = ("valid", "same")


def _output_length(length: int, kernel: int, stride: int, padding: str) -> int:
    if padding == "same":
        return -(-length // stride)
    return (length - kernel) // stride + 1


def _per_position_initializer(initializer, conv_kernel_shape: tuple[int, ...]):
    """Initializes a (positions, K, filters) kernel one conv-shaped kernel per position.

    Calling `initializer` on the whole 3-D shape would count every position in
    the fans (shrinking Glorot/He variances by the number of positions), and
    calling the same Keras initializer repeatedly returns the same values. So
    each position gets a fresh copy of the initializer, with seed `seed + p`
    when it was seeded, drawn at the conv kernel shape.
    """
    config = initializer.get_config()

    def initialize(shape, dtype=None):
        kernels = []
        for position in range(shape[0]):
            position_config = dict(config)
            if isinstance(config.get("seed"), int):
                position_config["seed"] = config["seed"] + position
            fresh = type(initializer).from_config(position_config)
            kernels.append(ops.reshape(fresh(conv_kernel_shape, dtype), shape[1:]))
        return ops.stack(kernels)

    return initialize


class _LocallyConnected(keras.layers.Layer):
    """Shared implementation of the 1D and 2D layers (`rank` spatial axes).

    Every output position has its own kernel of shape `kernel_size + (C_in,
    filters)` and its own bias. Useful when different image regions have
    different statistics (e.g. aligned faces), where sharing weights as a
    convolution does would be wrong.

    The layer gathers the receptive field of every output position with
    `prod(kernel_size)` strided slices (no per-position loop) into a tensor of
    shape (positions, batch, K) with `K = prod(kernel_size) * C_in`, and
    applies all position kernels at once as one batched matrix product with
    the kernel of shape (positions, K, filters). `K` is ordered like a
    convolution kernel `(k_1, ..., k_rank, C_in)`, so
    `kernel[p].reshape(kernel_size + (C_in, filters))` is the ordinary conv
    kernel used at position `p`.

    Each position's kernel is initialized independently as a convolution
    kernel of shape `kernel_size + (C_in, filters)` would be, so fan-based
    initializers (Glorot, He, sparse) see the fans of one position. A seeded
    initializer stays reproducible (position `p` uses seed `seed + p`).
    """

    rank: int = 0

    def __init__(
        self,
        filters: int,
        kernel_size,
        strides=1,
        padding: str = "valid",
        data_format: str | None = None,
        activation=None,
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
        self.filters = validation.check_integer("filters", filters, low=1)
        self.kernel_size = validation.check_int_tuple("kernel_size", kernel_size, self.rank)
        self.strides = validation.check_int_tuple("strides", strides, self.rank)
        self.padding = validation.check_choice("padding", padding, PADDINGS)
        self.data_format = validation.check_data_format(data_format)
        self.activation = keras.activations.get(activation)
        self.use_bias = bool(use_bias)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
        self.bias_regularizer = keras.regularizers.get(bias_regularizer)
        self.kernel_constraint = keras.constraints.get(kernel_constraint)
        self.bias_constraint = keras.constraints.get(bias_constraint)
        self.input_spec = keras.layers.InputSpec(ndim=self.rank + 2)
        self.kernel = None
        self.bias = None

    def _spatial_and_channels(self, input_shape) -> tuple[tuple, int | None]:
        if self.data_format == "channels_last":
            return tuple(input_shape[1:-1]), input_shape[-1]
        return tuple(input_shape[2:]), input_shape[1]

    def _output_spatial(self, spatial) -> tuple[int | None, ...]:
        return tuple(
            None if length is None else _output_length(length, k, s, self.padding)
            for length, k, s in zip(spatial, self.kernel_size, self.strides, strict=True)
        )

    def build(self, input_shape) -> None:
        name = type(self).__name__
        spatial, channels = self._spatial_and_channels(input_shape)
        if channels is None or any(length is None for length in spatial):
            raise ValueError(
                f"{name} needs fully known spatial and channel sizes (it has one kernel per "
                f"position). Received input shape {tuple(input_shape)}."
            )
        output_spatial = self._output_spatial(spatial)
        if any(length < 1 for length in output_spatial):
            raise ValueError(
                f"{name}: kernel_size={self.kernel_size} is larger than the input "
                f"{spatial} with padding='valid'."
            )
        self._input_spatial = spatial
        self._output_spatial_shape = output_spatial
        self._pad = [
            max((out - 1) * s + k - length, 0) if self.padding == "same" else 0
            for length, out, k, s in zip(
                spatial, output_spatial, self.kernel_size, self.strides, strict=True
            )
        ]
        positions = math.prod(output_spatial)
        patch_size = math.prod(self.kernel_size) * channels
        per_position = _per_position_initializer(
            self.kernel_initializer, (*self.kernel_size, channels, self.filters)
        )
        self.kernel = self.add_weight(
            shape=(positions, patch_size, self.filters),
            name="kernel",
            initializer=per_position,
            regularizer=self.kernel_regularizer,
            constraint=self.kernel_constraint,
        )
        if self.use_bias:
            self.bias = self.add_weight(
                shape=(*output_spatial, self.filters),
                name="bias",
                initializer=self.bias_initializer,
                regularizer=self.bias_regularizer,
                constraint=self.bias_constraint,
            )

    def _patches(self, inputs):
        """(batch, *spatial, C) -> (positions, batch, K) receptive fields."""
        padded = inputs
        if any(self._pad):
            padding = [[0, 0]] + [[p // 2, p - p // 2] for p in self._pad] + [[0, 0]]
            padded = ops.pad(inputs, padding)
        slices = []
        for offsets in itertools.product(*(range(k) for k in self.kernel_size)):
            index = [slice(None)]
            for offset, out, stride in zip(
                offsets, self._output_spatial_shape, self.strides, strict=True
            ):
                index.append(slice(offset, offset + (out - 1) * stride + 1, stride))
            slices.append(padded[tuple(index)])
        # (batch, *out, prod(kernel), C): K ordered like a conv kernel.
        patches = ops.stack(slices, axis=-2)
        patches = ops.reshape(patches, (-1, self.kernel.shape[0], self.kernel.shape[1]))
        return ops.transpose(patches, (1, 0, 2))

    def call(self, inputs):
        if self.data_format == "channels_first":
            inputs = ops.moveaxis(inputs, 1, -1)
        outputs = ops.matmul(self._patches(inputs), self.kernel)  # (positions, batch, F)
        outputs = ops.reshape(
            ops.transpose(outputs, (1, 0, 2)), (-1, *self._output_spatial_shape, self.filters)
        )
        if self.bias is not None:
            outputs = outputs + self.bias
        if self.activation is not None:
            outputs = self.activation(outputs)
        if self.data_format == "channels_first":
            outputs = ops.moveaxis(outputs, -1, 1)
        return outputs

    def compute_output_shape(self, input_shape):
        spatial, _ = self._spatial_and_channels(input_shape)
        output_spatial = self._output_spatial(spatial)
        if self.data_format == "channels_last":
            return (input_shape[0], *output_spatial, self.filters)
        return (input_shape[0], self.filters, *output_spatial)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "filters": self.filters,
                "kernel_size": self.kernel_size,
                "strides": self.strides,
                "padding": self.padding,
                "data_format": self.data_format,
                "activation": keras.activations.serialize(self.activation),
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


_ARGS_DOC = """
    Args:
        filters: number of output channels.
        kernel_size: int or tuple, the window size.
        strides: int or tuple. Default 1.
        padding: `"valid"` or `"same"` (zero padding as in a convolution).
        data_format: `"channels_last"` or `"channels_first"`; None uses
            `keras.config.image_data_format()`.
        activation, use_bias, kernel_initializer, bias_initializer,
        kernel_regularizer, bias_regularizer, kernel_constraint,
        bias_constraint: as in the convolution layers. The bias is per
            position and filter.
        **kwargs: base `keras.layers.Layer` arguments.
"""


@keras.saving.register_keras_serializable(package="layers")
class LocallyConnected1D(_LocallyConnected):
    __doc__ = (
        "Locally connected layer over one spatial axis (input `(batch, steps, C)`)."
        + _LocallyConnected.__doc__.split("\n", 1)[1]
        + _ARGS_DOC
    )
    rank = 1


@keras.saving.register_keras_serializable(package="layers")
class LocallyConnected2D(_LocallyConnected):
    __doc__ = (
        "Locally connected layer over two spatial axes (input `(batch, H, W, C)`)."
        + _LocallyConnected.__doc__.split("\n", 1)[1]
        + _ARGS_DOC
    )
    rank = 2
