"""Maxout MLP on Fashion-MNIST (Goodfellow et al., 2013).

Two maxout layers (240 units of 5 linear pieces each) with dropout and a max-norm constraint on the
incoming weights, the regularization that makes maxout work, trained with SGD + momentum.
Expected test accuracy: 0.89-0.91 on full Fashion-MNIST.
"""

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python recipes/<name>.py`: make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from recipes.train.runner import recipe_cli

DEFAULTS = {
    "data": {"dataset": "fashion_mnist"},
    "model": {"name": "maxout_mlp"},
    "optim": {"optimizer": "momentum", "lr": 0.02, "options": {"momentum": 0.9}},
    "run": {"batch_size": 128, "epochs": 15},
}

if __name__ == "__main__":
    recipe_cli("maxout_mlp_fashion_mnist", __doc__, DEFAULTS)
