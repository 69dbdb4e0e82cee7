"""A finished run as a model for new images: its trained model behind its own preprocessing.

A recipe's model does not hold its input preprocessing: the data pipeline scales images to [0, 1]
and, for preprocessing "mean_image" and "per_channel", subtracts (and divides by) statistics of
the training split (`recipes.data.datasets`). `raw_image_model` puts that preprocessing in front
of the trained model as standard Keras layers (Rescaling, Normalization), and a softmax behind a
model that outputs raw scores (trained with a hinge loss), so that the result takes raw pixels
(float 0..255) and returns class probabilities. It is what `recipes.export` converts and
`recipes.predict` runs; standard layers keep it saveable and convertible to TFLite.

`load_run` reads a run directory (or a `.keras` file in one): the chosen model ("final":
model.keras, "best": checkpoints/best.keras), the class names, the image shape, the preprocessing
and its statistics. The runner saves the statistics in `preprocessing.npz`; for a run written
before that file existed they are recomputed by loading the run's dataset, which must be the data
the run trained on (checked against its dataset.json). A copy of a run that keeps only
metrics.json and history.csv (docs/runs) has no model, and is refused with a message that says so.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from layers.validation import check_choice
from recipes.callbacks.checkpoints import BEST_MODEL, LAST_MODEL
from recipes.data.fingerprint import check_same_data
from recipes.optim.losses import loss_output_activation
from recipes.train.config import CONFIG_FILE, RunConfig, saved_run_config
from recipes.train.errors import ConfigurationError, RecipeError
from recipes.train.execution import float32_model
from recipes.train.runner import (
    DATASET_FILE,
    FINAL_MODEL,
    METRICS_FILE,
    STATISTICS_FILE,
    load_data,
)
from zoo.knobs import Knobs

# The models a run directory holds, by the name `--model` gives them.
MODEL_CHOICES = {"final": FINAL_MODEL, "best": BEST_MODEL}
_CHECKPOINT_NAMES = {FINAL_MODEL: "final", BEST_MODEL: "best", LAST_MODEL: "last"}
# What each preprocessing mode needs from the training statistics.
_STATISTICS_NEEDED = {
    "mean_image": ("mean_image",),
    "per_channel": ("channel_mean", "channel_scale"),
}


@dataclasses.dataclass(frozen=True)
class TrainedRun:
    """A run's trained model and what applying it to new images needs.

    Attributes:
        model: the trained Keras model; it takes images as the run's pipeline yields them.
        run_dir: the run directory.
        model_file: the `.keras` file the model was loaded from.
        checkpoint: which of the run's models it is: "final", "best", "last" (or the file name).
        config: the run's configuration.
        dataset: the run's dataset summary (`DatasetInfo.to_dict()`, from dataset.json).
        metrics: the run's metrics.json ({} for a run that has not finished).
        statistics: the training statistics its preprocessing uses ({} for "scale" and "none").
    """

    model: keras.Model
    run_dir: Path
    model_file: Path
    checkpoint: str
    config: RunConfig
    dataset: Mapping[str, Any]
    metrics: Mapping[str, Any]
    statistics: Mapping[str, np.ndarray]

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self.dataset["class_names"])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(height, width, channels) of the images the model takes."""
        return tuple(int(d) for d in self.dataset["image_shape"])

    @property
    def preprocessing(self) -> str:
        return self.config.data.preprocessing

    @property
    def output_activation(self) -> str:
        """The model's last activation: "softmax", "sigmoid" or "linear" (raw scores)."""
        if self.config.model.fine_tune is not None:
            return "softmax"  # a backbone's new head
        chosen = self.config.model.knobs.get("output_activation")
        return Knobs(
            output_activation=chosen
            or loss_output_activation(self.config.optim.loss, **self.config.optim.loss_options)
        ).output_activation

    def source(self) -> dict[str, str]:
        """Where the model comes from, for export records."""
        return {
            "run_dir": str(self.run_dir),
            "model_file": str(self.model_file),
            "checkpoint": self.checkpoint,
            "recipe": str(self.metrics.get("recipe", "")),
        }


def preprocessing_layers(
    mode: str, statistics: Mapping[str, np.ndarray]
) -> list[keras.layers.Layer]:
    """Standard Keras layers that do to raw pixels (0..255) what `load_dataset(preprocessing=mode)`
    does, given its training `statistics` (in [0, 1] units; see `DatasetInfo.statistics`)."""
    if mode == "none":
        return []
    layers = [keras.layers.Rescaling(1.0 / 255.0, name="scale")]
    if mode == "mean_image":
        mean = np.asarray(statistics["mean_image"], dtype=np.float32)
        layers.append(
            keras.layers.Normalization(
                axis=(-3, -2, -1), mean=mean, variance=np.ones_like(mean), name="mean_image"
            )
        )
    elif mode == "per_channel":
        scale = np.asarray(statistics["channel_scale"], dtype=np.float32)
        layers.append(
            keras.layers.Normalization(
                axis=-1,
                mean=np.asarray(statistics["channel_mean"], dtype=np.float32),
                variance=np.square(scale),
                name="per_channel",
            )
        )
    return layers


def raw_image_model(run: TrainedRun) -> keras.Model:
    """The run's model behind its preprocessing: raw pixels (float 0..255) in, probabilities out.

    A model whose last activation is linear (raw scores of a hinge loss) gets a softmax, so that
    its outputs are probabilities too; "sigmoid" outputs are per-class probabilities already. A
    model trained in mixed precision computes in float32 here (`float32_model`).
    """
    inputs = keras.Input(shape=run.image_shape, name="image")
    x = inputs
    for layer in preprocessing_layers(run.preprocessing, run.statistics):
        x = layer(x)
    outputs = float32_model(run.model)(x)
    if run.output_activation == "linear":
        outputs = keras.layers.Softmax(name="probabilities")(outputs)
    return keras.Model(inputs, outputs, name=f"{run.model.name}_raw_images")


def raw_images(
    run: TrainedRun, split: str, data_overrides: Mapping[str, str] | None = None
) -> tf.data.Dataset:
    """A split of the run's dataset as batches of (raw images, float 0..255; integer labels).

    The data is checked to be the run's (classes, split sizes and content digests of its
    dataset.json), so that figures measured on it are the run's.
    """
    config = run.config.updated(
        {
            **(data_overrides or {}),
            "data.preprocessing": "none",
            "data.augment": "none",
            "data.balance_classes": False,
        }
    )
    pipeline, info = load_data(config, split)
    check_same_data(run.dataset, info)

    def sparse(images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        if labels.shape.rank == 2:  # one-hot labels of a loss that needs them
            labels = tf.argmax(labels, axis=-1)
        return images, tf.cast(labels, tf.int64)

    return pipeline.map(sparse)


def find_run(path: str | os.PathLike) -> tuple[Path, Path | None]:
    """The run directory `path` names, and the model file when `path` is one.

    Raises:
        ConfigurationError: `path` does not exist, or is neither a run directory nor a `.keras`
            file inside one.
    """
    path = Path(path)
    if not path.exists():
        raise ConfigurationError(f"{path} does not exist")
    if path.is_dir():
        if not ((path / CONFIG_FILE).is_file() or (path / METRICS_FILE).is_file()):
            raise ConfigurationError(
                f"{path} is not a run directory (it holds no {CONFIG_FILE} or {METRICS_FILE})"
            )
        return path, None
    if path.suffix != ".keras":
        raise ConfigurationError(
            f"{path} is neither a run directory nor a .keras model file of one"
        )
    for directory in (path.parent, path.parent.parent):
        if (directory / CONFIG_FILE).is_file():
            return directory, path
    raise ConfigurationError(
        f"{path} is not inside a run directory (no {CONFIG_FILE} in {path.parent} or the folder "
        "above): the run's classes and preprocessing are needed; pass the run directory"
    )


def _model_file(run_dir: Path, choice: str, config: RunConfig | None) -> Path:
    """The run's `choice` model file, or a clear refusal saying why there is none."""
    path = run_dir / MODEL_CHOICES[choice]
    if path.is_file():
        return path
    if config is not None and config.model.fine_tune == "predict":
        raise ConfigurationError(
            f"{run_dir} is a fine_tune='predict' run: it labelled images with the ImageNet "
            "classifier and keeps no trained model"
        )
    others = [name for name, file in MODEL_CHOICES.items() if (run_dir / file).is_file()]
    if others:
        raise ConfigurationError(
            f"{run_dir} has no {choice} model ({MODEL_CHOICES[choice]} missing; the run may not "
            f"have finished): --model {others[0]} uses {MODEL_CHOICES[others[0]]}"
        )
    raise ConfigurationError(
        f"{run_dir} holds no trained model ({FINAL_MODEL} and {BEST_MODEL} missing); a copy of a "
        "run that keeps only metrics.json and history.csv (like docs/runs) cannot be exported "
        "or used to predict"
    )


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise RecipeError(f"{path} cannot be read as JSON ({error})") from None


def _statistics(
    run_dir: Path,
    config: RunConfig,
    dataset: Mapping[str, Any],
    data_overrides: Mapping[str, str] | None,
) -> dict[str, np.ndarray]:
    """The training statistics the run's preprocessing used: saved, or recomputed and checked."""
    needed = _STATISTICS_NEEDED.get(config.data.preprocessing, ())
    if not needed:
        return {}
    path = run_dir / STATISTICS_FILE
    if path.is_file():
        with np.load(path) as saved:
            statistics = {name: saved[name] for name in saved.files}
        missing = [name for name in needed if name not in statistics]
        if missing:
            raise RecipeError(f"{path} lacks the statistics {missing}; it is damaged")
        return statistics
    # A run written before the statistics were saved: its dataset, checked to be the same data.
    recompute = config.updated({**(data_overrides or {}), "data.augment": "none"})
    _, info = load_data(recompute, "train")
    check_same_data(dataset, info)
    return dict(info.statistics)


def load_run(
    path: str | os.PathLike,
    model: str = "final",
    data_overrides: Mapping[str, str] | None = None,
) -> TrainedRun:
    """Loads a run's model and what applying it needs (see the module docstring).

    Args:
        path: a run directory, or a `.keras` file in one (model.keras, checkpoints/*.keras).
        model: for a run directory, which model: "final" (model.keras) or "best"
            (checkpoints/best.keras, the epoch with the best validation accuracy).
        data_overrides: `data.data_dir` / `data.manual_dir` where the run's data lives here; only
            read for a run whose statistics must be recomputed.

    Raises:
        ConfigurationError: not a run, no such model, or an unknown `model` choice.
        recipes.train.errors.DataError: the statistics had to be recomputed and the data found is
            not the run's.
    """
    try:
        check_choice("model", model, tuple(MODEL_CHOICES))
    except ValueError as error:
        raise ConfigurationError(str(error)) from None
    run_dir, model_file = find_run(path)
    metrics = _read_json(run_dir / METRICS_FILE) if (run_dir / METRICS_FILE).is_file() else {}
    try:
        config = saved_run_config(run_dir) or RunConfig.from_dict(
            metrics["config"], f"{run_dir / METRICS_FILE}"
        )
    except (KeyError, ValueError) as error:
        raise ConfigurationError(f"{run_dir}: its configuration cannot be read ({error})") from None
    if model_file is None:
        model_file = _model_file(run_dir, model, config)
    dataset = (
        _read_json(run_dir / DATASET_FILE)
        if (run_dir / DATASET_FILE).is_file()
        else metrics.get("dataset")
    )
    if not dataset:
        raise ConfigurationError(f"{run_dir} has no {DATASET_FILE}: its classes are unknown")
    try:
        keras_model = keras.models.load_model(model_file, compile=False)
    except (ValueError, OSError, KeyError, TypeError) as error:
        raise RecipeError(
            f"{model_file} does not load as a Keras model ({' '.join(str(error).split())})"
        ) from error
    relative = model_file.relative_to(run_dir).as_posix()
    return TrainedRun(
        model=keras_model,
        run_dir=run_dir,
        model_file=model_file,
        checkpoint=_CHECKPOINT_NAMES.get(relative, relative),
        config=config,
        dataset=dataset,
        metrics=metrics,
        statistics=_statistics(run_dir, config, dataset, data_overrides),
    )


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of the commands that load a run (`recipes.export`, `recipes.predict`): which
    model, and where the run's data lives here."""
    parser.add_argument(
        "--model",
        choices=tuple(MODEL_CHOICES),
        default="final",
        help="of a run directory: final (model.keras) or best (checkpoints/best.keras); "
        "default final",
    )
    add_data_location_arguments(parser)


def add_data_location_arguments(parser: argparse.ArgumentParser) -> None:
    """`--data-dir` / `--manual-dir`: where a run's data lives on this machine, when it moved."""
    parser.add_argument("--data-dir", help="TFDS data directory, if not the run's")
    parser.add_argument("--manual-dir", help="IDX files' folder, if not the run's")


def data_overrides(args: argparse.Namespace) -> dict[str, str]:
    """`data.data_dir` / `data.manual_dir` from the flags of `add_data_location_arguments`, when
    given."""
    given = {"data.data_dir": args.data_dir, "data.manual_dir": args.manual_dir}
    return {key: value for key, value in given.items() if value is not None}
