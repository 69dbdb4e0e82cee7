"""The l1/l2 proximal step shared by ProximalGradientDescent and ProximalAdagrad (FOBOS).

After a plain gradient step to `prox`, FOBOS (Duchi & Singer, 2009) solves
`argmin_w 0.5 * ||w - prox||^2 + step * (l1 * |w| + 0.5 * l2 * w^2)`, whose closed form is a soft
threshold by `step * l1` followed by a shrink by `1 + step * l2`. The l1 part is what produces
exact zeros, i.e. sparse models.
"""

from __future__ import annotations

import tensorflow as tf
from keras import ops


def soft_threshold(x: tf.Tensor, threshold: tf.Tensor) -> tf.Tensor:
    """`sign(x) * max(|x| - threshold, 0)`, computed as `x - clip(x, -threshold, threshold)`.

    The two are equal bit for bit (up to the sign of zero) and the second takes three kernels
    instead of five, which matters when each op is its own kernel launch.
    """
    return x - ops.clip(x, -threshold, threshold)


def proximal_l1_l2(prox: tf.Tensor, step: tf.Tensor, l1: float, l2: float) -> tf.Tensor:
    """Applies the l1/l2 proximal operator to `prox` with step size `step` (scalar or per element).

    The operation order is that of tf.train's kernels, so results agree with them bit for bit or
    to the last unit in the last place; the zero-strength branches are skipped since they are
    exact identities.
    """
    if l1 > 0:
        prox = soft_threshold(prox, step * ops.cast(l1, prox.dtype))
    if l2 > 0:
        prox = prox / (1.0 + ops.cast(l2, prox.dtype) * step)
    return prox
