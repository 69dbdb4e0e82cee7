"""Running exported models: raw images in, class probabilities out, whatever the format.

    model = load_exported("run/export/tflite_int8/model.tflite")
    probabilities = model.predict(images)  # (N, H, W, C) raw pixels 0..255, uint8 or float

`TFLiteModel` runs a `.tflite` file with the TFLite interpreter, in batches; for a quantized input
it quantizes the pixels with the input tensor's scale and zero point (for `tflite_int8`, uint8
pixels with scale 1 and zero point 0 when the calibration images spanned 0..255: the raw pixels
themselves), and it dequantizes a quantized output into probabilities. `SavedModelRunner` calls a
SavedModel's `serve` endpoint. `load_exported` picks by path and reads the `export.json` beside
(class names, input shape, source run).
"""

from __future__ import annotations

import contextlib
import json
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from recipes.train.errors import ConfigurationError, RecipeError
from recipes.train.model_card import EXPORT_FILE


@contextlib.contextmanager
def _quiet_interpreter_notice() -> Iterator[None]:
    """Silences TensorFlow's notice that tf.lite.Interpreter is moving to the ai_edge_litert
    package (not installed here; the interpreter is the same)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"\s*Warning: tf.lite.Interpreter is deprecated")
        yield


def _quantize(images: np.ndarray, dtype: type, scale: float, zero_point: int) -> np.ndarray:
    limits = np.iinfo(dtype)
    values = np.round(images.astype(np.float32) / scale + zero_point)
    return np.clip(values, limits.min, limits.max).astype(dtype)


class TFLiteModel:
    """A `.tflite` classifier run with the TFLite interpreter (see the module docstring).

    Args:
        content: the flatbuffer's bytes.
        num_threads: interpreter threads (None: TFLite's default).
    """

    def __init__(self, content: bytes, num_threads: int | None = None) -> None:
        with _quiet_interpreter_notice():
            self.interpreter = tf.lite.Interpreter(model_content=content, num_threads=num_threads)
        self._input = self.interpreter.get_input_details()[0]
        self._output_index = self.interpreter.get_output_details()[0]["index"]
        self._batch = None

    @property
    def input_dtype(self) -> np.dtype:
        return np.dtype(self._input["dtype"])

    @property
    def input_shape(self) -> tuple[int, ...]:
        """(height, width, channels) of the images the model takes."""
        return tuple(int(d) for d in self._input["shape"][1:])

    def tensors(self) -> dict[str, dict[str, Any]]:
        """The input and output tensors: shape (batch first, None), dtype and, when quantized,
        scale and zero point (real value = scale * (quantized - zero point))."""
        described = {}
        for role, details in (
            ("input", self._input),
            ("output", self.interpreter.get_output_details()[0]),
        ):
            tensor = {
                "shape": [None, *(int(d) for d in details["shape"][1:])],
                "dtype": np.dtype(details["dtype"]).name,
            }
            scale, zero_point = details["quantization"]
            if scale:
                tensor["quantization"] = {"scale": float(scale), "zero_point": int(zero_point)}
            described[role] = tensor
        return described

    def _resize(self, batch: int) -> None:
        if batch != self._batch:
            self.interpreter.resize_tensor_input(self._input["index"], [batch, *self.input_shape])
            self.interpreter.allocate_tensors()
            self._batch = batch

    def predict(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Class probabilities (float32, N x classes) of raw images (N, H, W, C), 0..255."""
        images = np.asarray(images)
        outputs = []
        for start in range(0, len(images), batch_size):
            batch = images[start : start + batch_size]
            self._resize(len(batch))
            if self.input_dtype.kind in "iu":
                scale, zero_point = self._input["quantization"]
                batch = _quantize(batch, self.input_dtype.type, scale, zero_point)
            else:
                batch = batch.astype(self.input_dtype)
            self.interpreter.set_tensor(self._input["index"], batch)
            self.interpreter.invoke()
            output = self.interpreter.get_tensor(self._output_index)
            details = self.interpreter.get_output_details()[0]
            if output.dtype.kind in "iu":
                scale, zero_point = details["quantization"]
                output = (output.astype(np.float32) - zero_point) * scale
            outputs.append(output.astype(np.float32))
        return np.concatenate(outputs)


class SavedModelRunner:
    """A SavedModel written by `recipes.export`, called through its `serve` endpoint."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.loaded = tf.saved_model.load(os.fspath(path))
        spec = self.loaded.signatures["serving_default"].structured_input_signature[1]
        self._shape = tuple(int(d) for d in next(iter(spec.values())).shape[1:])

    input_dtype = np.dtype(np.float32)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self._shape

    def predict(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        """Class probabilities (float32, N x classes) of raw images (N, H, W, C), 0..255."""
        images = np.asarray(images, dtype=np.float32)
        return np.concatenate(
            [
                self.loaded.serve(images[start : start + batch_size]).numpy()
                for start in range(0, len(images), batch_size)
            ]
        )


def read_export_record(path: str | os.PathLike) -> dict[str, Any]:
    """The `export.json` written beside the exported file or directory `path`.

    Raises:
        ConfigurationError: there is none, or it records another file.
    """
    path = Path(path)
    record_path = path.parent / EXPORT_FILE
    if not record_path.is_file():
        raise ConfigurationError(
            f"{path} has no {EXPORT_FILE} beside it: the class names and input of an exported "
            "model are read from there; export it with python -m recipes.export"
        )
    try:
        record = json.loads(record_path.read_text())
    except ValueError as error:
        raise RecipeError(f"{record_path} is not valid JSON ({error})") from None
    if record.get("file") != path.name:
        raise ConfigurationError(
            f"{record_path} describes {record.get('file')!r}, not {path.name}: keep each export "
            "in a folder of its own"
        )
    return record


def load_exported(path: str | os.PathLike) -> tuple[TFLiteModel | SavedModelRunner, dict]:
    """An exported model (a `.tflite` file or a SavedModel directory) and its export record."""
    path = Path(path)
    record = read_export_record(path)
    if path.suffix == ".tflite":
        return TFLiteModel(path.read_bytes()), record
    if (path / "saved_model.pb").is_file():
        return SavedModelRunner(path), record
    raise ConfigurationError(f"{path} is neither a .tflite file nor a SavedModel directory")
