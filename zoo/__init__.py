"""Model zoo: small CNNs/MLPs with the course's knobs; ImageNet backbones with fine-tuning modes.

    import zoo
    model = zoo.create("resnet20", input_shape=(32, 32, 3), num_classes=10, norm="group")
    zoo.list_models("resnet*")
    zoo.describe("lenet5")
    zoo.list_models(pretrained=True)  # models shipped with trained weights
    trained = zoo.create("lenet5", weights="fashion_mnist")  # see zoo.describe("lenet5")["pretrained"]
    tuned = zoo.create("lenet5", weights="fashion_mnist", num_classes=5)  # new head, frozen trunk
    features = zoo.create("resnet20", input_shape=(28, 28, 1), features_only=True)
    zoo.feature_info(features)  # [{"layer": ..., "channels": 16, "reduction": 1}, ...]

Importing the package registers every model, and with Keras every layer a zoo model holds (`layers`
and the backbones' preprocessing), so `import zoo` is all `keras.models.load_model` needs for a
saved zoo model; one compiled with `recipes.optim`'s optimizers, schedules or losses, as the
recipes' are, needs `import recipes`.
"""

from zoo import small
from zoo.backbones import (
    BACKBONES,
    ClassIndexUnavailable,
    DownloadUnavailable,
    WeightsUnavailable,
    backbone_blocks,
    fine_tune_preprocessing,
    load_class_index,
    predict_labels,
    unfreeze_backbone,
)
from zoo.features import feature_info
from zoo.finetune import FINE_TUNE_MODES
from zoo.knobs import Knobs
from zoo.registry import create, describe, list_models, register_model

__all__ = [
    "BACKBONES",
    "FINE_TUNE_MODES",
    "ClassIndexUnavailable",
    "DownloadUnavailable",
    "Knobs",
    "WeightsUnavailable",
    "backbone_blocks",
    "create",
    "describe",
    "feature_info",
    "fine_tune_preprocessing",
    "list_models",
    "load_class_index",
    "predict_labels",
    "register_model",
    "small",
    "unfreeze_backbone",
]
