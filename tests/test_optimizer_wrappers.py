"""Lookahead and stochastic weight averaging: NumPy references, saving and exact resumption, the
end of SWA (averaged weights, BatchNorm statistics recomputed), the run configuration, and real
runs of a recipe interrupted and resumed."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

import recipes.train.runner as runner
from recipes import lenet5_fashion_mnist
from recipes.callbacks.checkpoints import LAST_MODEL, RunCheckpoint
from recipes.callbacks.swa import (
    SWACallback,
    find_swa_optimizer,
    recompute_batch_norm_statistics,
)
from recipes.optim import Lookahead, StochasticWeightAveraging, get_optimizer, swa_steps
from recipes.optim.tf_train import TFTrainMomentum
from recipes.train.config import RunConfig, resolve_config
from recipes.train.errors import ConfigurationError
from tests.conftest import REPO_ROOT, run_python

# A quadratic 1/2 * sum(A * w^2) with its gradient A * w, from W0.
A = np.array([0.5, 1.0, 2.0, 3.0])
W0 = np.array([1.0, -2.0, 3.0, 0.5])
# float32 steps against a float64 reference.
CLOSE = {"rtol": 1e-5, "atol": 1e-6}


def train_on_quadratic(optimizer, steps: int, compiled: bool) -> tuple[keras.Variable, list]:
    """`steps` steps of `optimizer` on the quadratic; the weights after each step."""
    weights = keras.Variable(W0.astype("float32"))

    def step() -> None:
        optimizer.apply([tf.constant(A, tf.float32) * weights.value], [weights])

    step = tf.function(step) if compiled else step
    trajectory = []
    for _ in range(steps):
        step()
        trajectory.append(weights.numpy().astype(np.float64))
    return weights, trajectory


def momentum_reference(lr: float, momentum: float):
    """tf.train's momentum rule on the quadratic, in float64, as a stateful step function."""
    accumulator = np.zeros_like(W0)

    def step(w: np.ndarray) -> np.ndarray:
        nonlocal accumulator
        accumulator = momentum * accumulator + A * w
        return w - lr * accumulator

    return step


# ------------------------------------------------------------------------------------------------
# Lookahead


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "tf.function"])
@pytest.mark.parametrize(
    "inner, reference",
    [
        (lambda: keras.optimizers.SGD(0.1), lambda: lambda w: w - 0.1 * A * w),
        (lambda: get_optimizer("GradientDescent", 0.1), lambda: lambda w: w - 0.1 * A * w),
        (lambda: TFTrainMomentum(0.05, momentum=0.9), lambda: momentum_reference(0.05, 0.9)),
    ],
    ids=["keras-SGD", "GradientDescent", "TFTrainMomentum"],
)
@pytest.mark.parametrize("k, alpha", [(5, 0.5), (3, 0.8), (1, 0.3)])
def test_lookahead_matches_a_numpy_reference(inner, reference, k, alpha, compiled):
    """Every k inner steps: slow <- slow + alpha * (fast - slow), fast <- slow; the inner
    optimizer's own state (momentum) carries on across synchronizations."""
    steps = 3 * k + 2
    optimizer = Lookahead(inner(), k=k, alpha=alpha)
    weights, trajectory = train_on_quadratic(optimizer, steps, compiled)
    inner_step = reference()
    slow = fast = W0.copy()
    for step in range(1, steps + 1):
        fast = inner_step(fast)
        if step % k == 0:
            slow = slow + alpha * (fast - slow)
            fast = slow.copy()
            np.testing.assert_allclose(trajectory[step - 1], slow, **CLOSE)
    np.testing.assert_allclose(weights.numpy(), fast, **CLOSE)
    np.testing.assert_allclose(optimizer.slow_weights[0].numpy(), slow, **CLOSE)
    assert int(optimizer.iterations) == steps  # the inner optimizer's count


def test_lookahead_after_k_steps_is_alpha_of_the_way_to_the_fast_weights():
    """The paper's step, stated directly: k plain SGD steps from w0 reach `fast`; Lookahead
    ends at w0 + alpha * (fast - w0) instead."""
    k, alpha = 4, 0.5
    plain, _ = train_on_quadratic(keras.optimizers.SGD(0.1), k, compiled=False)
    wrapped, _ = train_on_quadratic(Lookahead(keras.optimizers.SGD(0.1), k, alpha), k, False)
    np.testing.assert_allclose(wrapped.numpy(), W0 + alpha * (plain.numpy() - W0), rtol=1e-6)
    # Before the k-th step, the fast weights are the plain optimizer's.
    plain, _ = train_on_quadratic(keras.optimizers.SGD(0.1), k - 1, compiled=False)
    wrapped, _ = train_on_quadratic(Lookahead(keras.optimizers.SGD(0.1), k, alpha), k - 1, False)
    np.testing.assert_array_equal(wrapped.numpy(), plain.numpy())


def test_lookahead_k_counts_updates_under_gradient_accumulation():
    """With accumulate_steps=2 the weights move every second batch, and k=2 updates make a
    synchronization every 4 batches."""
    optimizer = Lookahead(get_optimizer("sgd", 0.1, accumulate_steps=2), k=2, alpha=0.5)
    _, trajectory = train_on_quadratic(optimizer, 8, compiled=False)
    fast = slow = W0.copy()
    expected = []
    for batch in range(1, 9):
        if batch % 2 == 0:  # the same gradient twice, averaged: one step
            fast = fast - 0.1 * A * fast
        if batch % 4 == 0:
            slow = slow + 0.5 * (fast - slow)
            fast = slow.copy()
        expected.append(fast)
    np.testing.assert_allclose(np.array(trajectory), np.array(expected), **CLOSE)
    assert int(optimizer.iterations) == 4  # updates, as the inner optimizer counts them


def test_lookahead_slow_weights_start_from_the_weights_of_the_first_step():
    """Weights changed after the optimizer was built (set_weights, a checkpoint) are where
    the slow weights start."""
    optimizer = Lookahead(keras.optimizers.SGD(0.1), k=2, alpha=0.5)
    weights = keras.Variable(np.zeros(4, "float32"))
    optimizer.build([weights])
    weights.assign(W0.astype("float32"))
    for _ in range(2):
        optimizer.apply([tf.constant(A, tf.float32) * weights.value], [weights])
    fast = W0 - 0.1 * A * W0
    fast = fast - 0.1 * A * fast
    np.testing.assert_allclose(weights.numpy(), W0 + 0.5 * (fast - W0), rtol=1e-6)


# ------------------------------------------------------------------------------------------------
# Stochastic weight averaging


@pytest.mark.parametrize("compiled", [False, True], ids=["eager", "tf.function"])
@pytest.mark.parametrize("start_step, period", [(1, 1), (3, 2), (4, 5)])
def test_swa_average_is_the_mean_of_the_weight_snapshots(start_step, period, compiled):
    steps = 13
    optimizer = StochasticWeightAveraging(TFTrainMomentum(0.05), start_step, period)
    weights, trajectory = train_on_quadratic(optimizer, steps, compiled)
    snapshots = [trajectory[step - 1] for step in range(start_step, steps + 1, period)]
    assert optimizer.averaged_snapshots == len(snapshots)
    np.testing.assert_allclose(optimizer.averages[0].numpy(), np.mean(snapshots, axis=0), **CLOSE)
    # The model trains on its own weights: the plain optimizer's trajectory.
    plain, _ = train_on_quadratic(TFTrainMomentum(0.05), steps, compiled)
    np.testing.assert_array_equal(weights.numpy(), plain.numpy())
    assert optimizer.assign_averages() == len(snapshots)
    np.testing.assert_allclose(weights.numpy(), np.mean(snapshots, axis=0), **CLOSE)


def test_swa_reproduces_tensorflow_addons_numbers():
    """TFA's test_averaging: SGD(1.0) with constant gradients 0.1 for three steps from 1 and 2
    averages to 0.8 and 1.8 (snapshots 0.9, 0.8, 0.7 and 1.9, 1.8, 1.7)."""
    first, second = keras.Variable([1.0, 1.0]), keras.Variable([2.0, 2.0])
    optimizer = StochasticWeightAveraging(keras.optimizers.SGD(1.0))
    for _ in range(3):
        optimizer.apply([tf.constant([0.1, 0.1])] * 2, [first, second])
    np.testing.assert_allclose(first.numpy(), [0.7, 0.7], rtol=1e-6)
    np.testing.assert_allclose(second.numpy(), [1.7, 1.7], rtol=1e-6)
    optimizer.assign_averages()
    np.testing.assert_allclose(first.numpy(), [0.8, 0.8], rtol=1e-6)
    np.testing.assert_allclose(second.numpy(), [1.8, 1.8], rtol=1e-6)


def test_swa_without_a_snapshot_refuses_to_assign():
    optimizer = StochasticWeightAveraging(keras.optimizers.SGD(0.1), start_step=5)
    train_on_quadratic(optimizer, 4, compiled=False)
    with pytest.raises(ValueError, match="no weights averaged yet .*starts at step 5.* took 4"):
        optimizer.assign_averages()


@pytest.mark.parametrize(
    "arguments, expected",
    [
        ((3, 10, None, 0), (30, 10)),  # the end of epochs 3, 4, ...
        ((3, 10, 4, 0), (24, 4)),  # 4 steps into epoch 3, then every 4
        ((5, 10, None, 2), (30, 10)),  # a second phase that starts after epoch 2
        ((1, 7, None, 0), (7, 7)),
    ],
)
def test_swa_steps_converts_epochs(arguments, expected):
    assert swa_steps(*arguments) == expected


def test_swa_steps_refuses_a_start_before_the_phase():
    with pytest.raises(ValueError, match=r"`start_epoch` must be an integer >= 3"):
        swa_steps(2, 10, first_epoch=2)


# ------------------------------------------------------------------------------------------------
# Both: arguments, serialization, exact resumption, Keras integration


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: Lookahead("sgd", k=0), r"Lookahead: `k` must be an integer >= 1. Received: k=0"),
        (lambda: Lookahead("sgd", k=2.0), r"`k` must be an integer >= 1. Received: k=2.0"),
        (lambda: Lookahead("sgd", alpha=0), r"`alpha` must be a number in \(0, 1\]"),
        (lambda: Lookahead("sgd", alpha=1.5), r"`alpha` must be a number in \(0, 1\]"),
        (
            lambda: StochasticWeightAveraging("sgd", start_step=0),
            r"StochasticWeightAveraging: `start_step` must be an integer >= 1",
        ),
        (
            lambda: StochasticWeightAveraging("sgd", average_period=0),
            r"`average_period` must be an integer >= 1",
        ),
        (lambda: Lookahead("Momentun"), r"Did you mean.*Momentum"),
    ],
)
def test_arguments_are_checked(build, message):
    with pytest.raises(ValueError, match=message):
        build()


def test_the_inner_optimizer_must_be_an_optimizer():
    with pytest.raises(TypeError, match="must be a keras.optimizers.Optimizer.*Received: .*42"):
        Lookahead(42)


def test_names_and_configs_resolve_through_get_optimizer():
    optimizer = Lookahead({"name": "Momentum", "learning_rate": 0.2, "momentum": 0.5}, k=3)
    assert isinstance(optimizer.inner_optimizer, TFTrainMomentum)
    assert optimizer.inner_optimizer.momentum == 0.5
    assert float(optimizer.learning_rate) == pytest.approx(0.2)


def test_configs_round_trip():
    optimizer = StochasticWeightAveraging(
        Lookahead(get_optimizer("Adam", 0.003), k=7, alpha=0.3), start_step=11, average_period=4
    )
    config = keras.optimizers.serialize(optimizer)
    assert config["registered_name"] == "recipes>StochasticWeightAveraging"
    restored = keras.optimizers.deserialize(json.loads(json.dumps(config)))
    assert restored.get_config() == optimizer.get_config()
    assert (restored.start_step, restored.average_period) == (11, 4)
    assert (restored.inner_optimizer.k, restored.inner_optimizer.alpha) == (7, 0.3)
    assert type(restored.inner_optimizer.inner_optimizer).__name__ == "TFTrainAdam"


def test_learning_rate_iterations_and_loss_scale_are_the_inner_optimizers():
    inner = keras.optimizers.SGD(0.1, loss_scale_factor=8.0)
    optimizer = Lookahead(inner)
    optimizer.learning_rate = 0.05  # as ReduceLROnPlateau sets it
    assert float(inner.learning_rate) == pytest.approx(0.05)
    assert optimizer.iterations is inner.iterations
    assert float(optimizer.scale_loss(tf.constant(2.0))) == 16.0


def _data(seed: int = 0, size: int = 96) -> tf.data.Dataset:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(size, 6)).astype("float32")
    y = (x[:, :1] * 2 - np.tanh(x[:, 1:2])).astype("float32")
    return tf.data.Dataset.from_tensor_slices((x, y)).batch(16)


def _bn_model(seed: int = 3) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(shape=(6,))
    hidden = keras.layers.Dense(8, activation="tanh", name="dense")(inputs)
    hidden = keras.layers.BatchNormalization(momentum=0.9, name="bn")(hidden)
    return keras.Model(inputs, keras.layers.Dense(1, name="out")(hidden))


def _wrapped() -> keras.optimizers.Optimizer:
    inner = get_optimizer("Momentum", 0.05, momentum=0.9)
    return StochasticWeightAveraging(Lookahead(inner, k=4, alpha=0.5), 5, 3)


def test_a_saved_model_resumes_bit_for_bit(tmp_path):
    """Four epochs in one go, or two, save, load_model, two more: the same weights and the same
    optimizer state (slow weights, averages, counters, momentum), bit for bit."""
    straight = _bn_model()
    straight.compile(optimizer=_wrapped(), loss="mse")
    straight.fit(_data(), epochs=4, shuffle=False, verbose=0)

    first = _bn_model()
    first.compile(optimizer=_wrapped(), loss="mse")
    first.fit(_data(), epochs=2, shuffle=False, verbose=0)
    first.save(tmp_path / "half.keras")
    resumed = keras.models.load_model(tmp_path / "half.keras")
    for saved, loaded in zip(first.optimizer.variables, resumed.optimizer.variables, strict=True):
        np.testing.assert_array_equal(np.asarray(saved), np.asarray(loaded), err_msg=saved.path)
    resumed.fit(_data(), epochs=4, initial_epoch=2, shuffle=False, verbose=0)

    for a, b in zip(straight.get_weights(), resumed.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(straight.optimizer.variables, resumed.optimizer.variables, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), err_msg=a.path)
    swa = find_swa_optimizer(resumed.optimizer)
    assert int(swa.iterations) == 24 and swa.averaged_snapshots == 7  # steps 5, 8, ..., 23


def test_a_saved_file_stores_each_optimizer_variable_once(tmp_path):
    model = _bn_model()
    model.compile(optimizer=_wrapped(), loss="mse")
    model.fit(_data(), epochs=1, shuffle=False, verbose=0)
    model.save(tmp_path / "m.keras")
    with zipfile.ZipFile(tmp_path / "m.keras") as archive:
        archive.extract("model.weights.h5", tmp_path)
    stored = []
    with h5py.File(tmp_path / "model.weights.h5") as weights:
        weights["optimizer"].visititems(
            lambda name, item: stored.append(name) if isinstance(item, h5py.Dataset) else None
        )
    assert len(stored) == len(model.optimizer.variables)


# ------------------------------------------------------------------------------------------------
# The end of SWA


def test_batch_norm_statistics_are_the_average_of_the_batch_statistics():
    model = _bn_model()
    model.compile(optimizer=StochasticWeightAveraging("sgd"), loss="mse")
    model.fit(_data(), epochs=1, shuffle=False, verbose=0)
    bn = model.get_layer("bn")
    data = _data(seed=1, size=90)  # batches of 16, the last of 10
    features = keras.Model(model.input, model.get_layer("dense").output)
    batches = [features(x, training=True).numpy().astype(np.float64) for x, _ in data]
    sizes = np.array([len(batch) for batch in batches])
    means = np.array([batch.mean(axis=0) for batch in batches])
    variances = np.array([batch.var(axis=0) for batch in batches])  # Keras' biased variance
    frozen = bn.momentum

    report = recompute_batch_norm_statistics(model, data)

    assert report == {"layers": 1, "examples": 90}
    np.testing.assert_allclose(bn.moving_mean.numpy(), sizes @ means / 90, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(bn.moving_variance.numpy(), sizes @ variances / 90, rtol=1e-5)
    assert bn.momentum == frozen


def test_frozen_batch_norm_layers_keep_their_statistics():
    model = _bn_model()
    bn = model.get_layer("bn")
    bn.moving_mean.assign(np.full(8, 0.25, "float32"))
    bn.trainable = False
    assert recompute_batch_norm_statistics(model, _data()) == {"layers": 0, "examples": 0}
    np.testing.assert_array_equal(bn.moving_mean.numpy(), np.full(8, 0.25, "float32"))


def test_swa_callback_ends_fit_with_the_averages_and_recomputed_statistics():
    model = _bn_model()
    optimizer = StochasticWeightAveraging(get_optimizer("Momentum", 0.05), 6, 6)
    model.compile(optimizer=optimizer, loss="mse")
    train, validation = _data(), _data(seed=2, size=32)
    # A fit that ends before the final epoch (an early stop, a first phase) changes nothing.
    callback = SWACallback(train, final_epoch=3, validation_data=validation, verbose=0)
    model.fit(train, epochs=2, callbacks=[callback], shuffle=False, verbose=0)
    assert callback.report is None
    model.fit(train, epochs=3, initial_epoch=2, callbacks=[callback], shuffle=False, verbose=0)

    report = callback.report
    assert report["averaged_snapshots"] == 3  # steps 6, 12, 18 of 6 steps per epoch
    assert (report["start_step"], report["average_period"]) == (6, 6)
    assert (report["batch_norm_layers"], report["batch_norm_examples"]) == (1, 96)
    for weights, average in zip(model.trainable_variables, optimizer.averages, strict=True):
        np.testing.assert_array_equal(weights.numpy(), average.numpy())
    bn = model.get_layer("bn")
    mean, variance = bn.moving_mean.numpy(), bn.moving_variance.numpy()
    recompute_batch_norm_statistics(model, train)  # the same pass again: the same statistics
    np.testing.assert_allclose(bn.moving_mean.numpy(), mean, rtol=1e-6)
    np.testing.assert_allclose(bn.moving_variance.numpy(), variance, rtol=1e-6)
    expected = model.evaluate(validation, verbose=0, return_dict=True)["loss"]
    assert report["val_loss"] == pytest.approx(expected, rel=1e-6)
    assert callback.finish() is report  # once only


def test_swa_callback_needs_an_swa_optimizer():
    model = _bn_model()
    model.compile(optimizer=Lookahead("sgd"), loss="mse")
    with pytest.raises(ValueError, match="not a StochasticWeightAveraging"):
        SWACallback(_data()).finish(model)


def test_find_swa_optimizer_looks_through_wrappers():
    swa = StochasticWeightAveraging(Lookahead("sgd"))
    assert find_swa_optimizer(keras.optimizers.LossScaleOptimizer(swa)) is swa
    assert find_swa_optimizer(Lookahead(swa)) is swa
    assert find_swa_optimizer(Lookahead("sgd")) is None


# ------------------------------------------------------------------------------------------------
# The run configuration


def test_flags_set_the_wrappers():
    argv = ["--lookahead", "--lookahead-k", "3", "--lookahead-alpha", "0.8"]
    argv += ["--swa-start-epoch", "4", "--swa-every-steps", "50"]
    optim = resolve_config({}, argv, "test", "").optim
    assert (optim.lookahead, optim.lookahead_k, optim.lookahead_alpha) == (True, 3, 0.8)
    assert (optim.swa_start_epoch, optim.swa_every_steps) == (4, 50)
    defaults = RunConfig().optim
    assert (defaults.lookahead, defaults.lookahead_k, defaults.lookahead_alpha) == (False, 5, 0.5)
    assert (defaults.swa_start_epoch, defaults.swa_every_steps) == (None, None)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"optim.lookahead_k": 0}, r"`optim.lookahead_k` must be an integer >= 1"),
        ({"optim.lookahead_alpha": 0}, r"`optim.lookahead_alpha` must be a number in \(0, 1\]"),
        ({"optim.lookahead": "yes"}, r"`optim.lookahead` must be True or False"),
        ({"optim.swa_start_epoch": 0}, r"`optim.swa_start_epoch` must be None or an integer >= 1"),
        (
            {"optim.swa_start_epoch": 2, "optim.swa_every_steps": 0},
            r"`optim.swa_every_steps` must be None or an integer >= 1",
        ),
        ({"optim.swa_every_steps": 10}, r"needs optim.swa_start_epoch \(--swa-start-epoch\)"),
    ],
)
def test_bad_wrapper_settings_are_refused(values, message):
    with pytest.raises(ValueError, match=message):
        RunConfig().updated(values)


def run_lenet(run_dir: Path, *flags: str) -> dict:
    keras.backend.clear_session()
    argv = ["--dataset", "sample", "--verbose", "0", "--out-dir", str(run_dir), *flags]
    module = lenet5_fashion_mnist
    return runner.recipe_main("lenet5_fashion_mnist", module.__doc__, module.DEFAULTS, argv)


@pytest.mark.parametrize(
    "values, message",
    [
        (
            {"run.epochs": 3, "optim.swa_start_epoch": 4},
            r"must be in \(0, run.epochs=3\]: a run shortened with --epochs needs an earlier "
            r"--swa-start-epoch",
        ),
        (
            {"run.epochs": 3, "model.name": "mobilenet", "model.fine_tune": "full"}
            | {"model.head_epochs": 2}
            | {"optim.swa_start_epoch": 2, "data.preprocessing": "none"},
            r"must be in \(2, run.epochs=3\] \(after the head-only epochs",
        ),
    ],
)
def test_swa_outside_the_training_is_refused_when_compiling(values, message):
    with pytest.raises(ConfigurationError, match=message):
        runner.compile_model(_bn_model(), RunConfig().updated(values), steps_per_epoch=10)


def test_compile_model_wraps_lookahead_inside_swa():
    config = RunConfig().updated(
        {"optim.lookahead": True, "optim.lookahead_k": 3, "optim.swa_start_epoch": 2}
    )
    model = _bn_model()
    runner.compile_model(model, config, steps_per_epoch=10)
    swa = model.optimizer
    assert isinstance(swa, StochasticWeightAveraging)
    assert (swa.start_step, swa.average_period) == (20, 10)
    assert isinstance(swa.inner_optimizer, Lookahead) and swa.inner_optimizer.k == 3
    assert isinstance(swa.inner_optimizer.inner_optimizer, TFTrainMomentum)
    # Full fine-tuning's second phase: a new optimizer whose steps start after the head epochs.
    config = config.updated(
        {"model.name": "mobilenet", "model.fine_tune": "full", "model.head_epochs": 1}
        | {"data.preprocessing": "none"}
    )
    runner.compile_model(model, config, steps_per_epoch=10, first_epoch=1)
    assert (model.optimizer.start_step, model.optimizer.average_period) == (10, 10)


# ------------------------------------------------------------------------------------------------
# Real runs, interrupted and resumed


class Interrupted(BaseException):
    """The process stopping after an epoch's checkpoint: nothing in between catches it."""


def interrupted_after(epochs: int) -> type[RunCheckpoint]:
    class Interrupting(RunCheckpoint):
        def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
            super().on_epoch_end(epoch, logs)
            if epoch + 1 == epochs:
                raise Interrupted(f"stopped after epoch {epochs}")

    return Interrupting


def interrupted_and_resumed(tmp_path: Path, monkeypatch, *flags: str) -> tuple[dict, dict]:
    """Metrics of a 4-epoch run, and of the same run interrupted after epoch 3 and resumed.

    One batch of the whole training split per epoch: the data order, which a resumed process
    does not reproduce, changes only the summation order of the gradients, so the two runs must
    agree to float32 rounding (in float32: `auto` trains in mixed_bfloat16 on CPUs with native
    bfloat16, whose rounding is 2**16 times coarser).
    """
    flags = (
        "--epochs",
        "4",
        "--batch-size",
        "3600",
        "--seed",
        "3",
        "--precision",
        "float32",
        *flags,
    )
    straight = run_lenet(tmp_path / "straight", *flags)
    with monkeypatch.context() as patch:
        patch.setattr(runner, "RunCheckpoint", interrupted_after(3))
        with pytest.raises(Interrupted):
            run_lenet(tmp_path / "resumed", *flags)
    assert not (tmp_path / "resumed" / "metrics.json").exists()
    stopped = keras.models.load_model(tmp_path / "resumed" / LAST_MODEL)
    assert int(stopped.optimizer.iterations) == 3
    resumed = run_lenet(tmp_path / "resumed", *flags, "--resume")
    return straight, resumed


def assert_close_to_max(a, b, tolerance: float, name: str) -> None:
    """Every entry within `tolerance` times the tensor's largest magnitude, or than 1 for small
    tensors (a BatchNorm beta of 0.01 still gets the rounding of gradients of order 1)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    difference = np.abs(a - b).max() if a.size else 0.0
    assert difference <= tolerance * max(np.abs(a).max(), 1.0), f"{name}: {difference:.3g}"


def assert_same_final_model(tmp_path: Path) -> keras.Model:
    """The resumed run's model.keras is the uninterrupted run's, to the rounding of the sums over
    the batch: weights and the wrapper's variables (slow weights, averages, counters) within 1e-5
    of each tensor's largest magnitude (losing SWA's averages moves them by 1e-3 to 1e-1 of it);
    statistics of activations and gradients, in float32 over 3600 x 28 x 28 values (recomputed
    BatchNorm statistics, the inner optimizer's momentum), within 1e-3."""
    straight, resumed = [
        keras.models.load_model(tmp_path / run / "model.keras") for run in ("straight", "resumed")
    ]
    assert int(resumed.optimizer.iterations) == 4
    for a, b in zip(straight.weights, resumed.weights, strict=True):
        assert_close_to_max(a, b, 1e-3 if "moving_" in a.path else 1e-5, a.path)
    wrapper, inner = straight.optimizer, straight.optimizer.inner_optimizer
    for a, b in zip(wrapper._variables, resumed.optimizer._variables, strict=True):
        assert_close_to_max(a, b, 1e-5, a.path)
    for a, b in zip(inner.variables, resumed.optimizer.inner_optimizer.variables, strict=True):
        assert_close_to_max(a, b, 1e-3, a.path)
    return straight


@pytest.mark.slow
def test_lookahead_run_resumes_to_the_uninterrupted_run(tmp_path, monkeypatch):
    straight, resumed = interrupted_and_resumed(
        tmp_path, monkeypatch, "--lookahead", "--lookahead-k", "2", "--lookahead-alpha", "0.6"
    )
    for metrics in (straight, resumed):
        assert metrics["lookahead"] == {"k": 2, "alpha": 0.6}
        assert metrics["config"]["optim"]["lookahead"] is True
        assert "swa" not in metrics
    assert resumed["test_accuracy"] == pytest.approx(straight["test_accuracy"], abs=2e-3)
    model = assert_same_final_model(tmp_path)
    optimizer = model.optimizer
    assert isinstance(optimizer, Lookahead) and (optimizer.k, optimizer.alpha) == (2, 0.6)
    # Four steps with k=2 end on a synchronization: the model holds its slow weights.
    for weights, slow in zip(model.trainable_variables, optimizer.slow_weights, strict=True):
        np.testing.assert_array_equal(weights.numpy(), slow.numpy())


@pytest.mark.slow
def test_swa_run_resumes_to_the_uninterrupted_run_and_ends_averaged(tmp_path, monkeypatch):
    straight, resumed = interrupted_and_resumed(
        tmp_path, monkeypatch, "--swa-start-epoch", "2", "--norm", "batch"
    )
    for metrics in (straight, resumed):
        swa = metrics["swa"]
        # Snapshots at the end of epochs 2, 3 (before the interruption) and 4.
        assert (swa["averaged_snapshots"], swa["start_step"], swa["average_period"]) == (3, 2, 1)
        assert (swa["batch_norm_layers"], swa["batch_norm_examples"]) == (4, 3600)
        assert 0.0 <= swa["val_accuracy"] <= 1.0
    assert resumed["test_accuracy"] == pytest.approx(straight["test_accuracy"], abs=2e-3)
    model = assert_same_final_model(tmp_path)
    # model.keras holds the averaged weights; the last checkpoint the weights SGD reached, with
    # the BatchNorm statistics training collected.
    optimizer = model.optimizer
    for weights, average in zip(model.trainable_variables, optimizer.averages, strict=True):
        np.testing.assert_array_equal(weights.numpy(), average.numpy())
    last = keras.models.load_model(tmp_path / "resumed" / LAST_MODEL)
    bn = [
        layer
        for layer in model._flatten_layers()
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    bn_last = [
        layer
        for layer in last._flatten_layers()
        if isinstance(layer, keras.layers.BatchNormalization)
    ]
    assert len(bn) == 4
    for recomputed, collected in zip(bn, bn_last, strict=True):
        assert not np.allclose(recomputed.moving_mean.numpy(), collected.moving_mean.numpy())


@pytest.mark.slow
def test_wrappers_under_a_mirrored_strategy():
    result = run_python(
        ["tests/optimizer_wrappers_mirrored.py"], timeout=900, env={"PYTHONPATH": str(REPO_ROOT)}
    )
    for case in (
        "Lookahead(Momentum)",
        "SWA(Adam)",
        "SWA(Lookahead(Adam))",
        "LossScaleOptimizer(SWA(Lookahead(Momentum)))",
        "SWACallback",
    ):
        assert f"{case}: ok" in result.stdout
