"""Labels images with a trained run's model, or with a model exported from a run.

    python -m recipes.predict RUN_DIR shirt.png photos/ --top-k 3
    python -m recipes.predict RUN_DIR photos/ --model best --output out/predictions.csv
    python -m recipes.predict RUN_DIR/export/tflite_int8/model.tflite photos/

Images are decoded, converted to the model's channels and resized to its image size; the run's
preprocessing is inside the model. Writes the top-k classes of every image to --output (CSV: file,
rank, class_id, label, probability) and the same as JSON beside it (.json). See docs/export.md.
"""

from __future__ import annotations

import argparse
import sys

from recipes.predict import find_images, load_predictor, predict_images
from recipes.train.errors import TRACEBACK_FLAG, run_command
from recipes.train.inference import add_run_arguments, data_overrides
from recipes.train.predictions import summary_line, write_predictions


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m recipes.predict",
        description=__doc__.split("\n")[0],
        epilog=__doc__.split("\n", 2)[2],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "source",
        help="a run directory, a .keras file in one, or an exported .tflite file or SavedModel",
    )
    parser.add_argument("images", nargs="+", help="image files or folders of images")
    parser.add_argument("--top-k", type=int, default=5, help="classes per image (default 5)")
    parser.add_argument(
        "--output",
        default="predictions.csv",
        help="the CSV to write; the JSON goes beside it (default predictions.csv)",
    )
    add_run_arguments(parser)
    parser.add_argument(TRACEBACK_FLAG, action="store_true", help="show tracebacks of errors")
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    images = find_images(args.images)
    predictor = load_predictor(args.source, args.model, data_overrides(args))
    predictions = predict_images(predictor, images, top_k=args.top_k)
    for file, top in predictions.items():
        print(summary_line(file, top))
    csv_path, json_path = write_predictions(args.output, predictions)
    print(f"predictions for {len(predictions)} images in {csv_path} and {json_path}")


if __name__ == "__main__":
    arguments = sys.argv[1:]
    sys.exit(run_command(lambda: main(arguments), arguments))
