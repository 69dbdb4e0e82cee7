"""What the course studies share: the command line, training one config, writing figure + table.

A study trains a few configurations that differ in one setting (activation, initialization,
normalization, learning rate, fine-tuning mode) and writes `<out-dir>/<name>.png` and
`<out-dir>/<name>.md` (default out-dir: docs/studies).

`train_config` trains one configuration with the recipe runner's own pieces (`load_data`,
`build_model`, `compile_model`), so a config means exactly what it means for a recipe; it calls
`model.fit` itself rather than `recipes.train.runner.run` because the studies need what a run does not
expose: the model (for activation histograms), training steps in chunks shorter than an epoch,
and no checkpoints or logs. `run_recipe` goes through `recipes.train.runner.run` itself, for the
fine-tuning study whose two-phase training is the runner's.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from recipes.callbacks.checkpoints import history_columns, read_history
from recipes.train.config import RunConfig
from recipes.train.files import atomic_write_text
from recipes.train.runner import build_model, compile_model, load_data, run

REPO_ROOT = Path(__file__).resolve().parent.parent
STUDIES_DIR = REPO_ROOT / "docs" / "studies"


# The course's 3x256 ReLU MLP trained with SGD and momentum 0.9 on batches of 64: the network the
# dead-ReLU and BatchNorm studies vary one setting of.
RELU_MLP: dict[str, Any] = {
    "model": "mlp",
    "model_options": {"depth": 3, "width": 256},
    "activation": "relu",
    "optimizer": "momentum",
    "optimizer_options": {"momentum": 0.9},
    "batch_size": 64,
}


def number_list(kind: type[int] | type[float]) -> Callable[[str], list]:
    """An argparse type: comma-separated numbers of `kind` ("0,1,2" -> [0, 1, 2])."""

    def parse(text: str) -> list:
        try:
            return [kind(item) for item in text.split(",")]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected comma-separated {kind.__name__} values such as 0,1,2; got {text!r}"
            ) from None

    return parse


def study_parser(
    description: str, epochs: int, seeds: str | None = None
) -> argparse.ArgumentParser:
    """The flags every study takes; a study adds its own. With `seeds` (e.g. "0,1"), a study
    that trains every configuration over several seeds gets `--seeds`, a list of ints."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", default="sample", help="sample (default) or fashion_mnist")
    parser.add_argument("--manual-dir", help="IDX files for --dataset fashion_mnist (offline)")
    parser.add_argument("--epochs", type=int, default=epochs, help=f"default {epochs}")
    parser.add_argument(
        "--steps-per-epoch", type=int, help="train only this many batches per epoch (default: all)"
    )
    if seeds is None:
        parser.add_argument("--seed", type=int, default=0)
    else:
        parser.add_argument(
            "--seeds",
            type=number_list(int),
            default=seeds,
            help=f"comma-separated (default {seeds})",
        )
    parser.add_argument("--out-dir", type=Path, default=STUDIES_DIR, help="default docs/studies")
    return parser


def study_config(args: argparse.Namespace, **overrides: Any) -> RunConfig:
    """A full run configuration: the runner's defaults, the study's data flags, `overrides`
    (by flat option name, e.g. `activation="tanh"`, `lr=0.1`, `model_options={...}`). A study
    with `--seeds` passes each run's `seed` among the overrides."""
    settings = {"dataset": args.dataset, "manual_dir": args.manual_dir, "epochs": args.epochs}
    if "seed" in vars(args):
        settings["seed"] = args.seed
    return RunConfig.from_dict({**settings, "verbose": 0, **overrides}, "the study's settings")


@dataclass
class StudyRun:
    """One trained configuration of a study.

    Attributes:
        label: how the study names it (e.g. "relu", "lr=0.1").
        history: per-epoch metrics as in `keras.callbacks.History.history`; an epoch is
            `steps_per_epoch` batches when the study set it.
        test_accuracy: accuracy on the test split after training (NaN if training diverged).
        seconds: training wall time.
        model: the trained model (None when the runner trained it).
        diverged: the loss became NaN or infinite and training stopped.
        train_accuracy: accuracy on the training split after training, in inference mode (no
            dropout), when the study asked for it; NaN otherwise.
        images: training images the run went through (every epoch; 0 when unknown).
    """

    label: str
    history: dict[str, list[float]]
    test_accuracy: float
    seconds: float
    model: keras.Model | None
    diverged: bool = False
    train_accuracy: float = math.nan
    images: int = 0


def train_config(
    config: RunConfig,
    label: str,
    *,
    steps_per_epoch: int | None = None,
    validate: bool = False,
    model: keras.Model | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    evaluate_train: bool = False,
) -> StudyRun:
    """Trains `config` for `config.run.epochs` epochs and evaluates it on the test split.

    Args:
        config: a full run configuration (see `study_config`).
        label: the run's name in the study's figure and table.
        steps_per_epoch: train only this many batches per epoch (from a freshly shuffled
            training split each epoch); None trains on all of it.
        validate: also compute validation loss and accuracy after every epoch.
        model: an already built model for `config` (e.g. one whose initial activations the study
            has inspected); None builds it.
        callbacks: more Keras callbacks for `fit` (training stops at a NaN loss regardless).
        evaluate_train: also measure the accuracy on the whole training split in inference mode
            (augmented if the config augments), for the generalization gap.
    """
    # Seeded before the data, as the runner does: the first configuration of a process then
    # trains as every later one with the same seed.
    keras.utils.set_random_seed(config.run.seed)
    datasets, info = load_data(config)
    if model is None:
        model = build_model(config, info.image_shape, info.num_classes)
    full_steps = math.ceil(info.split_sizes["train"] / config.run.batch_size)
    steps = min(steps_per_epoch or full_steps, full_steps)
    compile_model(model, config, steps_per_epoch=steps)
    train = datasets["train"].take(steps)
    start = time.perf_counter()
    history = model.fit(
        train,
        validation_data=datasets["validation"] if validate else None,
        epochs=config.run.epochs,
        verbose=config.run.verbose,
        callbacks=[keras.callbacks.TerminateOnNaN(), *callbacks],
        shuffle=False,
    ).history
    seconds = time.perf_counter() - start
    diverged = not all(math.isfinite(loss) for loss in history["loss"])

    def accuracy(split: str) -> float:
        if diverged:
            return math.nan
        return float(model.evaluate(datasets[split], verbose=0, return_dict=True)["accuracy"])

    train_accuracy = accuracy("train") if evaluate_train else math.nan
    images_per_epoch = min(steps * config.run.batch_size, info.split_sizes["train"])
    return StudyRun(
        label,
        history,
        accuracy("test"),
        seconds,
        model,
        diverged,
        train_accuracy=train_accuracy,
        images=images_per_epoch * len(history["loss"]),
    )


def train_over_seeds(
    args: argparse.Namespace,
    label: str,
    *,
    validate: bool = False,
    evaluate_train: bool = True,
    **overrides: Any,
) -> list[StudyRun]:
    """Trains one configuration (`study_config(args, **overrides)`) once per seed of
    `args.seeds`, each for `args.steps_per_epoch` batches per epoch (all when unset); `validate`
    and `evaluate_train` as for `train_config` (the training accuracy is measured by default)."""
    runs = []
    for seed in args.seeds:
        config = study_config(args, **overrides, seed=seed)
        run = train_config(
            config,
            label,
            steps_per_epoch=args.steps_per_epoch,
            validate=validate,
            evaluate_train=evaluate_train,
        )
        runs.append(run)
        training = f", training accuracy {run.train_accuracy:.4f}" if evaluate_train else ""
        print(
            f"{label} seed {seed}: test accuracy {run.test_accuracy:.4f}{training}, "
            f"{run.seconds:.0f} s",
            flush=True,
        )
    return runs


def mean_and_spread(values: Sequence[float]) -> tuple[float, float]:
    """The mean and the sample standard deviation (0 for one value) of `values`."""
    mean = float(np.mean(values))
    return mean, float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def seed_mean(runs: Sequence[StudyRun]) -> StudyRun:
    """One configuration's runs over seeds as a single run: the mean of each metric per epoch
    (over the epochs every seed reached), of the accuracies and of the seconds; the first seed's
    model; diverged if any seed diverged."""
    epochs = min(len(values) for run in runs for values in run.history.values())
    history = {
        metric: np.mean([run.history[metric][:epochs] for run in runs], axis=0).tolist()
        for metric in runs[0].history
    }
    return StudyRun(
        runs[0].label,
        history,
        float(np.mean([run.test_accuracy for run in runs])),
        float(np.mean([run.seconds for run in runs])),
        runs[0].model,
        diverged=any(run.diverged for run in runs),
        train_accuracy=float(np.mean([run.train_accuracy for run in runs])),
        images=int(np.mean([run.images for run in runs])),
    )


def gain_and_noise(runs: Sequence[StudyRun], baseline: Sequence[StudyRun]) -> tuple[float, float]:
    """How much more accurate on the test split `runs` are than `baseline` (difference of the
    seed means), and the larger of the two seed spreads: a gain below it is within noise."""
    mean, spread = mean_and_spread([run.test_accuracy for run in runs])
    base_mean, base_spread = mean_and_spread([run.test_accuracy for run in baseline])
    return mean - base_mean, max(spread, base_spread)


def seeds_row(label: str, runs: Sequence[StudyRun]) -> dict[str, Any]:
    """A table row summarizing one configuration over seeds: test and training accuracy (mean
    and spread), their gap, the parameter count, and training seconds and images per second
    (every epoch, tracing included)."""
    test, test_spread = mean_and_spread([run.test_accuracy for run in runs])
    train = float(np.mean([run.train_accuracy for run in runs]))
    return {
        "configuration": label,
        "test accuracy": f"{test:.4f} +- {test_spread:.4f}",
        "training accuracy": train,
        "gap": train - test,
        "parameters": f"{runs[0].model.count_params():,}" if runs[0].model else "-",
        "seconds": float(np.mean([run.seconds for run in runs])),
        "images/s": float(np.mean([run.images / run.seconds for run in runs])),
    }


def comparison_figure(by_label: dict[str, list[StudyRun]], title: str) -> Figure:
    """Configurations trained over seeds, side by side: the training accuracy per epoch (training
    mode, mean of seeds) and the training and test accuracy after training (inference mode). A
    seed that diverged shortens its configuration's curve and leaves its bars out (NaN)."""
    means = {label: seed_mean(runs) for label, runs in by_label.items()}
    figure, (curve_axis, bar_axis) = new_figure(2, width=5.5)
    for label, mean in means.items():
        curve = mean.history["accuracy"]
        curve_axis.plot(np.arange(1, len(curve) + 1), curve, label=label)
    curve_axis.set_title("training accuracy per epoch (training mode, mean of seeds)", fontsize=10)
    curve_axis.set_xlabel("epoch")
    curve_axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    curve_axis.set_ylabel("accuracy")
    curve_axis.grid(alpha=0.3)
    curve_axis.legend(fontsize=8)
    labels = list(by_label)
    positions = np.arange(len(labels))
    for offset, (metric, name) in enumerate(
        (("train_accuracy", "training"), ("test_accuracy", "test"))
    ):
        values = [getattr(means[label], metric) for label in labels]
        bar_axis.bar(positions + 0.4 * offset - 0.2, values, width=0.4, label=name)
    bar_axis.set_xticks(positions, labels, rotation=25, ha="right", fontsize=8)
    accuracies = [mean.test_accuracy for mean in means.values()]
    lowest = min((value for value in accuracies if math.isfinite(value)), default=0.05)
    bar_axis.set_ylim(max(0.0, lowest - 0.05), 1.0)
    bar_axis.set_title("accuracy after training (inference mode, mean of seeds)", fontsize=10)
    bar_axis.grid(alpha=0.3, axis="y")
    bar_axis.legend(fontsize=8)
    figure.suptitle(title)
    return figure


def run_recipe(config: RunConfig, label: str) -> tuple[dict[str, Any], StudyRun | None]:
    """Runs `config` through `recipes.train.runner.run` in a temporary run directory.

    Returns the run's metrics and, when it trained, a `StudyRun` built from its history.
    """
    with tempfile.TemporaryDirectory() as run_dir:
        start = time.perf_counter()
        metrics = run(
            config.updated({"run.out_dir": str(Path(run_dir) / "run")}), recipe=f"study_{label}"
        )
        seconds = time.perf_counter() - start
        rows = read_history(Path(run_dir) / "run")
    if not rows:
        return metrics, None
    study_run = StudyRun(
        label, history_columns(rows), metrics["test_accuracy"], seconds, model=None
    )
    return metrics, study_run


def compare_over_seeds(
    args: argparse.Namespace, variants: dict[str, dict[str, Any]], **common: Any
) -> tuple[dict[str, list[StudyRun]], list[dict[str, Any]]]:
    """Trains each variant (`common` settings updated with the variant's) over `args.seeds`;
    returns the runs by variant label and one `seeds_row` per variant, in the variants' order."""
    by_label = {
        label: train_over_seeds(args, label, **{**common, **overrides})
        for label, overrides in variants.items()
    }
    return by_label, [seeds_row(label, runs) for label, runs in by_label.items()]


def write_comparison(
    args: argparse.Namespace,
    parser: argparse.ArgumentParser,
    name: str,
    title: str,
    by_label: dict[str, list[StudyRun]],
    rows: list[dict[str, Any]],
    findings: str,
) -> tuple[Path, Path]:
    """Writes a `compare_over_seeds` study: `comparison_figure`, the rows, the findings, and the
    command of `scripts/study_<name>.py` that reproduces it."""
    return write_study(
        args.out_dir,
        name,
        title,
        comparison_figure(by_label, f"{title} ({args.dataset})"),
        command_line(f"study_{name}.py", args, parser.parse_args([])),
        markdown_table(rows),
        findings,
    )


def new_figure(
    columns: int, rows: int = 1, width: float = 5.0, height: float = 3.8
) -> tuple[Figure, list]:
    """A figure of rows x columns axes (flat list, row by row), drawn without pyplot's state."""
    figure = Figure(figsize=(width * columns, height * rows), layout="constrained")
    return figure, list(figure.subplots(rows, columns, squeeze=False).ravel())


def plot_histories(axis, runs: Sequence[StudyRun], metric: str, title: str) -> None:
    """One line per run of `metric` per epoch."""
    for study_run in runs:
        values = np.asarray(study_run.history.get(metric, []), dtype=np.float64)
        axis.plot(np.arange(1, len(values) + 1), values, marker="o", markersize=2.5)
        axis.lines[-1].set_label(study_run.label)
    axis.set_title(title, fontsize=10)
    axis.set_xlabel("epoch")
    axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.set_ylabel(metric.replace("_", " "))
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """A Markdown table of rows (dicts with the same keys); floats to 3 decimals, NaN as "-"."""
    columns = list(rows[0])

    def cell(value: Any) -> str:
        if isinstance(value, bool):
            return "yes" if value else "no"
        if isinstance(value, float):
            return "-" if math.isnan(value) else f"{value:.3f}"
        return str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row[c]) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def write_study(
    out_dir: Path,
    name: str,
    title: str,
    figure: Figure,
    command: str,
    table: str,
    findings: str,
) -> tuple[Path, Path]:
    """Writes `<out_dir>/<name>.png` and `<out_dir>/<name>.md` (title, command, figure, table,
    what it shows); returns both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    png = out_dir / f"{name}.png"
    figure.savefig(png, dpi=90)
    markdown = (
        f"# {title}\n\n"
        f"Produced by `{command}`.\n\n"
        f"![{title}]({png.name})\n\n"
        f"{table}\n\n"
        f"{findings}\n"
    )
    md = out_dir / f"{name}.md"
    atomic_write_text(md, markdown)
    return png, md


def command_line(script: str, args: argparse.Namespace, defaults: argparse.Namespace) -> str:
    """The command that reproduces this study: the script and the flags that differ from default."""
    flags = []
    for key, value in vars(args).items():
        if value != getattr(defaults, key) and key != "out_dir":
            shown = ",".join(f"{item:g}" for item in value) if isinstance(value, list) else value
            flags.append(f"--{key.replace('_', '-')} {shown}")
    return " ".join([f"python scripts/{script}", *flags])
