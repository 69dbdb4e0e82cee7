"""A run's model card: `MODEL_CARD.md`, what a user of the trained model needs to know, on one page.

The card says what the model is (name, knobs, parameters), what it was trained and tested on
(dataset, classes, splits), how images must be prepared for it, how it was trained, how well it
does on the test split (with test-time augmentation when the run measured it), the command that
trains it again, and the files exported from it with their parity figures. The runner writes it
when a run finishes; `python -m recipes.export` rewrites it after each export.

Everything comes from the run's `metrics.json`, which holds the configuration and the dataset's
summary, so a copy of a run that keeps only `metrics.json` (docs/runs) gets a card too; the
exports are the `export.json` records found below the run directory (exports written elsewhere
are not listed).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from recipes.data.datasets import SPLITS
from recipes.train.config import CONFIG_FILE, RunConfig
from recipes.train.files import atomic_write_text

MODEL_CARD_FILE = "MODEL_CARD.md"
# The record each export writes beside its file (see recipes.export).
EXPORT_FILE = "export.json"

_PREPROCESSING = {
    "scale": "pixels divided by 255 (values in [0, 1])",
    "mean_image": "pixels divided by 255, minus the training split's mean image",
    "per_channel": "pixels divided by 255, then each channel standardized by the training "
    "split's mean and standard deviation",
    "none": "raw pixels 0..255 (a backbone applies its own preprocess_input inside the model)",
}


def _settings(values: Mapping[str, Any]) -> str:
    """`k=v, k=v` for the set entries of a mapping; "none" when empty."""
    items = [f"{key}={value}" for key, value in values.items() if value not in (None, {}, "")]
    return ", ".join(items) or "none"


def _figure(value: Any, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _model_section(config: RunConfig, metrics: Mapping[str, Any]) -> list[str]:
    model = config.model
    lines = [
        f"- Model: `{model.name}` (`zoo.create`), knobs: {_settings(model.knobs)}; options: "
        f"{_settings(model.options)}",
        f"- Parameters: {metrics['parameters']:,}" if "parameters" in metrics else "",
    ]
    if model.fine_tune is not None:
        lines.append(
            f"- Fine-tuning: {model.fine_tune} from weights {model.weights or 'imagenet'}"
            + (
                f", head first for {model.head_epochs} epoch(s)"
                if model.fine_tune == "full"
                else ""
            )
        )
    return [line for line in lines if line]


def _data_section(config: RunConfig, dataset: Mapping[str, Any]) -> list[str]:
    sizes = dataset.get("split_sizes", {})
    names = dataset.get("class_names", [])
    shape = "x".join(str(d) for d in dataset.get("image_shape", []))
    carved = (
        f" (a split the dataset lacks is carved from its training split: validation fraction "
        f"{config.data.validation_fraction:g}, seed {config.run.seed})"
    )
    return [
        f"- Dataset: `{dataset.get('name', config.data.dataset)}` ({dataset.get('source', '?')}), "
        f"images {shape}",
        f"- Classes ({len(names)}, in label order): " + ", ".join(f"`{name}`" for name in names),
        "- Splits: "
        + ", ".join(f"{split} {sizes[split]:,}" for split in SPLITS if split in sizes)
        + carved,
    ]


def _preprocessing_section(config: RunConfig) -> list[str]:
    mode = config.data.preprocessing
    lines = [f"- Input: `{mode}`, {_PREPROCESSING.get(mode, mode)}"]
    lines.append(
        "- Exported models and `python -m recipes.predict` take raw images (0..255) and apply "
        "this themselves"
    )
    if config.data.augment not in ("", "none") or config.data.balance_classes:
        lines.append(
            f"- Training only: augmentation `{config.data.augment}`"
            + (", class-balanced sampling" if config.data.balance_classes else "")
        )
    return lines


def _training_section(config: RunConfig, metrics: Mapping[str, Any]) -> list[str]:
    optim, run = config.optim, config.run
    schedule = optim.schedule + (
        f" ({_settings(optim.schedule_options)})" if optim.schedule_options else ""
    )
    lines = [
        f"- Recipe: `{metrics.get('recipe', '?')}`",
        f"- Optimizer: {optim.optimizer}, learning rate {optim.lr:g} ({_settings(optim.options)})"
        f", schedule {schedule}"
        + (f", {optim.warmup_epochs:g} warmup epochs" if optim.warmup_epochs else ""),
        f"- Loss: {optim.loss}"
        + (f" ({_settings(optim.loss_options)})" if optim.loss_options else ""),
        f"- Epochs: {metrics.get('epochs', '?')} of {run.epochs}, batch size {run.batch_size}, "
        f"seed {run.seed}, strategy {config.distribute.strategy}",
    ]
    if optim.lookahead:
        lines.append(f"- Lookahead: k={optim.lookahead_k}, alpha={optim.lookahead_alpha:g}")
    if optim.swa_start_epoch is not None:
        lines.append(f"- Stochastic weight averaging from epoch {optim.swa_start_epoch}")
    if (
        "precision" in metrics
    ):  # runs from before the speed flags trained in float32, one step a call
        lines.append(
            f"- Execution: {metrics['precision']}, XLA {'on' if metrics['jit_compile'] else 'off'}"
            f", {metrics['steps_per_execution']} steps per execution"
            + (f", on {metrics['hardware']}" if metrics.get("hardware") else "")
        )
    if metrics.get("wall_time_s") is not None:
        lines.append(
            f"- Training time: {metrics['wall_time_s']:.0f} s"
            + (f" ({metrics['images_per_s']:,.0f} images/s)" if metrics.get("images_per_s") else "")
        )
    return lines


def _metrics_section(metrics: Mapping[str, Any]) -> list[str]:
    rows = [
        ("test accuracy", _figure(metrics.get("test_accuracy"))),
        ("test loss", _figure(metrics.get("test_loss"))),
    ]
    if "test_accuracy_tta" in metrics:
        tta = metrics.get("tta", "?")
        rows += [
            (f"test accuracy, TTA {tta}", _figure(metrics["test_accuracy_tta"])),
            (f"test loss, TTA {tta}", _figure(metrics.get("test_loss_tta"))),
        ]
    rows.append(("best validation accuracy", _figure(metrics.get("best_val_accuracy"))))
    return ["| metric | value |", "|---|---|", *(f"| {name} | {value} |" for name, value in rows)]


def _reproduce_section(run_dir: Path, metrics: Mapping[str, Any]) -> list[str]:
    recipe = metrics.get("recipe", "<recipe>")
    if (run_dir / CONFIG_FILE).is_file():
        return [
            "```",
            f"python -m recipes.{recipe} --config {run_dir / CONFIG_FILE} --out-dir NEW_RUN_DIR",
            "```",
        ]
    return [
        f"This directory keeps no {CONFIG_FILE}: save the `config` entry of metrics.json as a "
        "JSON file of its own and run",
        "```",
        f"python -m recipes.{recipe} --config THAT_FILE.json --out-dir NEW_RUN_DIR",
        "```",
    ]


def exported_files(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The `export.json` records found below `run_dir`, each with its `path` (sorted)."""
    records = []
    for path in sorted(Path(run_dir).rglob(EXPORT_FILE)):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # not one of ours, or damaged: the card lists what it can read
        if isinstance(record, dict) and "format" in record:
            records.append({**record, "path": str(path.parent / record.get("file", ""))})
    return records


def _exports_section(run_dir: Path) -> list[str]:
    records = exported_files(run_dir)
    if not records:
        return [
            "None yet: `python -m recipes.export RUN_DIR --format tflite` (see docs/export.md)."
        ]
    lines = [
        "| format | file | size (bytes) | max abs diff | top-1 agreement | test accuracy "
        "(Keras / exported) |",
        "|---|---|---|---|---|---|",
    ]
    for record in records:
        parity = record.get("parity") or {}
        path = os.path.relpath(record["path"], run_dir)
        lines.append(
            f"| {record['format']} | `{path}` | {record.get('size_bytes', 0):,} | "
            f"{_figure(parity.get('max_abs_diff'), 6)} | {_figure(parity.get('top1_agreement'))} "
            f"| {_figure(parity.get('test_accuracy_keras'))} / "
            f"{_figure(parity.get('test_accuracy_exported'))} |"
        )
    return lines


def render_model_card(run_dir: str | os.PathLike, metrics: Mapping[str, Any]) -> str:
    """The model card's Markdown for the run in `run_dir` with these `metrics` (metrics.json)."""
    run_dir = Path(run_dir)
    if "config" not in metrics or "dataset" not in metrics:
        raise ValueError(
            f"{run_dir}: metrics.json has no `config` or `dataset` entry; a model card needs both"
        )
    config = RunConfig.from_dict(metrics["config"], f"{run_dir}/metrics.json")
    sections = {
        "Model": _model_section(config, metrics),
        "Data": _data_section(config, metrics["dataset"]),
        "Preprocessing": _preprocessing_section(config),
        "Training": _training_section(config, metrics),
        "Test metrics": _metrics_section(metrics),
        "Reproduce": _reproduce_section(run_dir, metrics),
        "Exported files": _exports_section(run_dir),
    }
    text = [f"# Model card: {metrics.get('recipe', config.model.name)}, `{run_dir.name}`", ""]
    for title, lines in sections.items():
        text += [f"## {title}", "", *lines, ""]
    return "\n".join(text)


def write_model_card(run_dir: str | os.PathLike, metrics: Mapping[str, Any]) -> Path:
    """Writes `run_dir/MODEL_CARD.md` atomically from the run's `metrics` (see the module
    docstring); returns its path."""
    return atomic_write_text(Path(run_dir) / MODEL_CARD_FILE, render_model_card(run_dir, metrics))
