"""Local response normalization across channels (Krizhevsky et al., AlexNet, 2012)."""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from layers import validation
from layers.precision import upcast

ALPHA_CONVENTIONS = ("sum", "mean")


@keras.saving.register_keras_serializable(package="layers")
class LocalResponseNormalization(keras.layers.Layer):
    """Normalizes each activation by the energy of its neighbouring channels.

    For channel `c` the output is

        b_c = a_c / (k + alpha' * sum_{j=c-r}^{c+r} a_j ** 2) ** beta

    where the sum runs over the `n = 2 * depth_radius + 1` channels centred on
    `c` (clipped at the channel edges) and `alpha'` depends on `alpha_convention`:

    - `"sum"` (default): `alpha' = alpha`. This is the AlexNet paper's formula
      and what `tf.nn.local_response_normalization` computes.
    - `"mean"`: `alpha' = alpha / n`, i.e. alpha scales the *mean* of the
      squares. This is Caffe's and PyTorch's `nn.LocalResponseNorm` convention
      (their `size` is our `n`). Use it to port weights trained there.

    The defaults are AlexNet's: k=2, n=5, alpha=1e-4, beta=0.75.

    The windowed sum is a matrix product of the squared activations with a
    banded 0/1 channel matrix, and the power is taken as `exp(-beta * log(.))`,
    which is both backend-agnostic and as fast as TensorFlow's fused kernel.
    Under mixed precision the whole layer is computed in float32, because the
    squares overflow float16 for activations above 256, and the output is the
    layer's compute dtype (see `layers.precision`).

    Args:
        depth_radius: half-width `r` of the channel window (window size
            `2 * r + 1`). Default 2.
        bias: the additive constant `k`, > 0 so the denominator is never zero.
            Default 2.0.
        alpha: scale of the sum (or mean) of squares, >= 0. Default 1e-4.
        beta: exponent, >= 0. Default 0.75.
        alpha_convention: `"sum"` (TF/AlexNet) or `"mean"` (Caffe/PyTorch).
        data_format: `"channels_last"` or `"channels_first"`; None uses
            `keras.config.image_data_format()`.
        **kwargs: base `keras.layers.Layer` arguments (name, dtype, ...).
    """

    def __init__(
        self,
        depth_radius: int = 2,
        bias: float = 2.0,
        alpha: float = 1e-4,
        beta: float = 0.75,
        alpha_convention: str = "sum",
        data_format: str | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        # Computed in float32 from the input as it comes (see `layers.precision`).
        self.autocast = False
        if isinstance(depth_radius, bool) or not isinstance(depth_radius, int) or depth_radius < 0:
            raise ValueError(
                f"`depth_radius` must be an integer >= 0. Received: depth_radius={depth_radius!r}"
            )
        self.depth_radius = depth_radius
        self.bias = validation.check_number("bias", bias, low=0, low_open=True)
        self.alpha = validation.check_number("alpha", alpha, low=0)
        self.beta = validation.check_number("beta", beta, low=0)
        self.alpha_convention = validation.check_choice(
            "alpha_convention", alpha_convention, ALPHA_CONVENTIONS
        )
        self.data_format = validation.check_data_format(data_format)
        self.channel_axis = -1 if self.data_format == "channels_last" else 1
        self._window = None

    @property
    def window_size(self) -> int:
        """`n`, the number of channels in each normalization window."""
        return 2 * self.depth_radius + 1

    @property
    def effective_alpha(self) -> float:
        """The factor that multiplies the plain sum of squares."""
        if self.alpha_convention == "mean":
            return self.alpha / self.window_size
        return self.alpha

    def build(self, input_shape) -> None:
        channels = validation.axis_size(type(self).__name__, input_shape, self.channel_axis)
        index = np.arange(channels)
        in_window = np.abs(index[:, None] - index[None, :]) <= self.depth_radius
        # A constant, not a weight: it is fully determined by the config.
        self._window = (in_window * self.effective_alpha).astype("float32")

    def call(self, inputs):
        # Float16 squares overflow above 256; the normalizer needs float32 range.
        x = upcast(inputs)
        window = ops.convert_to_tensor(self._window, dtype=x.dtype)
        squares = ops.square(x)
        if self.channel_axis == -1:
            scaled_sums = ops.matmul(squares, window)
        else:
            scaled_sums = ops.moveaxis(ops.tensordot(squares, window, axes=[[1], [0]]), -1, 1)
        # exp(-beta * log(d)) is several times faster than pow(d, -beta) on CPU.
        factor = ops.exp(-self.beta * ops.log(self.bias + scaled_sums))
        return ops.cast(x * factor, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update(
            {
                "depth_radius": self.depth_radius,
                "bias": self.bias,
                "alpha": self.alpha,
                "beta": self.beta,
                "alpha_convention": self.alpha_convention,
                "data_format": self.data_format,
            }
        )
        return config
