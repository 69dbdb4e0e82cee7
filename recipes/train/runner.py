"""The training runner every recipe shares: data, model, optimizer, training, outputs.

A recipe is a module with a docstring and a `DEFAULTS` dict of config sections (see
`recipes.train.config`); `recipe_main` turns it into a command line program. A run writes into its run directory:

    config.json                  the effective configuration
    dataset.json                 what was loaded (classes, shapes, split sizes, a fingerprint of
                                 the content that --resume checks the data against)
    preprocessing.npz            preprocessing "mean_image"/"per_channel": the training statistics
    run.lock                     while a process runs in the directory: its PID (see below)
    history.csv                  one row per epoch (train and validation metrics, the training
                                 pass's epoch_seconds and images_per_second)
    checkpoints/last.keras       the resume point: model + optimizer after the last finished epoch,
                                 with the run state inside (epochs done, history, best metric,
                                 training time, recipe, divergence)
    checkpoints/best.keras       the checkpoint of the epoch with the best validation metric
    checkpoints/state.json       the run state without its history, for people and tools
    tensorboard/                 TensorBoard logs
    model.keras                  the final model
    metrics.json                 test metrics, epochs, training time and images/s (all sessions),
                                 the precision, XLA and steps per execution used
    MODEL_CARD.md                the model card (see recipes.train.model_card)
    loss.png, accuracy.png       learning curves, train vs validation
    diagnosis.txt, .json         what the curves say is wrong (too high/low lr, overfitting...)
    monitors/                    with --monitors: dead ReLUs, update ratios, activations, gradients
    sanity/                      with --sanity: the checks before training and the lr range test

The model is built under `run.precision`'s dtype policy and compiled with `run.jit_compile` and
`run.steps_per_execution`, `auto` resolved for the hardware (`recipes.train.execution`).

Every file is written atomically (temporary file + rename), so a run killed at any moment, even
with SIGKILL, leaves complete files behind. An epoch's weights, optimizer and state are one file,
committed by one rename, so `--resume` continues exactly after the last finished epoch; it first
checks the saved state against the checkpoint and the configuration, and refuses, before writing
anything, a damaged or inconsistent state, another recipe's run, or a run that diverged (unless
`--force-resume`). See `recipes.callbacks.checkpoints`.

A process owns its run directory while it runs: an exclusive lock on `run.lock`, taken before
anything is written and released by the operating system when the process ends, however it ends.
Another run or `--resume` into the same directory meanwhile is refused, naming the owner's PID. A
non-chief worker of a multi-worker run owns its own directory (see `worker_output_dir`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

import zoo
from recipes.callbacks.checkpoints import (
    LAST_MODEL,
    RunCheckpoint,
    RunState,
    history_columns,
    load_checkpoint_model,
    load_run_state,
    reconcile_optimizer_steps,
)
from recipes.callbacks.divergence import DivergenceGuard, TrainingDiverged
from recipes.callbacks.monitors import build_monitors, measurement_period, take_monitoring_batch
from recipes.callbacks.swa import SWACallback
from recipes.data.datasets import SPLITS, DatasetInfo, draw_seed, load_dataset
from recipes.data.fingerprint import check_same_data
from recipes.data.image_folder import list_images
from recipes.data.tta import tta_metrics
from recipes.optim.losses import (
    canonical_loss_name,
    get_loss,
    loss_label_format,
    loss_output_activation,
)
from recipes.optim.optimizers import get_optimizer
from recipes.optim.precision import applied_batches, wrap_for_policy
from recipes.optim.schedules import get_schedule, get_schedule_callbacks
from recipes.optim.wrappers import Lookahead, StochasticWeightAveraging, swa_steps
from recipes.train.config import CONFIG_FILE, RunConfig, resolve_config
from recipes.train.diagnosis import diagnose, format_findings, write_diagnosis
from recipes.train.distribute import (
    continue_from_chief,
    discard_worker_outputs,
    is_chief,
    prepare_for_fit,
    shard_datasets,
    strategy_from_config,
    synchronize_batch_norm,
    worker_output_dir,
)
from recipes.train.errors import RecipeError, configuration_errors, run_command, warn
from recipes.train.execution import (
    AUTO,
    Execution,
    auto_steps_per_execution,
    check_jit_compile,
    check_steps_per_execution,
    dtype_policy,
    estimate_step_seconds,
    model_family,
    model_precision,
    resolve_jit_compile,
    resolve_precision,
    several_steps_fail,
    training_model_in,
)
from recipes.train.files import (
    atomic_save_arrays,
    atomic_save_model,
    atomic_write_text,
    hold_run_directory,
    remove_temporary_files,
)
from recipes.train.hardware import detect_hardware
from recipes.train.model_card import write_model_card
from recipes.train.plots import plot_curves
from recipes.train.predictions import rounded, summary_line, write_predictions
from recipes.train.sanity import run_sanity_checks

DATASET_FILE = "dataset.json"
METRICS_FILE = "metrics.json"
FINAL_MODEL = "model.keras"
# The training statistics of preprocessing "mean_image"/"per_channel" (recipes.train.inference).
STATISTICS_FILE = "preprocessing.npz"


def format_json(value: Any) -> str:
    """A run-directory JSON file's text: indented, keys sorted, anything else as its str()."""
    return json.dumps(value, indent=2, sort_keys=True, default=str) + "\n"


@configuration_errors()
def _run_dir(config: RunConfig, recipe: str, strategy) -> Path:
    """Where the run writes: --out-dir, or a new directory under runs/<recipe>/.

    Under multi-worker training a non-chief worker gets its own temporary directory instead.
    """
    if config.run.out_dir is None:
        if config.run.resume:
            raise ValueError("--resume needs --out-dir: the run directory to continue")
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        return Path("runs") / recipe / stamp
    return worker_output_dir(config.run.out_dir, strategy)


@configuration_errors()
def _check_run_dir(config: RunConfig, run_dir: Path) -> None:
    """A new run needs a directory without a run, --resume one with a run; checked once the
    directory is owned, so that no other process can start or finish a run there meanwhile."""
    if config.run.resume:
        if not (run_dir / CONFIG_FILE).is_file():
            raise FileNotFoundError(f"--resume: {run_dir} holds no run ({CONFIG_FILE} missing)")
    elif (run_dir / CONFIG_FILE).exists():
        raise FileExistsError(
            f"{run_dir} already holds a run; pass --resume to continue it, or choose another "
            "--out-dir (nothing was overwritten)"
        )


def _model_options(config: RunConfig) -> dict[str, Any]:
    # Only the knobs the config sets: each model's own knob defaults apply to the others.
    options = dict(config.model.knobs)
    if config.model.weights is not None:
        # "none" on the command line asks for random initialisation (zoo's weights=None).
        options["weights"] = None if config.model.weights == "none" else config.model.weights
    if config.model.fine_tune is not None:
        options["fine_tune"] = config.model.fine_tune
    return {**options, **config.model.options}


@configuration_errors()
def load_data(
    config: RunConfig, split: str | tuple[str, ...] = SPLITS, first_epoch: int = 0
) -> tuple[Any, DatasetInfo]:
    """The pipelines a config trains and evaluates on, exactly as `run` builds them.

    Labels are one-hot when the config's loss needs them; the other settings come from the
    config's data options. See `recipes.data.datasets.load_dataset` for what `split` selects, and
    for `first_epoch`, the epochs a resumed run has done, which gives its training draws a seed
    of their own.
    """
    return load_dataset(
        config.data.dataset,
        split,
        data_dir=config.data.data_dir,
        manual_dir=config.data.manual_dir,
        batch_size=config.run.batch_size,
        image_size=config.data.image_size,
        validation_fraction=config.data.validation_fraction,
        seed=config.run.seed,
        preprocessing=config.data.preprocessing,
        one_hot=loss_label_format(config.optim.loss) != "sparse",
        balance_classes=config.data.balance_classes,
        augment=config.data.augment,
        first_epoch=first_epoch,
    )


@configuration_errors()
def build_model(config: RunConfig, image_shape, num_classes: int) -> keras.Model:
    """The zoo model a config asks for, built for the dataset's image shape and classes.

    A small model's output activation follows the loss (softmax for cross-entropy, raw scores for
    the SVM hinge losses) unless the config sets `output_activation` itself. The model is built
    under the dtype policy of `run.precision` (resolved for the hardware of the current
    strategy); the global policy is restored after.
    """
    options = _model_options(config)
    if config.model.fine_tune is None:
        options.setdefault(
            "output_activation",
            loss_output_activation(config.optim.loss, **config.optim.loss_options),
        )
    with dtype_policy(resolve_precision(config.run.precision, detect_hardware())):
        model = zoo.create(
            config.model.name, input_shape=tuple(image_shape), num_classes=num_classes, **options
        )
        return synchronize_batch_norm(model) if config.distribute.sync_bn else model


def resolve_execution(model: keras.Model, config: RunConfig, steps_per_epoch: int) -> Execution:
    """The execution settings of `config` for `model` under the current strategy: its precision
    (the one it was built with), whether XLA compiles its training step, and its steps per
    execution, `auto` resolved (see `recipes.train.execution`)."""
    hardware = detect_hardware()
    precision = model_precision(model)
    jit_compile = resolve_jit_compile(
        config.run.jit_compile,
        hardware,
        model_family(config.model.name, config.model.knobs.get("norm")),
        precision,
        distributed=tf.distribute.has_strategy(),
    )
    steps = config.run.steps_per_execution
    if steps == AUTO and several_steps_fail(tf.distribute.get_strategy()):
        steps = 1
    elif steps == AUTO:
        step_seconds = estimate_step_seconds(model, config.run.batch_size, jit_compile)
        every = config.run.monitor_every if config.run.monitors else None
        steps = (
            1
            if step_seconds is None
            else auto_steps_per_execution(step_seconds, steps_per_epoch, every)
        )
    return Execution(precision, jit_compile, steps, hardware.describe())


def _model_to_resume(model: keras.Model, config: RunConfig) -> keras.Model:
    """The loaded checkpoint `model`, which keeps the precision it was built with (saved in its
    layers), except under `--precision auto`, which chooses again on each resume as on a new
    run: between float32 and mixed_bfloat16 the run moves to the one chosen here
    (`training_model_in`), so that a run carried from a CPU with native bfloat16 to one without
    does not go on emulating bfloat16, several times slower than float32, and one carried back
    trains at bfloat16's speed again. Where `auto` chooses mixed_float16 (a GPU), a run that did
    not start in it goes on in float32: loss scaling is not started midway."""
    if config.run.precision != AUTO:
        return model
    saved = model_precision(model)
    hardware = detect_hardware()
    chosen = resolve_precision(AUTO, hardware)
    target = "float32" if chosen == "mixed_float16" else chosen
    if saved in (chosen, target):
        return model
    print(
        f"Resuming in {target}: the checkpoint computes in {saved}, and --precision auto "
        f"chooses {chosen} on this hardware ({hardware.describe()})"
    )
    return training_model_in(model, target)


def set_execution(model: keras.Model, execution: Execution) -> Execution:
    """Makes a compiled (or loaded) model train with `execution`'s XLA and steps per execution.

    Returns the settings in effect: Keras turns XLA off for a model with a layer that does not
    support it.
    """
    model.jit_compile = execution.jit_compile
    model.steps_per_execution = execution.steps_per_execution
    model.train_function = model.test_function = model.predict_function = None
    return dataclasses.replace(execution, jit_compile=bool(model.jit_compile))


@configuration_errors()
def compile_model(
    model: keras.Model,
    config: RunConfig,
    steps_per_epoch: int,
    lr_scale: float = 1.0,
    first_epoch: int = 0,
) -> Execution:
    """Compiles with the config's optimizer (and schedule) and loss, tracking accuracy, and its
    execution settings (`resolve_execution`); returns those settings.

    The optimizer is wrapped in `Lookahead` with `optim.lookahead`, then in
    `StochasticWeightAveraging` with `optim.swa_start_epoch` (see recipes.optim.wrappers). A
    model built under mixed_float16 gets loss scaling around it all, outermost
    (`recipes.optim.wrap_for_policy`: a `CountingLossScaleOptimizer`, which counts the steps it
    skips, so that a resume can check the optimizer's steps).

    Args:
        model: the model to compile.
        config: the run configuration.
        steps_per_epoch: batches per epoch, for schedules given in epochs.
        lr_scale: multiplies the learning rate (the lower rate of fine-tuning's second phase).
        first_epoch: epochs trained before this compile (fine-tuning's second phase), which the
            new optimizer's steps do not count.
    """
    learning_rate = get_schedule(
        config.optim.schedule,
        config.optim.lr * lr_scale,
        steps_per_epoch=steps_per_epoch,
        epochs=config.run.epochs,
        warmup_epochs=config.optim.warmup_epochs,
        **config.optim.schedule_options,
    )
    optimizer = get_optimizer(
        config.optim.optimizer, learning_rate=learning_rate, **config.optim.options
    )
    optim = config.optim
    if optim.lookahead:
        optimizer = Lookahead(optimizer, k=optim.lookahead_k, alpha=optim.lookahead_alpha)
    if optim.swa_start_epoch is not None:
        last = config.model.head_epochs if config.model.fine_tune == "full" else 0
        if not last < optim.swa_start_epoch <= config.run.epochs:
            raise ValueError(
                f"optim.swa_start_epoch must be in ({last}, run.epochs={config.run.epochs}]"
                + (" (after the head-only epochs of full fine-tuning)" if last else "")
                + ": a run shortened with --epochs needs an earlier --swa-start-epoch. "
                + f"Received: optim.swa_start_epoch={optim.swa_start_epoch}"
            )
        start_step, period = swa_steps(
            optim.swa_start_epoch, steps_per_epoch, optim.swa_every_steps, first_epoch
        )
        optimizer = StochasticWeightAveraging(optimizer, start_step, period)
    execution = resolve_execution(model, config, steps_per_epoch)
    model.compile(
        optimizer=wrap_for_policy(optimizer, execution.precision),
        loss=get_loss(config.optim.loss, **config.optim.loss_options),
        metrics=["accuracy"],
        jit_compile=execution.jit_compile,
        steps_per_execution=execution.steps_per_execution,
    )
    return dataclasses.replace(execution, jit_compile=bool(model.jit_compile))


def _warn_about_settings(config: RunConfig, info: DatasetInfo) -> None:
    """Reports settings that are legal but probably not what was meant; the run goes on."""
    train_size = info.split_sizes["train"]
    if config.run.batch_size > train_size:
        warn(
            f"--batch-size {config.run.batch_size} is larger than the training set ({train_size} "
            f"examples): every epoch is a single step on a batch of {train_size}"
        )
    if config.optim.warmup_epochs and config.optim.warmup_epochs >= config.run.epochs:
        warn(
            f"--warmup-epochs {config.optim.warmup_epochs:g} >= --epochs {config.run.epochs}: the "
            "learning rate rises for the whole run and never trains at the schedule's --lr"
        )


def _report_execution(execution: Execution, config: RunConfig, steps_per_epoch: int) -> None:
    """Prints how the training steps execute, and warns where that changes what the divergence
    guard or the monitors see."""
    steps = execution.steps_per_execution
    print(
        f"Training in {execution.precision}, XLA {'on' if execution.jit_compile else 'off'}, "
        f"{steps} step{'s' if steps > 1 else ''} per execution ({execution.hardware})"
    )
    if steps > steps_per_epoch:
        warn(
            f"--steps-per-execution {steps} exceeds the {steps_per_epoch} steps of an epoch: "
            "each epoch is one execution, and the divergence guard checks once per epoch"
        )
    every = config.run.monitor_every if config.run.monitors else None
    period = measurement_period(every, steps)
    if period != every:
        warn(
            f"--monitor-every {every} is not a multiple of the {steps} steps per execution, "
            f"and the monitors see the model only between executions: they measure every "
            f"{period} steps"
        )


def _training_phases(config: RunConfig) -> list[tuple[int, int, float]]:
    """(first epoch, end epoch, learning-rate scale) of each training phase.

    fine_tune="full" trains the new head on the frozen backbone first, then the unfrozen backbone
    at a lower rate; everything else is one phase.
    """
    if config.model.fine_tune == "full":
        return [
            (0, config.model.head_epochs, 1.0),
            (config.model.head_epochs, config.run.epochs, config.model.full_lr_factor),
        ]
    return [(0, config.run.epochs, 1.0)]


def _write_curves(run_dir: Path, history: dict[str, list[float]]) -> None:
    for metric in ("loss", "accuracy"):
        if metric in history:
            plot_curves(history, metric, run_dir / f"{metric}.png")


def _sanity_checks(config: RunConfig, train: Any, info: Any, run_dir: Path) -> None:
    """--sanity: the course's checks before training (initial loss, regularization, overfitting
    20 examples, learning-rate range test), written to sanity/ in the run directory."""
    base_l2 = config.model.knobs.get("l2") or 1e-3

    def model_with_regularization(scale: float) -> keras.Model:
        knobs = {"l2": base_l2 * scale, "l1": (config.model.knobs.get("l1") or 0.0) * scale}
        if not scale:
            knobs.update(dropout=0.0, input_dropout=0.0)
        scaled = config.updated({"model": {"knobs": knobs}})
        return build_model(scaled, info.image_shape, info.num_classes)

    report = run_sanity_checks(
        model_with_regularization,
        train,
        info.num_classes,
        loss_name=config.optim.loss,
        loss=get_loss(config.optim.loss, **config.optim.loss_options),
        output_dir=run_dir / "sanity",
    )
    atomic_write_text(run_dir / "sanity" / "sanity.txt", report.render())
    print(report.render())


def _label_images(config: RunConfig, run_dir: Path) -> dict[str, Any]:
    """fine_tune="predict": labels every photo of the --dataset folder with ImageNet classes."""
    paths = list_images(config.data.dataset)
    model = zoo.create(config.model.name, **_model_options(config))
    if config.run.dry_run:
        print(format_json(config.to_dict()))
        model.summary()
        return {}
    labels = zoo.predict_labels(
        model, paths, top_k=config.model.top_k, class_index=config.model.class_index
    )
    predictions = {
        Path(path).name: [
            {"wordnet_id": wnid, "label": label, "probability": p} for wnid, label, p in top
        ]
        for path, top in zip(paths, labels, strict=True)
    }
    for name, top in predictions.items():
        print(summary_line(name, top))
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / CONFIG_FILE, format_json(config.to_dict()))
    write_predictions(run_dir / "predictions.csv", predictions)
    print(f"predictions for {len(paths)} images in {run_dir}")
    return {"predictions": rounded(predictions)}


def run(
    config: RunConfig,
    recipe: str = "recipe",
    callbacks: Sequence[keras.callbacks.Callback] = (),
) -> dict[str, Any]:
    """Trains and evaluates one configuration; returns the metrics written to metrics.json.

    The run directory is owned by this process meanwhile (see the module docstring).
    `callbacks` are more Keras callbacks for the training; at every hook they are called before
    the runner's own (so an epoch timer among them leaves out the checkpoint writes).

    Raises:
        recipes.train.files.RunDirectoryBusy: another process owns the run directory.
        recipes.callbacks.checkpoints.RunStateError: --resume found a damaged or inconsistent
            saved state, or another recipe's run.
        TrainingDiverged: the training diverged, or --resume was asked to continue a run that
            diverged without --force-resume.
    """
    with configuration_errors():
        strategy = strategy_from_config(config)
        check_jit_compile(config.run.jit_compile, strategy)
        check_steps_per_execution(config.run.steps_per_execution, strategy)
    keras.utils.set_random_seed(config.run.seed)
    run_dir = _run_dir(config, recipe, strategy)
    # A dry run writes nothing, so it owns nothing (and must not create the directory).
    with contextlib.nullcontext() if config.run.dry_run else hold_run_directory(run_dir):
        _check_run_dir(config, run_dir)
        if config.model.fine_tune == "predict":
            return _label_images(config, run_dir)
        return _train(config, recipe, strategy, run_dir, callbacks)


def _resume_point(config: RunConfig, recipe: str, run_dir: Path, strategy) -> RunState:
    """The checked state --resume continues from; refuses a run that diverged unless forced.

    Resuming a diverged run with another --lr is not offered: the optimizer and its schedule are
    restored from the checkpoint, and config.json would no longer say how the run was trained.
    A lower rate is a new run.
    """
    state = load_run_state(
        run_dir, epochs=config.run.epochs, recipe=recipe, check_views=is_chief(strategy)
    )
    if state.diverged and not config.run.force_resume:
        raise TrainingDiverged(
            f"cannot resume {run_dir}: its training diverged in epoch {state.diverged['epoch']} "
            f"({state.diverged['message']}) Resumed as saved, with the same learning rate, it "
            "would most likely diverge again: start a new run with a lower --lr, or pass "
            f"--force-resume to continue after epoch {state.epochs_done} anyway; nothing was "
            "written"
        )
    return state


def _train(
    config: RunConfig,
    recipe: str,
    strategy,
    run_dir: Path,
    extra_callbacks: Sequence[keras.callbacks.Callback] = (),
) -> dict[str, Any]:
    """Trains and evaluates in `run_dir`, which this process owns: a new run, or the
    continuation of a saved one once its state has passed every check."""
    state = (
        _resume_point(config, recipe, run_dir, strategy)
        if config.run.resume
        else RunState(recipe=recipe)
    )
    if state.epochs_done:
        # Random layers (dropout, noise) take their seeds from the global generators when the
        # checkpoint loads: seeded as at the start, they would repeat the first session's draws.
        keras.utils.set_random_seed(draw_seed(config.run.seed, state.epochs_done))
    datasets, info = load_data(config, first_epoch=state.epochs_done)
    if config.run.resume and (run_dir / DATASET_FILE).is_file():
        check_same_data(json.loads((run_dir / DATASET_FILE).read_text()), info)
    _warn_about_settings(config, info)
    datasets = shard_datasets(datasets)
    steps_per_epoch = math.ceil(info.split_sizes["train"] / config.run.batch_size)
    with strategy.scope():
        if state.epochs_done:
            model = load_checkpoint_model(run_dir / LAST_MODEL)
            batches_trained = applied_batches(model.optimizer)
            model = _model_to_resume(model, config)
            execution = set_execution(model, resolve_execution(model, config, steps_per_epoch))
        else:
            model = build_model(config, info.image_shape, info.num_classes)
            execution = compile_model(model, config, steps_per_epoch)
        prepare_for_fit(model, datasets["train"])
        if config.run.resume:
            # Full fine-tuning restarts the optimizer's step count in its second phase. The
            # steps loss scaling skipped (non-finite gradients) count as batches trained.
            if state.epochs_done and len(_training_phases(config)) == 1:
                state = reconcile_optimizer_steps(run_dir, state, batches_trained, steps_per_epoch)
            epochs_done = continue_from_chief(model, strategy, state.epochs_done)
            if epochs_done != state.epochs_done:  # a non-chief worker, now at the chief's epoch
                state = dataclasses.replace(
                    state, epochs_done=epochs_done, history=state.history[:epochs_done]
                )
                # Every worker must draw the chief's shuffle to keep its own part of each batch.
                datasets = shard_datasets(load_data(config, first_epoch=epochs_done)[0])
            print(f"Resuming {run_dir} after epoch {epochs_done}")
    epochs_done = state.epochs_done

    if config.run.dry_run:
        print(format_json(config.to_dict()))
        print(format_json(info.to_dict()))
        model.summary()
        return {}

    for directory in (run_dir, (run_dir / LAST_MODEL).parent):
        remove_temporary_files(directory)
    # --force-resume is a permission for this resume only: saved, it would let a later --resume
    # continue a run that diverged again without asking.
    config = config.updated({"run.force_resume": False})
    atomic_write_text(run_dir / CONFIG_FILE, format_json(config.to_dict()))
    atomic_write_text(run_dir / DATASET_FILE, format_json(info.to_dict()))
    if info.statistics:
        atomic_save_arrays(run_dir / STATISTICS_FILE, info.statistics)

    if config.run.sanity:
        _sanity_checks(config, datasets["train"], info, run_dir)
    _report_execution(execution, config, steps_per_epoch)
    # A resumed run's losses are compared with its first epoch's, not with this session's first
    # (possibly already exploded) execution.
    first_loss = state.history[0].get("loss") if state.history else None
    guard = DivergenceGuard(learning_rate=config.optim.lr, first_loss=first_loss)
    checkpoint = RunCheckpoint(
        run_dir,
        monitor="val_accuracy",
        mode="max",
        state=state,
        divergence_guard=guard,
        images_per_epoch=info.split_sizes["train"],
    )
    checkpoint.write_views()
    callbacks = [
        *extra_callbacks,
        guard,
        checkpoint,
        keras.callbacks.TensorBoard(run_dir / "tensorboard", update_freq="epoch"),
        *get_schedule_callbacks(config.optim.schedule, **config.optim.schedule_options),
    ]
    if config.run.monitors:
        monitoring_batch = take_monitoring_batch(datasets["validation"], config.run.batch_size)
        every = measurement_period(config.run.monitor_every, execution.steps_per_execution)
        callbacks += build_monitors(monitoring_batch, run_dir / "monitors", every_n_batches=every)
    swa = None
    if config.optim.swa_start_epoch is not None:
        # At the end: the averaged weights, BatchNorm statistics recomputed on the training split.
        swa = SWACallback(
            datasets["train"],
            final_epoch=config.run.epochs,
            validation_data=datasets["validation"],
            verbose=min(config.run.verbose, 1),
        )
        callbacks.append(swa)
    for first_epoch, end_epoch, lr_scale in _training_phases(config):
        if epochs_done >= end_epoch:
            continue
        if first_epoch > 0 and epochs_done == first_epoch:
            unfrozen = zoo.unfreeze_backbone(model, config.model.unfreeze_blocks)
            print(f"Fine-tuning the backbone ({len(unfrozen)} blocks) at lr x {lr_scale:g}")
            with strategy.scope():
                execution = compile_model(model, config, steps_per_epoch, lr_scale, first_epoch)
                prepare_for_fit(model, datasets["train"])
            _report_execution(execution, config, steps_per_epoch)
        model.fit(
            datasets["train"],
            validation_data=datasets["validation"],
            epochs=end_epoch,
            initial_epoch=epochs_done,
            callbacks=callbacks,
            verbose=config.run.verbose,
            shuffle=False,  # tf.data already shuffles the training split every epoch
        )
        epochs_done = checkpoint.epochs_done
        if checkpoint.diverged:
            break
    train_seconds = checkpoint.train_seconds
    history = history_columns(checkpoint.rows)
    _write_curves(run_dir, history)
    if checkpoint.rows:
        # Softmax cross-entropy starts at ln(C): the diagnosis can tell a run stuck there.
        chance = canonical_loss_name(config.optim.loss) == "softmax_cross_entropy"
        findings = diagnose(history, num_classes=info.num_classes if chance else None)
        write_diagnosis(run_dir, findings)
        print(format_findings(findings))
    if checkpoint.diverged:
        raise TrainingDiverged(checkpoint.diverged)

    # Done by the callback when fit ended; here too when a finished run is only re-evaluated.
    swa_report = swa.finish(model) if swa is not None else None
    test = model.evaluate(datasets["test"], verbose=0, return_dict=True)
    metrics = {
        "recipe": recipe,
        "test_loss": float(test["loss"]),
        "test_accuracy": float(test["accuracy"]),
        "epochs": epochs_done,
        "wall_time_s": round(train_seconds, 2),
        "images_per_s": round(epochs_done * info.split_sizes["train"] / train_seconds, 1)
        if epochs_done and train_seconds > 0
        else None,
        "best_val_accuracy": checkpoint.best,
        "parameters": model.count_params(),
        # How the last session trained (a resumed run may have changed XLA and steps per call).
        **execution.to_dict(),
        "dataset": info.to_dict(),
        "config": config.to_dict(),
    }
    if config.optim.lookahead:
        metrics["lookahead"] = {
            "k": config.optim.lookahead_k,
            "alpha": config.optim.lookahead_alpha,
        }
    if swa_report is not None:
        metrics["swa"] = swa_report
    with_tta = ""
    if config.run.tta != "none":
        # Outside the strategy's scope: built inside a multi-worker scope, the averaging model
        # fails to evaluate (per-replica values). Each worker scores the whole test set instead,
        # as a one-device run does.
        metrics.update(tta_metrics(model, datasets["test"], config.run.tta))
        with_tta = f" ({metrics['test_accuracy_tta']:.4f} with tta {config.run.tta})"
    atomic_save_model(model, run_dir / FINAL_MODEL)
    atomic_write_text(run_dir / METRICS_FILE, format_json(metrics))
    write_model_card(run_dir, metrics)
    print(
        f"test accuracy {metrics['test_accuracy']:.4f}{with_tta}, "
        f"test loss {metrics['test_loss']:.4f} after {metrics['epochs']} epochs; "
        f"outputs in {run_dir}"
    )
    discard_worker_outputs(run_dir, strategy)
    return metrics


def recipe_main(
    recipe: str, description: str, defaults: dict[str, Any], argv: list[str] | None = None
) -> dict[str, Any]:
    """Parses flags over a recipe's `defaults` and runs; errors propagate as exceptions.

    Anticipated failures are `recipes.train.errors.RecipeError`s: `ConfigurationError` for bad
    settings (found before training starts), others for failures while running.
    """
    with configuration_errors():
        config = resolve_config(
            defaults, argv, prog=f"python -m recipes.{recipe}", description=description
        )
    try:
        return run(config, recipe=recipe)
    except zoo.DownloadUnavailable as error:
        raise RecipeError(error.advice(error.command_remedy)) from error


def recipe_cli(recipe: str, description: str, defaults: dict[str, Any]) -> None:
    """A recipe script's entry point: `recipe_main` on `sys.argv`, then exit with its status.

    Anticipated failures print one line, `error: ...`, and exit 2 (bad settings) or 1 (failures
    while running); `--traceback` shows their traceback too (see `recipes.train.errors`).
    """
    argv = sys.argv[1:]
    sys.exit(run_command(lambda: recipe_main(recipe, description, defaults, argv), argv))
