"""Mixed precision: where a layer or loss computes in float32 whatever its inputs' dtype.

Under a `keras.mixed_precision` policy (`"mixed_float16"`, `"mixed_bfloat16"`) a layer computes in
float16 or bfloat16 and keeps its variables in float32. Statistics and long reductions (a mean
and variance over a feature map, a sum of squares over channels or a kernel, a matrix product with
a whitening matrix whose terms cancel) lose precision there, and in float16 overflow past 65504:
the layers in this package compute those in float32, as Keras' own normalization layers do, and
return the compute dtype.

Those layers set `autocast = False` (Keras' `GroupNormalization` and `LayerNormalization` do
too): their float32 variables are read as float32 and their input arrives in the dtype it was
produced in, so a float32 input (raw pixels at a model's input) is not rounded to float16 before
the statistics see it. They cast to `self.compute_dtype` themselves at the end.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops


def statistics_dtype(dtype: Any) -> str:
    """The dtype to compute statistics of `dtype` values in: float32, or float64 for float64.

    Integer inputs (uint8 pixels) get float32 too.
    """
    return keras.backend.result_type(keras.backend.standardize_dtype(dtype), "float32")


def upcast(x: Any) -> Any:
    """`x` as a tensor in `statistics_dtype(x.dtype)` (unchanged if it already is)."""
    x = ops.convert_to_tensor(x)
    return ops.cast(x, statistics_dtype(x.dtype))
