"""Instance normalization (Ulyanov, Vedaldi & Lempitsky, 2016)."""

from __future__ import annotations

import keras

from layers.group_normalization import GroupNormalization


@keras.saving.register_keras_serializable(package="layers")
class InstanceNormalization(GroupNormalization):
    """Normalizes each channel of each sample over all its other non-batch axes.

    Every channel of every sample is brought to zero mean and unit variance
    over its spatial positions (H, W for an image), then scaled by `gamma`
    and shifted by `beta` per channel. Statistics never mix samples or
    channels, so the output does not depend on the batch (train and inference
    compute the same thing) nor on an image's contrast: the normalization
    used in style transfer and image-to-image generators.

    It is `GroupNormalization(groups=-1)` (one group per channel), with the
    arguments and defaults of TensorFlow Addons' `InstanceNormalization`
    (`axis=-1`, `epsilon=1e-3`, learned `gamma` and `beta`), so
    `tfa.layers.InstanceNormalization(...)` becomes
    `layers.InstanceNormalization(...)` with the same arguments. On a
    `(batch, features)` input each feature is its own group of one value, so
    the output is `beta`: normalize an axis that has several values per
    channel.

    Args:
        axis: the channel axis; not the batch axis 0. Default -1.
        epsilon: added to the variance to avoid division by zero. Default 1e-3
            (TensorFlow Addons'; PyTorch's `InstanceNorm2d` uses 1e-5).
        center: whether to add the learned per-channel offset `beta`.
            Default True.
        scale: whether to multiply by the learned per-channel scale `gamma`.
            Default True.
        beta_initializer, gamma_initializer: initializers of `beta` (default
            zeros) and `gamma` (default ones).
        beta_regularizer, gamma_regularizer: optional regularizers of
            `beta` and `gamma`.
        beta_constraint, gamma_constraint: optional constraints on `beta`
            and `gamma`.
        **kwargs: base `keras.layers.Layer` arguments. `groups` is accepted
            only as -1: TensorFlow Addons silently replaced any other value
            with -1, which hid the mistake of asking instance normalization
            for groups; use `GroupNormalization(groups=...)` for groups.
    """

    def __init__(
        self,
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
        groups = kwargs.pop("groups", -1)
        if isinstance(groups, bool) or groups != -1:
            raise ValueError(
                "InstanceNormalization normalizes each channel on its own: `groups` must be -1 "
                "or left out; use GroupNormalization(groups=...) for groups of channels. "
                f"Received: groups={groups!r}"
            )
        super().__init__(
            groups=-1,
            axis=axis,
            epsilon=epsilon,
            center=center,
            scale=scale,
            beta_initializer=beta_initializer,
            gamma_initializer=gamma_initializer,
            beta_regularizer=beta_regularizer,
            gamma_regularizer=gamma_regularizer,
            beta_constraint=beta_constraint,
            gamma_constraint=gamma_constraint,
            **kwargs,
        )

    def get_config(self) -> dict:
        config = super().get_config()
        del config["groups"]
        return config
