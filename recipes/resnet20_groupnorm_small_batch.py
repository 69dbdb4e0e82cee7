"""ResNet-20 with GroupNorm at tiny batch sizes (Wu & He, 2018).

BatchNorm estimates its statistics from the batch, so with 2-8 images per batch they are noisy and
accuracy drops; GroupNorm normalizes each image over groups of channels and does not care. Compare:

    python -m recipes.resnet20_groupnorm_small_batch --norm group --batch-size 4
    python -m recipes.resnet20_groupnorm_small_batch --norm batch --batch-size 4
"""

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python recipes/<name>.py`: make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from recipes.train.runner import recipe_cli

DEFAULTS = {
    "data": {"dataset": "cifar10", "augment": "light"},
    "model": {"name": "resnet20", "knobs": {"norm": "group", "groups": 8}},
    "optim": {"optimizer": "momentum", "lr": 0.005, "options": {"momentum": 0.9}},
    "run": {"tta": "flip", "batch_size": 4, "epochs": 5},
}

if __name__ == "__main__":
    recipe_cli("resnet20_groupnorm_small_batch", __doc__, DEFAULTS)
