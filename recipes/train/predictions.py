"""Writing a classifier's predictions for a list of images: a CSV table and the same in JSON.

Both the ImageNet labelling of `fine_tune="predict"` runs (`recipes.train.runner`) and
`python -m recipes.predict` write them:

    predictions.csv    one row per image and rank: file,rank,<the label's fields>,probability
    predictions.json   {file: [{<the label's fields>, "probability": p}, ...]}, most likely first

A label is a mapping of fields, the same fields for every label: `wordnet_id` and `label` for
ImageNet classes, `class_id` and `label` for a run's classes.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from recipes.train.files import atomic_write_text

Predictions = Mapping[str, Sequence[Mapping[str, Any]]]


def rounded(predictions: Predictions) -> dict[str, list[dict[str, Any]]]:
    """The predictions with probabilities rounded to 6 decimals, as the files hold them."""
    return {
        file: [{**label, "probability": round(float(label["probability"]), 6)} for label in top]
        for file, top in predictions.items()
    }


def summary_line(file: str, top: Sequence[Mapping[str, Any]]) -> str:
    """One line for the console: `file: label p, label p, ...`."""
    return f"{file}: " + ", ".join(f"{label['label']} {label['probability']:.2f}" for label in top)


def write_predictions(csv_path: str | os.PathLike, predictions: Predictions) -> tuple[Path, Path]:
    """Writes `predictions` to `csv_path` and, beside it, the same as JSON (suffix `.json`).

    Args:
        csv_path: the CSV file to write (its directory is created when missing).
        predictions: per image file, its labels most likely first, each a mapping of the label's
            fields and its "probability".

    Returns:
        The CSV and JSON paths, both written atomically.
    """
    csv_path = Path(csv_path)
    labels = [label for top in predictions.values() for label in top]
    fields = [key for key in (labels[0] if labels else {}) if key != "probability"]
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["file", "rank", *fields, "probability"])
    for file, top in predictions.items():
        for rank, label in enumerate(top, 1):
            values = [label[field] for field in fields]
            writer.writerow([file, rank, *values, f"{float(label['probability']):.6f}"])
    json_path = csv_path.with_suffix(".json")
    atomic_write_text(csv_path, text.getvalue())
    atomic_write_text(
        json_path, json.dumps(rounded(predictions), indent=2, sort_keys=True, default=str) + "\n"
    )
    return csv_path, json_path
