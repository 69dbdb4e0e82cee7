"""CIFAR-size AlexNet with local response normalization (Krizhevsky et al., 2012).

Conv - LRN - pool stages as in AlexNet (k=2, n=5, alpha=1e-4, beta=0.75), standard augmentation,
SGD + momentum with step decay. CIFAR-10 comes from TFDS; offline, run it on Fashion-MNIST:

    python -m recipes.alexnet_lrn_cifar10 --dataset fashion_mnist --manual-dir /usr/share/datasets/fashion-mnist

Expected test accuracy on CIFAR-10: 0.80-0.85.
"""

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python recipes/<name>.py`: make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from recipes.train.runner import recipe_cli

DEFAULTS = {
    "data": {"dataset": "cifar10", "augment": "standard"},
    "model": {"name": "alexnet_small", "knobs": {"l2": 0.0005}},
    "optim": {
        "optimizer": "momentum",
        "lr": 0.01,
        "options": {"momentum": 0.9},
        "schedule": "step",
    },
    "run": {"tta": "flip", "batch_size": 128, "epochs": 30},
}

if __name__ == "__main__":
    recipe_cli("alexnet_lrn_cifar10", __doc__, DEFAULTS)
