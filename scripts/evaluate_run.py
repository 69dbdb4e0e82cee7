"""Evaluates finished runs again with test-time augmentation and records it in their metrics.json.

    python scripts/evaluate_run.py runs/resnet20_cifar10/* --tta flip
    python scripts/evaluate_run.py RUN_DIR --tta flip --manual-dir /usr/share/datasets/fashion-mnist

For runs trained without `--tta`: each run's final `model.keras` is evaluated on the test split its
`config.json` describes, through the same pipeline the run used. The single-view accuracy must match
the one the run recorded (otherwise the data is not the run's and nothing is written); then `tta`,
`test_accuracy_tta` and `test_loss_tta` are added to `metrics.json`, atomically, leaving every
other entry as it was. See `recipes.data.tta` for the modes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python scripts/evaluate_run.py`: find the packages
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import keras

from recipes.data.tta import TTA_MODES, check_tta, tta_metrics
from recipes.train.config import CONFIG_FILE, saved_run_config
from recipes.train.files import atomic_write_text
from recipes.train.inference import add_data_location_arguments, data_overrides
from recipes.train.runner import FINAL_MODEL, METRICS_FILE, format_json, load_data


def evaluate_run(run_dir: Path, mode: str, data_overrides: dict[str, str]) -> dict[str, Any]:
    """Adds `mode`'s test-time-augmented metrics to finished run `run_dir`'s metrics.json.

    Args:
        run_dir: a run directory with config.json, model.keras and metrics.json.
        mode: one of `recipes.data.tta.TTA_MODES`.
        data_overrides: `data.data_dir`/`data.manual_dir` where the run's data lives here.

    Returns:
        The updated metrics.
    """
    check_tta(mode)
    missing = [
        name for name in (CONFIG_FILE, FINAL_MODEL, METRICS_FILE) if not (run_dir / name).is_file()
    ]
    if missing:
        raise FileNotFoundError(f"{run_dir} is not a finished run: {', '.join(missing)} missing")
    config = saved_run_config(run_dir).updated(data_overrides, "the data flags")
    metrics = json.loads((run_dir / METRICS_FILE).read_text())
    test, info = load_data(config, "test")
    model = keras.models.load_model(run_dir / FINAL_MODEL)
    single_view = model.evaluate(test, verbose=0, return_dict=True)["accuracy"]
    # Half an image: a different test set, not float noise, moves the accuracy further.
    if abs(single_view - metrics["test_accuracy"]) > 0.5 / info.split_sizes["test"]:
        raise ValueError(
            f"{run_dir}: the model scores {single_view:.4f} on this test data but the run recorded "
            f"{metrics['test_accuracy']:.4f}, so this is not the data it was tested on; check "
            "--data-dir/--manual-dir (nothing was written)"
        )
    metrics.update(tta_metrics(model, test, mode))
    atomic_write_text(run_dir / METRICS_FILE, format_json(metrics))
    return metrics


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+", type=Path, help="finished run directories")
    parser.add_argument("--tta", default="flip", choices=[m for m in TTA_MODES if m != "none"])
    add_data_location_arguments(parser)
    args = parser.parse_args(argv)
    overrides = data_overrides(args)
    for run_dir in args.run_dirs:
        metrics = evaluate_run(run_dir, args.tta, overrides)
        print(
            f"{run_dir}: test accuracy {metrics['test_accuracy']:.4f}, "
            f"{metrics['test_accuracy_tta']:.4f} with tta {args.tta}",
            flush=True,
        )


if __name__ == "__main__":
    main()
