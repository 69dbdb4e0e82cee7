"""The run configuration: typed sections, built in layers, validated once.

A run is described by a `RunConfig` of five sections:

    data        DataConfig        what to train on and how it is prepared
    model       ModelConfig       the zoo model, its knobs and options, weights, fine-tuning
    optim       OptimConfig       optimizer, learning rate and schedule, loss
    run         RunOptions        epochs, batch size, seed, outputs, babysitting, evaluation
    distribute  DistributeConfig  the tf.distribute strategy

It is assembled in layers, each overriding the one before:

1. the sections' own defaults (this module), the same for every recipe;
2. the recipe's `DEFAULTS`, a dict with the same sections;
3. a file given with `--config file.yaml|json` (e.g. the best trial of a search);
4. the flags given on the command line.

Every section checks its values when built, with messages that name the key (`optim.lr`), the bad
value and what is accepted, so a bad setting fails before any data is loaded. `config.json` in a
run directory holds `RunConfig.to_dict()`; files written before the sections existed (one flat dict
of option names) still load through `convert_flat_config`.

Each field has one flag, shared by every recipe, whose `--help` line says what it is and its
default for that recipe.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml

import zoo
from layers.validation import check_bool, check_choice, check_integer, check_number, check_shape
from recipes.data.datasets import PREPROCESSING_MODES
from recipes.data.tta import TTA_MODES
from recipes.optim.schedules import TIMING_ARGUMENTS, schedule_hyperparameters
from recipes.train.errors import TRACEBACK_FLAG
from recipes.train.execution import AUTO, JIT_COMPILE_MODES, LEGACY_SETTINGS, PRECISIONS
from zoo.knobs import KNOB_DEFAULTS, Knobs

# A run directory's effective configuration, written by the runner and read back by --resume.
CONFIG_FILE = "config.json"


def _meta(help: str, *, flag: str | None = None, **metadata: Any) -> dict[str, Any]:
    """A field's command-line metadata; `flag` overrides the `--field-name` spelling.

    Other metadata: `flat` (the name in the flat format before sections), `aliases` (other flags),
    `key_value` (a dict filled by repeated KEY=VALUE flags), `choices`, `parse` (argparse type),
    `metavar` (the value's name in `--help`).
    """
    return {"help": help, "flag": flag, **metadata}


def _option(default: Any, help: str, **metadata: Any) -> Any:
    """A field with a scalar default and its command-line metadata (see `_meta`)."""
    return dataclasses.field(default=default, metadata=_meta(help, **metadata))


def _key_values(help: str, flag: str, **metadata: Any) -> Any:
    """A dict field filled from the command line by repeated `--flag KEY=VALUE`."""
    return dataclasses.field(
        default_factory=dict, metadata=_meta(help, flag=flag, key_value=True, **metadata)
    )


def _image_size(text: str) -> tuple[int, int]:
    parts = text.lower().replace("x", ",").split(",")
    try:
        size = tuple(int(part) for part in parts)
    except ValueError:
        size = ()
    if len(size) == 1:
        size = size * 2
    if len(size) != 2 or min(size) < 1:
        raise argparse.ArgumentTypeError(
            f"image size must be N or HxW with positive N, got {text!r}"
        )
    return size


def _steps_per_execution(text: str) -> int | str:
    if text.strip().lower() == AUTO:
        return AUTO
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"steps per execution must be a positive integer or auto, got {text!r}"
        ) from None


def _float(key: str, value: Any, **bounds: Any) -> float:
    # YAML reads "1e-3" as a string (it wants "1.0e-3"); a number written either way is a number.
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = float(value)
    return check_number(key, value, **bounds)


def _optional_str(key: str, value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ValueError(f"`{key}` must be None or a string. Received: {key}={value!r}")
    return value


def _str(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"`{key}` must be a non-empty string. Received: {key}={value!r}")
    return value


def _mapping(key: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise ValueError(f"`{key}` must be a mapping of names to values. Received: {key}={value!r}")
    return dict(value)


def _set(section: Any, name: str, value: Any) -> None:
    object.__setattr__(section, name, value)


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """What a run trains and evaluates on, and how the images are prepared."""

    dataset: str = _option("sample", "sample | TFDS name | folder of class sub-folders")
    data_dir: str | None = _option(None, "TFDS data directory")
    manual_dir: str | None = _option(None, "folder of MNIST-family IDX files (offline mirror)")
    image_size: tuple[int, int] | None = _option(
        None, "resize images to N or HxW (default: the dataset's size)", parse=_image_size
    )
    validation_fraction: float = _option(
        0.1, "share of the training split carved out for validation when the dataset has none"
    )
    preprocessing: str = _option(
        "scale", "input normalization of the images", choices=PREPROCESSING_MODES
    )
    balance_classes: bool = _option(False, '"label shuffle" class-balanced sampling')
    augment: str = _option("none", "augmentation preset or op list, e.g. flip_h,crop:4")

    def __post_init__(self) -> None:
        _set(self, "dataset", _str("data.dataset", self.dataset))
        _optional_str("data.data_dir", self.data_dir)
        _optional_str("data.manual_dir", self.manual_dir)
        if self.image_size is not None:
            _set(self, "image_size", check_shape("data.image_size", self.image_size, rank=2))
        _set(
            self,
            "validation_fraction",
            _float(
                "data.validation_fraction", self.validation_fraction, low=0, high=1, high_open=True
            ),
        )
        check_choice("data.preprocessing", self.preprocessing, PREPROCESSING_MODES)
        check_bool("data.balance_classes", self.balance_classes)
        _str("data.augment", self.augment)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The zoo model: name, the course's knobs, model options, weights and fine-tuning."""

    name: str = _option(
        "lenet5",
        "zoo model or ImageNet backbone (see `python -m zoo list`)",
        flag="model",
        aliases=("--backbone",),
        flat="model",
    )
    knobs: dict[str, Any] = dataclasses.field(
        default_factory=dict,
        metadata=_meta("the course's knobs (activation, norm, ...); unset ones keep the model's"),
    )
    options: dict[str, Any] = _key_values(
        "model-specific option, e.g. alpha=0.25 (MobileNet width), depth=3",
        "model-option",
        flat="model_options",
    )
    weights: str | None = _option(
        None,
        'initial weights: "imagenet", a file path, a tag of the zoo\'s trained weights '
        '("fashion_mnist"), or "none" (default: the model\'s)',
    )
    fine_tune: str | None = _option(
        None,
        "fine-tuning mode of a backbone or of trained --weights: predict | head | full",
        choices=zoo.FINE_TUNE_MODES,
    )
    head_epochs: int = _option(1, "full fine-tuning: epochs that train the head only")
    unfreeze_blocks: int | None = _option(
        None, "full fine-tuning: unfreeze only the top N blocks (default: all)"
    )
    full_lr_factor: float = _option(0.1, "full fine-tuning: learning-rate factor of phase two")
    class_index: str | None = _option(None, "ImageNet class index JSON (offline predict mode)")
    top_k: int = _option(5, "predict mode: labels per image")

    def __post_init__(self) -> None:
        _str("model.name", self.name)
        knobs = _mapping("model.knobs", self.knobs)
        for knob in knobs:
            if knob not in KNOB_DEFAULTS:
                raise _unknown_key("model.knobs", knob, KNOB_DEFAULTS)
        _set(self, "knobs", {key: value for key, value in knobs.items() if value is not None})
        # The knobs check their own values, once, here rather than when the model is built.
        try:
            Knobs(**self.knobs)
        except (TypeError, ValueError) as error:
            raise ValueError(f"model.knobs: {error}") from None
        _set(self, "options", _mapping("model.options", self.options))
        _optional_str("model.weights", self.weights)
        check_choice("model.fine_tune", self.fine_tune, zoo.FINE_TUNE_MODES, optional=True)
        check_integer("model.head_epochs", self.head_epochs, low=1)
        check_integer("model.unfreeze_blocks", self.unfreeze_blocks, low=1, optional=True)
        _set(
            self,
            "full_lr_factor",
            _float("model.full_lr_factor", self.full_lr_factor, low=0, high=1, low_open=True),
        )
        _optional_str("model.class_index", self.class_index)
        check_integer("model.top_k", self.top_k, low=1)


# Where the runner takes each of the schedule's timing arguments from.
_TIMING_ARGUMENT_SOURCES = {
    "base_lr": "optim.lr (--lr)",
    "steps_per_epoch": "the training split's size and run.batch_size (--batch-size)",
    "epochs": "run.epochs (--epochs)",
    "warmup_epochs": "optim.warmup_epochs (--warmup-epochs)",
}


def _refuse_run_set_schedule_options(schedule: str, options: Mapping[str, Any]) -> None:
    """Refuses a schedule option the runner sets itself, naming where it comes from instead."""
    for key in options:
        if key in TIMING_ARGUMENTS:
            own = ", ".join(schedule_hyperparameters(schedule)) or "none"
            raise ValueError(
                f"`optim.schedule_options` (--schedule-option) cannot set {key!r}: the run sets "
                f"it from {_TIMING_ARGUMENT_SOURCES[key]}. The options of schedule "
                f"{schedule!r}: {own}. Received: optim.schedule_options={dict(options)}"
            )


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """How the model is optimized: optimizer, learning rate and its schedule, loss."""

    optimizer: str = _option(
        "momentum", "tf.train name (Momentum, Adam, ProximalAdagrad, ...) or Keras optimizer"
    )
    lr: float = _option(0.01, "base learning rate")
    options: dict[str, Any] = _key_values(
        "optimizer hyperparameter, e.g. momentum=0.9 use_nesterov=true clipnorm=1",
        "opt",
        flat="optimizer_options",
    )
    schedule: str = _option(
        "constant",
        "learning-rate schedule: constant | step | exponential | cosine | ...",
        flag="lr-schedule",
        flat="lr_schedule",
    )
    schedule_options: dict[str, Any] = _key_values(
        "schedule option, e.g. drop_every=10", "schedule-option"
    )
    warmup_epochs: float = _option(0, "epochs of linear learning-rate warmup")
    loss: str = _option("softmax_cross_entropy", "softmax_cross_entropy | svm_hinge | ...")
    loss_options: dict[str, Any] = _key_values(
        "loss option, e.g. label_smoothing=0.1 (cross-entropy) or margin=2 (hinge)", "loss-option"
    )
    lookahead: bool = _option(
        False,
        "Lookahead around the optimizer: every k updates, slow weights step toward its weights",
    )
    lookahead_k: int = _option(5, "with --lookahead: optimizer updates between slow-weight steps")
    lookahead_alpha: float = _option(
        0.5, "with --lookahead: the slow weights' step toward the fast ones, in (0, 1]"
    )
    swa_start_epoch: int | None = _option(
        None,
        "stochastic weight averaging: average the weights from the end of this epoch on, and "
        "end with the average, BatchNorm statistics recomputed (default: off)",
    )
    swa_every_steps: int | None = _option(
        None, "with --swa-start-epoch: average every N steps (default: at every epoch's end)"
    )

    def __post_init__(self) -> None:
        _str("optim.optimizer", self.optimizer)
        _set(self, "lr", _float("optim.lr", self.lr, low=0, low_open=True))
        _set(self, "options", _mapping("optim.options", self.options))
        _str("optim.schedule", self.schedule)
        _set(self, "schedule_options", _mapping("optim.schedule_options", self.schedule_options))
        _refuse_run_set_schedule_options(self.schedule, self.schedule_options)
        _set(self, "warmup_epochs", _float("optim.warmup_epochs", self.warmup_epochs, low=0))
        _str("optim.loss", self.loss)
        _set(self, "loss_options", _mapping("optim.loss_options", self.loss_options))
        check_bool("optim.lookahead", self.lookahead)
        check_integer("optim.lookahead_k", self.lookahead_k, low=1)
        _set(
            self,
            "lookahead_alpha",
            _float("optim.lookahead_alpha", self.lookahead_alpha, low=0, high=1, low_open=True),
        )
        check_integer("optim.swa_start_epoch", self.swa_start_epoch, low=1, optional=True)
        check_integer("optim.swa_every_steps", self.swa_every_steps, low=1, optional=True)
        if self.swa_every_steps is not None and self.swa_start_epoch is None:
            raise ValueError(
                "`optim.swa_every_steps` (--swa-every-steps) sets how often stochastic weight "
                "averaging averages; it needs optim.swa_start_epoch (--swa-start-epoch). "
                f"Received: optim.swa_every_steps={self.swa_every_steps}"
            )


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """How long and where a run trains, what it watches, how it is evaluated."""

    epochs: int = _option(10, "training epochs")
    batch_size: int = _option(128, "global batch size")
    seed: int = _option(0, "seed of weights, data order, splits and augmentation")
    out_dir: str | None = _option(None, "run directory (default: runs/<recipe>/<timestamp>)")
    resume: bool = _option(False, "continue the run in --out-dir from its last finished epoch")
    force_resume: bool = _option(
        False, "with --resume: continue a run that diverged, from its last good epoch, as saved"
    )
    dry_run: bool = _option(False, "print the configuration and model, train nothing")
    verbose: int = _option(1, "Keras progress output: 0 silent, 1 progress bar, 2 one line/epoch")
    sanity: bool = _option(False, "sanity checks before training (see docs/babysitting.md)")
    monitors: bool = _option(False, "dead ReLU / update ratio / activation monitors")
    monitor_every: int | None = _option(None, "monitor every N batches (default: every epoch)")
    tta: str = _option(
        "none", "test-time augmentation: also report the flip-averaged accuracy", choices=TTA_MODES
    )
    precision: str = _option(
        AUTO,
        "float32 or a mixed-precision policy; auto: mixed_float16 on GPUs of compute capability "
        ">= 7.0, mixed_bfloat16 on TPUs and CPUs with native bfloat16, else float32",
        choices=PRECISIONS,
        metavar="|".join(PRECISIONS),
    )
    jit_compile: str = _option(
        AUTO,
        "XLA-compile the training step; auto: on for GPUs and TPUs, on a CPU only for the models "
        "it measured faster (docs/performance.md)",
        choices=JIT_COMPILE_MODES,
        metavar="|".join(JIT_COMPILE_MODES),
    )
    steps_per_execution: int | str = _option(
        AUTO,
        "training steps per call of the compiled function, N or auto (executions of about 50 ms)"
        "; the divergence guard and monitors then see the model after each execution",
        parse=_steps_per_execution,
        metavar="N|auto",
    )

    def __post_init__(self) -> None:
        check_integer("run.epochs", self.epochs, low=1)
        check_integer("run.batch_size", self.batch_size, low=1)
        check_integer("run.seed", self.seed, low=0)
        _optional_str("run.out_dir", self.out_dir)
        for flag in ("resume", "force_resume", "dry_run", "sanity", "monitors"):
            check_bool(f"run.{flag}", getattr(self, flag))
        if self.force_resume and not self.resume:
            raise ValueError(
                "`run.force_resume` (--force-resume) lets --resume continue a run that diverged; "
                "it needs run.resume (--resume)"
            )
        check_choice("run.verbose", self.verbose, (0, 1, 2))
        check_integer("run.monitor_every", self.monitor_every, low=1, optional=True)
        check_choice("run.tta", self.tta, tuple(TTA_MODES))
        check_choice("run.precision", self.precision, PRECISIONS)
        if isinstance(self.jit_compile, bool):  # YAML reads on/off/true/false as booleans
            _set(self, "jit_compile", "on" if self.jit_compile else "off")
        check_choice("run.jit_compile", self.jit_compile, JIT_COMPILE_MODES)
        if self.steps_per_execution != AUTO:
            try:
                check_integer("run.steps_per_execution", self.steps_per_execution, low=1)
            except ValueError:
                raise ValueError(
                    "`run.steps_per_execution` must be an integer >= 1 or 'auto'. Received: "
                    f"run.steps_per_execution={self.steps_per_execution!r}"
                ) from None


@dataclasses.dataclass(frozen=True)
class DistributeConfig:
    """The tf.distribute strategy (see docs/distributed.md); `run.batch_size` is global."""

    strategy: str = _option("default", "default | mirrored | multi_worker | tpu")
    sync_bn: bool = _option(False, "synchronize BatchNorm statistics across replicas")
    cpu_replicas: int | None = _option(
        None, "mirrored strategy on a CPU: split it into N logical devices"
    )

    def __post_init__(self) -> None:
        _str("distribute.strategy", self.strategy)
        check_bool("distribute.sync_bn", self.sync_bn)
        check_integer("distribute.cpu_replicas", self.cpu_replicas, low=1, optional=True)


SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "optim": OptimConfig,
    "run": RunOptions,
    "distribute": DistributeConfig,
}

# What a resumed run may change: where and how verbosely it runs, where its data lives, how
# its training steps execute (XLA, steps per call: the same computation, scheduled differently)
# and how its final model is evaluated; and force_resume, a permission for one resume, never
# saved. The precision is not among them: it is built into the saved model's layers.
RESUME_MAY_CHANGE = (
    "run.resume",
    "run.force_resume",
    "run.out_dir",
    "run.dry_run",
    "run.verbose",
    "data.data_dir",
    "data.manual_dir",
    "run.tta",
    "run.jit_compile",
    "run.steps_per_execution",
)


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """A run's whole configuration; see the module docstring for the sections."""

    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    run: RunOptions = dataclasses.field(default_factory=RunOptions)
    distribute: DistributeConfig = dataclasses.field(default_factory=DistributeConfig)

    def __post_init__(self) -> None:
        model, run = self.model, self.run
        if model.fine_tune == "full" and not model.head_epochs < run.epochs:
            raise ValueError(
                "model.fine_tune='full' trains the head for model.head_epochs, then the backbone "
                "until run.epochs: model.head_epochs must be below run.epochs. Received: "
                f"model.head_epochs={model.head_epochs}, run.epochs={run.epochs}"
            )
        needed = None
        if model.fine_tune in ("head", "full"):
            weights = None if model.weights == "none" else model.weights
            needed = zoo.fine_tune_preprocessing(model.name, weights)
        if needed is not None and self.data.preprocessing != needed:
            raise ValueError(
                "a fine-tuned model takes the input its weights were trained on (backbones: raw "
                "0..255 images, to which they apply their own preprocess_input): "
                f"data.preprocessing must be {needed!r} with model.fine_tune={model.fine_tune!r}. "
                f"Received: data.preprocessing={self.data.preprocessing!r}"
            )

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], origin: str = "config") -> RunConfig:
        """A config from sectioned values (missing keys take defaults); flat ones are converted."""
        return cls().updated(values, origin)

    def to_dict(self) -> dict[str, Any]:
        """The sectioned values, as config.json holds them (tuples become lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def updated(self, values: Mapping[str, Any], origin: str = "overrides") -> RunConfig:
        """A copy with `values` laid over this config, checked as a whole.

        `values` is sectioned (`{"optim": {"lr": 0.1}}`), dotted (`{"optim.lr": 0.1}`) or in the
        flat format of option names used before the sections (`{"lr": 0.1, "l2": 1e-4}`), which
        is converted. Dict-valued options (model knobs and options, optimizer and schedule
        options) are merged key by key; every other value replaces the one before.
        """
        sectioned = _sectioned(values, origin)
        sections = {}
        for name, section_type in SECTIONS.items():
            current = dataclasses.asdict(getattr(self, name))
            for key, value in sectioned.get(name, {}).items():
                if isinstance(current.get(key), dict) and isinstance(value, Mapping):
                    current[key] = {**current[key], **value}
                else:
                    current[key] = value
            sections[name] = section_type(**current)
        return RunConfig(**sections)

    def get(self, dotted: str) -> Any:
        """The value of a dotted key such as `optim.lr` or `model.knobs.l2` (None if unset)."""
        section, _, rest = dotted.partition(".")
        field, _, knob = rest.partition(".")
        value = getattr(getattr(self, section), field)
        return value.get(knob) if knob else value


# ------------------------------------------------------------------------------------------------
# The flat format before sections, and dotted keys


def _flat_names() -> dict[str, str]:
    """Flat option name -> dotted key, for every field and knob."""
    names = {}
    for section, section_type in SECTIONS.items():
        for field in dataclasses.fields(section_type):
            if field.name != "knobs":
                names[field.metadata.get("flat", field.name)] = f"{section}.{field.name}"
    for knob in KNOB_DEFAULTS:
        names[knob] = f"model.knobs.{knob}"
    # The leaky-ReLU slope was called `alpha` before it got Keras's name.
    names["alpha"] = "model.knobs.negative_slope"
    return names


FLAT_NAMES: dict[str, str] = _flat_names()


def convert_flat_config(flat: Mapping[str, Any], origin: str = "config") -> dict[str, Any]:
    """Sections from the flat dict of option names that config files held before sections
    (dotted keys such as `optim.lr` are accepted too).

    `{"lr": 0.1, "alpha": 0.2, "model_options": {"alpha": 0.25}}` becomes
    `{"optim": {"lr": 0.1}, "model": {"knobs": {"negative_slope": 0.2}, "options": {"alpha": 0.25}}}`.
    """
    sectioned: dict[str, dict[str, Any]] = {}
    for key, value in flat.items():
        dotted = _dotted_key(key, origin)
        _put(sectioned, dotted, value)
    model = sectioned.get("model", {})
    options = model.get("options") or {}
    if model.get("name") == "lenet5" and "pooling" in options and "include_top" not in options:
        # LeNet-5's subsampling option was called `pooling` before `zoo.create` took `pooling`
        # for global pooling: an old file still means the subsampling.
        model["options"] = {
            ("subsampling" if name == "pooling" else name): value for name, value in options.items()
        }
    return sectioned


def flat_items(config: RunConfig) -> dict[str, Any]:
    """Every setting under its flat option name (`lr`, `lr_schedule`, `l2`, ...): the inverse of
    `convert_flat_config`, for tables and messages that name settings the way flags do."""
    flat = {}
    for name, dotted in FLAT_NAMES.items():
        if name != "alpha":  # the old name of negative_slope
            flat[name] = config.get(dotted)
    return flat


def option_key(name: str, origin: str = "config") -> str:
    """The dotted key (`optim.lr`, `model.knobs.l2`, `optim.options.momentum`) an option stands for.

    Accepts dotted keys, the flat option names used before sections (`lr`, `l2`, `lr_schedule`),
    flag spellings (`batch-size`) and entries of dict-valued options in either form
    (`optimizer_options.momentum`, `optim.options.momentum`).

    Raises:
        ValueError: no option has that name; the message suggests the closest ones.
    """
    return _dotted_key(name.strip(), origin)


def _dotted_key(key: str, origin: str) -> str:
    key = key.replace("-", "_")
    if key in FLAT_NAMES:
        return FLAT_NAMES[key]
    head, dot, entry = key.partition(".")
    if dot and head not in SECTIONS and FLAT_NAMES.get(head, "").count(".") == 1:
        key = f"{FLAT_NAMES[head]}.{entry}"
    section, _, rest = key.partition(".")
    field, _, knob = rest.partition(".")
    if section in SECTIONS and field in {f.name for f in dataclasses.fields(SECTIONS[section])}:
        entry_allowed = (
            knob in KNOB_DEFAULTS if field == "knobs" else field in _dict_fields(section)
        )
        if not knob or entry_allowed:
            return key
    close = difflib.get_close_matches(key, [*FLAT_NAMES, *_dotted_names()], n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise ValueError(
        f"Unknown option {key!r} in {origin}.{hint} Accepted: {', '.join(_dotted_names())} "
        f"(model.knobs.<{'|'.join(KNOB_DEFAULTS)}>), or their flat names ({', '.join(FLAT_NAMES)})."
    )


def _dict_fields(section: str) -> set[str]:
    return {
        field.name
        for field in dataclasses.fields(SECTIONS[section])
        if field.default_factory is not dataclasses.MISSING
    }


def _dotted_names() -> list[str]:
    return [
        f"{section}.{field.name}"
        for section, section_type in SECTIONS.items()
        for field in dataclasses.fields(section_type)
    ]


def _put(sectioned: dict[str, dict[str, Any]], dotted: str, value: Any) -> None:
    section, _, rest = dotted.partition(".")
    field, _, entry = rest.partition(".")
    target = sectioned.setdefault(section, {})
    if entry:
        target.setdefault(field, {})[entry] = value
    else:
        target[field] = value


def _is_section(key: str, value: Any) -> bool:
    # The flat format's "model" is the model's name, the sectioned one's is its section.
    return key in SECTIONS and not (key == "model" and isinstance(value, str))


def _sectioned(values: Mapping[str, Any], origin: str) -> dict[str, dict[str, Any]]:
    """Sectioned values from sectioned, dotted or flat ones; in one mapping, dotted and flat keys
    win over the sections' (`{**recipe_defaults, "run.verbose": 0}`)."""
    if not isinstance(values, Mapping):
        raise ValueError(f"{origin} must be a mapping of sections or option names to values")
    sectioned: dict[str, dict[str, Any]] = {}
    for key, value in values.items():
        if not _is_section(key, value):
            continue
        if not isinstance(value, Mapping):
            raise ValueError(
                f"section `{key}` in {origin} must be a mapping. Received: {key}={value!r}"
            )
        fields = {field.name for field in dataclasses.fields(SECTIONS[key])}
        for field, field_value in value.items():
            field = field.replace("-", "_")
            if field not in fields:
                raise _unknown_key(f"section `{key}` of {origin}", field, sorted(fields))
            if isinstance(field_value, Mapping) and field in _dict_fields(key):
                for entry, entry_value in field_value.items():
                    _put(sectioned, f"{key}.{field}.{entry}", entry_value)
            else:
                _put(sectioned, f"{key}.{field}", field_value)
    flat = {key: value for key, value in values.items() if not _is_section(key, value)}
    for section, fields in convert_flat_config(flat, origin).items():
        for field, value in fields.items():
            if isinstance(value, dict) and field in _dict_fields(section):
                sectioned.setdefault(section, {}).setdefault(field, {}).update(value)
            else:
                sectioned.setdefault(section, {})[field] = value
    return sectioned


def _unknown_key(origin: str, key: str, accepted: Any) -> ValueError:
    accepted = list(accepted)
    close = difflib.get_close_matches(key, accepted, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return ValueError(f"Unknown option {key!r} in {origin}.{hint} Accepted: {', '.join(accepted)}.")


# ------------------------------------------------------------------------------------------------
# Files


def load_config_file(path: str | Path) -> dict[str, Any]:
    """A YAML or JSON config file's values (sectioned, dotted or the flat format before sections)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} not found")
    text = path.read_text()
    try:
        values = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as error:
        problem = " ".join(str(error).split())
        raise ValueError(
            f"config file {path} is not valid {path.suffix[1:].upper() or 'YAML'}: {problem}"
        ) from None
    if not isinstance(values, dict):
        raise ValueError(f"config file {path} must hold a mapping of sections to options")
    return values


def saved_run_config(run_dir: str | Path) -> RunConfig | None:
    """The configuration a run directory was started with, or None if it holds no run.

    A config.json written before the execution settings existed ran in float32, without XLA,
    one step per execution (`LEGACY_SETTINGS`): it loads with those, not today's defaults.
    """
    path = Path(run_dir) / CONFIG_FILE
    if not path.is_file():
        return None
    values = json.loads(path.read_text())
    if isinstance(values, dict):
        run = values.get("run")
        if isinstance(run, dict):
            values = {**values, "run": {**LEGACY_SETTINGS, **run}}
        else:  # the flat format before sections, whose names are the fields'
            values = {**LEGACY_SETTINGS, **values}
    return RunConfig.from_dict(values, str(path))


# ------------------------------------------------------------------------------------------------
# The command line


def _yaml_value(text: str) -> Any:
    return yaml.safe_load(text) if text != "" else ""


def _key_value(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip().replace("-", "_"), _yaml_value(value.strip())


def _field_type(field: dataclasses.Field) -> Callable[[str], Any] | None:
    """The argparse type of a field's flag, read from its annotation (`int | None` -> int)."""
    if "parse" in field.metadata:
        return field.metadata["parse"]
    for name, parse in (("int", int), ("float", float)):
        if re.match(rf"^{name}\b", str(field.type)):
            return parse
    return None


def _knob_type(library_default: Any) -> Callable[[str], Any]:
    if isinstance(library_default, bool):
        return _yaml_value
    if isinstance(library_default, int):
        return int
    if isinstance(library_default, float) or library_default is None:
        return float
    return str


def _knob_help() -> dict[str, str]:
    """Each knob's help line, from its entry in `Knobs`'s docstring: the first sentence, cut
    before 120 characters so that `--help` stays one short paragraph per flag."""
    entries = re.findall(r"^ {8}(\w+): (.+?)(?=^ {8}\w+:|\Z)", Knobs.__doc__ or "", re.M | re.S)
    helps = {}
    for name, text in entries:
        sentence = re.split(r"(?<!\bal)\. ", " ".join(text.split()))[0].rstrip(".")
        if len(sentence) > 120:
            cut = max(sentence.rfind(separator, 0, 116) for separator in (", ", "; ", " ("))
            sentence = sentence[: cut if cut > 60 else sentence.rfind(" ", 0, 116)] + " ..."
        helps[name] = sentence
    return helps


class _Parser(argparse.ArgumentParser):
    """Suggests the closest flags for an unknown one, instead of argparse's bare refusal."""

    def error(self, message: str) -> None:
        match = re.match(r"unrecognized arguments: (.*)", message)
        if match:
            known = [flag for action in self._actions for flag in action.option_strings]
            for given in match.group(1).split():
                close = difflib.get_close_matches(given.split("=")[0], known, n=3)
                if given.startswith("--") and close:
                    message += f" (did you mean {', '.join(close)}?)"
                    break
        super().error(message)


def build_parser(
    prog: str, description: str, defaults: RunConfig | None = None
) -> argparse.ArgumentParser:
    """The command line shared by every recipe; unset flags stay out of the parsed namespace.

    Args:
        prog, description: the program's name and description for `--help`.
        defaults: the configuration the flags override, whose values `--help` shows.
    """
    defaults = defaults or RunConfig()
    parser = _Parser(
        prog=prog,
        description=description,
        argument_default=argparse.SUPPRESS,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config", help="YAML or JSON file of settings, by section (flags win over it)"
    )
    parser.add_argument(
        TRACEBACK_FLAG, action="store_true", help="show the traceback of anticipated errors too"
    )
    knob_help = _knob_help()
    for section, section_type in SECTIONS.items():
        summary = section_type.__doc__.splitlines()[0].rstrip(".")
        group = parser.add_argument_group(f"{section} ({summary[0].lower()}{summary[1:]})")
        for field in dataclasses.fields(section_type):
            default = getattr(getattr(defaults, section), field.name)
            dest = f"{section}.{field.name}"
            if field.name == "knobs":
                for knob, library_default in KNOB_DEFAULTS.items():
                    shown = default.get(knob, f"the model's own (library: {library_default})")
                    group.add_argument(
                        f"--{knob.replace('_', '-')}",
                        *(("--weight-decay",) if knob == "l2" else ()),
                        dest=f"{dest}.{knob}",
                        metavar=knob.upper(),
                        type=_knob_type(library_default),
                        help=f"knob: {knob_help.get(knob, knob)} (default: {shown})",
                    )
                continue
            flags = [f"--{(field.metadata['flag'] or field.name).replace('_', '-')}"]
            flags += list(field.metadata.get("aliases", ()))
            help_text = field.metadata["help"]
            if "(default:" not in help_text:
                help_text += f" (default: {default if default != {} else 'none'})"
            if field.metadata.get("key_value"):
                group.add_argument(
                    *flags,
                    dest=dest,
                    action="append",
                    type=_key_value,
                    metavar="KEY=VALUE",
                    help=f"{help_text}; repeatable",
                )
            elif isinstance(default, bool):
                group.add_argument(
                    *flags, dest=dest, action=argparse.BooleanOptionalAction, help=help_text
                )
            else:
                group.add_argument(
                    *flags,
                    dest=dest,
                    metavar=field.metadata.get("metavar", field.name.upper()),
                    type=_field_type(field),
                    choices=field.metadata.get("choices"),
                    help=help_text,
                )
    return parser


def _flag_values(flags: dict[str, Any]) -> dict[str, Any]:
    """Parsed flags as dotted keys, KEY=VALUE lists turned into dicts."""
    return {
        dest: dict(value) if isinstance(value, list) else value for dest, value in flags.items()
    }


def resolve_config(
    recipe_defaults: Mapping[str, Any], argv: list[str] | None, prog: str, description: str
) -> RunConfig:
    """The effective configuration: defaults < recipe defaults < --config file < flags.

    With --resume, the run directory's saved config.json replaces both defaults layers, so
    `--out-dir DIR --resume` alone continues a run as it was started; a file or flag that would
    change how the run trains (anything but `RESUME_MAY_CHANGE`) is refused.
    """
    config = RunConfig.from_dict(recipe_defaults, "recipe defaults")
    flags = vars(build_parser(prog, description, config).parse_args(argv))
    config_file = flags.pop("config", None)
    flags.pop(TRACEBACK_FLAG.lstrip("-"), None)  # read by recipe_cli, not a setting
    flags = _flag_values(flags)
    saved = None
    if flags.get("run.resume") and flags.get("run.out_dir") is not None:
        saved = saved_run_config(flags["run.out_dir"])
        if saved is not None:
            config = saved
    if config_file is not None:
        config = config.updated(load_config_file(config_file), str(config_file))
    config = config.updated(flags, "the command line")
    if saved is not None:
        _refuse_changes_on_resume(saved, config, flags["run.out_dir"])
    return config


def _flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in values.items():
        if isinstance(value, Mapping) and value and not prefix.count("."):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def dotted_items(config: RunConfig) -> dict[str, Any]:
    """Every setting by dotted key (`optim.lr`, `model.knobs`, ...), as config.json holds it."""
    return _flatten(config.to_dict())


def _refuse_changes_on_resume(saved: RunConfig, config: RunConfig, run_dir: str | Path) -> None:
    before, after = dotted_items(saved), dotted_items(config)
    changed = [
        f"{key} (saved {before[key]!r}, given {after[key]!r})"
        for key in before
        if key not in RESUME_MAY_CHANGE and after[key] != before[key]
    ]
    if changed:
        raise ValueError(
            f"--resume continues {run_dir} as saved in its {CONFIG_FILE}, but these settings "
            f"differ: {'; '.join(changed)}. Drop them to resume, or start a new run with "
            "another --out-dir."
        )
