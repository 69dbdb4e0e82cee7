"""Fine-tune an ImageNet backbone on a small dataset: predict, head or full.

The course's three states of transfer learning with any zoo backbone (--backbone, default
MobileNet v1 alpha=0.25): "predict" labels a folder of photos with ImageNet classes; "head" trains
a new classifier on the frozen backbone; "full" trains the head first, then the backbone at a
10x lower learning rate. BatchNorm stays in inference mode. Images of any size and channels are
resized and converted inside the model.

    python -m recipes.finetune_imagenet --dataset path/to/folder --fine-tune head
    python -m recipes.finetune_imagenet --dataset tf_flowers --fine-tune full --epochs 6
    python -m recipes.finetune_imagenet --fine-tune predict --dataset photos/ --class-index imagenet_class_index.json
"""

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python recipes/<name>.py`: make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from recipes.train.runner import recipe_cli

DEFAULTS = {
    "data": {"dataset": "tf_flowers", "preprocessing": "none", "image_size": (160, 160)},
    "model": {
        "name": "mobilenet",
        "options": {"alpha": 0.25},
        "fine_tune": "head",
        "weights": "imagenet",
        "head_epochs": 2,
    },
    "optim": {"optimizer": "adam", "lr": 0.001},
    "run": {"batch_size": 32, "epochs": 5},
}

if __name__ == "__main__":
    recipe_cli("finetune_imagenet", __doc__, DEFAULTS)
