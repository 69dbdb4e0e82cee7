"""Exports a trained run as a SavedModel or TFLite file that takes raw images and returns probabilities.

    python -m recipes.export RUN_DIR --format tflite
    python -m recipes.export RUN_DIR --format tflite_int8 --output phone/model.tflite
    python -m recipes.export RUN_DIR/checkpoints/best.keras --format savedmodel
    python -m recipes.export RUN_DIR --card-only          # rewrite MODEL_CARD.md, export nothing

The run's preprocessing travels inside the exported model. Each export is checked against Keras on
the run's test split and writes export.json beside the file (format, size, ops, input, classes,
parity); the run's MODEL_CARD.md lists the exports inside the run directory. tflite_int8 is
calibrated on images of the run's training split. Default output:
RUN_DIR/export/<format>/model.tflite (saved_model for savedmodel). See docs/export.md.
"""

from __future__ import annotations

import argparse
import json
import sys

from recipes.export.exporter import export_run
from recipes.export.formats import FORMATS
from recipes.train.errors import TRACEBACK_FLAG, ConfigurationError, run_command
from recipes.train.inference import add_run_arguments, data_overrides, find_run
from recipes.train.model_card import write_model_card
from recipes.train.runner import METRICS_FILE


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m recipes.export",
        description=__doc__.split("\n")[0],
        epilog=__doc__.split("\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("source", help="a run directory, or a .keras model file in one")
    parser.add_argument("--format", choices=FORMATS, help="what to export")
    parser.add_argument(
        "--output", help="the .tflite file or SavedModel directory (default: in RUN_DIR/export/)"
    )
    add_run_arguments(parser)
    parser.add_argument(
        "--calibration-examples",
        type=int,
        default=500,
        help="tflite_int8: training images to calibrate on (default 500)",
    )
    parser.add_argument(
        "--parity-examples", type=int, help="test images of the parity check (default: all)"
    )
    parser.add_argument(
        "--card-only", action="store_true", help="only rewrite the run's MODEL_CARD.md"
    )
    parser.add_argument(TRACEBACK_FLAG, action="store_true", help="show tracebacks of errors")
    return parser


def _rewrite_card(source: str) -> None:
    run_dir, _ = find_run(source)
    metrics_file = run_dir / METRICS_FILE
    if not metrics_file.is_file():
        raise ConfigurationError(f"{run_dir} has no {METRICS_FILE}: the run has not finished")
    print(write_model_card(run_dir, json.loads(metrics_file.read_text())))


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.card_only:
        _rewrite_card(args.source)
        return
    if args.format is None:
        raise ConfigurationError(f"--format is needed: one of {', '.join(FORMATS)}")
    export_run(
        args.source,
        args.format,
        args.output,
        model=args.model,
        data_overrides=data_overrides(args),
        calibration_examples=args.calibration_examples,
        parity_examples=args.parity_examples,
    )


if __name__ == "__main__":
    arguments = sys.argv[1:]
    sys.exit(run_command(lambda: main(arguments), arguments))
