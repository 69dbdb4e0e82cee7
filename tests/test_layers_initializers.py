"""SparseInitializer and the named initialization schemes."""

from __future__ import annotations

import keras
import numpy as np
import pytest

import layers
from layers import SparseInitializer
from tests.conftest import MIXED_POLICIES


@pytest.mark.parametrize(("shape", "fan_in"), [((50, 30), 50), ((3, 3, 8, 16), 72)])
def test_sparse_initializer_has_exactly_k_nonzeros_per_output_unit(shape, fan_in):
    kernel = np.asarray(SparseInitializer(k=10, sigma=2.0, seed=3)(shape))
    assert kernel.shape == shape
    per_unit = kernel.reshape(fan_in, shape[-1])
    np.testing.assert_array_equal((per_unit != 0).sum(axis=0), 10)


def test_sparse_initializer_values_are_normal_with_sigma():
    kernel = np.asarray(SparseInitializer(k=20, sigma=0.5, seed=0)((400, 300)))
    values = kernel[kernel != 0]
    assert values.size == 20 * 300
    assert abs(values.mean()) < 0.02 and abs(values.std() - 0.5) < 0.02


def test_sparse_initializer_chooses_different_inputs_per_unit():
    kernel = np.asarray(SparseInitializer(k=3, seed=0)((100, 20)))
    patterns = {tuple(np.flatnonzero(kernel[:, unit])) for unit in range(20)}
    assert len(patterns) > 15


def test_sparse_initializer_is_reproducible_with_a_seed():
    first = np.asarray(SparseInitializer(k=4, seed=11)((30, 7)))
    np.testing.assert_array_equal(first, SparseInitializer(k=4, seed=11)((30, 7)))
    assert not np.array_equal(first, SparseInitializer(k=4, seed=12)((30, 7)))


def test_sparse_initializer_rejects_k_above_the_fan_in():
    with pytest.raises(ValueError, match=r"k=10 .* exceeds the fan-in 8"):
        SparseInitializer(k=10)((2, 2, 2, 5))


@pytest.mark.parametrize(
    ("kwargs", "message"), [({"k": 0}, "k"), ({"sigma": -1.0}, "sigma"), ({"seed": 1.5}, "seed")]
)
def test_sparse_initializer_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SparseInitializer(**kwargs)


def test_sparse_initializer_survives_model_save_and_load(tmp_path):
    model = keras.Sequential(
        [keras.Input((12,)), keras.layers.Dense(4, kernel_initializer=SparseInitializer(k=3))]
    )
    model.save(tmp_path / "sparse.keras")
    restored = keras.models.load_model(tmp_path / "sparse.keras")
    config = restored.layers[0].get_config()["kernel_initializer"]
    assert config["class_name"] == "SparseInitializer" and config["config"]["k"] == 3


FAN_IN, FAN_OUT = 400, 300


@pytest.mark.parametrize(
    ("name", "kwargs", "expected_std"),
    [
        ("small_random", {}, 0.01),
        ("small_random", {"scale": 0.1}, 0.1),
        ("calibrated", {}, 1 / np.sqrt(FAN_IN)),
        ("xavier", {}, np.sqrt(2 / (FAN_IN + FAN_OUT))),
        ("he", {}, np.sqrt(2 / FAN_IN)),
        ("msra", {}, np.sqrt(2 / FAN_IN)),
        ("sparse", {"k": 10, "sigma": 1.0}, np.sqrt(10 / FAN_IN)),
    ],
)
def test_named_random_schemes_have_the_documented_scale(name, kwargs, expected_std):
    initializer = layers.initializers.get(name, seed=1, **kwargs)
    assert isinstance(initializer, keras.initializers.Initializer)
    values = np.asarray(initializer((FAN_IN, FAN_OUT)))
    assert abs(values.std() / expected_std - 1) < 0.03


def test_xavier_is_uniform_and_he_is_an_untruncated_normal():
    xavier = np.asarray(layers.initializers.get("xavier", seed=0)((FAN_IN, FAN_OUT)))
    assert np.abs(xavier).max() <= np.sqrt(6 / (FAN_IN + FAN_OUT))
    he = np.asarray(layers.initializers.get("he", seed=0)((FAN_IN, FAN_OUT)))
    # A truncated normal never exceeds 2 std; the untruncated one does (about 4.6% of draws).
    assert 0.03 < (np.abs(he) > 2 * np.sqrt(2 / FAN_IN)).mean() < 0.06


def test_constant_and_zeros_schemes():
    np.testing.assert_allclose(
        layers.initializers.get("constant", value=0.3)((2, 3)), 0.3, rtol=1e-7
    )
    np.testing.assert_array_equal(layers.initializers.get("zeros")((2, 3)), 0.0)


def test_get_is_usable_as_a_layer_initializer():
    dense = keras.layers.Dense(8, kernel_initializer=layers.initializers.get("sparse", k=2))
    dense.build((None, 5))
    np.testing.assert_array_equal((dense.kernel.numpy() != 0).sum(axis=0), 2)


def test_get_rejects_unknown_names_listing_the_valid_ones():
    with pytest.raises(ValueError, match="Valid names: zeros, constant, small_random, calibrated"):
        layers.initializers.get("glorott_uniformm_")


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [
        ("He", "he"),
        ("MSRA", "he"),
        ("Small-Random", "small_random"),
        ("small random", "small_random"),
        ("he_normal", "he_normal"),
        ("HeNormal", "he_normal"),
        ("Glorot-Uniform", "glorot_uniform"),
        ("Zeros", "zeros"),
    ],
)
def test_name_spellings(spelling, canonical):
    assert layers.initializers.canonical_name(spelling) == canonical


@pytest.mark.parametrize(
    ("typo", "suggestion"),
    [("he_normall", "he_normal"), ("xavierr", "xavier"), ("spars", "sparse"), ("msr", "msra")],
)
def test_unknown_name_suggests_the_closest(typo, suggestion):
    with pytest.raises(
        ValueError, match=f"Unknown initializer '{typo}'. Did you mean '{suggestion}'"
    ):
        layers.initializers.get(typo)


def test_every_keras_initializer_is_available_by_its_keras_name():
    assert {"he_normal", "glorot_uniform", "orthogonal", "lecun_normal"} <= set(
        layers.initializers.NAMES
    )
    initializer = layers.initializers.get("Orthogonal", gain=2.0, seed=3)
    assert type(initializer) is keras.initializers.Orthogonal and initializer.gain == 2.0
    # The course's "he" is the untruncated normal; Keras's "he_normal" stays its own.
    assert type(layers.initializers.get("he_normal")) is keras.initializers.HeNormal
    with pytest.raises(ValueError, match=r"'orthogonal' does not take k\. It accepts: gain, seed"):
        layers.initializers.get("orthogonal", k=2)


def test_config_dicts_and_built_initializers():
    from_dict = layers.initializers.get({"name": "Sparse", "k": 3}, seed=4)
    assert isinstance(from_dict, SparseInitializer) and (from_dict.k, from_dict.seed) == (3, 4)
    assert layers.initializers.get(from_dict) is from_dict
    restored = layers.initializers.get(keras.saving.serialize_keras_object(from_dict))
    assert type(restored) is SparseInitializer and restored.get_config() == from_dict.get_config()
    np.testing.assert_array_equal(restored((6, 4)), from_dict((6, 4)))
    with pytest.raises(ValueError, match="options k cannot be applied to a built initializer"):
        layers.initializers.get(from_dict, k=2)
    with pytest.raises(ValueError, match="given both in the config dict and as arguments"):
        layers.initializers.get({"name": "sparse", "k": 3}, k=2)


def test_get_rejects_options_the_scheme_does_not_take():
    with pytest.raises(ValueError, match=r"'he' does not take value\. It accepts: seed"):
        layers.initializers.get("he", value=1.0)


@pytest.mark.parametrize("policy", MIXED_POLICIES)
def test_sparse_initializer_under_a_mixed_policy_gives_the_float32_kernel(policy):
    def kernel(dtype):
        layer = keras.layers.Dense(
            6, kernel_initializer=SparseInitializer(k=3, seed=4), dtype=dtype
        )
        layer.build((None, 20))
        return layer.kernel

    mixed = kernel(policy)
    assert mixed.dtype == "float32"
    np.testing.assert_array_equal(mixed.numpy(), kernel("float32").numpy())
    narrow = SparseInitializer(k=3, seed=4)((20, 6), dtype=policy.removeprefix("mixed_"))
    assert keras.backend.standardize_dtype(narrow.dtype) == policy.removeprefix("mixed_")
    np.testing.assert_array_equal(np.asarray(narrow, np.float32) != 0, mixed.numpy() != 0)
