"""Monitors measured on real training runs of tiny models."""

import csv
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from recipes.callbacks.monitors import (
    ActivationStatsMonitor,
    DeadReluMonitor,
    GradientNormMonitor,
    MonitorLog,
    TrainingHealthWarning,
    UpdateRatioMonitor,
    build_monitors,
    layer_activation,
    plot_activation_histograms,
    take_monitoring_batch,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _data(count: int = 256, features: int = 20) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    inputs = rng.normal(size=(count, features)).astype("float32")
    labels = (inputs[:, 0] > 0).astype("int32") + (inputs[:, 1] > 0).astype("int32")
    return inputs, labels


def _mlp(activation: str = "relu", initializer="glorot_uniform", depth: int = 2) -> keras.Model:
    inputs = keras.Input((20,))
    hidden = inputs
    for index in range(depth):
        hidden = keras.layers.Dense(
            32, activation=activation, kernel_initializer=initializer, name=f"hidden_{index}"
        )(hidden)
    return keras.Model(inputs, keras.layers.Dense(3, name="logits")(hidden))


def _fit(model, learning_rate, callbacks, epochs=3):
    inputs, labels = _data()
    model.compile(
        keras.optimizers.SGD(learning_rate),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(inputs, labels, batch_size=32, epochs=epochs, verbose=0, callbacks=callbacks)
    return [w for w in caught if issubclass(w.category, TrainingHealthWarning)]


@pytest.mark.parametrize(("learning_rate", "expect_dead"), [(10.0, True), (0.01, False)])
def test_dead_relu_above_threshold_only_with_absurd_learning_rate(learning_rate, expect_dead):
    keras.utils.set_random_seed(1)
    inputs, _ = _data()
    monitor = DeadReluMonitor(inputs[:64], threshold=0.4)
    caught = _fit(_mlp(), learning_rate, [monitor])
    final = {row["layer"]: row["value"] for row in monitor.log.rows[-2:]}
    assert len(monitor.log.rows) == 3 * 2  # once per epoch, two ReLU layers
    assert (max(final.values()) > 0.4) is expect_dead
    assert bool(monitor.messages) is expect_dead
    assert len(caught) == len(monitor.messages)
    if expect_dead:
        assert (
            "of ReLU units dead on the monitoring batch (threshold 40%)"
            in caught[0].message.args[0]
        )


def test_dead_relu_counts_conv_channels_over_positions():
    inputs = keras.Input((4, 4, 1))
    conv = keras.layers.Conv2D(2, 1, activation="relu", name="conv")
    model = keras.Model(inputs, conv(inputs))
    conv.set_weights([np.array([1.0, -1.0]).reshape(1, 1, 1, 2), np.zeros(2)])
    monitor = DeadReluMonitor(np.abs(np.random.default_rng(0).normal(size=(8, 4, 4, 1))))
    monitor.set_model(model)
    # Positive inputs: the +1 channel is alive, the -1 channel is zero everywhere.
    assert monitor.measure() == {"conv": {"dead_fraction": 0.5}}


def test_update_ratio_matches_hand_computed_sgd_step():
    rng = np.random.default_rng(0)
    inputs = rng.normal(size=(8, 3)).astype("float32")
    targets = rng.normal(size=(8, 2)).astype("float32")
    kernel = rng.normal(size=(3, 2)).astype("float32")
    learning_rate = 0.05
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, use_bias=False)])
    model.layers[0].set_weights([kernel])
    model.compile(keras.optimizers.SGD(learning_rate), "mse")
    monitor = UpdateRatioMonitor()
    model.fit(inputs, targets, batch_size=8, epochs=1, verbose=0, callbacks=[monitor])
    # d/dW mean((xW - t)^2) over N examples and D outputs = 2 x^T (xW - t) / (N D).
    gradient = 2.0 * inputs.T @ (inputs @ kernel - targets) / targets.size
    expected = np.linalg.norm(learning_rate * gradient) / np.linalg.norm(kernel)
    (ratio,) = monitor.log.series(model.layers[0].name, "update_ratio")
    assert ratio == pytest.approx(expected, rel=1e-4)


def test_update_ratio_flags_learning_rates_far_from_healthy():
    keras.utils.set_random_seed(0)
    high = UpdateRatioMonitor()
    assert any(
        "learning rate likely too high" in w.message.args[0] for w in _fit(_mlp(), 5.0, [high], 1)
    )
    low = UpdateRatioMonitor()
    assert any(
        "learning rate likely too low" in w.message.args[0] for w in _fit(_mlp(), 1e-7, [low], 1)
    )


def test_update_ratio_every_n_batches_measures_those_steps():
    monitor = UpdateRatioMonitor(every_n_batches=3)
    _fit(_mlp(), 0.01, [monitor], epochs=2)  # 8 steps per epoch: steps 3, 6, ..., 15
    assert sorted({row["step"] for row in monitor.log.rows}) == [3, 6, 9, 12, 15]


def test_sigmoid_saturation_detected_with_huge_initial_weights():
    inputs, _ = _data(64)
    saturating = ActivationStatsMonitor(inputs)
    saturating.set_model(_mlp("sigmoid", keras.initializers.RandomNormal(stddev=50.0)))
    healthy = ActivationStatsMonitor(inputs)
    healthy.set_model(_mlp("sigmoid", keras.initializers.RandomNormal(stddev=0.05)))
    for monitor in (saturating, healthy):
        monitor.measure_and_report()
    assert min(saturating.log.series("hidden_0", "saturated_fraction")) > 0.9
    assert max(healthy.log.series("hidden_0", "saturated_fraction")) < 0.05
    assert any("outputs saturated" in message for message in saturating.messages)
    assert healthy.messages == []


def test_activation_collapse_with_tiny_initial_weights():
    inputs, _ = _data(64)
    monitor = ActivationStatsMonitor(inputs)
    monitor.set_model(_mlp("tanh", keras.initializers.RandomNormal(stddev=1e-3), depth=4))
    stats = monitor.measure()
    stds = [stats[f"hidden_{index}"]["std"] for index in range(4)]
    assert stds == sorted(stds, reverse=True)  # the signal shrinks layer after layer
    assert monitor.check("hidden_3", stats["hidden_3"])[0].startswith(
        "hidden_3: activations collapsed"
    )


def test_gradient_norm_matches_hand_computed_least_squares():
    rng = np.random.default_rng(1)
    inputs = rng.normal(size=(16, 3)).astype("float32")
    targets = rng.normal(size=(16, 1)).astype("float32")
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, use_bias=False)])
    model.compile("sgd", "mse")
    monitor = GradientNormMonitor((inputs, targets))
    monitor.set_model(model)
    kernel = model.layers[0].get_weights()[0]
    gradient = 2.0 * inputs.T @ (inputs @ kernel - targets) / len(inputs)
    measured = monitor.measure()[model.layers[0].name]
    assert measured["grad_norm"] == pytest.approx(np.linalg.norm(gradient), rel=1e-4)
    assert measured["grad_norm_relative"] == 1.0


def test_vanishing_gradients_in_deep_sigmoid_stack():
    keras.utils.set_random_seed(0)
    inputs, labels = _data(64)
    model = _mlp("sigmoid", keras.initializers.RandomNormal(stddev=0.01), depth=6)
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    monitor = GradientNormMonitor((inputs, labels))
    monitor.set_model(model)
    monitor.measure_and_report()
    assert monitor.log.series("hidden_0", "grad_norm_relative")[0] < 1e-3
    assert monitor.messages[0].endswith(
        "vanishing gradients; check the initialization, prefer ReLU-family activations or add "
        "normalization"
    )
    assert "hidden_0:" in monitor.messages[0]


def test_all_monitors_write_csv_and_png(tmp_path):
    keras.utils.set_random_seed(0)
    inputs, labels = _data()
    monitors = build_monitors((inputs[:32], labels[:32]), log_dir=tmp_path)
    _fit(_mlp("relu"), 0.01, monitors, epochs=2)
    for monitor in monitors:
        with open(tmp_path / f"{monitor.log.name}.csv", newline="") as handle:
            rows = list(csv.DictReader(handle))
        assert [(int(r["step"]), r["layer"], r["metric"], float(r["value"])) for r in rows] == [
            (r["step"], r["layer"], r["metric"], pytest.approx(r["value"]))
            for r in monitor.log.rows
        ]
        assert rows
    for stage in ("initial", "final"):
        assert (tmp_path / f"activations_{stage}.png").read_bytes()[:8] == PNG_SIGNATURE


def test_tensorboard_events_written_when_installed(tmp_path):
    pytest.importorskip("tensorboard")
    log = MonitorLog("probe", tmp_path)
    log.record(1, 0, {"dense": {"std": 0.5}})
    log.close()
    assert list((tmp_path / "tensorboard" / "probe").glob("events.out.tfevents.*"))


def test_histograms_compare_initializations(tmp_path):
    inputs, _ = _data(64)
    for name, stddev in (("large", 1.0), ("small", 0.01)):
        model = _mlp("tanh", keras.initializers.RandomNormal(stddev=stddev), depth=3)
        monitor = ActivationStatsMonitor(inputs)
        monitor.set_model(model)
        path = plot_activation_histograms(monitor.activations(), tmp_path / f"{name}.png", name)
        assert path.read_bytes()[:8] == PNG_SIGNATURE


def test_take_monitoring_batch_from_tf_data():
    inputs, labels = _data(50)
    dataset = tf.data.Dataset.from_tensor_slices((inputs, labels)).batch(16)
    batch_inputs, batch_labels = take_monitoring_batch(dataset, 40)
    np.testing.assert_array_equal(batch_inputs, inputs[:40])
    np.testing.assert_array_equal(batch_labels, labels[:40])
    with pytest.raises(ValueError, match="positive integer"):
        take_monitoring_batch(dataset, 0)


def test_layer_activation_recognizes_relu_forms():
    assert layer_activation(keras.layers.Dense(2, activation="relu")) is keras.activations.relu
    assert layer_activation(keras.layers.ReLU()) is keras.activations.relu
    assert layer_activation(keras.layers.ReLU(negative_slope=0.1)) is None
    assert layer_activation(keras.layers.Dense(2)) is None
    assert layer_activation(keras.layers.Activation("tanh")) is keras.activations.tanh


def test_invalid_arguments_are_rejected():
    inputs, _ = _data(8)
    with pytest.raises(ValueError, match="threshold must be a fraction"):
        DeadReluMonitor(inputs, threshold=1.5)
    with pytest.raises(ValueError, match="every_n_batches must be None"):
        UpdateRatioMonitor(every_n_batches=0)
    with pytest.raises(ValueError, match="need 0 < low < high"):
        UpdateRatioMonitor(low=1e-2, high=1e-4)
    with pytest.raises(ValueError, match=r"\(inputs, targets\) tuple"):
        GradientNormMonitor(inputs)
    model = _mlp("tanh")
    not_relu = DeadReluMonitor(inputs, layer_names=["hidden_0"])
    not_relu.set_model(model)
    with pytest.raises(
        ValueError, match=r"cannot watch layers \['hidden_0'\]: they do not apply a ReLU"
    ):
        not_relu.watched_layers()
    unknown = ActivationStatsMonitor(inputs, layer_names=["nope"])
    unknown.set_model(model)
    with pytest.raises(ValueError, match=r"layers \['nope'\] are not in model"):
        unknown.watched_layers()


# ------------------------------------------------------------------------------------------------
# Several steps per execution: the callbacks see the model only between executions


def _fit_in_executions(model, callbacks, steps_per_execution, epochs=2, count=320):
    """10 batches of 32 per epoch, in executions of `steps_per_execution` steps."""
    inputs, labels = _data(count)
    model.compile(
        keras.optimizers.SGD(0.01),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        steps_per_execution=steps_per_execution,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(inputs, labels, batch_size=32, epochs=epochs, verbose=0, callbacks=callbacks)
    return caught


def test_probe_monitors_measure_after_the_execution_holding_the_due_step():
    """Executions of 4 in epochs of 10 steps: 1-4, 5-8, 9-10, 11-14, ... A measurement due at
    step 12 is taken after the execution 11-14, and logged at the step it was taken at."""
    inputs, _ = _data(64)
    monitor = DeadReluMonitor(inputs, every_n_batches=4)
    caught = _fit_in_executions(_mlp(), [monitor], steps_per_execution=4)
    assert sorted({row["step"] for row in monitor.log.rows}) == [4, 8, 14, 18, 20]
    assert not [w for w in caught if "steps_per_execution" in str(w.message)]


def test_a_period_that_is_not_a_multiple_of_the_execution_is_rounded_up_with_a_warning():
    inputs, _ = _data(64)
    monitor = ActivationStatsMonitor(inputs, every_n_batches=3)
    caught = _fit_in_executions(_mlp(), [monitor], steps_per_execution=2, epochs=1)
    assert any("it measures every 4 steps instead" in str(w.message) for w in caught)
    assert sorted({row["step"] for row in monitor.log.rows}) == [4, 8]


def test_update_ratio_over_an_execution_is_reported_per_step():
    """A loss linear in the weights has a gradient that does not depend on them, so plain SGD's
    update over an execution of 4 steps is exactly the sum of the 4 batches' updates; the
    monitor reports a quarter of it, the mean step."""
    rng = np.random.default_rng(0)
    inputs = rng.normal(size=(32, 3)).astype("float32")
    kernel = rng.normal(size=(3, 1)).astype("float32")
    learning_rate = 0.05
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, use_bias=False)])
    model.layers[0].set_weights([kernel])
    model.compile(
        keras.optimizers.SGD(learning_rate),
        lambda _, predictions: keras.ops.mean(predictions),
        steps_per_execution=4,
    )
    monitor = UpdateRatioMonitor()
    model.fit(inputs, np.zeros(32), batch_size=8, epochs=1, verbose=0, callbacks=[monitor])
    # d/dW mean(x W) over a batch is the batch's mean input; the batches differ, so the
    # execution's update is lr times the sum of the four batch means, per step a quarter of it.
    gradient_sum = sum(inputs[i : i + 8].mean(axis=0) for i in range(0, 32, 8))
    expected = np.linalg.norm(learning_rate * gradient_sum) / 4
    layer = model.layers[0].name
    assert monitor.log.series(layer, "update_norm") == [pytest.approx(expected, rel=1e-4)]
    assert monitor.log.series(layer, "steps") == [4]
    assert monitor.log.series(layer, "update_ratio") == [
        pytest.approx(expected / np.linalg.norm(kernel), rel=1e-4)
    ]
