"""Command line: list and describe models, label images with an ImageNet backbone.

python -m zoo list [PATTERN] [--pretrained]
python -m zoo describe NAME
python -m zoo predict NAME IMAGE... [--weights W] [--class-index FILE] [--top-k K]
                                    [--option alpha=0.25] [--json]

Anticipated failures print one line, `error: ...`: exit 2 for a bad name or option, 1 for what
fails while running (an unreadable image; offline, weights or a class index Keras has no copy
of). `--traceback` shows where.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from collections.abc import Sequence
from typing import Any

import zoo


def _option(text: str) -> tuple[str, Any]:
    """Parse KEY=VALUE; VALUE as a Python literal when it is one (0.25, True, None), else text."""
    key, separator, value = text.partition("=")
    if not separator or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        return key, ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return key, value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m zoo", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--traceback", action="store_true", help="show the traceback of an anticipated error"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    listing = commands.add_parser("list", help="list registered model names")
    listing.add_argument("pattern", nargs="?", help='shell-style filter, e.g. "resnet*"')
    listing.add_argument(
        "--pretrained", action="store_true", help="only models shipped with trained weights"
    )
    describing = commands.add_parser(
        "describe", help="a model's options, paper, size and the cards of its trained weights"
    )
    describing.add_argument("name")
    predicting = commands.add_parser("predict", help="top-k ImageNet labels for image files")
    predicting.add_argument("name", help="a backbone name, e.g. mobilenet")
    predicting.add_argument("images", nargs="+", help="image files")
    predicting.add_argument("--weights", default="imagenet", help='"imagenet" or a weights file')
    predicting.add_argument(
        "--class-index", help="ImageNet class index JSON (needed offline; Keras downloads its own)"
    )
    predicting.add_argument("--top-k", type=int, default=5)
    predicting.add_argument(
        "--option", type=_option, action="append", default=[], help="backbone option KEY=VALUE"
    )
    predicting.add_argument("--json", action="store_true", help="one JSON object per image")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    arguments = _parser().parse_args(argv)
    try:
        _run(arguments)
    except (ValueError, TypeError, OSError, zoo.DownloadUnavailable) as error:
        if arguments.traceback:
            raise
        message = (
            error.advice(error.command_remedy)
            if isinstance(error, zoo.DownloadUnavailable)
            else str(error)
        )
        print(f"error: {' '.join(message.split())}", file=sys.stderr)
        return 2 if isinstance(error, ValueError | TypeError) else 1
    return 0


def _run(arguments: argparse.Namespace) -> None:
    if arguments.command == "list":
        print("\n".join(zoo.list_models(arguments.pattern, pretrained=arguments.pretrained)))
    elif arguments.command == "describe":
        info = zoo.describe(arguments.name)
        print(json.dumps({key: value for key, value in info.items() if key != "doc"}, indent=2))
        print(info["doc"])
    else:
        results = zoo.predict_labels(
            arguments.name,
            arguments.images,
            top_k=arguments.top_k,
            class_index=arguments.class_index,
            weights=arguments.weights,
            **dict(arguments.option),
        )
        for image, labels in zip(arguments.images, results, strict=True):
            if arguments.json:
                print(json.dumps({"image": image, "labels": labels}))
            else:
                print(image + ": " + ", ".join(f"{name} {p:.3f}" for _, name, p in labels))


if __name__ == "__main__":
    sys.exit(main())
