"""Data: datasets by name, augmentation, class balancing and test-time augmentation.

    from recipes.data import load_dataset, build_augmentation

- `datasets`: `load_dataset(name, ...)`: the embedded sample, TFDS names, offline IDX mirrors and
  image folders as ready `tf.data` pipelines (splits carved, preprocessing applied);
- `idx`, `image_folder`: the offline IDX reader and the class-folder scanner behind it;
- `fingerprint`: what identifies loaded data, and `check_same_data`, the check that a resumed run
  trains on the data it started with;
- `augment`, `augment_ops`: `build_augmentation(spec, ...)`, the augmentation ops and presets;
- `balance`: "label shuffle" class-balanced resampling;
- `tta`: test-time augmentation (flip averaging) for evaluation.
"""

from recipes.data.augment import build_augmentation, parse_augment_spec
from recipes.data.datasets import SPLITS, DatasetInfo, load_dataset
from recipes.data.tta import tta_metrics, with_test_time_augmentation

__all__ = [
    "SPLITS",
    "DatasetInfo",
    "build_augmentation",
    "load_dataset",
    "parse_augment_spec",
    "tta_metrics",
    "with_test_time_augmentation",
]
