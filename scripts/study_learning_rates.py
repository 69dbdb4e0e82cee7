"""Learning rates too high, too low and good: the course's four loss curves.

    python scripts/study_learning_rates.py                      # the embedded sample, a minute
    python scripts/study_learning_rates.py --dataset fashion_mnist --manual-dir /usr/share/datasets/fashion-mnist

The zoo's `mlp` (2 hidden layers of 256 ReLU units, He initialization) trained with plain SGD at
four learning rates, everything else the same. An "epoch" here is `--steps-per-epoch` batches
(default 10), so the curves have enough points to show their shape. Writes
docs/studies/learning_rates.png (training loss per epoch, one curve per rate) and
learning_rates.md.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.study_common import (
    StudyRun,
    command_line,
    markdown_table,
    new_figure,
    study_config,
    study_parser,
    train_config,
    write_study,
)

# The course's four curves, with the rates that draw them for this model and optimizer.
LEARNING_RATES = {"very high": 2.0, "high": 0.5, "good": 0.05, "low": 0.001}
CHANCE_LOSS = math.log(10)


def describe(name: str, run: StudyRun) -> str:
    """One clause on how a curve went."""
    losses = run.history["loss"]
    if run.diverged:
        return f"{name} diverged (NaN loss) in epoch {len(losses)}"
    text = f"{name} starts at {losses[0]:.3g}"
    if losses[0] > 2 * CHANCE_LOSS:
        text += " (exploded)"
    text += f", reaches {min(losses):.3f} at best and ends at {losses[-1]:.3f}"
    if abs(losses[-1] - CHANCE_LOSS) < 0.05:
        text += " (back at chance level, and stuck there)"
    return text


def findings(runs: dict[str, StudyRun]) -> str:
    """What the runs show, next to what the course says."""
    finals = {name: run.history["loss"][-1] for name, run in runs.items()}
    order_holds = finals["good"] < min(finals["high"], finals["low"])
    return (
        "The course's figure: a very high learning rate makes the loss explode; a high one "
        "drops it fast at first, then it plateaus at a high value (the steps are too large to "
        "settle into the minimum); a low one decreases it almost linearly and slowly; a good one "
        "drops it fast and keeps improving. Measured here (mean training loss per epoch of "
        "the given number of batches): "
        + "; ".join(describe(name, run) for name, run in runs.items())
        + f". The good rate {'ends lowest' if order_holds else 'does not end lowest'}, "
        f"{'as' if order_holds else 'unlike what'} the course predicts. A uniform guess over "
        f"10 classes has loss ln(10) = {CHANCE_LOSS:.3f}."
    )


def main(argv: list[str] | None = None) -> None:
    parser = study_parser(__doc__.split("\n")[0], epochs=30)
    parser.set_defaults(steps_per_epoch=10)
    args = parser.parse_args(argv)
    runs = {}
    for name, lr in LEARNING_RATES.items():
        config = study_config(
            args,
            model="mlp",
            activation="relu",
            init="he",
            optimizer="GradientDescent",
            lr=lr,
            batch_size=64,
        )
        runs[name] = train_config(
            config, f"{name} (lr={lr:g})", steps_per_epoch=args.steps_per_epoch
        )
        print(f"{name}: final loss {runs[name].history['loss'][-1]:.3f}", flush=True)
    figure, (axis,) = new_figure(1, width=6.5, height=4.5)
    top = 2.0 * CHANCE_LOSS
    for run in runs.values():
        losses = [loss for loss in run.history["loss"] if math.isfinite(loss)]
        (line,) = axis.plot(range(1, len(losses) + 1), [min(loss, top) for loss in losses])
        line.set_label(run.label + (" - diverged" if run.diverged else ""))
        if run.diverged:
            axis.plot([len(losses) + 1], [top], marker="x", markersize=10, color=line.get_color())
    axis.set_ylim(0, top * 1.05)
    axis.set_xlabel(f"epoch ({args.steps_per_epoch} batches of 64)")
    axis.set_ylabel("training loss (clipped at 2 ln 10)")
    axis.set_title(f"Learning rates: the four curves ({args.dataset})", fontsize=10)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    rows = [
        {
            "curve": name,
            "learning rate": LEARNING_RATES[name],
            "first loss": run.history["loss"][0],
            "lowest loss": min(run.history["loss"]),
            "final loss": run.history["loss"][-1],
            "test accuracy": run.test_accuracy,
        }
        for name, run in runs.items()
    ]
    write_study(
        args.out_dir,
        "learning_rates",
        "Learning rates: too high, too low, good",
        figure,
        command_line("study_learning_rates.py", args, parser.parse_args([])),
        markdown_table(rows),
        findings(runs),
    )


if __name__ == "__main__":
    main()
