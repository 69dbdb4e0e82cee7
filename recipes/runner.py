"""The training runner every recipe shares: data, model, optimizer, training, outputs.

A recipe is a module with a docstring and a `DEFAULTS` dict; `recipe_main` turns it into a command
line program. A run writes into its run directory:

    config.json                  the effective configuration
    dataset.json                 what was loaded (classes, shapes, split sizes)
    history.csv                  one row per epoch (train and validation metrics)
    checkpoints/last.keras       model + optimizer state after the last finished epoch (resume)
    checkpoints/best.keras       the model with the best validation metric
    checkpoints/state.json       epochs done and best metric (the resume point)
    tensorboard/                 TensorBoard logs
    model.keras                  the final model
    metrics.json                 test metrics, epochs, wall time, images/s
    loss.png, accuracy.png       learning curves, train vs validation

Every file is written atomically (temporary file + rename), so a run killed at any moment, even
with SIGKILL, leaves complete files behind and `--resume` continues from the last finished epoch.
"""

from __future__ import annotations

import json
import math
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import keras

import zoo
from recipes.checkpoints import (
    LAST_MODEL,
    RunCheckpoint,
    history_columns,
    read_history,
    read_state,
)
from recipes.config import resolve_config
from recipes.data import load_dataset
from recipes.distribute import (
    discard_worker_outputs,
    fault_tolerance_callbacks,
    prepare_for_fit,
    shard_datasets,
    strategy_from_config,
    synchronize_batch_norm,
    worker_output_dir,
)
from recipes.divergence import DivergenceGuard, TrainingDiverged
from recipes.files import atomic_save_model, atomic_write_text
from recipes.plots import plot_curves
from zoo.knobs import KNOB_DEFAULTS

CONFIG_FILE = "config.json"
DATASET_FILE = "dataset.json"
METRICS_FILE = "metrics.json"
FINAL_MODEL = "model.keras"


def _json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str) + "\n"


def _run_dir(config: dict[str, Any], recipe: str, strategy) -> Path:
    """The run directory: new for a fresh run, existing (with a saved state) for --resume.

    Under multi-worker training a non-chief worker gets its own temporary directory instead.
    """
    if config["out_dir"] is None:
        if config["resume"]:
            raise ValueError("--resume needs --out-dir: the run directory to continue")
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        return Path("runs") / recipe / stamp
    run_dir = worker_output_dir(config["out_dir"], strategy)
    if config["resume"]:
        if not (run_dir / CONFIG_FILE).is_file():
            raise FileNotFoundError(f"--resume: {run_dir} holds no run ({CONFIG_FILE} missing)")
    elif (run_dir / CONFIG_FILE).exists():
        raise FileExistsError(
            f"{run_dir} already holds a run; pass --resume to continue it, or choose another "
            "--out-dir (nothing was overwritten)"
        )
    return run_dir


def _model_options(config: dict[str, Any]) -> dict[str, Any]:
    # Unset knobs (None) are left out so that each model's own knob defaults apply.
    knobs = {key: config[key] for key in KNOB_DEFAULTS if config[key] is not None}
    return {**knobs, **config["model_options"]}


def build_model(config: dict[str, Any], image_shape, num_classes: int) -> keras.Model:
    """The zoo model a config asks for, built for the dataset's image shape and classes."""
    model = zoo.create(
        config["model"],
        input_shape=tuple(image_shape),
        num_classes=num_classes,
        **_model_options(config),
    )
    return synchronize_batch_norm(model) if config["sync_bn"] else model


def compile_model(model: keras.Model, config: dict[str, Any], steps_per_epoch: int) -> None:
    """Compiles with the config's optimizer (and schedule) and loss, tracking accuracy."""
    from recipes.losses import get_loss
    from recipes.optimizers import get_optimizer
    from recipes.schedules import get_schedule

    learning_rate = get_schedule(
        config["lr_schedule"],
        config["lr"],
        steps_per_epoch=steps_per_epoch,
        epochs=config["epochs"],
        warmup_epochs=config["warmup_epochs"],
        **config["schedule_options"],
    )
    model.compile(
        optimizer=get_optimizer(
            config["optimizer"], learning_rate=learning_rate, **config["optimizer_options"]
        ),
        loss=get_loss(config["loss"]),
        metrics=["accuracy"],
    )


def _write_curves(run_dir: Path, history: dict[str, list[float]]) -> None:
    for metric in ("loss", "accuracy"):
        if metric in history:
            plot_curves(history, metric, run_dir / f"{metric}.png")


def run(config: dict[str, Any], recipe: str = "recipe") -> dict[str, Any]:
    """Trains and evaluates one configuration; returns the metrics written to metrics.json."""
    strategy = strategy_from_config(config)
    keras.utils.set_random_seed(config["seed"])
    run_dir = _run_dir(config, recipe, strategy)
    datasets, info = load_dataset(
        config["dataset"],
        data_dir=config["data_dir"],
        manual_dir=config["manual_dir"],
        batch_size=config["batch_size"],
        image_size=config["image_size"],
        validation_fraction=config["validation_fraction"],
        seed=config["seed"],
        preprocessing=config["preprocessing"],
        balance_classes=config["balance_classes"],
    )
    datasets = shard_datasets(datasets)
    steps_per_epoch = math.ceil(info.split_sizes["train"] / config["batch_size"])
    state = read_state(run_dir) if config["resume"] else None
    with strategy.scope():
        if state is not None:
            model = keras.models.load_model(run_dir / LAST_MODEL)
            print(f"Resuming {run_dir} after epoch {state['epochs_done']}")
        else:
            model = build_model(config, info.image_shape, info.num_classes)
            compile_model(model, config, steps_per_epoch)
        prepare_for_fit(model, datasets["train"])

    if config["dry_run"]:
        print(_json(config))
        print(_json(info.to_dict()))
        model.summary()
        return {}

    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / CONFIG_FILE, _json(config))
    atomic_write_text(run_dir / DATASET_FILE, _json(info.to_dict()))

    epochs_done = state["epochs_done"] if state else 0
    guard = DivergenceGuard(learning_rate=config["lr"])
    checkpoint = RunCheckpoint(
        run_dir,
        monitor="val_accuracy",
        mode="max",
        history=read_history(run_dir, epochs_done),
        best=state["best"] if state else None,
        divergence_guard=guard,
    )
    callbacks = [
        *fault_tolerance_callbacks(run_dir, strategy),
        guard,
        checkpoint,
        keras.callbacks.TensorBoard(run_dir / "tensorboard", update_freq="epoch"),
    ]
    start = time.perf_counter()
    if epochs_done < config["epochs"]:
        model.fit(
            datasets["train"],
            validation_data=datasets["validation"],
            epochs=config["epochs"],
            initial_epoch=epochs_done,
            callbacks=callbacks,
            verbose=config["verbose"],
        )
    train_seconds = time.perf_counter() - start
    history = history_columns(checkpoint.rows)
    _write_curves(run_dir, history)
    if guard.diverged:
        raise TrainingDiverged(guard.diverged)

    test = model.evaluate(datasets["test"], verbose=0, return_dict=True)
    trained_epochs = config["epochs"] - epochs_done
    metrics = {
        "test_loss": float(test["loss"]),
        "test_accuracy": float(test["accuracy"]),
        "epochs": len(checkpoint.rows),
        "wall_time_s": round(train_seconds, 2),
        "images_per_s": round(trained_epochs * info.split_sizes["train"] / train_seconds, 1)
        if trained_epochs and train_seconds > 0
        else None,
        "best_val_accuracy": checkpoint.best,
        "parameters": model.count_params(),
        "dataset": info.to_dict(),
        "config": config,
    }
    atomic_save_model(model, run_dir / FINAL_MODEL)
    atomic_write_text(run_dir / METRICS_FILE, _json(metrics))
    print(
        f"test accuracy {metrics['test_accuracy']:.4f}, test loss {metrics['test_loss']:.4f} "
        f"after {metrics['epochs']} epochs; outputs in {run_dir}"
    )
    discard_worker_outputs(run_dir, strategy)
    return metrics


def recipe_main(
    recipe: str, description: str, defaults: dict[str, Any], argv: list[str] | None = None
) -> dict[str, Any]:
    """Entry point of a recipe script: parses flags over `defaults` and runs."""
    config = resolve_config(
        defaults, argv, prog=f"python -m recipes.{recipe}", description=description
    )
    return run(config, recipe=recipe)
