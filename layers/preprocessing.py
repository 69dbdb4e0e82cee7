"""Preprocessing layers whose statistics are learned from training data with `adapt()`.

- `MeanImageSubtraction`: zero-centering by the mean image (or mean colour).
- `ZCAWhitening`: ZCA or PCA whitening of the flattened input.
- `PCAColorJitter`: AlexNet's PCA colour augmentation.

`adapt(data)` accepts a NumPy array, a tensor, or a `tf.data.Dataset` of
batches (or of `(x, y)` pairs, whose `x` is used). Statistics are
accumulated in float64 batch by batch, so the data set need not fit in
memory, and stored in non-trainable weights, so they are saved with the model.

Under mixed precision (`"mixed_float16"`, `"mixed_bfloat16"`) the layers take their input as it
comes (raw float32 or integer pixels are not rounded to float16 first), apply the float32
statistics in float32 (a whitening matrix product cancels large terms, which float16 and bfloat16
would not resolve), and return the layer's compute dtype (see `layers.precision`).

`image_statistics(data)` returns the statistics behind zero-centering and
standardization (mean image, per-channel mean and standard deviation) from
the same pass, for code that normalizes outside a model (the recipes' data
pipelines).

Dividing by a standard deviation follows one rule, `standardizing_scale`: a
channel or direction whose training standard deviation is below `MIN_STD`
(one grey level of 8-bit data, 1/255 on the [0, 1] scale) is centred but not
divided. Its training values are all but constant, so dividing by their
spread would only magnify noise, and any variation it has at test time would
be magnified with it (a tiny floor such as 1e-6 would turn a one-grey-level
change into a value of about 4000).
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
from keras import ops

from layers import validation
from layers.precision import upcast

# The smallest standard deviation worth dividing by, on the [0, 1] scale of the images: one grey
# level of 8-bit data. A spread below one quantization step carries no signal to standardize.
MIN_STD = 1.0 / 255.0


def _batches(data, batch_size: int | None, steps: int | None):
    """Yields float64 NumPy batches from an array, a tensor or a tf.data.Dataset."""
    if hasattr(data, "as_numpy_iterator"):
        iterator = data.as_numpy_iterator()
    else:
        array = np.asarray(keras.ops.convert_to_numpy(data))
        size = batch_size or len(array)
        iterator = (array[i : i + size] for i in range(0, len(array), size))
    for step, batch in enumerate(iterator):
        if steps is not None and step >= steps:
            return
        if isinstance(batch, (tuple, list)):
            batch = batch[0]
        yield np.asarray(batch, dtype=np.float64)


def _reduce_batches(data, batch_size: int | None, steps: int | None, accumulate, caller: str):
    """Folds `accumulate(state, batch)` over the batches of `data`, starting from None."""
    state = None
    for batch in _batches(data, batch_size, steps):
        state = accumulate(state, batch)
    if state is None:
        raise ValueError(f"{caller} received no data.")
    return state


class _AdaptedLayer(keras.layers.Layer):
    """Common `adapt()` driver: reset, accumulate per batch, then store the statistics.

    Subclasses compute in float32 (`upcast`) and cast their output to `self.compute_dtype`.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        # Inputs and statistics stay in float32 under mixed precision (see the module docstring).
        self.autocast = False

    def adapt(self, data, batch_size: int | None = None, steps: int | None = None) -> None:
        """Computes the layer's statistics from `data` (see the module docstring).

        Args:
            data: NumPy array, tensor, or `tf.data.Dataset` yielding batches.
            batch_size: batch size for array inputs (default: all at once).
            steps: maximum number of batches to read (default: all).
        """

        def accumulate(state, batch):
            if not self.built:
                self.build((None, *batch.shape[1:]))
            return self._accumulate(state, batch)

        self._finalize(
            _reduce_batches(data, batch_size, steps, accumulate, f"{type(self).__name__}.adapt()")
        )

    def _accumulate(self, state, batch):
        raise NotImplementedError

    def _finalize(self, state) -> None:
        raise NotImplementedError


def _add_moment_sums(state, rows: np.ndarray):
    """Running (count, sum, sum of outer products) over the rows of a 2-D array."""
    count, total, outer = state or (0, 0.0, 0.0)
    return count + len(rows), total + rows.sum(axis=0), outer + rows.T @ rows


def _mean_and_covariance(state) -> tuple[np.ndarray, np.ndarray]:
    count, total, outer = state
    mean = total / count
    return mean, outer / count - np.outer(mean, mean)


def _add_sample_sums(state, batch: np.ndarray, squares: bool):
    """Running (count, sum, sum of squares or None) over a batch's samples, element by element."""
    count, total, total_sq = state or (0, 0.0, 0.0 if squares else None)
    if squares:
        total_sq = total_sq + np.square(batch).sum(axis=0)
    return count + len(batch), total + batch.sum(axis=0), total_sq


def _channel_average(count: int, element_sums: np.ndarray) -> np.ndarray:
    """Per channel (last axis), the average over samples and positions, from per-element sums
    over `count` samples."""
    per_channel = element_sums.reshape(-1, element_sums.shape[-1])
    return per_channel.sum(axis=0) / (count * len(per_channel))


def standardizing_scale(std: Any, min_std: float = MIN_STD) -> np.ndarray:
    """The divisor that standardizes data of standard deviation `std`: `std` itself, or 1 where it
    is below `min_std`, so that a (nearly) constant channel is centred but not divided.

    Args:
        std: standard deviations (any shape), in the units of the data.
        min_std: the floor, in the same units; the default `MIN_STD` is for data in [0, 1].

    Returns:
        float64 divisors of the shape of `std`.
    """
    std = np.asarray(std, dtype=np.float64)
    return np.where(std < min_std, 1.0, std)


def image_statistics(
    data: Any, batch_size: int | None = None, steps: int | None = None
) -> dict[str, np.ndarray]:
    """The mean image and the per-channel mean and standard deviation of `data`, in one pass.

    The statistics of `MeanImageSubtraction` (mean image, or with `per_channel=True` the mean
    colour) and of per-channel standardization, computed the same way: float64 sums over the
    samples of every element, so integer pixel values sum exactly.

    Args:
        data: NumPy array, tensor, or `tf.data.Dataset` of batches (or `(x, y)` pairs), of samples
            with the channels last.
        batch_size: batch size for array inputs (default: all at once).
        steps: maximum number of batches to read (default: all).

    Returns:
        float64 arrays, in the units of `data`: "mean_image" (the shape of one sample), and
        "channel_mean" and "channel_std" (shape `(channels,)`, over samples and positions).
    """
    count, total, total_sq = _reduce_batches(
        data,
        batch_size,
        steps,
        lambda state, batch: _add_sample_sums(state, batch, squares=True),
        "image_statistics()",
    )
    channel_mean = _channel_average(count, total)
    channel_var = _channel_average(count, total_sq) - channel_mean**2
    return {
        "mean_image": total / count,
        "channel_mean": channel_mean,
        # E[x^2] - E[x]^2 can round to slightly below zero for a constant channel.
        "channel_std": np.sqrt(np.maximum(channel_var, 0.0)),
    }


@keras.saving.register_keras_serializable(package="layers")
class MeanImageSubtraction(_AdaptedLayer):
    """Subtracts the training set's mean image (zero-centering).

    `adapt()` computes the mean over the training samples of every input
    element (the "mean image", shape `input_shape[1:]`), or with
    `per_channel=True` only the mean of each channel over samples and
    positions (e.g. the VGG mean colour). `call` subtracts it.

    Args:
        per_channel: subtract one mean per channel (last axis) instead of the
            mean image. Default False.
        **kwargs: base `keras.layers.Layer` arguments.
    """

    def __init__(self, per_channel: bool = False, **kwargs) -> None:
        super().__init__(**kwargs)
        self.per_channel = bool(per_channel)

    def build(self, input_shape) -> None:
        shape = tuple(input_shape[1:])
        if self.per_channel:
            shape = (1,) * (len(shape) - 1) + shape[-1:]
        if any(size is None for size in shape):
            raise ValueError(
                f"MeanImageSubtraction needs the non-batch input shape to be known. "
                f"Received input shape {tuple(input_shape)}."
            )
        self.mean = self.add_weight(
            name="mean", shape=shape, initializer="zeros", trainable=False, autocast=False
        )

    def _accumulate(self, state, batch):
        return _add_sample_sums(state, batch, squares=False)

    def _finalize(self, state) -> None:
        count, total, _ = state
        mean = _channel_average(count, total) if self.per_channel else total / count
        self.mean.assign(np.reshape(mean, self.mean.shape))

    def call(self, inputs):
        return ops.cast(upcast(inputs) - self.mean, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"per_channel": self.per_channel})
        return config


WHITENING_METHODS = ("zca", "pca")


@keras.saving.register_keras_serializable(package="layers")
class ZCAWhitening(_AdaptedLayer):
    """ZCA or PCA whitening of the flattened input, learned with `adapt()`.

    With `X` the zero-centered flattened training data (D features), its
    covariance `Cov = X^T X / N = U diag(lambda) U^T`, and
    `S = diag(1 / sqrt(lambda + epsilon))`:

    - `method="pca"`: `y = (x - mean) U S`, a `(batch, D)` vector of
      decorrelated components in order of decreasing variance.
    - `method="zca"`: `y = (x - mean) U S U^T`, reshaped back to the input
      shape; the whitened image closest to the original.

    `epsilon` damps low-variance directions (noise) and regularizes when D
    exceeds the number of samples. A direction whose regularized standard
    deviation `sqrt(lambda + epsilon)` is still below `min_std` is not
    divided at all (its entry of `S` is 1), the rule of `standardizing_scale`
    that the recipes' per-channel standardization follows too: on [0, 1]
    images, a direction that varies by less than a grey level in training
    passes through unscaled instead of having its test-time noise magnified
    up to `1 / sqrt(epsilon)` times.

    Args:
        method: `"zca"` (default) or `"pca"`.
        epsilon: added to the eigenvalues, > 0. Default 1e-5.
        min_std: the standard deviation below which a direction is not
            divided, >= 0, in the units of the input. Default `MIN_STD`
            (1/255, for inputs in [0, 1]); 1.0 suits [0, 255] inputs, 0
            divides every direction.
        **kwargs: base `keras.layers.Layer` arguments.
    """

    def __init__(
        self, method: str = "zca", epsilon: float = 1e-5, min_std: float = MIN_STD, **kwargs
    ) -> None:
        super().__init__(**kwargs)
        self.method = validation.check_choice("method", method, WHITENING_METHODS)
        self.epsilon = validation.check_number("epsilon", epsilon, low=0, low_open=True)
        self.min_std = validation.check_number("min_std", min_std, low=0)

    def build(self, input_shape) -> None:
        if any(size is None for size in input_shape[1:]):
            raise ValueError(
                f"ZCAWhitening needs the non-batch input shape to be known. "
                f"Received input shape {tuple(input_shape)}."
            )
        features = math.prod(input_shape[1:])
        self.mean = self.add_weight(
            name="mean", shape=(features,), initializer="zeros", trainable=False, autocast=False
        )
        self.whitening = self.add_weight(
            name="whitening",
            shape=(features, features),
            initializer="identity",
            trainable=False,
            autocast=False,
        )

    def _accumulate(self, state, batch):
        return _add_moment_sums(state, batch.reshape(len(batch), -1))

    def _finalize(self, state) -> None:
        mean, covariance = _mean_and_covariance(state)
        eigenvalues, eigenvectors = np.linalg.eigh(covariance)
        # eigh sorts ascending; PCA components are conventionally by decreasing variance.
        eigenvalues, eigenvectors = eigenvalues[::-1], eigenvectors[:, ::-1]
        regularized_std = np.sqrt(np.maximum(eigenvalues, 0.0) + self.epsilon)
        scaled = eigenvectors / standardizing_scale(regularized_std, self.min_std)
        whitening = scaled @ eigenvectors.T if self.method == "zca" else scaled
        self.mean.assign(mean)
        self.whitening.assign(whitening)

    def call(self, inputs):
        flat = ops.reshape(upcast(inputs), (-1, self.mean.shape[0]))
        whitened = ops.cast(ops.matmul(flat - self.mean, self.whitening), self.compute_dtype)
        if self.method == "pca":
            return whitened
        return ops.reshape(whitened, ops.shape(inputs))

    def compute_output_shape(self, input_shape):
        if self.method == "pca":
            return (input_shape[0], math.prod(input_shape[1:]))
        return tuple(input_shape)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"method": self.method, "epsilon": self.epsilon, "min_std": self.min_std})
        return config


@keras.saving.register_keras_serializable(package="layers")
class PCAColorJitter(_AdaptedLayer):
    """AlexNet's PCA colour augmentation ("fancy PCA", Krizhevsky et al. 2012).

    `adapt()` computes the 3x3 covariance of the RGB values over all pixels
    of the training set and its eigenvectors `p_i` and eigenvalues `lambda_i`.
    During training every image gets the same colour offset at all its
    pixels, `[p_1, p_2, p_3] [alpha_1 lambda_1, alpha_2 lambda_2,
    alpha_3 lambda_3]^T`, with a fresh `alpha_i ~ N(0, sigma)` per image. This
    changes the intensity and colour of the illumination, to which object
    identity is invariant. At inference the layer is the identity. Inputs
    are channels-last, `(..., H, W, 3)`, in the same value range as the data
    given to `adapt()`.

    Args:
        sigma: standard deviation of the `alpha_i`. Default 0.1 (AlexNet).
        seed: int for reproducible noise, or None.
        **kwargs: base `keras.layers.Layer` arguments.
    """

    def __init__(self, sigma: float = 0.1, seed: int | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.sigma = validation.check_number("sigma", sigma, low=0)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape) -> None:
        if len(input_shape) < 3 or input_shape[-1] != 3:
            raise ValueError(
                f"PCAColorJitter expects channels-last RGB images (..., H, W, 3). "
                f"Received input shape {tuple(input_shape)}."
            )
        self.eigenvectors = self.add_weight(
            name="eigenvectors",
            shape=(3, 3),
            initializer="identity",
            trainable=False,
            autocast=False,
        )
        self.eigenvalues = self.add_weight(
            name="eigenvalues", shape=(3,), initializer="zeros", trainable=False, autocast=False
        )

    def _accumulate(self, state, batch):
        return _add_moment_sums(state, batch.reshape(-1, 3))

    def _finalize(self, state) -> None:
        _, covariance = _mean_and_covariance(state)
        eigenvalues, eigenvectors = np.linalg.eigh(covariance)
        self.eigenvalues.assign(np.maximum(eigenvalues, 0.0))
        self.eigenvectors.assign(eigenvectors)

    def call(self, inputs, training=None):
        if not training:
            return ops.cast(inputs, self.compute_dtype)
        leading = ops.shape(inputs)[:-3]
        alphas = keras.random.normal(
            (*leading, 3), stddev=self.sigma, seed=self.seed_generator, dtype="float32"
        )
        # offset = P (alpha * lambda), for every image at once.
        offsets = ops.matmul(alphas * self.eigenvalues, ops.transpose(self.eigenvectors))
        offsets = ops.reshape(offsets, (*leading, 1, 1, 3))
        return ops.cast(upcast(inputs) + offsets, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self) -> dict:
        config = super().get_config()
        config.update({"sigma": self.sigma, "seed": self.seed})
        return config
