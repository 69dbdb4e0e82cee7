"""Turns a finished recipe run into weights the zoo ships: a float16 weights file and its card.

    python scripts/ship_weights.py RUN_DIR [--tag fashion_mnist] [--manual-dir DIR]
                                   [--recipe NAME] [--tolerance 0.0005] [--out-dir zoo/weights]

For a run of a small zoo model (trained from scratch, not fine-tuned), this

1. rebuilds the model from the zoo with the run's knobs and options, copies the run's final
   weights (`model.keras`) into it, and checks that it predicts what the run's model predicts;
2. stores every weight as float16 in `<model>-<tag>.weights.npz` (see `zoo.pretrained`);
3. measures, on the run's full test split through the run's own data pipeline, the accuracy of
   the run's model as it trained (which must be the one the run recorded: otherwise the data is
   not the run's), then of its weights computing in float32, as the zoo builds them, and of the
   float16 weights loaded back from the file, single view and with test-time augmentation (the
   run's `tta`, or "flip" when the run had none). A run trained in mixed precision (`--precision
   auto` on a CPU with native bfloat16) keeps float32 variables, so only the rounding of its
   activations differs; the card records the precision it trained in;
4. refuses to ship if float16 storage moves the single-view or TTA accuracy by more than
   `--tolerance` (default 0.0005: five images in ten thousand);
5. writes the file and its card `<model>-<tag>.json` (atomically, the card last) with the
   accuracies to 4 decimals, the parameter count, the file's sha256, the preprocessing the input
   needs, the class names and the recipe command that reproduces the run's configuration (checked
   by parsing it back: the command of the recipe that trained the run, or of `--recipe`, a recipe
   written later whose defaults are the run's settings), then loads the weights through
   `zoo.create(model, weights=tag)` and measures them once more.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import shlex
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as `python scripts/ship_weights.py`: find the packages
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import keras
import numpy as np

import zoo
from recipes.__main__ import recipe_defaults
from recipes.data.tta import tta_metrics
from recipes.optim import get_loss
from recipes.optim.losses import loss_output_activation
from recipes.train.config import (
    SECTIONS,
    RunConfig,
    dotted_items,
    resolve_config,
    saved_run_config,
)
from recipes.train.execution import float32_model, model_precision
from recipes.train.files import atomic_copy, atomic_write_text
from recipes.train.inference import add_data_location_arguments, data_overrides
from recipes.train.runner import FINAL_MODEL, METRICS_FILE, load_data
from zoo import pretrained
from zoo.knobs import Knobs
from zoo.registry import model_entry

# Settings that say where and how verbosely a run ran, not what it trained.
NOT_IN_COMMAND = ("run.out_dir", "run.verbose", "run.resume", "run.force_resume", "run.dry_run")
DEFAULT_TOLERANCE = 0.0005
PREPROCESSING_INPUT = {
    "scale": "float32 pixel values / 255, in [0, 1]",
    "mean_image": "float32 pixel values / 255, minus the training set's mean image "
    "(statistics.mean_image)",
    "per_channel": "float32 pixel values / 255, minus statistics.channel_mean, divided by "
    "statistics.channel_scale",
    "none": "float32 pixel values in [0, 255]",
}


class ShipError(Exception):
    """A run that cannot be shipped, with the reason."""


def _flag_value(value: Any) -> str:
    if (
        isinstance(value, tuple | list)
        and len(value) == 2
        and all(isinstance(v, int) for v in value)
    ):
        return f"{value[0]}x{value[1]}"
    return value if isinstance(value, str) else json.dumps(value)


def recipe_flags(config: RunConfig, defaults: RunConfig) -> list[str]:
    """Command-line flags that turn the recipe defaults `defaults` into `config` (and the seed,
    always), leaving out `NOT_IN_COMMAND`.

    Raises:
        ShipError: for a difference no flag can express (a setting unset back to None).
    """
    flags = ["--seed", str(config.run.seed)]
    for section in SECTIONS:
        for field in dataclasses.fields(SECTIONS[section]):
            key = f"{section}.{field.name}"
            value, default = config.get(key), defaults.get(key)
            if key in NOT_IN_COMMAND or key == "run.seed" or value == default:
                continue
            if isinstance(value, Mapping):
                dropped = sorted(set(default) - set(value))
                if dropped:
                    raise ShipError(f"{key}: no flag removes {dropped} from the recipe's defaults")
                changed = {k: v for k, v in value.items() if default.get(k) != v}
                if field.name == "knobs":
                    for knob, knob_value in changed.items():
                        flags += [f"--{knob.replace('_', '-')}", _flag_value(knob_value)]
                else:
                    flag = f"--{(field.metadata['flag'] or field.name).replace('_', '-')}"
                    for option, option_value in changed.items():
                        flags += [flag, f"{option}={_flag_value(option_value)}"]
                continue
            flag = (field.metadata["flag"] or field.name).replace("_", "-")
            if isinstance(value, bool):
                flags.append(f"--{'' if value else 'no-'}{flag}")
            elif value is None:
                raise ShipError(
                    f"{key}: no flag sets it back to None (the recipe sets {default!r})"
                )
            else:
                flags += [f"--{flag}", _flag_value(value)]
    return flags


def recipe_command(recipe: str, config: RunConfig) -> str:
    """The command of recipe `recipe` that trains `config`, checked by parsing it back."""
    try:
        recipe_settings = recipe_defaults(recipe)
    except ValueError as error:
        raise ShipError(str(error)) from None
    flags = recipe_flags(config, RunConfig.from_dict(recipe_settings, "recipe defaults"))
    parsed = resolve_config(recipe_settings, flags, recipe, "")
    wanted, got = dotted_items(config), dotted_items(parsed)
    differences = [key for key in wanted if key not in NOT_IN_COMMAND and wanted[key] != got[key]]
    if differences:
        raise ShipError(f"the command {flags} does not reproduce the run's {differences}")
    return shlex.join(["python", "-m", f"recipes.{recipe}", *flags])


def _single_view_accuracy(model: keras.Model, test: Any, loss_name: str) -> float:
    model.compile(loss=get_loss(loss_name), metrics=["accuracy"])
    return float(model.evaluate(test, verbose=0, return_dict=True)["accuracy"])


def _accuracies(model: keras.Model, test: Any, loss_name: str, tta: str) -> tuple[float, float]:
    """Single-view and `tta` test accuracy."""
    single = _single_view_accuracy(model, test, loss_name)
    return single, float(tta_metrics(model, test, tta)["test_accuracy_tta"])


@dataclasses.dataclass
class _Trained:
    """A run's final model, the same model rebuilt by the zoo, and its full knobs and options."""

    name: str
    run_model: keras.Model
    rebuilt: keras.Model
    knobs: dict[str, Any]
    options: dict[str, Any]

    def build(self, input_shape: tuple[int, ...]) -> keras.Model:
        """Another model of the same architecture, untrained."""
        return zoo.create(self.name, input_shape=input_shape, **self.knobs, **self.options)


def _trained_model(run_dir: Path, config: RunConfig, info: Any) -> _Trained:
    """Rebuilds the run's model from the zoo with the run's weights, checking it predicts what
    the run's own model predicts."""
    entry = model_entry(config.model.name)
    if not entry.takes_knobs or config.model.fine_tune is not None or config.model.weights:
        raise ShipError(
            f"{run_dir}: only small zoo models trained from scratch are shipped; this run trained "
            f"{config.model.name!r} (fine_tune={config.model.fine_tune!r}, "
            f"weights={config.model.weights!r})"
        )
    run_model = keras.models.load_model(run_dir / FINAL_MODEL, compile=False)
    # The knobs the runner built the model with (recipes.train.runner.build_model), in full.
    knob_values = {
        "output_activation": loss_output_activation(config.optim.loss, **config.optim.loss_options)
    }
    knob_values.update(config.model.knobs)
    knobs = dataclasses.asdict(Knobs(**{**entry.knob_defaults, **knob_values}))
    options = json.loads(json.dumps({**entry.options, **config.model.options}))
    trained = _Trained(entry.name, run_model, None, knobs, options)
    trained.rebuilt = trained.build(info.image_shape)
    run_weights = {w.path: keras.ops.convert_to_numpy(w) for w in run_model.weights}
    pretrained.assign_weights(trained.rebuilt, run_weights, source=f"the weights of {run_dir}")
    probe = np.random.default_rng(0).uniform(0, 1, (8, *info.image_shape)).astype("float32")
    np.testing.assert_allclose(
        trained.rebuilt.predict(probe, verbose=0),
        float32_model(run_model).predict(probe, verbose=0),
        atol=1e-6,
    )
    return trained


def _statistics(info: Any) -> dict[str, Any]:
    return json.loads(json.dumps(info.statistics, default=lambda value: np.asarray(value).tolist()))


def ship_run(
    run_dir: Path,
    tag: str,
    data_overrides: dict[str, str],
    out_dir: Path,
    tolerance: float = DEFAULT_TOLERANCE,
    recipe: str | None = None,
) -> pretrained.PretrainedCard:
    """Ships finished run `run_dir` as weights `tag` into `out_dir`; returns the card written.

    The card's command is recipe `recipe`'s (default: the recipe that trained the run).
    """
    missing = [n for n in ("config.json", FINAL_MODEL, METRICS_FILE) if not (run_dir / n).is_file()]
    if missing:
        raise ShipError(f"{run_dir} is not a finished run: {', '.join(missing)} missing")
    config = saved_run_config(run_dir).updated(data_overrides, "the data flags")
    metrics = json.loads((run_dir / METRICS_FILE).read_text())
    recipe = recipe or metrics["recipe"]
    command = recipe_command(recipe, config)  # before the long measurements: it may refuse
    test, info = load_data(config, "test")
    recorded_fingerprint = metrics["dataset"]["fingerprint"].get("test")
    if info.fingerprint.get("test") != recorded_fingerprint:
        raise ShipError(
            f"{run_dir}: the test split here has fingerprint {info.fingerprint.get('test')}, the "
            f"run's had {recorded_fingerprint}; check --manual-dir/--data-dir"
        )
    trained = _trained_model(run_dir, config, info)
    tta = config.run.tta if config.run.tta != "none" else "flip"
    as_trained = _single_view_accuracy(trained.run_model, test, config.optim.loss)
    if abs(as_trained - metrics["test_accuracy"]) > 0.5 / info.split_sizes["test"]:
        raise ShipError(
            f"{run_dir}: the model scores {as_trained:.4f} on this test data but the run recorded "
            f"{metrics['test_accuracy']:.4f}; nothing was written"
        )
    full32, tta32 = _accuracies(trained.rebuilt, test, config.optim.loss, tta)
    name = trained.name
    card_fields = {
        "model": name,
        "tag": tag,
        "weights_file": pretrained.weights_path(name, tag).name,
        "storage_dtype": pretrained.STORAGE_DTYPE,
        "num_params": trained.rebuilt.count_params(),
        "input_shape": tuple(info.image_shape),
        "num_classes": info.num_classes,
        "class_names": tuple(info.class_names),
        "knobs": trained.knobs,
        "options": trained.options,
        "preprocessing": {
            "mode": info.preprocessing,
            "input": PREPROCESSING_INPUT[info.preprocessing],
            "statistics": _statistics(info),
        },
        "tta": tta,
        "dataset": {
            "name": info.name,
            "source": info.source,
            "test_images": info.split_sizes["test"],
            "test_fingerprint": recorded_fingerprint,
        },
        "recipe": recipe,
        "command": command,
        "training": {
            "epochs": config.run.epochs,
            "seed": config.run.seed,
            "precision": model_precision(trained.run_model),
            "test_accuracy_float32": round(full32, 4),
            "test_accuracy_tta_float32": round(tta32, 4),
            "wall_time_s": metrics.get("wall_time_s"),
        },
    }
    with tempfile.TemporaryDirectory() as staging:
        staged = pretrained.weights_path(name, tag, staging)
        sha256 = pretrained.save_weights(pretrained.stored_weights(trained.rebuilt), staged)
        # Measured as users get them: read back from the file, through the sha256 check.
        unmeasured = pretrained.PretrainedCard(
            **card_fields, sha256=sha256, test_accuracy=0.0, test_accuracy_tta=0.0
        )
        model16 = trained.build(info.image_shape)
        stored = pretrained.read_weights(unmeasured, staging)
        pretrained.assign_weights(model16, stored, source=unmeasured.provenance())
        full16, tta16 = _accuracies(model16, test, config.optim.loss, tta)
        for what, before, after in (("single-view", full32, full16), (tta, tta32, tta16)):
            if abs(after - before) > tolerance:
                raise ShipError(
                    f"float16 storage moves the {what} test accuracy from {before:.4f} to "
                    f"{after:.4f}, more than --tolerance {tolerance}; nothing was written"
                )
        card = dataclasses.replace(
            unmeasured, test_accuracy=round(full16, 4), test_accuracy_tta=round(tta16, 4)
        )
        atomic_copy(staged, pretrained.weights_path(name, tag, out_dir))
    atomic_write_text(pretrained.card_path(name, tag, out_dir), card.to_json())
    if Path(out_dir).resolve() == pretrained.WEIGHTS_DIR:
        _check_shipped(card, test, config.optim.loss)
    return card


def _check_shipped(card: pretrained.PretrainedCard, test: Any, loss_name: str) -> None:
    """Loads shipped weights the way users do and measures them once more."""
    pretrained.clear_card_cache()
    measured = _accuracies(zoo.create(card.model, weights=card.tag), test, loss_name, card.tta)
    if tuple(round(a, 4) for a in measured) != (card.test_accuracy, card.test_accuracy_tta):
        raise ShipError(
            f"zoo.create({card.model!r}, weights={card.tag!r}) scores {measured}, not the "
            f"card's {card.test_accuracy}, {card.test_accuracy_tta}"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dirs", nargs="+", type=Path, help="finished run directories")
    parser.add_argument("--tag", help="the weights' name (default: the run's dataset name)")
    add_data_location_arguments(parser)
    parser.add_argument(
        "--recipe",
        help="the recipe whose command the card records (default: the one that trained the run)",
    )
    parser.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE)
    parser.add_argument("--out-dir", type=Path, default=pretrained.WEIGHTS_DIR)
    args = parser.parse_args(argv)
    overrides = data_overrides(args)
    if args.recipe is not None:  # an argument error: reported once, before any run directory
        try:
            recipe_defaults(args.recipe)
        except ValueError as error:
            sys.exit(f"error: {error}")
    for run_dir in args.run_dirs:
        try:
            tag = args.tag or saved_run_config(run_dir).data.dataset
            if not re.fullmatch(r"[a-z0-9_]+", tag):
                raise ShipError(f"--tag must be lower case letters, digits and _, got {tag!r}")
            card = ship_run(run_dir, tag, overrides, args.out_dir, args.tolerance, args.recipe)
        except ShipError as error:
            sys.exit(f"error: {error}")
        print(
            f"{card.model}-{card.tag}: test accuracy {card.test_accuracy:.4f}, "
            f"{card.test_accuracy_tta:.4f} with tta {card.tta}; {card.num_params:,} parameters; "
            f"sha256 {card.sha256}\n  {card.command}",
            flush=True,
        )


if __name__ == "__main__":
    main()
