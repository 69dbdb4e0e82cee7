"""Group normalization (Wu & He, 2018)."""

from __future__ import annotations

import keras
from keras import ops

from layers import validation
from layers.precision import upcast


@keras.saving.register_keras_serializable(package="layers")
class GroupNormalization(keras.layers.Layer):
    """Normalizes each sample over groups of channels and all other non-batch axes.

    The `C` channels are split into `groups` contiguous groups; each group of
    each sample is normalized to zero mean and unit variance over its channels
    and all spatial positions, then scaled by `gamma` and shifted by `beta`
    per channel. It does not depend on the batch size, unlike batch norm.
    `groups=1` is layer normalization over (H, W, C); `groups=-1` (one group
    per channel, whatever the channel count) is instance normalization, as in
    Keras and TensorFlow Addons (`InstanceNormalization` is this layer with
    `groups=-1`). Results equal `keras.layers.GroupNormalization`.

    Why it is faster than Keras's layer: the statistics are reduced over the
    spatial axes first, on the tensor's own layout, to per-channel sums, and
    only those small (batch, C) sums are grouped; the normalization is then a
    single per-channel multiply-add. Keras instead reshapes the whole tensor to
    (..., groups, C / groups) and reduces over a strided layout. Variance is
    still computed in two passes (mean first), so it does not lose precision
    when the mean is large compared with the spread.

    Under mixed precision the statistics and the normalization are computed
    in float32 (float16 squares overflow past 65504, and bfloat16 sums keep
    only 8 significant bits), with `gamma` and `beta` read as float32; the
    output is the layer's compute dtype. See `layers.precision`.

    Args:
        groups: number of channel groups; must divide the channel count.
            -1 gives one group per channel (instance normalization).
            Default 32.
        axis: the channel axis; not the batch axis 0. Default -1.
        epsilon: added to the variance to avoid division by zero. Default 1e-3.
        center: whether to add the learned offset `beta`. Default True.
        scale: whether to multiply by the learned scale `gamma`. Default True.
        beta_initializer, gamma_initializer, beta_regularizer,
        gamma_regularizer, beta_constraint, gamma_constraint: as in Keras.
        **kwargs: base `keras.layers.Layer` arguments.
    """

    def __init__(
        self,
        groups: int = 32,
        axis: int = -1,
        epsilon: float = 1e-3,
        center: bool = True,
        scale: bool = True,
        beta_initializer="zeros",
        gamma_initializer="ones",
        beta_regularizer=None,
        gamma_regularizer=None,
        beta_constraint=None,
        gamma_constraint=None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.supports_masking = True
        # The statistics are computed in float32; the input and variables are not rounded first.
        self.autocast = False
        instance_norm = isinstance(groups, int) and not isinstance(groups, bool) and groups == -1
        if not instance_norm:
            try:
                validation.check_integer("groups", groups, low=1)
            except ValueError:
                raise ValueError(
                    "`groups` must be an integer >= 1, or -1 for one group per channel. "
                    f"Received: groups={groups!r}"
                ) from None
        self.groups = int(groups)
        if isinstance(axis, bool) or not isinstance(axis, int) or axis == 0:
            raise ValueError(
                f"`axis` must be an integer other than 0 (the batch axis). Received: axis={axis!r}"
            )
        self.axis = axis
        self.epsilon = validation.check_number("epsilon", epsilon, low=0, low_open=True)
        self.center = bool(center)
        self.scale = bool(scale)
        self.beta_initializer = keras.initializers.get(beta_initializer)
        self.gamma_initializer = keras.initializers.get(gamma_initializer)
        self.beta_regularizer = keras.regularizers.get(beta_regularizer)
        self.gamma_regularizer = keras.regularizers.get(gamma_regularizer)
        self.beta_constraint = keras.constraints.get(beta_constraint)
        self.gamma_constraint = keras.constraints.get(gamma_constraint)

    def build(self, input_shape) -> None:
        owner = type(self).__name__
        rank = len(input_shape)
        if -rank <= self.axis < rank and self.axis % rank == 0:
            raise ValueError(
                f"{owner}: axis={self.axis} is the batch axis of an input of rank {rank}; "
                f"pass the channel axis. Input shape: {tuple(input_shape)}."
            )
        channels = validation.axis_size(owner, input_shape, self.axis)
        if channels % self.groups:
            raise ValueError(
                f"{owner}: the number of channels ({channels}, axis {self.axis}) "
                f"must be divisible by groups={self.groups}. Input shape: {tuple(input_shape)}."
            )
        self._groups = channels if self.groups == -1 else self.groups
        self._channel_axis = self.axis % rank
        self._reduction_axes = tuple(a for a in range(1, rank) if a != self._channel_axis)
        self._channels = channels
        self.input_spec = keras.layers.InputSpec(ndim=rank, axes={self.axis: channels})
        self.gamma = None
        self.beta = None
        if self.scale:
            self.gamma = self.add_weight(
                shape=(channels,),
                name="gamma",
                initializer=self.gamma_initializer,
                regularizer=self.gamma_regularizer,
                constraint=self.gamma_constraint,
                autocast=False,
            )
        if self.center:
            self.beta = self.add_weight(
                shape=(channels,),
                name="beta",
                initializer=self.beta_initializer,
                regularizer=self.beta_regularizer,
                constraint=self.beta_constraint,
                autocast=False,
            )

    def _per_channel(self, sums, count: int):
        """Per-channel sums of shape (batch, C) -> per-channel group means (batch, C)."""
        per_group = self._channels // self._groups
        if per_group == 1:
            return sums / count
        grouped = ops.reshape(sums, (-1, self._groups, per_group))
        means = ops.sum(grouped, axis=-1, keepdims=True) / count
        return ops.reshape(ops.repeat(means, per_group, axis=-1), (-1, self._channels))

    def _broadcastable(self, per_channel, rank: int):
        shape = [1] * rank
        shape[0] = -1
        shape[self._channel_axis] = self._channels
        return ops.reshape(per_channel, shape)

    def call(self, inputs):
        x = upcast(inputs)
        compute_dtype = x.dtype
        rank = len(x.shape)
        count = self._channels // self._groups
        for axis in self._reduction_axes:
            count = count * ops.shape(x)[axis]
        count = ops.cast(count, compute_dtype)

        def spatial_sum(tensor):
            if not self._reduction_axes:
                return tensor
            return ops.sum(tensor, axis=self._reduction_axes)

        mean = self._broadcastable(self._per_channel(spatial_sum(x), count), rank)
        centered = x - mean
        variance = self._per_channel(spatial_sum(ops.square(centered)), count)
        multiplier = ops.rsqrt(variance + self.epsilon)
        if self.gamma is not None:
            multiplier = multiplier * ops.cast(self.gamma, compute_dtype)
        outputs = centered * self._broadcastable(multiplier, rank)
        if self.beta is not None:
            outputs = outputs + self._broadcastable(ops.cast(self.beta, compute_dtype), rank)
        return ops.cast(outputs, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "groups": self.groups,
                "axis": self.axis,
                "epsilon": self.epsilon,
                "center": self.center,
                "scale": self.scale,
                "beta_initializer": keras.initializers.serialize(self.beta_initializer),
                "gamma_initializer": keras.initializers.serialize(self.gamma_initializer),
                "beta_regularizer": keras.regularizers.serialize(self.beta_regularizer),
                "gamma_regularizer": keras.regularizers.serialize(self.gamma_regularizer),
                "beta_constraint": keras.constraints.serialize(self.beta_constraint),
                "gamma_constraint": keras.constraints.serialize(self.gamma_constraint),
            }
        )
        return config
