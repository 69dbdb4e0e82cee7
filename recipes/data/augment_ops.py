"""The augmentation operations behind `recipes.data.augment`, and the seed plumbing they share.

Every operation is a small callable `op(images, labels, seeds) -> (images, labels)` on a batch of
float images in `[0, 1]` (`(batch, height, width, channels)`). Randomness comes only from `seeds`, a
`SeedStream` built from one seed tensor per batch, so an operation is a pure function of
`(images, labels, batch seed)`: that is what makes a pipeline reproducible under the parallel,
out-of-order execution of `tf.data.Dataset.map`.

Where Keras ships a preprocessing layer for an operation, the operation drives that layer
through its public two-step interface (`get_random_transformation(..., seed=...)` then
`transform_images`), so the layer's own maths is reused and only the seed source changes. The
ops written here are the ones Keras lacks or gets wrong for batched training data: padded
random crop and random-resized crop (Keras' `RandomCrop` picks one offset per batch, not per
image), a single-resampling random affine, and additive Gaussian noise (Keras' `GaussianNoise`
layer draws from its own seed variable); and the flips, which every augmented batch of the
recipes goes through, written out because the layer's general plumbing doubles their cost.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import keras
import tensorflow as tf


class SeedStream(keras.random.SeedGenerator):
    """A `keras.random.SeedGenerator` whose draws all derive, statelessly, from one seed tensor.

    Keras' random ops accept a `SeedGenerator` and call its `next()` once per draw. The stock
    generator keeps its state in a variable, so under a parallel `tf.data` map which batch receives
    which draw depends on thread scheduling. This stream instead folds a draw counter into a seed
    tensor that travels with the batch; the counter advances while the graph is traced, so the k-th
    random op of a pipeline always gets `fold_in(batch_seed, k)`.

    Args:
        seed: int tensor of shape `(2,)`, the seed of one batch.
    """

    def __init__(self, seed: tf.Tensor) -> None:
        # Deliberately no super().__init__(): that would create the state variable this class
        # exists to avoid. Keras only calls `next()` on a seed generator passed to a random op.
        self._seed = tf.cast(seed, tf.int64)
        self._draws = 0

    def next(self, ordered: bool = True) -> tf.Tensor:
        self._draws += 1
        return tf.random.experimental.stateless_fold_in(self._seed, self._draws)


Op = Callable[[tf.Tensor, tf.Tensor, SeedStream], tuple[tf.Tensor, tf.Tensor]]


def _per_image_uniform(batch: tf.Tensor, seeds: SeedStream, low: float, high: float) -> tf.Tensor:
    return keras.random.uniform((batch,), minval=low, maxval=high, seed=seeds)


class KerasLayerOp:
    """Runs a Keras image preprocessing layer on the images, leaving labels alone.

    Args:
        layer: a `keras.layers` image preprocessing layer (subclass of Keras'
            `BaseImagePreprocessingLayer`).
    """

    def __init__(self, layer: keras.layers.Layer) -> None:
        self.layer = layer

    def __call__(self, images: tf.Tensor, labels: tf.Tensor, seeds: SeedStream):
        transformation = self.layer.get_random_transformation(images, training=True, seed=seeds)
        return self.layer.transform_images(images, transformation, training=True), labels


class KerasMixOp:
    """Runs a batch-mixing Keras layer (`MixUp`, `CutMix`) on images and one-hot labels together.

    Args:
        layer: `keras.layers.MixUp` or `keras.layers.CutMix`.
    """

    def __init__(self, layer: keras.layers.Layer) -> None:
        self.layer = layer

    def __call__(self, images: tf.Tensor, labels: tf.Tensor, seeds: SeedStream):
        data = {"images": images, "labels": labels}
        transformation = self.layer.get_random_transformation(data, training=True, seed=seeds)
        images = self.layer.transform_images(images, transformation, training=True)
        labels = self.layer.transform_labels(labels, transformation, training=True)
        return images, labels


class ComposedOp:
    """Applies several operations in order, e.g. the parts of `color_jitter`.

    Args:
        ops: the operations, applied first to last.
    """

    def __init__(self, ops: Sequence[Op]) -> None:
        self.ops = tuple(ops)

    def __call__(self, images: tf.Tensor, labels: tf.Tensor, seeds: SeedStream):
        for op in self.ops:
            images, labels = op(images, labels, seeds)
        return images, labels


class RandomFlip:
    """Mirrors each image along one axis with probability 1/2.

    Draws exactly what `keras.layers.RandomFlip` draws (one uniform number per image, flipped
    when it is <= 0.5) and flips the same images, so the results are identical, at a fraction of
    the layer's cost on small images: TensorFlow's CPU kernels reverse a rank-3 tensor several
    times faster than the rank-4 batch, and select whole images from a `(batch, pixels)` view
    instead of broadcasting a `(batch, 1, 1, 1)` mask (which takes 5 ms on a batch of 128 RGB
    32x32 images).

    Args:
        axis: 2 mirrors left-right ("horizontal"), 1 top-bottom ("vertical").
    """

    def __init__(self, axis: int) -> None:
        self.axis = axis

    def __call__(self, images: tf.Tensor, labels: tf.Tensor, seeds: SeedStream):
        shape = tf.shape(images)
        flips = keras.random.uniform((shape[0], 1), seed=seeds) <= 0.5
        # (batch * height, width, channels) for a left-right flip, (batch, height, rest) else.
        grouped = tf.reshape(images, tf.concat([[-1], shape[self.axis :]], 0))
        flipped = tf.reshape(tf.reverse(grouped, [1]), [shape[0], -1])
        selected = tf.where(flips, flipped, tf.reshape(images, [shape[0], -1]))
        return tf.reshape(selected, shape), labels


class PaddedRandomCrop:
    """Pads each image by `pad` pixels per side and crops it back at a random offset per image.

    The CIFAR-style crop: an integer shift of up to `pad` pixels in each direction, with the
    uncovered border zero ("constant") or mirrored ("reflect").

    Args:
        pad: border width in pixels, smaller than the image height and width.
        mode: "constant" (zeros) or "reflect".
    """

    def __init__(self, pad: int, mode: str) -> None:
        self.pad = pad
        self.mode = mode

    def __call__(self, images: tf.Tensor, labels: tf.Tensor, seeds: SeedStream):
        if self.pad == 0:
            return images, labels
        height, width = images.shape[1], images.shape[2]
        batch = tf.shape(images)[0]
        padding = [[0, 0], [self.pad, self.pad], [self.pad, self.pad], [0, 0]]
        padded = tf.pad(images, padding, mode=self.mode.upper())
        offsets = keras.random.randint((2, batch), 0, 2 * self.pad + 1, seed=seeds)
        rows = offsets[0][:, None] + tf.range(height)[None, :]
        cols = offsets[1][:, None] + tf.range(width)[None, :]
        cropped = tf.gather(padded, rows, axis=1, batch_dims=1)
        if images.shape[-1] != 1:
            return tf.gather(cropped, cols, axis=2, batch_dims=1), labels
        # TensorFlow's CPU gather copies whole rows fast and single pixels slowly: with one
        # channel, transposing is cheap, and the columns are gathered as rows (2x faster).
        transposed = tf.transpose(cropped, [0, 2, 1, 3])
        cropped = tf.gather(transposed, cols, axis=1, batch_dims=1)
        return tf.transpose(cropped, [0, 2, 1, 3]), labels


class RandomResizedCrop:
    """Crops a random box of random area and aspect ratio from each image, resized to full size.

    The Inception-style crop: the box covers a fraction of the image area drawn from
    `[min_scale, 1]` and has an aspect ratio (relative to the image's) drawn log-uniformly from
    `[1 / max_ratio, max_ratio]`; a box side that would exceed the image is clipped to it.

    Args:
        min_scale: smallest area fraction, in `(0, 1]`.
        max_ratio: largest aspect-ratio stretch, `>= 1`.
    """

    def __init__(self, min_scale: float, max_ratio: float) -> None:
        self.min_scale = min_scale
        self.max_ratio = max_ratio

    def __call__(self, images: tf.Tensor, labels: tf.Tensor, seeds: SeedStream):
        size = images.shape[1:3]
        batch = tf.shape(images)[0]
        area = _per_image_uniform(batch, seeds, self.min_scale, 1.0)
        log_ratio = math.log(self.max_ratio)
        ratio = tf.exp(_per_image_uniform(batch, seeds, -log_ratio, log_ratio))
        box_height = tf.minimum(tf.sqrt(area / ratio), 1.0)
        box_width = tf.minimum(tf.sqrt(area * ratio), 1.0)
        top = _per_image_uniform(batch, seeds, 0.0, 1.0) * (1.0 - box_height)
        left = _per_image_uniform(batch, seeds, 0.0, 1.0) * (1.0 - box_width)
        boxes = tf.stack([top, left, top + box_height, left + box_width], axis=-1)
        cropped = tf.image.crop_and_resize(images, boxes, tf.range(batch), size)
        return cropped, labels


class RandomAffine:
    """One random affine map per image (rotation, scale, shear, translation), resampled once.

    Chaining Keras' `RandomRotation`, `RandomZoom`, `RandomShear` and `RandomTranslation` would
    interpolate the image four times; composing the matrices first blurs it once. Pixels mapped from
    outside the image are filled by reflection.

    Args:
        degrees: rotation angle range `[-degrees, degrees]`.
        scale: zoom factor range `[1 - scale, 1 + scale]`.
        shear: horizontal shear coefficient range `[-shear, shear]`.
        translate: shift range as a fraction of the image size, `[-translate, translate]`.
    """

    def __init__(self, degrees: float, scale: float, shear: float, translate: float) -> None:
        self.degrees = degrees
        self.scale = scale
        self.shear = shear
        self.translate = translate

    def __call__(self, images: tf.Tensor, labels: tf.Tensor, seeds: SeedStream):
        height, width = images.shape[1], images.shape[2]
        batch = tf.shape(images)[0]
        angle = _per_image_uniform(batch, seeds, -self.degrees, self.degrees) * (math.pi / 180.0)
        zoom = _per_image_uniform(batch, seeds, 1.0 - self.scale, 1.0 + self.scale)
        shear = _per_image_uniform(batch, seeds, -self.shear, self.shear)
        shift_x = _per_image_uniform(batch, seeds, -self.translate, self.translate) * width
        shift_y = _per_image_uniform(batch, seeds, -self.translate, self.translate) * height
        cos, sin = tf.cos(angle) * zoom, tf.sin(angle) * zoom
        # Forward map (input -> output pixel) about the image centre: rotate*zoom after shear.
        linear = tf.stack([cos, cos * shear - sin, sin, sin * shear + cos], axis=-1)
        linear = tf.reshape(linear, [-1, 2, 2])
        centre = tf.constant([(width - 1) / 2.0, (height - 1) / 2.0])
        offset = centre + tf.stack([shift_x, shift_y], -1) - tf.linalg.matvec(linear, centre)
        # `affine_transform` wants the inverse map (output -> input) as 8 numbers per image.
        inverse = tf.linalg.inv(linear)
        inverse_offset = -tf.linalg.matvec(inverse, offset)
        transform = tf.concat(
            [
                inverse[:, 0, :],
                inverse_offset[:, :1],
                inverse[:, 1, :],
                inverse_offset[:, 1:],
                tf.zeros([batch, 2]),
            ],
            axis=-1,
        )
        warped = keras.ops.image.affine_transform(images, transform, fill_mode="reflect")
        return warped, labels


class GaussianNoise:
    """Adds zero-mean Gaussian noise of standard deviation `stddev`, then clips to `[0, 1]`.

    Args:
        stddev: noise standard deviation, in image units.
    """

    def __init__(self, stddev: float) -> None:
        self.stddev = stddev

    def __call__(self, images: tf.Tensor, labels: tf.Tensor, seeds: SeedStream):
        noise = keras.random.normal(tf.shape(images), stddev=self.stddev, seed=seeds)
        return tf.clip_by_value(images + noise, 0.0, 1.0), labels


class PCAJitter:
    """AlexNet's PCA colour jitter in the RGB eigenbasis fitted by `layers.PCAColorJitter`.

    The layer owns the fitting (`adapt()` on training images). Its `call()` draws the per-image
    coefficients from its own seed variable, which is not reproducible under a parallel map, so
    the coefficients are drawn here from the batch seed and combined with the layer's fitted
    eigenvectors and eigenvalues. Results are clipped to `[0, 1]` like Keras' colour layers.

    Args:
        layer: an adapted `layers.PCAColorJitter`.
    """

    def __init__(self, layer: keras.layers.Layer) -> None:
        self.sigma = layer.sigma
        # Fixed once adapted: constants keep the tf.data graph free of variable captures.
        self.eigenvalues = tf.constant(keras.ops.convert_to_numpy(layer.eigenvalues), tf.float32)
        self.eigenvectors = tf.constant(keras.ops.convert_to_numpy(layer.eigenvectors), tf.float32)

    def __call__(self, images: tf.Tensor, labels: tf.Tensor, seeds: SeedStream):
        alphas = keras.random.normal((tf.shape(images)[0], 3), stddev=self.sigma, seed=seeds)
        offsets = tf.matmul(alphas * self.eigenvalues, self.eigenvectors, transpose_b=True)
        return tf.clip_by_value(images + offsets[:, None, None, :], 0.0, 1.0), labels
