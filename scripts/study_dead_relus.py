"""Dead ReLUs against the learning rate: the fraction of units that never fire, per layer.

    python scripts/study_dead_relus.py                   # the embedded sample, a minute
    python scripts/study_dead_relus.py --dataset fashion_mnist \\
        --manual-dir /usr/share/datasets/fashion-mnist --seeds 0,1

The claim (the course, on ReLU): "a large gradient flowing through a ReLU neuron could cause the
weights to update in such a way that the neuron will never activate on any datapoint again ...
you may find that as much as 40% of your network can be 'dead' ... if the learning rate is set
too high. With a proper setting of the learning rate this is less frequently an issue."

Measured here: the zoo's `mlp` (3 hidden layers of 256 ReLU units, He initialization) trained
with SGD and momentum 0.9 at every rate of `LEARNING_RATES`, batches of 64, over seeds. The
runner's own `DeadReluMonitor` counts, every `--monitor-every` steps and at initialization,
the units of each layer that output zero for every image of a fixed batch of
`MONITORING_IMAGES` validation images. Writes docs/studies/dead_relus.png (dead fraction per
layer over training, one panel per rate) and dead_relus.md.
"""

from __future__ import annotations

import math
import os
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import keras

from recipes.callbacks.monitors import DeadReluMonitor, take_monitoring_batch
from recipes.train.runner import build_model, load_data
from scripts.study_common import (
    RELU_MLP,
    command_line,
    markdown_table,
    new_figure,
    study_config,
    study_parser,
    train_config,
    write_study,
)

LEARNING_RATES = (0.01, 0.05, 0.1, 0.2, 0.5)
MLP = {
    **RELU_MLP,
    "init": "he",
    "steps_per_execution": 1,  # the monitor measures between executions: exactly on schedule
}
MONITORING_IMAGES = 1000
# Verdicts: the claim holds when a rate at which the network still learns (test accuracy at
# least `LEARNS`) leaves at least `HOLDS` of the network dead ("as much as 40%"), partly when the
# dead fraction grows with the rate but stays between `HOLDS_PARTLY` and `HOLDS`.
HOLDS, HOLDS_PARTLY = 0.3, 0.1
LEARNS = 0.5


@dataclass
class DeadRun:
    """One learning rate and seed: the dead fraction of each layer after each measurement."""

    lr: float
    seed: int
    steps: list[int]
    dead: dict[str, list[float]]
    test_accuracy: float
    diverged: bool

    def network(self) -> list[float]:
        """The dead fraction of all hidden units together (the layers are equally wide)."""
        return [statistics.mean(values) for values in zip(*self.dead.values(), strict=True)]


def train_one(args, lr: float, seed: int) -> DeadRun:
    config = study_config(args, **MLP, lr=lr, seed=seed)
    keras.utils.set_random_seed(seed)  # the model is built here, before train_config seeds
    datasets, info = load_data(config)
    monitoring_images, _ = take_monitoring_batch(datasets["validation"], MONITORING_IMAGES)
    monitor = DeadReluMonitor(monitoring_images, every_n_batches=args.monitor_every)
    model = build_model(config, info.image_shape, info.num_classes)
    monitor.set_model(model)
    monitor.measure_and_report()  # at initialization, recorded as step 0
    run = train_config(
        config,
        f"lr={lr:g}",
        steps_per_epoch=args.steps_per_epoch,
        model=model,
        callbacks=[monitor],
    )
    layers = list(dict.fromkeys(row["layer"] for row in monitor.log.rows))
    steps = sorted({int(row["step"]) for row in monitor.log.rows})
    return DeadRun(
        lr,
        seed,
        steps,
        {layer: monitor.log.series(layer, "dead_fraction") for layer in layers},
        run.test_accuracy,
        run.diverged,
    )


def final_network_dead(runs: list[DeadRun]) -> float:
    """The mean over seeds of the whole network's dead fraction at the end of training."""
    return statistics.mean(run.network()[-1] for run in runs)


def learns(runs: list[DeadRun]) -> bool:
    """Whether every seed trained without diverging to a test accuracy of at least `LEARNS`."""
    return all(not run.diverged and run.test_accuracy >= LEARNS for run in runs)


def verdict(by_lr: dict[float, list[DeadRun]]) -> str:
    learning = {lr: runs for lr, runs in by_lr.items() if learns(runs)}
    if len(learning) < 2:
        return "not measurable here (fewer than two rates at which the network learns)"
    finals = {lr: final_network_dead(runs) for lr, runs in learning.items()}
    lowest, highest = min(finals), max(finals)
    grows = finals[highest] > finals[lowest]
    peak = max(finals.values())
    if grows and peak >= HOLDS:
        return "holds"
    if grows and peak >= HOLDS_PARTLY:
        return "holds partly"
    return "does not hold here"


def findings(by_lr: dict[float, list[DeadRun]], seeds: list[int]) -> str:
    parts = []
    for lr, runs in by_lr.items():
        if any(run.diverged for run in runs):
            parts.append(
                f"lr {lr:g} diverged (NaN loss) for {sum(r.diverged for r in runs)} seed(s)"
            )
            continue
        deadliest = max(runs[0].dead, key=lambda layer: runs[0].dead[layer][-1])
        parts.append(
            f"lr {lr:g} ends with {final_network_dead(runs):.0%} of the hidden units dead "
            f"(most in {deadliest}: {statistics.mean(r.dead[deadliest][-1] for r in runs):.0%}), "
            f"test accuracy {statistics.mean(r.test_accuracy for r in runs):.3f}"
            + ("" if learns(runs) else " (it no longer learns)")
        )
    return (
        'The claim (the course): "as much as 40% of your network can be dead" with a too-high '
        "learning rate, rarely with a proper one. Measured over "
        f"seeds {', '.join(map(str, seeds))}, a unit being dead when it outputs "
        f"zero for all {MONITORING_IMAGES} monitoring images: "
        + "; ".join(parts)
        + f". Verdict: **{verdict(by_lr)}** (holds: at a rate where the network still learns, "
        f"test accuracy >= {LEARNS:g}, >= {HOLDS:.0%} of the network is dead and the fraction "
        f"grows with the rate; partly: it grows, to between {HOLDS_PARTLY:.0%} and {HOLDS:.0%})."
    )


def main(argv: list[str] | None = None) -> None:
    parser = study_parser(__doc__.split("\n")[0], epochs=5, seeds="0,1")
    parser.add_argument(
        "--monitor-every", type=int, default=100, help="steps between measurements (default 100)"
    )
    args = parser.parse_args(argv)
    seeds = args.seeds
    by_lr = {lr: [train_one(args, lr, seed) for seed in seeds] for lr in LEARNING_RATES}
    for lr, runs in by_lr.items():
        print(f"lr={lr:g}: dead at the end {[round(r.network()[-1], 3) for r in runs]}", flush=True)

    figure, axes = new_figure(len(LEARNING_RATES), width=4.2)
    for axis, (lr, runs) in zip(axes, by_lr.items(), strict=True):
        first = runs[0]
        for layer, values in first.dead.items():
            axis.plot(first.steps[: len(values)], values, label=layer, linewidth=1.2)
        axis.set_ylim(-0.02, 1.02)
        axis.set_title(
            f"lr {lr:g}" + (" (diverged)" if first.diverged else "") + f", seed {first.seed}",
            fontsize=10,
        )
        axis.set_xlabel("training step")
        axis.set_ylabel("dead fraction")
        axis.axhline(0.4, color="gray", linewidth=0.6, linestyle=":")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=7)
    figure.suptitle(f"Dead ReLUs per layer ({args.dataset}; dotted: the course's 40%)")

    rows = []
    for lr, runs in by_lr.items():
        row = {"lr": lr, "seeds diverged": sum(run.diverged for run in runs)}
        trained = [run for run in runs if not run.diverged]
        for layer in runs[0].dead:
            row[f"{layer} dead (end)"] = (
                statistics.mean(run.dead[layer][-1] for run in trained) if trained else math.nan
            )
        row["network dead (end)"] = final_network_dead(trained) if trained else math.nan
        row["network dead (max)"] = (
            statistics.mean(max(run.network()) for run in trained) if trained else math.nan
        )
        row["test accuracy"] = (
            statistics.mean(run.test_accuracy for run in trained) if trained else math.nan
        )
        rows.append(row)
    write_study(
        args.out_dir,
        "dead_relus",
        "Dead ReLUs against the learning rate",
        figure,
        command_line("study_dead_relus.py", args, parser.parse_args([])),
        markdown_table(rows),
        findings(by_lr, seeds),
    )


if __name__ == "__main__":
    main()
