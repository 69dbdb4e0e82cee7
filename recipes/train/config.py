"""The shared command line of every recipe, and how a run's effective configuration is assembled.

A run's configuration is a flat dict, built in layers where each one overrides the one before:

1. `BASE_DEFAULTS` (this module), the same for every recipe;
2. the recipe's own defaults (its model, dataset, optimizer, ...);
3. a config file given with `--config file.yaml|json` (e.g. the best trial of a search);
4. the flags given on the command line.

Every flag means the same in every recipe because all recipes share `build_parser`.
"""

from __future__ import annotations

import argparse
import difflib
import json
from pathlib import Path
from typing import Any

import yaml

from zoo.knobs import KNOB_DEFAULTS

BASE_DEFAULTS: dict[str, Any] = {
    "model": "lenet5",
    "model_options": {},
    "dataset": "sample",
    "data_dir": None,
    "manual_dir": None,
    "image_size": None,
    "validation_fraction": 0.1,
    "preprocessing": "scale",
    "balance_classes": False,
    "optimizer": "momentum",
    "lr": 0.01,
    "optimizer_options": {},
    "lr_schedule": "constant",
    "schedule_options": {},
    "warmup_epochs": 0,
    "loss": "softmax_cross_entropy",
    "augment": "none",
    "fine_tune": None,
    "weights": None,
    "head_epochs": 1,
    "unfreeze_blocks": None,
    "full_lr_factor": 0.1,
    "class_index": None,
    "top_k": 5,
    "tta": "none",
    "batch_size": 128,
    "epochs": 10,
    "seed": 0,
    "out_dir": None,
    "resume": False,
    "dry_run": False,
    "verbose": 1,
    "sanity": False,
    "monitors": False,
    "monitor_every": None,
    "strategy": "default",
    "sync_bn": False,
    "cpu_replicas": None,
    # Model knobs: None leaves the model's own default (see `zoo.knobs.KNOB_DEFAULTS`).
    **dict.fromkeys(KNOB_DEFAULTS),
}

# Flags whose values are parsed as YAML scalars ("0.1" -> 0.1, "true" -> True, "null" -> None).
_KEY_VALUE_FLAGS = {
    "--model-option": "model_options",
    "--opt": "optimizer_options",
    "--schedule-option": "schedule_options",
}


def _yaml_value(text: str) -> Any:
    return yaml.safe_load(text) if text != "" else ""


def _key_value(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip().replace("-", "_"), _yaml_value(value.strip())


def _image_size(text: str) -> tuple[int, int]:
    parts = text.lower().replace("x", ",").split(",")
    try:
        size = tuple(int(p) for p in parts)
    except ValueError:
        size = ()
    if len(size) == 1:
        size = size * 2
    if len(size) != 2 or min(size) < 1:
        raise argparse.ArgumentTypeError(
            f"image size must be N or HxW with positive N, got {text!r}"
        )
    return size


def _knob_type(default: Any):
    if isinstance(default, bool):
        return _yaml_value
    if isinstance(default, int):
        return int
    if isinstance(default, float) or default is None:
        return float
    return str


def build_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The command line shared by every recipe; unset flags stay out of the parsed namespace."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        argument_default=argparse.SUPPRESS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run = parser.add_argument_group("run")
    run.add_argument("--config", help="YAML or JSON file of defaults (flags win over it)")
    run.add_argument("--out-dir", help="run directory (default: runs/<recipe>/<timestamp>)")
    run.add_argument("--resume", action="store_true", help="continue the run in --out-dir")
    run.add_argument("--dry-run", action="store_true", help="print config and model, train nothing")
    run.add_argument("--seed", type=int)
    run.add_argument("--epochs", type=int)
    run.add_argument("--batch-size", type=int)
    run.add_argument("--verbose", type=int, choices=(0, 1, 2), help="Keras progress output")
    run.add_argument("--sanity", action="store_true", help="sanity checks before training")
    run.add_argument("--monitors", action="store_true", help="dead ReLU/update ratio/... monitors")
    run.add_argument("--monitor-every", type=int, help="monitor every N batches (default: epoch)")
    run.add_argument(
        "--tta", help="test-time augmentation: none | flip (also report flip-averaged accuracy)"
    )

    distribute = parser.add_argument_group("distribution (see docs/distributed.md)")
    distribute.add_argument(
        "--strategy", help="default | mirrored | multi_worker | tpu (--batch-size is global)"
    )
    distribute.add_argument(
        "--sync-bn", action="store_true", help="synchronize BatchNorm statistics across replicas"
    )
    distribute.add_argument(
        "--cpu-replicas", type=int, help="mirrored on a CPU: split it into N logical devices"
    )

    data = parser.add_argument_group("data")
    data.add_argument("--dataset", help="sample | TFDS name | folder of class sub-folders")
    data.add_argument("--data-dir", help="TFDS data directory")
    data.add_argument("--manual-dir", help="folder of MNIST-family IDX files (offline mirror)")
    data.add_argument("--image-size", type=_image_size, help="resize images to N or HxW")
    data.add_argument("--validation-fraction", type=float)
    data.add_argument("--preprocessing", choices=("scale", "mean_image", "per_channel", "none"))
    data.add_argument("--balance-classes", action="store_true", help='"label shuffle" sampling')
    data.add_argument("--augment", help="augmentation preset or op list, e.g. flip_h,crop:4")

    model = parser.add_argument_group("model (zoo knobs apply to every small model)")
    model.add_argument("--model", help="zoo model name (see `zoo.list_models()`)")
    model.add_argument("--model-option", action="append", type=_key_value, metavar="KEY=VALUE")
    model.add_argument("--backbone", dest="model", help="ImageNet backbone (same as --model)")
    model.add_argument("--weights", help='backbone weights: "imagenet", a file path, or "none"')
    model.add_argument("--fine-tune", choices=("predict", "head", "full"))
    model.add_argument("--head-epochs", type=int, help="full fine-tuning: epochs of head only")
    model.add_argument("--unfreeze-blocks", type=int, help="full: unfreeze only the top N blocks")
    model.add_argument("--full-lr-factor", type=float, help="full: backbone phase lr multiplier")
    model.add_argument("--class-index", help="ImageNet class index JSON (offline predict)")
    model.add_argument("--top-k", type=int, help="predict: labels per image")
    for knob, default in KNOB_DEFAULTS.items():
        model.add_argument(f"--{knob.replace('_', '-')}", type=_knob_type(default))
    model.add_argument(
        "--weight-decay", dest="l2", type=float, help="L2 penalty on kernels (same as --l2)"
    )

    optim = parser.add_argument_group("optimization")
    optim.add_argument("--optimizer", help="tf.train name, e.g. Momentum, Adam, ProximalAdagrad")
    optim.add_argument("--lr", type=float, help="base learning rate")
    optim.add_argument("--opt", action="append", type=_key_value, metavar="KEY=VALUE")
    optim.add_argument("--lr-schedule", help="constant | step | exponential | cosine | ...")
    optim.add_argument("--schedule-option", action="append", type=_key_value, metavar="KEY=VALUE")
    optim.add_argument("--warmup-epochs", type=float)
    optim.add_argument("--loss", help="softmax_cross_entropy | svm_hinge | ...")
    return parser


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Reads a YAML or JSON config file into a dict of config keys."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} not found")
    text = path.read_text()
    values = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    if not isinstance(values, dict):
        raise ValueError(f"config file {path} must hold a mapping of option names to values")
    return {key.replace("-", "_"): value for key, value in values.items()}


def check_keys(values: dict[str, Any], origin: str) -> None:
    """Rejects keys that are not config options, suggesting the closest ones."""
    for key in values:
        if key not in BASE_DEFAULTS:
            close = difflib.get_close_matches(key, list(BASE_DEFAULTS), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ValueError(f"unknown option {key!r} in {origin}{hint}")


# A run directory's effective configuration, written by the runner and read back by --resume.
CONFIG_FILE = "config.json"

# What a resumed run may change: where and how verbosely it runs, where its data lives, and how
# its final model is evaluated.
RESUME_MAY_CHANGE = ("resume", "out_dir", "dry_run", "verbose", "data_dir", "manual_dir", "tta")


def _as_saved(value: Any) -> Any:
    """A value as a run's config.json holds it (tuples become lists), for comparison."""
    return json.loads(json.dumps(value, default=str))


def saved_run_config(run_dir: str | Path) -> dict[str, Any] | None:
    """The configuration a run directory was started with, or None if it holds no run."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        return None
    saved = json.loads(path.read_text())
    check_keys(saved, str(path))
    return saved


def resolve_config(
    recipe_defaults: dict[str, Any], argv: list[str] | None, prog: str, description: str
) -> dict[str, Any]:
    """The effective configuration: base defaults < recipe defaults < --config file < flags.

    With --resume, the run directory's saved config.json replaces both defaults layers, so
    `--out-dir DIR --resume` alone continues a run as it was started; a file or flag that would
    change how the run trains (anything but `RESUME_MAY_CHANGE`) is refused.
    """
    check_keys(recipe_defaults, "recipe defaults")
    flags = vars(build_parser(prog, description).parse_args(argv))
    config = {**BASE_DEFAULTS, **recipe_defaults}
    saved = None
    if flags.get("resume") and flags.get("out_dir") is not None:
        saved = saved_run_config(flags["out_dir"])
        if saved is not None:
            config.update(saved)
    config_file = flags.pop("config", None)
    if config_file is not None:
        from_file = load_config_file(config_file)
        check_keys(from_file, str(config_file))
        config.update(from_file)
    for flag, key in _KEY_VALUE_FLAGS.items():
        dest = flag.lstrip("-").replace("-", "_")
        if dest in flags:
            config[key] = {**config[key], **dict(flags.pop(dest))}
    config.update(flags)
    if saved is not None:
        _refuse_changes_on_resume(saved, config, flags["out_dir"])
    return config


def _refuse_changes_on_resume(
    saved: dict[str, Any], config: dict[str, Any], run_dir: str | Path
) -> None:
    changed = [
        f"{key} (saved {saved[key]!r}, given {config[key]!r})"
        for key in saved
        if key not in RESUME_MAY_CHANGE and _as_saved(config[key]) != saved[key]
    ]
    if changed:
        raise ValueError(
            f"--resume continues {run_dir} as saved in its {CONFIG_FILE}, but these settings "
            f"differ: {'; '.join(changed)}. Drop them to resume, or start a new run with "
            "another --out-dir."
        )
