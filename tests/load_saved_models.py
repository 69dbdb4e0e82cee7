"""Loads `.keras` files in a fresh process as a user's own script would, for tests/test_saved_files.py.

    python tests/load_saved_models.py FILES.json OUT.npz "import recipes"

First tries every file with nothing but Keras imported, recording why each fails; then runs the
given import line (the one the docs give) and loads every file again, saving what `model_record`
records of it to OUT.npz. It prints one JSON object: the failures, and which of the project's
modules the import line loaded. Imports nothing of the project itself.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import keras
import numpy as np

PROJECT_PACKAGES = ("layers", "zoo", "recipes")


def sample_images(model: keras.Model) -> np.ndarray:
    """Four fixed random images of the model's input shape, values 0..1."""
    shape = (4, *model.input_shape[1:])
    return np.random.default_rng(0).uniform(0.0, 1.0, shape).astype("float32")


def model_record(model: keras.Model) -> dict[str, np.ndarray]:
    """Predictions on `sample_images`, optimizer variables, and the classes of the optimizer
    chain (wrappers, then what they wrap), their learning rates and the loss, as arrays."""
    predictions = model(sample_images(model), training=False)
    record = {"predictions": keras.ops.convert_to_numpy(predictions)}
    optimizer = getattr(model, "optimizer", None)
    if optimizer is not None:
        for i, variable in enumerate(optimizer.variables):
            record[f"optimizer_variable_{i}"] = keras.ops.convert_to_numpy(variable)
    chain = []
    while optimizer is not None:
        rate = getattr(optimizer, "_learning_rate", None)
        chain.append(f"{type(optimizer).__name__}({type(rate).__name__})")
        optimizer = getattr(optimizer, "inner_optimizer", None)
    record["optimizer_chain"] = np.array(chain, dtype=str)
    record["loss"] = np.array(type(getattr(model, "loss", None)).__name__)
    return record


def main(files_json: str, out: str, import_line: str) -> dict[str, Any]:
    with open(files_json, encoding="utf-8") as handle:
        files = json.load(handle)
    failures = {}
    for path in files:
        try:
            keras.models.load_model(path)
        except Exception as error:
            failures[path] = " ".join(str(error).split())
    exec(import_line, {})
    arrays = {}
    for i, path in enumerate(files):
        record = model_record(keras.models.load_model(path))
        arrays.update({f"{i}/{key}": value for key, value in record.items()})
    np.savez(out, **arrays)
    loaded = sorted(name for name in sys.modules if name.split(".")[0] in PROJECT_PACKAGES)
    others = sorted(name for name in ("keras_tuner",) if name in sys.modules)
    return {"failures": failures, "project_modules": loaded, "other_modules": others}


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:])))
