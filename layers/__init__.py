"""Custom Keras 3 layers and initializers.

Every layer is registered under the Keras serialization package `"layers"`,
so `keras.models.load_model` restores models that use them without
`custom_objects`. See docs/layers.md.
"""

from layers import initializers
from layers.group_normalization import GroupNormalization
from layers.initializers import SparseInitializer
from layers.instance_normalization import InstanceNormalization
from layers.local_response_normalization import LocalResponseNormalization
from layers.locally_connected import LocallyConnected1D, LocallyConnected2D
from layers.maxout import Maxout
from layers.preprocessing import MeanImageSubtraction, PCAColorJitter, ZCAWhitening
from layers.weight_normalization import WeightNormalization

__all__ = [
    "GroupNormalization",
    "InstanceNormalization",
    "LocalResponseNormalization",
    "LocallyConnected1D",
    "LocallyConnected2D",
    "Maxout",
    "MeanImageSubtraction",
    "PCAColorJitter",
    "SparseInitializer",
    "WeightNormalization",
    "ZCAWhitening",
    "initializers",
]
