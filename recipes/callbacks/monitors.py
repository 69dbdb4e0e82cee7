"""Keras callbacks that watch a training run per layer and warn when something looks wrong.

The course advice on babysitting training ("watch the update/weight ratio, look for dead ReLUs,
plot activation histograms per layer") becomes four callbacks, one concept each:

- `DeadReluMonitor`: fraction of ReLU units that output zero for a whole monitoring batch.
- `UpdateRatioMonitor`: ||lr * update|| / ||w|| per layer for one optimizer step (healthy ~1e-3).
- `ActivationStatsMonitor`: mean, std and saturated fraction of every nonlinear layer's output,
  plus per-layer activation histograms written to PNG and TensorBoard.
- `GradientNormMonitor`: per-layer gradient norms of the training loss (vanishing / exploding).

The activation and gradient monitors evaluate the model being trained on a fixed *monitoring
batch*, in inference mode (`training=False`) so that dropout noise does not blur the comparison
between measurements and batch-normalization statistics are not updated as a side effect. They
measure once per epoch by default, or every `every_n_batches` optimizer steps, so the cost is one
extra forward (and, for gradients, backward) pass on a small batch per measurement. Measurements
are kept in memory (`monitor.log.rows`) and, given `log_dir`, appended to
`<log_dir>/<monitor name>.csv` and written as TensorBoard scalars under
`<log_dir>/tensorboard/<monitor name>`. Problems are reported with `warnings.warn` using
`TrainingHealthWarning` and kept in `monitor.messages`.

A monitor that is not passed to `fit` costs nothing: there is no global hook.

With `steps_per_execution` N > 1 (`model.compile`), Keras runs N training steps per call and the
callbacks see the model only between calls. The monitors then measure after the execution in
which a measurement falls due, recording the step count they actually measured at, and round
`every_n_batches` up to a multiple of N (with a warning) so that each execution holds at most
one measurement. `UpdateRatioMonitor` can only see the update of a whole execution; it reports
it per step (see its docstring).
"""

import csv
import importlib.util
import logging
import math
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from matplotlib.figure import Figure

from recipes.callbacks.batches import last_batch

LayerMeasurements = dict[str, dict[str, float]]

_LOGGER = logging.getLogger(__name__)

_ZERO_FLOOR_ACTIVATIONS = (keras.activations.relu, keras.activations.relu6)
_SATURATING_RANGES = {
    keras.activations.sigmoid: (0.0, 1.0),
    keras.activations.hard_sigmoid: (0.0, 1.0),
    keras.activations.tanh: (-1.0, 1.0),
}


class TrainingHealthWarning(UserWarning):
    """A monitor saw a sign of an unhealthy run (dead units, bad update size, saturation...)."""


def layer_activation(layer: keras.layers.Layer) -> Callable | None:
    """The nonlinearity a layer applies to its output, or None when it applies none.

    Covers layers with an `activation` attribute (`Dense`, `Conv2D`, `Activation`, ...) and the
    `ReLU` layer when it behaves as a plain ReLU (no negative slope, no threshold, no cap).
    """
    if isinstance(layer, keras.layers.ReLU):
        config = layer.get_config()
        plain = config["negative_slope"] == 0 and config["threshold"] == 0
        return keras.activations.relu if plain and config["max_value"] is None else None
    activation = getattr(layer, "activation", None)
    if activation is None or activation is keras.activations.linear:
        return None
    return activation


def take_monitoring_batch(dataset: tf.data.Dataset, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Collects the first `size` examples of a dataset of `(inputs, labels)` batches as NumPy.

    Use the result as the fixed monitoring batch of the monitors: the same examples at every
    measurement make measurements comparable across epochs.

    Args:
        dataset: a `tf.data.Dataset` yielding `(inputs, labels)` batches.
        size: number of examples to collect (positive).

    Returns:
        `(inputs, labels)` with `size` examples, fewer only when the dataset is smaller.
    """
    if not isinstance(size, int) or size < 1:
        raise ValueError(f"size must be a positive integer, got {size!r}")
    inputs, labels = [], []
    collected = 0
    for batch_inputs, batch_labels in dataset:
        inputs.append(np.asarray(batch_inputs))
        labels.append(np.asarray(batch_labels))
        collected += len(inputs[-1])
        if collected >= size:
            break
    if not inputs:
        raise ValueError("the dataset yielded no batches; cannot build a monitoring batch")
    return np.concatenate(inputs)[:size], np.concatenate(labels)[:size]


def build_activation_probe(model: keras.Model, layers: Sequence[keras.layers.Layer]) -> keras.Model:
    """A model sharing `model`'s weights that outputs the given layers' activations.

    Args:
        model: a built functional or Sequential model (one with symbolic `inputs`).
        layers: top-level layers of `model` whose outputs the probe returns, in order.

    Returns:
        A `keras.Model` from `model.inputs` to `[layer.output for layer in layers]`.
    """
    try:
        inputs = model.inputs
    except (AttributeError, ValueError) as error:
        raise ValueError(
            f"model {model.name!r} has no symbolic inputs; the monitors need a functional or "
            "Sequential model (subclassed models cannot expose per-layer outputs)"
        ) from error
    return keras.Model(inputs, [layer.output for layer in layers], name=f"{model.name}_probe")


def plot_activation_histograms(
    activations: Mapping[str, np.ndarray], path: str | os.PathLike, title: str
) -> Path:
    """Writes one histogram per layer (the course's per-layer activation plots) to a PNG.

    Args:
        activations: layer name -> activation values of that layer on the monitoring batch.
        path: PNG file to write; the parent directory is created when missing.
        title: figure title, e.g. which initialization or epoch is shown.

    Returns:
        The PNG path.
    """
    if not activations:
        raise ValueError("activations is empty; there is no layer to plot")
    # A bare Figure draws with the Agg canvas without touching pyplot's global backend state.
    figure = Figure(figsize=(2.6 * len(activations), 2.8), layout="constrained")
    axes = figure.subplots(1, len(activations), squeeze=False)[0]
    for axis, (name, values) in zip(axes, activations.items(), strict=True):
        flat = np.asarray(values, dtype=np.float64).ravel()
        axis.hist(flat[np.isfinite(flat)], bins=50)
        axis.set_title(f"{name}\nmean {flat.mean():.3g}  std {flat.std():.3g}", fontsize=8)
        axis.tick_params(labelsize=7)
    figure.suptitle(title, fontsize=9)
    destination = Path(path)
    destination.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(destination, dpi=90)
    return destination


class MonitorLog:
    """A monitor's measurements: in memory, and given a directory, in a CSV and TensorBoard.

    The CSV is in long format (`step, epoch, layer, metric, value`) so that every monitor shares
    the same columns; it is appended to after each measurement so a crashed run keeps its data.
    TensorBoard events need the `tensorboard` package, which TensorFlow does not install; without
    it only the CSV is written.

    Args:
        name: the monitor's name, used for the CSV file name and the TensorBoard run.
        log_dir: directory for `<name>.csv` and `tensorboard/<name>`; None keeps rows in memory.
    """

    FIELDS = ("step", "epoch", "layer", "metric", "value")

    def __init__(self, name: str, log_dir: str | os.PathLike | None = None):
        if not name:
            raise ValueError("name must be a non-empty string")
        self.name = name
        self.log_dir = None if log_dir is None else Path(log_dir)
        self.rows: list[dict[str, object]] = []
        self.writes_tensorboard = (
            self.log_dir is not None and importlib.util.find_spec("tensorboard") is not None
        )
        if self.log_dir is not None and not self.writes_tensorboard:
            _LOGGER.info("%s: tensorboard is not installed; writing the CSV only", name)
        self._writer = None

    @property
    def csv_path(self) -> Path | None:
        return None if self.log_dir is None else self.log_dir / f"{self.name}.csv"

    def record(self, step: int, epoch: int, measurements: LayerMeasurements) -> None:
        """Stores one measurement of every layer taken after `step` optimizer steps."""
        rows = [
            {"step": step, "epoch": epoch, "layer": layer, "metric": metric, "value": value}
            for layer, metrics in measurements.items()
            for metric, value in metrics.items()
        ]
        self.rows.extend(rows)
        if self.log_dir is None:
            return
        self.log_dir.mkdir(parents=True, exist_ok=True)
        is_new = not self.csv_path.exists()
        with open(self.csv_path, "a", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.FIELDS)
            if is_new:
                writer.writeheader()
            writer.writerows(rows)
        if not self.writes_tensorboard:
            return
        with self._summary_writer().as_default(step=step):
            for row in rows:
                tf.summary.scalar(f"{row['layer']}/{row['metric']}", row["value"])

    def histogram(self, step: int, values: Mapping[str, np.ndarray]) -> None:
        """Writes one TensorBoard histogram per layer; a no-op without `log_dir` or tensorboard."""
        if not self.writes_tensorboard:
            return
        with self._summary_writer().as_default(step=step):
            for layer, layer_values in values.items():
                tf.summary.histogram(f"{layer}/activations", layer_values)

    def series(self, layer: str, metric: str) -> list[float]:
        """All recorded values of one layer's metric, oldest first."""
        return [
            row["value"] for row in self.rows if row["layer"] == layer and row["metric"] == metric
        ]

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _summary_writer(self):
        # Each monitor writes its own TensorBoard run directory: TensorBoard reads the event files
        # of one directory sequentially and would drop data from concurrent writers.
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(
                str(self.log_dir / "tensorboard" / self.name)
            )
        return self._writer


def _validate_every_n_batches(every_n_batches: int | None) -> None:
    if every_n_batches is not None and (
        not isinstance(every_n_batches, int) or every_n_batches < 1
    ):
        raise ValueError(
            f"every_n_batches must be None (measure once per epoch) or a positive integer, "
            f"got {every_n_batches!r}"
        )


def measurement_period(every_n_batches: int | None, steps_per_execution: int) -> int | None:
    """The period, in steps, at which monitors asked to measure every `every_n_batches` steps
    can measure when callbacks run once per execution of `steps_per_execution` steps: the
    smallest multiple of it that is not below `every_n_batches` (None: once per epoch)."""
    if every_n_batches is None:
        return None
    return math.ceil(every_n_batches / steps_per_execution) * steps_per_execution


def _validate_fraction(name: str, value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a fraction in [0, 1], got {value!r}")


class LayerMonitor(keras.callbacks.Callback):
    """Base of the monitors: schedule bookkeeping, logging and warnings.

    Subclasses call `_report(measurements)` when they have measured and implement `check`, which
    turns one layer's measurements into warning messages.

    Args:
        name: monitor name for logs and messages.
        every_n_batches: None measures once per epoch; an integer measures every that many steps.
        log_dir: where `MonitorLog` writes the CSV and TensorBoard events; None keeps memory only.
    """

    def __init__(
        self,
        name: str,
        every_n_batches: int | None = None,
        log_dir: str | os.PathLike | None = None,
    ):
        super().__init__()
        _validate_every_n_batches(every_n_batches)
        self.every_n_batches = every_n_batches
        self.log = MonitorLog(name, log_dir)
        self.messages: list[str] = []
        self._completed_steps = 0
        self._epoch = 0
        self._period = every_n_batches
        self._execution_begin: int | None = None

    def steps_per_execution(self) -> int:
        """The training steps Keras runs between two calls of the batch callbacks."""
        return int(getattr(self.model, "steps_per_execution", 1) or 1)

    def on_train_begin(self, logs=None):
        steps = self.steps_per_execution()
        self._period = measurement_period(self.every_n_batches, steps)
        if self._period != self.every_n_batches:
            warnings.warn(
                f"{self.log.name}: every_n_batches={self.every_n_batches} is not a multiple of "
                f"the model's steps_per_execution={steps}, and the monitor sees the model only "
                f"between executions: it measures every {self._period} steps instead",
                stacklevel=2,
            )

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_begin(self, batch, logs=None):
        self._execution_begin = batch

    def _count_steps(self, batch: int) -> tuple[int, bool]:
        """Counts the steps of the execution that ended with `batch` (the one that began with
        the last `on_train_batch_begin`); returns their number and whether a measurement every
        `every_n_batches` steps fell due in them."""
        begin = batch if self._execution_begin is None else self._execution_begin
        steps = last_batch(self.params, batch) - begin + 1
        before = self._completed_steps
        self._completed_steps += steps
        due = bool(self._period) and self._completed_steps // self._period > before // self._period
        return steps, due

    def on_train_end(self, logs=None):
        self.log.close()

    def check(self, layer_name: str, values: Mapping[str, float]) -> list[str]:
        """Warning messages for one layer's measurements (empty when healthy)."""
        raise NotImplementedError

    def _report(self, measurements: LayerMeasurements) -> None:
        self.log.record(self._completed_steps, self._epoch, measurements)
        for layer_name, values in measurements.items():
            for message in self.check(layer_name, values):
                text = f"[{self.log.name}, epoch {self._epoch}, step {self._completed_steps}] "
                self.messages.append(text + message)
                warnings.warn(text + message, TrainingHealthWarning, stacklevel=2)


class _ProbeMonitor(LayerMonitor):
    """A monitor that measures the model on a fixed monitoring batch after training steps."""

    # How a subclass completes "cannot watch layers [...]: " for layers it does not select.
    accepts = "they are not of the kind this monitor watches"

    def __init__(
        self,
        name: str,
        monitoring_inputs,
        layer_names: Sequence[str] | None,
        every_n_batches: int | None,
        log_dir: str | os.PathLike | None,
    ):
        super().__init__(name, every_n_batches, log_dir)
        if monitoring_inputs is None or len(monitoring_inputs) == 0:
            raise ValueError("monitoring_inputs must hold at least one example")
        self.monitoring_inputs = tf.convert_to_tensor(monitoring_inputs)
        self.layer_names = None if layer_names is None else list(layer_names)
        self._layers: list[keras.layers.Layer] | None = None
        self._probe: keras.Model | None = None

    def set_model(self, model):
        # Layers and probe belong to one model; a callback reused with another model re-resolves.
        super().set_model(model)
        self._layers = None
        self._probe = None

    def selects(self, layer: keras.layers.Layer) -> bool:
        """Whether the monitor watches `layer` by default (when no `layer_names` are given)."""
        raise NotImplementedError

    def measure(self) -> LayerMeasurements:
        raise NotImplementedError

    def on_train_batch_end(self, batch, logs=None):
        if self._count_steps(batch)[1]:
            self.measure_and_report()

    def on_epoch_end(self, epoch, logs=None):
        if self.every_n_batches is None:
            self.measure_and_report()

    def measure_and_report(self) -> None:
        """Measures now, records the result and warns; `fit` calls it on the schedule.

        Callable directly on a model that is not training, e.g. to compare initializations.
        """
        if self.watched_layers():
            self._report(self.measure())

    def watched_layers(self) -> list[keras.layers.Layer]:
        """The model's layers this monitor measures, resolved once from the trained model."""
        if self._layers is not None:
            return self._layers
        if self.layer_names is None:
            self._layers = [layer for layer in self.model.layers if self.selects(layer)]
            if not self._layers:
                _LOGGER.info("%s: model %s has no layer to watch", self.log.name, self.model.name)
            return self._layers
        by_name = {layer.name: layer for layer in self.model.layers}
        unknown = [name for name in self.layer_names if name not in by_name]
        if unknown:
            raise ValueError(
                f"{self.log.name}: layers {unknown} are not in model {self.model.name!r}; "
                f"its layers are {sorted(by_name)}"
            )
        rejected = [name for name in self.layer_names if not self.selects(by_name[name])]
        if rejected:
            raise ValueError(f"{self.log.name}: cannot watch layers {rejected}: {self.accepts}")
        self._layers = [by_name[name] for name in self.layer_names]
        return self._layers

    def activations(self) -> dict[str, np.ndarray]:
        """The watched layers' outputs on the monitoring batch, by layer name."""
        layers = self.watched_layers()
        if self._probe is None:
            self._probe = build_activation_probe(self.model, layers)
        outputs = self._probe(self.monitoring_inputs, training=False)
        if len(layers) == 1:
            outputs = [outputs]
        return {
            layer.name: keras.ops.convert_to_numpy(output)
            for layer, output in zip(layers, outputs, strict=True)
        }


class DeadReluMonitor(_ProbeMonitor):
    """Reports the fraction of ReLU units that output zero for the whole monitoring batch.

    A unit is a feature of the layer's last axis (a neuron of a `Dense` layer, a channel of a
    convolution, counted over all spatial positions). A unit that is zero for every example gets
    no gradient and may never recover; the course saw up to 40% of units dead after training with
    a learning rate that was too high.

    Args:
        monitoring_inputs: a fixed batch of model inputs (NumPy array or tensor).
        threshold: warn when a layer's dead fraction is above this fraction (default 0.4).
        layer_names: ReLU layers to watch; None watches every layer applying a ReLU.
        every_n_batches: None measures once per epoch; an integer every that many steps.
        log_dir: directory for `dead_relu.csv` and TensorBoard; None keeps rows in memory.
    """

    accepts = "they do not apply a ReLU (relu / relu6 activation or a plain ReLU layer)"

    def __init__(
        self,
        monitoring_inputs,
        threshold: float = 0.4,
        layer_names: Sequence[str] | None = None,
        every_n_batches: int | None = None,
        log_dir: str | os.PathLike | None = None,
    ):
        _validate_fraction("threshold", threshold)
        super().__init__("dead_relu", monitoring_inputs, layer_names, every_n_batches, log_dir)
        self.threshold = threshold

    def selects(self, layer):
        return layer_activation(layer) in _ZERO_FLOOR_ACTIVATIONS

    def measure(self):
        measurements = {}
        for name, output in self.activations().items():
            per_unit = output.reshape(-1, output.shape[-1])
            dead = np.all(per_unit <= 0.0, axis=0)
            measurements[name] = {"dead_fraction": float(dead.mean())}
        return measurements

    def check(self, layer_name, values):
        fraction = values["dead_fraction"]
        if fraction <= self.threshold:
            return []
        return [
            f"{layer_name}: {fraction:.0%} of ReLU units dead on the monitoring batch "
            f"(threshold {self.threshold:.0%}): learning rate may be too high, or the "
            "initialization / bias pushes units below zero"
        ]


class ActivationStatsMonitor(_ProbeMonitor):
    """Logs mean, std and saturation of every nonlinear layer's output; plots histograms.

    For sigmoid / hard sigmoid / tanh layers the saturated fraction counts outputs within
    `saturation_margin` (as a fraction of the output range) of either end, where the local
    gradient is nearly zero. Activations whose std falls below `collapse_std` have collapsed:
    with too small an initialization the signal shrinks layer after layer towards zero.

    With `log_dir`, per-layer histograms are written to TensorBoard at every measurement and to
    `activations_initial.png` / `activations_final.png` at the start and end of training (the
    course's per-layer histograms for comparing initializations).

    Args:
        monitoring_inputs: a fixed batch of model inputs (NumPy array or tensor).
        saturation_margin: distance to the range ends, as a fraction of the range, that counts
            as saturated (default 0.01).
        saturation_threshold: warn when a layer's saturated fraction is above this (default 0.5).
        collapse_std: warn when a layer's activation std is below this (default 1e-3).
        layer_names: layers to watch; None watches every layer applying a nonlinearity.
        every_n_batches: None measures once per epoch; an integer every that many steps.
        log_dir: directory for `activation_stats.csv`, histograms and TensorBoard.
    """

    accepts = "they apply no nonlinearity (no activation, or a linear one)"

    def __init__(
        self,
        monitoring_inputs,
        saturation_margin: float = 0.01,
        saturation_threshold: float = 0.5,
        collapse_std: float = 1e-3,
        layer_names: Sequence[str] | None = None,
        every_n_batches: int | None = None,
        log_dir: str | os.PathLike | None = None,
    ):
        if not 0.0 < saturation_margin < 0.5:
            raise ValueError(f"saturation_margin must be in (0, 0.5), got {saturation_margin!r}")
        _validate_fraction("saturation_threshold", saturation_threshold)
        if collapse_std < 0:
            raise ValueError(f"collapse_std must be non-negative, got {collapse_std!r}")
        super().__init__(
            "activation_stats", monitoring_inputs, layer_names, every_n_batches, log_dir
        )
        self.saturation_margin = saturation_margin
        self.saturation_threshold = saturation_threshold
        self.collapse_std = collapse_std

    def selects(self, layer):
        return layer_activation(layer) is not None

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self._write_histograms("initial")

    def on_train_end(self, logs=None):
        self._write_histograms("final")
        super().on_train_end(logs)

    def measure(self):
        activations = self.activations()
        self.log.histogram(self._completed_steps, activations)
        measurements = {}
        for layer in self.watched_layers():
            values = activations[layer.name].astype(np.float64)
            stats = {"mean": float(values.mean()), "std": float(values.std())}
            output_range = _SATURATING_RANGES.get(layer_activation(layer))
            if output_range is not None:
                low, high = output_range
                margin = self.saturation_margin * (high - low)
                saturated = (values <= low + margin) | (values >= high - margin)
                stats["saturated_fraction"] = float(saturated.mean())
            measurements[layer.name] = stats
        return measurements

    def check(self, layer_name, values):
        messages = []
        saturated = values.get("saturated_fraction", 0.0)
        if saturated > self.saturation_threshold:
            messages.append(
                f"{layer_name}: {saturated:.0%} of outputs saturated (within "
                f"{self.saturation_margin:.0%} of the range ends; threshold "
                f"{self.saturation_threshold:.0%}): gradients through this layer vanish; "
                "weights may be initialized too large or the learning rate too high"
            )
        if values["std"] < self.collapse_std:
            messages.append(
                f"{layer_name}: activations collapsed (std {values['std']:.2g} < "
                f"{self.collapse_std:.2g}): weights may be initialized too small, so the signal "
                "vanishes with depth, or the units are dead"
            )
        return messages

    def _write_histograms(self, stage: str) -> None:
        if self.log.log_dir is None or not self.watched_layers():
            return
        plot_activation_histograms(
            self.activations(),
            self.log.log_dir / f"activations_{stage}.png",
            title=f"{self.model.name}: activations per layer ({stage}, step "
            f"{self._completed_steps})",
        )


class GradientNormMonitor(_ProbeMonitor):
    """Logs the norm of the training loss's gradient per layer on the monitoring batch.

    The loss is the model's compiled loss (regularization included) on the monitoring batch in
    inference mode. A layer whose gradient norm is below `vanishing_ratio` times the largest
    layer's norm hardly learns (vanishing gradients, typical of deep sigmoid/tanh stacks with a
    poor initialization); a norm above `exploding_norm`, or a non-finite one, means the updates
    blow up.

    Args:
        monitoring_batch: a fixed `(inputs, targets)` pair in the format `fit` receives.
        vanishing_ratio: warn when a layer's norm / the largest layer norm is below this
            (default 1e-3).
        exploding_norm: warn when a layer's gradient norm is above this (default 1e3).
        layer_names: layers to watch; None watches every layer with trainable weights.
        every_n_batches: None measures once per epoch; an integer every that many steps.
        log_dir: directory for `gradient_norms.csv` and TensorBoard.
    """

    accepts = "they have no trainable weights"

    def __init__(
        self,
        monitoring_batch: tuple,
        vanishing_ratio: float = 1e-3,
        exploding_norm: float = 1e3,
        layer_names: Sequence[str] | None = None,
        every_n_batches: int | None = None,
        log_dir: str | os.PathLike | None = None,
    ):
        if not isinstance(monitoring_batch, tuple) or len(monitoring_batch) != 2:
            raise ValueError("monitoring_batch must be an (inputs, targets) tuple")
        if not 0.0 < vanishing_ratio < 1.0:
            raise ValueError(f"vanishing_ratio must be in (0, 1), got {vanishing_ratio!r}")
        if exploding_norm <= 0:
            raise ValueError(f"exploding_norm must be positive, got {exploding_norm!r}")
        inputs, targets = monitoring_batch
        super().__init__("gradient_norms", inputs, layer_names, every_n_batches, log_dir)
        self.monitoring_targets = tf.convert_to_tensor(targets)
        self.vanishing_ratio = vanishing_ratio
        self.exploding_norm = exploding_norm

    def selects(self, layer):
        return bool(layer.trainable_weights)

    def measure(self):
        layers = self.watched_layers()
        with tf.GradientTape() as tape:
            predictions = self.model(self.monitoring_inputs, training=False)
            loss = self.model.compute_loss(
                x=self.monitoring_inputs, y=self.monitoring_targets, y_pred=predictions
            )
        gradients = tape.gradient(loss, [layer.trainable_weights for layer in layers])
        norms = {
            layer.name: math.sqrt(
                sum(float(tf.reduce_sum(tf.square(g))) for g in layer_grads if g is not None)
            )
            for layer, layer_grads in zip(layers, gradients, strict=True)
        }
        finite = [norm for norm in norms.values() if math.isfinite(norm)]
        largest = max(finite, default=0.0)
        return {
            name: {
                "grad_norm": norm,
                "grad_norm_relative": norm / largest if largest > 0 else float("nan"),
            }
            for name, norm in norms.items()
        }

    def check(self, layer_name, values):
        norm, relative = values["grad_norm"], values["grad_norm_relative"]
        if not math.isfinite(norm):
            return [
                f"{layer_name}: gradient norm is {norm}: the loss has diverged; lower the "
                "learning rate"
            ]
        if norm > self.exploding_norm:
            return [
                f"{layer_name}: gradient norm {norm:.3g} above {self.exploding_norm:.3g}: "
                "exploding gradients; lower the learning rate or clip gradients"
            ]
        if relative < self.vanishing_ratio:
            return [
                f"{layer_name}: gradient norm {norm:.3g} is {relative:.2g} of the largest layer's "
                f"(threshold {self.vanishing_ratio:.2g}): vanishing gradients; check the "
                "initialization, prefer ReLU-family activations or add normalization"
            ]
        return []


class UpdateRatioMonitor(LayerMonitor):
    """Logs ||lr * update|| / ||w|| per layer for one optimizer step.

    The update is measured as the change of the layer's trainable weights over one training step
    (whatever the optimizer, momentum or weight decay did), divided by the norm of the weights
    before the step. The course's rule of thumb: about 1e-3 is healthy; much larger means the
    learning rate is too high, much smaller that it is too low.

    Measures the first step of every epoch by default, or every `every_n_batches`-th step.

    With `steps_per_execution` N > 1 the weights are only seen between executions, so the
    monitor measures the first execution of every epoch, or the execution holding every
    `every_n_batches`-th step, and reports its update per step: `update_norm` is the norm of the
    execution's whole update divided by its number of steps (recorded as `steps`), and
    `update_ratio` that over the weight norm before it. That is the mean step when the steps point
    the same way (nearly so under momentum) and less when they do not, so it is a lower bound of
    the mean per-step ratio: a value above `high` still warns, but one below `low` does not.

    Args:
        low: warn when a layer's ratio is below this (default 1e-4).
        high: warn when a layer's ratio is above this (default 1e-2).
        layer_names: layers to watch; None watches every layer with trainable weights.
        every_n_batches: None measures the first step of each epoch; an integer every that many.
        log_dir: directory for `update_ratio.csv` and TensorBoard.
    """

    def __init__(
        self,
        low: float = 1e-4,
        high: float = 1e-2,
        layer_names: Sequence[str] | None = None,
        every_n_batches: int | None = None,
        log_dir: str | os.PathLike | None = None,
    ):
        if not 0.0 < low < high:
            raise ValueError(f"need 0 < low < high, got low={low!r}, high={high!r}")
        super().__init__("update_ratio", every_n_batches, log_dir)
        self.low = low
        self.high = high
        self.layer_names = None if layer_names is None else list(layer_names)
        self._before: dict[str, list[np.ndarray]] | None = None

    def _layers(self) -> list[keras.layers.Layer]:
        layers = [layer for layer in self.model.layers if layer.trainable_weights]
        if self.layer_names is None:
            return layers
        by_name = {layer.name: layer for layer in layers}
        unknown = [name for name in self.layer_names if name not in by_name]
        if unknown:
            raise ValueError(
                f"update_ratio: layers {unknown} are not trainable layers of model "
                f"{self.model.name!r}; its trainable layers are {sorted(by_name)}"
            )
        return [by_name[name] for name in self.layer_names]

    def on_train_batch_begin(self, batch, logs=None):
        super().on_train_batch_begin(batch, logs)
        if self._period is None:
            sampled = batch == 0
        else:  # whether the coming execution holds a step where a measurement falls due
            coming = self._completed_steps + self.steps_per_execution()
            sampled = coming // self._period > self._completed_steps // self._period
        if sampled:
            self._before = {
                layer.name: [keras.ops.convert_to_numpy(w) for w in layer.trainable_weights]
                for layer in self._layers()
            }

    def on_train_batch_end(self, batch, logs=None):
        steps, due = self._count_steps(batch)
        before, self._before = self._before, None
        # An epoch's last execution may be shorter than planned and hold no due step.
        if before is None or (self._period is not None and not due):
            return
        measurements = {}
        for layer in self._layers():
            weights = np.concatenate([w.ravel() for w in before[layer.name]])
            after = np.concatenate(
                [keras.ops.convert_to_numpy(w).ravel() for w in layer.trainable_weights]
            )
            weight_norm = float(np.linalg.norm(weights))
            update_norm = float(np.linalg.norm(after - weights)) / steps
            ratio = update_norm / weight_norm if weight_norm > 0 else float("nan")
            measurements[layer.name] = {"update_ratio": ratio, "update_norm": update_norm}
            if steps > 1:
                measurements[layer.name]["steps"] = steps
        self._report(measurements)

    def check(self, layer_name, values):
        ratio = values["update_ratio"]
        if math.isnan(ratio):
            return []
        if ratio > self.high:
            return [
                f"{layer_name}: update/weight ratio {ratio:.2g} above {self.high:.2g} (healthy "
                "about 1e-3): learning rate likely too high"
            ]
        if ratio < self.low and values.get("steps", 1) == 1:
            return [
                f"{layer_name}: update/weight ratio {ratio:.2g} below {self.low:.2g} (healthy "
                "about 1e-3): learning rate likely too low (or the layer gets no gradient)"
            ]
        return []


def build_monitors(
    monitoring_batch: tuple,
    log_dir: str | os.PathLike | None = None,
    every_n_batches: int | None = None,
) -> list[LayerMonitor]:
    """All four monitors with default thresholds, sharing one monitoring batch and directory.

    Args:
        monitoring_batch: `(inputs, targets)`, e.g. from `take_monitoring_batch`.
        log_dir: directory for the monitors' CSV files, PNGs and TensorBoard events.
        every_n_batches: None measures once per epoch; an integer every that many steps.

    Returns:
        `[DeadReluMonitor, UpdateRatioMonitor, ActivationStatsMonitor, GradientNormMonitor]`,
        ready to pass to `model.fit(callbacks=...)`.
    """
    inputs, _ = monitoring_batch
    common = {"every_n_batches": every_n_batches, "log_dir": log_dir}
    return [
        DeadReluMonitor(inputs, **common),
        UpdateRatioMonitor(**common),
        ActivationStatsMonitor(inputs, **common),
        GradientNormMonitor(monitoring_batch, **common),
    ]
