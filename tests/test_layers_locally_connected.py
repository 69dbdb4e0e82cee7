"""LocallyConnected1D/2D against a straightforward per-position NumPy reference."""

from __future__ import annotations

import itertools

import keras
import numpy as np
import pytest

from layers import LocallyConnected1D, LocallyConnected2D, SparseInitializer


def _reference(x, kernel, bias, kernel_size, strides, padding):
    """Loops over output positions; each applies its own conv kernel to its window."""
    spatial = x.shape[1:-1]
    if padding == "same":
        out = [-(-n // s) for n, s in zip(spatial, strides, strict=True)]
        pads = [
            max((o - 1) * s + k - n, 0)
            for n, o, k, s in zip(spatial, out, kernel_size, strides, strict=True)
        ]
        x = np.pad(x, [(0, 0)] + [(p // 2, p - p // 2) for p in pads] + [(0, 0)])
    else:
        out = [(n - k) // s + 1 for n, k, s in zip(spatial, kernel_size, strides, strict=True)]
    filters = kernel.shape[-1]
    result = np.zeros((x.shape[0], *out, filters))
    for p, position in enumerate(itertools.product(*(range(o) for o in out))):
        window = tuple(
            slice(i * s, i * s + k) for i, s, k in zip(position, strides, kernel_size, strict=True)
        )
        patch = x[(slice(None), *window)]  # (batch, *kernel_size, C)
        conv_kernel = kernel[p].reshape(*kernel_size, x.shape[-1], filters)
        axes = list(range(1, patch.ndim))
        result[(slice(None), *position)] = np.tensordot(
            patch, conv_kernel, axes=(axes, [a - 1 for a in axes])
        )
    return result + bias


@pytest.mark.parametrize(
    ("layer_class", "shape", "kernel_size", "strides", "padding"),
    [
        (LocallyConnected1D, (2, 9, 3), (3,), (1,), "valid"),
        (LocallyConnected1D, (2, 9, 3), (4,), (2,), "same"),
        (LocallyConnected2D, (2, 7, 6, 3), (3, 2), (1, 1), "valid"),
        (LocallyConnected2D, (2, 7, 6, 3), (3, 3), (2, 2), "same"),
        (LocallyConnected2D, (2, 8, 5, 2), (2, 3), (3, 1), "valid"),
    ],
)
def test_matches_per_position_reference(layer_class, shape, kernel_size, strides, padding):
    x = np.random.default_rng(0).normal(size=shape).astype("float32")
    layer = layer_class(4, kernel_size, strides=strides, padding=padding, bias_initializer="normal")
    output = layer(x)
    expected = _reference(
        x, layer.kernel.numpy(), layer.bias.numpy(), kernel_size, strides, padding
    )
    np.testing.assert_allclose(output, expected, rtol=1e-5, atol=1e-5)


def test_channels_first_equals_transposed_channels_last():
    x = np.random.default_rng(1).normal(size=(2, 3, 6, 5)).astype("float32")
    first = LocallyConnected2D(4, 3, padding="same", data_format="channels_first")
    last = LocallyConnected2D(4, 3, padding="same", data_format="channels_last")
    last.build((2, 6, 5, 3))
    first.build(x.shape)
    first.set_weights(last.get_weights())
    expected = np.moveaxis(np.asarray(last(np.moveaxis(x, 1, -1))), -1, 1)
    np.testing.assert_allclose(first(x), expected, rtol=1e-6)


def test_weights_are_not_shared_between_positions():
    layer = LocallyConnected2D(2, 2, kernel_initializer="glorot_uniform")
    layer.build((None, 4, 4, 1))
    kernel = layer.kernel.numpy()
    assert kernel.shape == (9, 4, 2)
    assert not np.allclose(kernel[0], kernel[1])
    # Initialized per position like a (2, 2, 1, 2) conv kernel: glorot limit sqrt(6 / (4 + 8)).
    assert np.abs(kernel).max() <= np.sqrt(6 / 12)
    assert np.abs(kernel).max() > 0.5 * np.sqrt(6 / 12)


def test_seeded_initializer_is_reproducible_and_differs_per_position():
    def kernel():
        layer = LocallyConnected1D(3, 2, kernel_initializer=keras.initializers.HeNormal(seed=4))
        layer.build((None, 5, 2))
        return layer.kernel.numpy()

    first = kernel()
    np.testing.assert_array_equal(first, kernel())
    assert not np.allclose(first[0], first[1])


def test_sparse_initializer_counts_the_fan_in_of_one_position():
    layer = LocallyConnected2D(4, 3, kernel_initializer=SparseInitializer(k=5, seed=0))
    layer.build((None, 6, 6, 2))
    nonzero_per_unit = (layer.kernel.numpy() != 0).sum(axis=1)  # (positions, filters)
    np.testing.assert_array_equal(nonzero_per_unit, 5)


def test_rejects_unknown_spatial_size():
    with pytest.raises(ValueError, match="fully known spatial"):
        LocallyConnected2D(2, 3).build((None, None, 5, 3))


def test_rejects_kernel_larger_than_input():
    with pytest.raises(ValueError, match="larger than the input"):
        LocallyConnected1D(2, 5).build((None, 4, 3))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"filters": 0, "kernel_size": 3}, "filters"),
        ({"filters": 2, "kernel_size": (3, 3, 3)}, "kernel_size"),
        ({"filters": 2, "kernel_size": 3, "strides": 0}, "strides"),
        ({"filters": 2, "kernel_size": 3, "padding": "causal"}, "padding"),
        ({"filters": 2, "kernel_size": 3, "data_format": "NCHW"}, "data_format"),
    ],
)
def test_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LocallyConnected2D(**kwargs)
