"""Exporting a trained run for deployment: a SavedModel or a TFLite file that takes raw images.

    python -m recipes.export RUN_DIR --format tflite_int8
    from recipes.export import export_run
    record = export_run("runs/lenet5_fashion_mnist/20250101-120000", "tflite")

- `exporter`: `export_run`: the run's raw-image model converted, checked against Keras on the
  run's test split, written with its record (export.json), and the run's model card rewritten;
- `formats`: the four formats (savedmodel, tflite, tflite_dynamic, tflite_int8), TFLite builtin
  ops only, and the op lists;
- `runtime`: running an exported file (`load_exported`): raw images in, probabilities out.

See docs/export.md.
"""

from recipes.export.exporter import export_run
from recipes.export.formats import FORMATS, ExportError, convert_to_tflite, tflite_ops
from recipes.export.runtime import SavedModelRunner, TFLiteModel, load_exported

__all__ = [
    "FORMATS",
    "ExportError",
    "SavedModelRunner",
    "TFLiteModel",
    "convert_to_tflite",
    "export_run",
    "load_exported",
    "tflite_ops",
]
