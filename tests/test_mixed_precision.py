"""The ten tf.train optimizers and the wrappers under mixed precision: loss scaling that is exact
and skips a non-finite step whole, training under both mixed policies with the optimizer state
saved and resumed, and `wrap_for_policy`. The layers' and losses' mixed-precision checks live in
tests/test_layers_*.py and tests/test_losses.py."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from recipes.optim import (
    OPTIMIZER_NAMES,
    CountingLossScaleOptimizer,
    Lookahead,
    StochasticWeightAveraging,
    applied_batches,
    get_optimizer,
    wrap_for_policy,
)

NAMES = [*OPTIMIZER_NAMES, "Lookahead", "StochasticWeightAveraging"]
# A power of two, as the dynamic loss scale always is: scaling and unscaling are exact.
SCALE = 2.0**10


def _optimizer(name: str) -> keras.optimizers.Optimizer:
    if name == "Lookahead":
        return Lookahead(get_optimizer("Adam", 0.01), k=3)
    if name == "StochasticWeightAveraging":
        return StochasticWeightAveraging(get_optimizer("Momentum", 0.01), 2, 2)
    return get_optimizer(name, 1.0 if name == "Adadelta" else 0.01)


def _state(optimizer: keras.optimizers.Optimizer, variables: list) -> list[np.ndarray]:
    return [np.asarray(v) for v in [*variables, *optimizer.variables]]


def _assert_same(first: list[np.ndarray], second: list[np.ndarray]) -> None:
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)


def _variables() -> list[keras.Variable]:
    rng = np.random.default_rng(0)
    return [
        keras.Variable(rng.normal(size=(6, 3)).astype("float32"), name="table"),
        keras.Variable(rng.normal(size=(3,)).astype("float32"), name="bias"),
    ]


def _gradients(step: int, scale: float = 1.0, poison: float | None = None) -> list:
    """A sparse gradient of the table (duplicate rows; rows touched at one step and not at the
    next, so densifying it would move them) and a dense one of the bias, times `scale`; with
    `poison` (inf or NaN) in both."""
    rng = np.random.default_rng(step + 1)
    rows = [[0, 1, 1], [2, 0, 4]][step % 2]
    values = (rng.normal(size=(3, 3)) * scale).astype("float32")
    dense = (rng.normal(size=(3,)) * scale).astype("float32")
    if poison is not None:
        values[1, 2] = dense[0] = poison
    sparse = tf.IndexedSlices(tf.constant(values), tf.constant(rows), tf.constant([6, 3]))
    return [sparse, tf.constant(dense)]


# XLA, as model.fit compiles the step on a GPU; slow because of the compilations.
@pytest.mark.parametrize(
    "jit_compile", [False, pytest.param(True, marks=pytest.mark.slow)], ids=["graph", "xla"]
)
@pytest.mark.parametrize("name", NAMES)
def test_loss_scaling_is_exact_and_a_non_finite_step_moves_nothing(name, jit_compile):
    """`LossScaleOptimizer` around each optimizer, given the gradients times the loss scale,
    updates the weights and every slot, counter and wrapper variable exactly as the optimizer
    alone given the plain gradients; a step with an inf or NaN gradient leaves all of them
    (`iterations`, Adam's beta powers, Lookahead's slow weights, SWA's averages) unchanged,
    halves the scale and is counted as skipped."""
    plain, plain_variables = _optimizer(name), _variables()
    scaled = CountingLossScaleOptimizer(_optimizer(name), initial_scale=SCALE)
    scaled_variables = _variables()
    plain.build(plain_variables)
    scaled.build(scaled_variables)
    inner = scaled.inner_optimizer

    def apply(optimizer, variables, gradients):
        tf.function(lambda: optimizer.apply(gradients, variables), jit_compile=jit_compile)()

    def step(index, scale):
        apply(plain, plain_variables, _gradients(index))
        apply(scaled, scaled_variables, _gradients(index, scale))
        _assert_same(_state(inner, scaled_variables), _state(plain, plain_variables))

    step(0, SCALE)
    for poison in (np.inf, np.nan):
        before = _state(inner, scaled_variables)
        apply(scaled, scaled_variables, _gradients(1, float(scaled.dynamic_scale), poison))
        _assert_same(_state(inner, scaled_variables), before)
    assert float(scaled.dynamic_scale) == SCALE / 4
    assert int(scaled.iterations) == int(inner.iterations) == 1
    assert scaled.skipped_steps == 2
    step(1, SCALE / 4)
    step(2, SCALE / 4)
    assert int(inner.iterations) == 3
    assert applied_batches(scaled) == 5


def _model() -> keras.Model:
    """An Embedding (sparse gradients), Dense layers (dense ones) and a float32 output layer,
    in the global dtype policy."""
    tokens = keras.Input(shape=(8,), dtype="int32")
    embedded = keras.layers.Embedding(20, 4)(tokens)
    pooled = keras.layers.GlobalAveragePooling1D()(embedded)
    hidden = keras.layers.Dense(8, activation="relu", name="hidden")(pooled)
    return keras.Model(tokens, keras.layers.Dense(1, dtype="float32")(hidden))


def _data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(5)
    tokens = rng.integers(0, 20, size=(64, 8)).astype("int32")
    return tokens, (tokens.mean(axis=1, keepdims=True) / 10.0).astype("float32")


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_each_optimizer_trains_saves_and_resumes_under_a_mixed_policy(
    name, global_mixed_policy, tmp_path
):
    """Compiled on a model of each mixed policy, each optimizer (inside the LossScaleOptimizer
    `model.compile` adds under mixed_float16) lowers the loss with float32 weights and state;
    the `.keras` file keeps the policy and the optimizer state, and training on from the loaded
    model gives the weights of training on from the original, bit for bit."""
    keras.utils.set_random_seed(0)
    tokens, targets = _data()
    model = _model()
    model.compile(optimizer=_optimizer(name), loss="mse")
    loss_scaled = global_mixed_policy == "mixed_float16"
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer) == loss_scaled
    history = model.fit(tokens, targets, batch_size=16, epochs=3, shuffle=False, verbose=0)
    losses = history.history["loss"]
    assert np.isfinite(losses).all() and losses[-1] < losses[0]
    assert int(model.optimizer.iterations) == 12
    assert model.get_layer("hidden").compute_dtype == global_mixed_policy.removeprefix("mixed_")
    assert all(w.dtype == "float32" for w in model.weights)
    assert all(v.dtype == "float32" for v in model.optimizer.variables if "float" in v.dtype)

    model.save(tmp_path / "model.keras")
    restored = keras.models.load_model(tmp_path / "model.keras")
    assert restored.get_layer("hidden").dtype_policy.name == global_mixed_policy
    assert type(restored.optimizer) is type(model.optimizer)
    assert restored.optimizer.get_config() == model.optimizer.get_config()
    _assert_same(_state(restored.optimizer, []), _state(model.optimizer, []))
    model.fit(tokens, targets, batch_size=16, epochs=1, shuffle=False, verbose=0)
    restored.fit(tokens, targets, batch_size=16, epochs=1, shuffle=False, verbose=0)
    _assert_same(restored.get_weights(), model.get_weights())
    _assert_same(_state(restored.optimizer, []), _state(model.optimizer, []))


@pytest.mark.parametrize("global_mixed_policy", ["mixed_float16"], indirect=True)
def test_skipped_steps_are_counted_saved_and_resumed(global_mixed_policy, tmp_path):
    """A first loss scale too large for float16: the first steps overflow and are skipped, and
    `iterations` lags the batches trained by as many; the skipped steps are counted, saved and
    restored, so `applied_batches` is the number of batches trained."""
    keras.utils.set_random_seed(0)
    tokens, targets = _data()
    model = _model()
    optimizer = CountingLossScaleOptimizer(get_optimizer("Momentum", 0.01), initial_scale=2.0**22)
    model.compile(optimizer=optimizer, loss="mse")
    assert model.optimizer is optimizer
    model.fit(tokens, targets, batch_size=16, epochs=3, shuffle=False, verbose=0)
    assert 0 < optimizer.skipped_steps < 12
    assert int(optimizer.iterations) + optimizer.skipped_steps == applied_batches(optimizer) == 12
    model.save(tmp_path / "model.keras")
    restored = keras.models.load_model(tmp_path / "model.keras").optimizer
    assert type(restored) is CountingLossScaleOptimizer
    assert restored.skipped_steps == optimizer.skipped_steps
    assert applied_batches(restored) == 12


@pytest.mark.parametrize(
    ("policy", "wrapped"),
    [
        ("mixed_float16", True),
        (keras.DTypePolicy("mixed_float16"), True),
        ("mixed_bfloat16", False),
        ("float32", False),
    ],
    ids=["mixed_float16", "policy-object", "mixed_bfloat16", "float32"],
)
def test_wrap_for_policy_adds_loss_scaling_under_mixed_float16_only(policy, wrapped):
    optimizer = get_optimizer("Momentum", 0.1)
    result = wrap_for_policy(optimizer, policy)
    if wrapped:
        assert type(result) is CountingLossScaleOptimizer
        assert result.inner_optimizer is optimizer
        assert wrap_for_policy(result, policy) is result
        keras_wrapped = keras.optimizers.LossScaleOptimizer(get_optimizer("Momentum", 0.1))
        assert wrap_for_policy(keras_wrapped, policy) is keras_wrapped
    else:
        assert result is optimizer
    assert applied_batches(result) == 0


def test_compile_keeps_the_optimizer_wrap_for_policy_gives(global_mixed_policy):
    """`wrap_for_policy` (the global policy) wraps where `compile` would, with the same settings,
    and `compile` does not wrap its result again."""
    optimizer = wrap_for_policy(get_optimizer("Adam", 0.01))
    automatic = _model()
    automatic.compile(optimizer=get_optimizer("Adam", 0.01), loss="mse")
    explicit = _model()
    explicit.compile(optimizer=optimizer, loss="mse")
    assert explicit.optimizer is optimizer
    loss_scaled = isinstance(automatic.optimizer, keras.optimizers.LossScaleOptimizer)
    assert isinstance(optimizer, CountingLossScaleOptimizer) == loss_scaled
    assert explicit.optimizer.get_config() == automatic.optimizer.get_config()


def test_wrap_for_policy_refuses_an_unknown_policy_or_a_non_optimizer():
    with pytest.raises(ValueError, match=r"`policy` must be .* Received: policy='mixed_float8'"):
        wrap_for_policy(get_optimizer("Adam"), "mixed_float8")
    with pytest.raises(TypeError, match=r"Received: optimizer='Adam'"):
        wrap_for_policy("Adam", "mixed_float16")


@pytest.mark.parametrize("wrapper", [Lookahead, StochasticWeightAveraging])
def test_the_wrappers_refuse_to_wrap_a_loss_scale_optimizer(wrapper):
    scaled = keras.optimizers.LossScaleOptimizer(get_optimizer("Momentum", 0.1))
    message = rf"{wrapper.__name__} cannot wrap a LossScaleOptimizer: .* outermost"
    with pytest.raises(ValueError, match=message):
        wrapper(scaled)
    with pytest.raises(ValueError, match=message):
        wrapper(keras.optimizers.serialize(scaled))
