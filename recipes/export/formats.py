"""Converting a Keras model to a deployable file: a TensorFlow SavedModel, or TFLite in three flavours.

- "savedmodel": `keras.export.ExportArchive`, two endpoints: `serve` (float32 images) and
  `serve_uint8` (uint8 images); `serve` is also the `serving_default` signature.
- "tflite": float32 weights and activations.
- "tflite_dynamic": dynamic-range quantization: int8 weights, float32 activations, input and
  output; about 4x smaller, no calibration data needed.
- "tflite_int8": full-integer quantization calibrated on representative images: int8 weights
  and activations, uint8 input (raw pixels) and uint8 output (probabilities in steps of 1/256);
  the input and output tensors carry their quantization (scale, zero point).

TFLite files are converted with TFLite's builtin operators only (no Flex/select-TF ops, no custom
ops), so that the plain TFLite runtime runs them; a model that needs another op is refused, naming
it. Each conversion goes through a temporary SavedModel (the "savedmodel" format's, whose `serve`
endpoint calls the model with training=False), which freezes the Keras variables.
"""

from __future__ import annotations

import collections
import os
import re
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from tensorflow.lite.python import schema_py_generated as tflite_schema
from tensorflow.lite.python.convert_phase import ConverterError

from recipes.train.errors import RecipeError

FORMATS = ("savedmodel", "tflite", "tflite_dynamic", "tflite_int8")
TFLITE_FORMATS = FORMATS[1:]
# The name a format's file gets unless told otherwise.
DEFAULT_FILE_NAMES = {
    "savedmodel": "saved_model",
    "tflite": "model.tflite",
    "tflite_dynamic": "model.tflite",
    "tflite_int8": "model.tflite",
}
_BUILTIN_NAMES = {
    code: name
    for name, code in vars(tflite_schema.BuiltinOperator).items()
    if not name.startswith("_")
}


class ExportError(RecipeError):
    """A model that cannot be converted to the format asked (an op TFLite has no builtin for)."""


def _serving_signature(model: keras.Model, dtype: tf.DType) -> list[tf.TensorSpec]:
    return [tf.TensorSpec((None, *model.input_shape[1:]), dtype, name="image")]


def write_saved_model(model: keras.Model, path: str | os.PathLike) -> None:
    """Writes `model` as a SavedModel directory at `path` (see the module docstring)."""
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        "serve",
        lambda images: model(images, training=False),
        input_signature=_serving_signature(model, tf.float32),
    )
    archive.add_endpoint(
        "serve_uint8",
        lambda images: model(tf.cast(images, tf.float32), training=False),
        input_signature=_serving_signature(model, tf.uint8),
    )
    archive.write_out(os.fspath(path), verbose=False)


def _conversion_failure(error: Exception, fmt: str) -> ExportError:
    """One line that names the ops TFLite lacks, from the converter's long message."""
    message = " ".join(str(error).split())
    # Ops left unconverted appear as `tf.OpName` (converted ones as `tfl.op_name`).
    ops = sorted(set(re.findall(r"\btf\.([A-Z][A-Za-z0-9_]*)", message)))
    named = f" (ops it could not convert: {', '.join(ops)})" if ops else ""
    return ExportError(
        f"the model does not convert to {fmt} with TFLite's builtin ops only{named}: replace the "
        "layers that need them, or export as savedmodel"
    )


def convert_to_tflite(
    model: keras.Model,
    fmt: str,
    representative_images: Callable[[], Iterable[np.ndarray]] | None = None,
) -> bytes:
    """The TFLite flatbuffer of `model` in format `fmt` (see the module docstring).

    Args:
        model: a single-input Keras model.
        fmt: "tflite", "tflite_dynamic" or "tflite_int8".
        representative_images: for "tflite_int8": a function returning an iterable of image
            batches (float32, as the model takes them) to calibrate the activation ranges on.

    Raises:
        ExportError: the model needs an op TFLite has no builtin for.
    """
    if fmt not in TFLITE_FORMATS:
        raise ValueError(f"unknown TFLite format {fmt!r}; accepted: {', '.join(TFLITE_FORMATS)}")
    if fmt == "tflite_int8" and representative_images is None:
        raise ValueError("tflite_int8 needs representative_images to calibrate on")
    with tempfile.TemporaryDirectory() as folder:
        saved = Path(folder) / "saved_model"
        # An endpoint that calls the model with training=False: `model.export`'s default one
        # leaves EfficientNet's stochastic-depth dropout (random ops, a seed variable) in the graph.
        write_saved_model(model, saved)
        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved), signature_keys=["serve"])
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if fmt != "tflite":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if fmt == "tflite_int8":
            converter.representative_dataset = lambda: (
                [np.asarray(batch, dtype=np.float32)] for batch in representative_images()
            )
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            converter.inference_input_type = tf.uint8
            converter.inference_output_type = tf.uint8
        try:
            content = converter.convert()
        except ConverterError as error:
            raise _conversion_failure(error, fmt) from error
    non_builtin = [name for name in tflite_ops(content) if name not in _BUILTIN_NAMES.values()]
    if non_builtin:
        raise ExportError(
            f"the {fmt} conversion holds ops that are not TFLite builtins: {', '.join(non_builtin)}"
        )
    return content


def tflite_ops(content: bytes) -> dict[str, int]:
    """How often each operator occurs in a TFLite flatbuffer, by name: builtin operators by
    their TFLite name (CONV_2D), custom ones (Flex ops included) by their custom code."""
    model = tflite_schema.ModelT.InitFromObj(tflite_schema.Model.GetRootAsModel(content, 0))
    names = []
    for code in model.operatorCodes:
        # Operator codes below 127 are kept in the deprecated field too; the larger one is right.
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        custom = code.customCode.decode() if isinstance(code.customCode, bytes) else code.customCode
        is_custom = builtin == tflite_schema.BuiltinOperator.CUSTOM
        names.append(
            (custom or "CUSTOM") if is_custom else _BUILTIN_NAMES.get(builtin, str(builtin))
        )
    counts = collections.Counter(
        names[operator.opcodeIndex]
        for subgraph in model.subgraphs
        for operator in subgraph.operators or ()
    )
    return dict(sorted(counts.items()))


def saved_model_ops(path: str | os.PathLike) -> dict[str, int]:
    """How often each TensorFlow op occurs in a SavedModel's `serving_default` graph, the
    functions it calls included."""
    signature = tf.saved_model.load(os.fspath(path)).signatures["serving_default"]
    graph = signature.graph.as_graph_def()
    counts = collections.Counter(node.op for node in graph.node)
    for function in graph.library.function:
        counts.update(node.op for node in function.node_def)
    return dict(sorted(counts.items()))


def file_size(path: str | os.PathLike) -> int:
    """Bytes of a file, or of every file below a directory."""
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size
