"""`export_run`: a trained run to a deployable file, its record (export.json) and its parity check.

The exported model is the run's raw-image model (`recipes.train.inference.raw_image_model`): it
takes raw pixels 0..255 and returns class probabilities, the run's preprocessing inside. Before
anything is written, the converted model is checked against Keras on the run's test split (the
data the run used, checked against its dataset.json); the record beside the file says:

    format, file, size_bytes    what was written
    ops                         operators by name and count (TFLite builtins; SavedModel: TF ops)
    input, output               shape, dtype, value range and quantization of the tensors
    class_names, source         the classes in output order; the run, model file and checkpoint
    parity                      max_abs_diff (probabilities), top1_agreement, test_accuracy_keras,
                                test_accuracy_exported, examples
    calibration                 tflite_int8: the training-split images the ranges come from

The file and the record are each written atomically, the file first; when the export is inside
the run directory, the run's MODEL_CARD.md is rewritten to list it.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from layers.validation import check_choice, check_integer
from recipes.export.formats import (
    DEFAULT_FILE_NAMES,
    FORMATS,
    convert_to_tflite,
    file_size,
    saved_model_ops,
    tflite_ops,
    write_saved_model,
)
from recipes.export.runtime import SavedModelRunner, TFLiteModel
from recipes.train.errors import ConfigurationError
from recipes.train.files import atomic_directory, atomic_write_bytes, atomic_write_text
from recipes.train.inference import TrainedRun, load_run, raw_image_model, raw_images
from recipes.train.model_card import EXPORT_FILE, write_model_card
from recipes.train.runner import format_json

EXPORT_DIR = "export"
INPUT_RANGE = [0, 255]


def default_output(run: TrainedRun, fmt: str) -> Path:
    """Where an export goes unless told: `RUN_DIR/export/<format>/<file name>`."""
    return run.run_dir / EXPORT_DIR / fmt / DEFAULT_FILE_NAMES[fmt]


def _check_output(output: Path, fmt: str) -> None:
    """Refuses an output of the wrong kind, or one whose folder records another export."""
    if fmt == "savedmodel":
        if output.suffix == ".tflite" or output.is_file():
            raise ConfigurationError(
                f"--output {output}: a SavedModel is a directory; give a directory path"
            )
    elif output.suffix != ".tflite" or output.is_dir():
        raise ConfigurationError(f"--output {output}: a {fmt} export is a file ending in .tflite")
    record = output.parent / EXPORT_FILE
    if record.is_file():
        try:
            recorded = json.loads(record.read_text()).get("file")
        except (ValueError, AttributeError):
            recorded = None
        if recorded != output.name:
            raise ConfigurationError(
                f"{record} is not the record of {output.name}: an export's {EXPORT_FILE} is "
                "written beside it, so give each export a folder of its own (nothing was written)"
            )


def calibration_images(
    run: TrainedRun, examples: int, data_overrides: Mapping[str, str] | None = None
) -> np.ndarray:
    """The first `examples` images of the run's (shuffled, seeded) training split, uint8."""
    images = []
    for batch, _ in raw_images(run, "train", data_overrides):
        images.append(batch.numpy().astype(np.uint8))
        if sum(len(chunk) for chunk in images) >= examples:
            break
    return np.concatenate(images)[:examples]


def parity(
    keras_model: Any,
    exported: TFLiteModel | SavedModelRunner,
    batches: Any,
    examples: int | None = None,
) -> dict[str, Any]:
    """How closely the exported model follows Keras on labelled raw-image batches.

    Returns:
        max_abs_diff (largest probability difference), top1_agreement (share of images whose
        top class is the same), test_accuracy_keras, test_accuracy_exported and examples.
    """
    count = agree = keras_correct = exported_correct = 0
    max_diff = 0.0
    for images, labels in batches:
        images, labels = np.asarray(images), np.asarray(labels)
        if examples is not None:
            images, labels = images[: examples - count], labels[: examples - count]
        expected = np.asarray(keras_model(images, training=False))
        found = exported.predict(images)
        max_diff = max(max_diff, float(np.abs(found - expected).max()))
        agree += int(np.sum(found.argmax(-1) == expected.argmax(-1)))
        keras_correct += int(np.sum(expected.argmax(-1) == labels))
        exported_correct += int(np.sum(found.argmax(-1) == labels))
        count += len(labels)
        if examples is not None and count >= examples:
            break
    if not count:
        raise ConfigurationError("the parity check found no test images")
    return {
        "max_abs_diff": max_diff,
        "top1_agreement": agree / count,
        "test_accuracy_keras": keras_correct / count,
        "test_accuracy_exported": exported_correct / count,
        "examples": count,
    }


# More accuracy lost than this to the conversion is worth a warning: 8-bit rounding costs a good
# model a few tenths of a point, while layers int8 quantizes per tensor can lose far more.
ACCURACY_DROP_WARNING = 0.01


def accuracy_drop_warning(check: Mapping[str, Any], fmt: str) -> str | None:
    """A warning when the exported model's test accuracy falls well below Keras'; else None."""
    drop = check["test_accuracy_keras"] - check["test_accuracy_exported"]
    if drop <= ACCURACY_DROP_WARNING:
        return None
    advice = {
        "tflite_int8": "try --format tflite_dynamic or tflite",
        "tflite_dynamic": "try --format tflite",
    }.get(fmt, "a float export should not lose accuracy: please report it")
    return (
        f"warning: the {fmt} model's test accuracy is {100 * drop:.1f} points below Keras' "
        f"({check['test_accuracy_exported']:.4f} vs {check['test_accuracy_keras']:.4f}, top-1 "
        f"agreement {check['top1_agreement']:.4f}); {advice}"
    )


def _summary(record: Mapping[str, Any]) -> str:
    check = record["parity"]
    return (
        f"{record['format']}: {record['path']} ({record['size_bytes']:,} bytes); on "
        f"{check['examples']} test images: top-1 agreement {check['top1_agreement']:.4f}, max "
        f"|diff| {check['max_abs_diff']:.2g}, accuracy {check['test_accuracy_exported']:.4f} "
        f"(Keras {check['test_accuracy_keras']:.4f})"
    )


def export_run(
    path: str | os.PathLike,
    fmt: str,
    output: str | os.PathLike | None = None,
    *,
    model: str = "final",
    data_overrides: Mapping[str, str] | None = None,
    calibration_examples: int = 500,
    parity_examples: int | None = None,
) -> dict[str, Any]:
    """Exports a run's model in format `fmt` and writes its record (see the module docstring).

    Args:
        path: a run directory, or a `.keras` model file in one.
        fmt: one of `FORMATS`: "savedmodel", "tflite", "tflite_dynamic", "tflite_int8".
        output: the `.tflite` file or SavedModel directory to write; default
            `RUN_DIR/export/<format>/model.tflite` (`saved_model` for savedmodel).
        model: "final" (model.keras) or "best" (checkpoints/best.keras) of a run directory.
        data_overrides: `data.data_dir` / `data.manual_dir` where the run's data lives here.
        calibration_examples: training images that calibrate `tflite_int8`.
        parity_examples: test images of the parity check (default: the whole test split).

    Returns:
        The export record, as written to export.json, with the exported `path`.

    Raises:
        ConfigurationError: a bad format, output, run or model choice.
        recipes.export.formats.ExportError: the model does not convert with builtin ops only.
        recipes.train.errors.DataError: the data found is not the run's.
    """
    try:
        check_choice("format", fmt, FORMATS)
        check_integer("calibration_examples", calibration_examples, low=1)
        check_integer("parity_examples", parity_examples, low=1, optional=True)
    except ValueError as error:
        raise ConfigurationError(str(error)) from None
    run = load_run(path, model, data_overrides)
    output = Path(output) if output is not None else default_output(run, fmt)
    _check_output(output, fmt)
    keras_model = raw_image_model(run)
    test = raw_images(run, "test", data_overrides)
    record: dict[str, Any] = {"format": fmt, "file": output.name}
    if fmt == "savedmodel":
        with atomic_directory(output) as folder:
            write_saved_model(keras_model, folder)
            record["parity"] = parity(keras_model, SavedModelRunner(folder), test, parity_examples)
            record["ops"] = saved_model_ops(folder)
        record["input"] = {
            "shape": [None, *run.image_shape],
            "dtype": "float32 (endpoint serve) or uint8 (endpoint serve_uint8)",
        }
        record["output"] = {"shape": [None, len(run.class_names)], "dtype": "float32"}
    else:
        calibration = None
        if fmt == "tflite_int8":
            calibration = calibration_images(run, calibration_examples, data_overrides)
            record["calibration"] = {"split": "train", "examples": len(calibration)}
        content = convert_to_tflite(
            keras_model,
            fmt,
            None if calibration is None else lambda: (image[None] for image in calibration),
        )
        exported = TFLiteModel(content)
        record["parity"] = parity(keras_model, exported, test, parity_examples)
        record["ops"] = tflite_ops(content)
        record.update(exported.tensors())
        atomic_write_bytes(output, content)
    record["input"].update(
        range=INPUT_RANGE, preprocessing=f"{run.preprocessing}, inside the model"
    )
    record["output"]["values"] = "class probabilities"
    record.update(
        size_bytes=file_size(output),
        class_names=list(run.class_names),
        source=run.source(),
        tensorflow_version=tf.__version__,
    )
    atomic_write_text(output.parent / EXPORT_FILE, format_json(record))
    # The card lists the exports below the run directory; one written elsewhere leaves it alone.
    if "config" in run.metrics and output.resolve().is_relative_to(run.run_dir.resolve()):
        write_model_card(run.run_dir, run.metrics)
    record["path"] = str(output)
    print(_summary(record), flush=True)
    warning = accuracy_drop_warning(record["parity"], fmt)
    if warning:
        print(warning, file=sys.stderr, flush=True)
    return record
