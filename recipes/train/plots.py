"""Learning-curve plots (train vs validation) written as PNG files."""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator


def plot_curves(history: dict[str, list[float]], metric: str, path: str | os.PathLike) -> Path:
    """Plots `metric` and `val_<metric>` per epoch and saves the figure atomically.

    Args:
        history: per-metric lists, as in `keras.callbacks.History.history`.
        metric: the metric to plot, e.g. "loss" or "accuracy".
        path: the PNG file to write.

    Returns:
        The written file as a `Path`.
    """
    if metric not in history:
        raise KeyError(f"no {metric!r} in the history; it has {sorted(history)}")
    destination = Path(path)
    figure, axes = plt.subplots(figsize=(6, 4))
    for key, label in ((metric, "train"), (f"val_{metric}", "validation")):
        if key in history:
            epochs = range(1, len(history[key]) + 1)
            axes.plot(epochs, history[key], marker="o", markersize=3, label=label)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("epoch")
    axes.set_ylabel(metric)
    axes.set_title(f"{metric}: train vs validation")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    temporary = destination.with_name(f".{destination.stem}.tmp.png")
    try:
        figure.savefig(temporary, dpi=100)
        os.replace(temporary, destination)
    finally:
        plt.close(figure)
        temporary.unlink(missing_ok=True)
    return destination
