"""The TFDS path, through TFDS's own builder machinery on data prepared here (no download)."""

import numpy as np
import tensorflow_datasets as tfds

from recipes.data.datasets import load_dataset


def _image(value: int, shape) -> np.ndarray:
    return np.full(shape, value, dtype=np.uint8)


class TinyStripes(tfds.core.GeneratorBasedBuilder):
    """Fixed-size grayscale images with train and test splits, like fashion_mnist."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(8, 8, 1)),
                    "label": tfds.features.ClassLabel(names=["dark", "light"]),
                }
            ),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(60), "test": self._generate_examples(10)}

    def _generate_examples(self, count):
        for i in range(count):
            yield i, {"image": _image(30 + 200 * (i % 2), (8, 8, 1)), "label": i % 2}


class TinyFlowers(tfds.core.GeneratorBasedBuilder):
    """Variable-size RGB images with only a train split, like tf_flowers."""

    VERSION = tfds.core.Version("1.0.0")

    def _info(self):
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(None, None, 3)),
                    "label": tfds.features.ClassLabel(names=["a", "b", "c"]),
                }
            ),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        for i in range(50):
            yield i, {"image": _image(5 * i, (10 + i, 20 - i // 5, 3)), "label": i % 3}


def test_fixed_size_tfds_dataset(tmp_path):
    datasets, info = load_dataset("tiny_stripes", data_dir=tmp_path, batch_size=100, seed=0)
    assert info.source == "tfds" and info.class_names == ("dark", "light")
    assert info.image_shape == (8, 8, 1)
    assert info.split_sizes == {"train": 54, "test": 10, "validation": 6}
    seen = 0
    for split, ds in datasets.items():
        for x, y in ds:
            expected = (x.numpy().mean(axis=(1, 2, 3)) > 0.5).astype(int)
            np.testing.assert_array_equal(y.numpy(), expected, err_msg=split)
            seen += len(y)
    assert seen == 70
    assert (tmp_path / "tiny_stripes").is_dir()  # prepared by TFDS into data_dir


def test_variable_size_tfds_dataset_is_resized_and_carved(tmp_path):
    datasets, info = load_dataset("tiny_flowers", data_dir=tmp_path, image_size=(16, 16), seed=1)
    assert info.image_shape == (16, 16, 3)
    assert info.split_sizes == {"train": 40, "validation": 5, "test": 5}
    counts = {split: sum(len(y) for _, y in ds) for split, ds in datasets.items()}
    assert counts == info.split_sizes
    again, _ = load_dataset(
        "tiny_flowers", "validation", data_dir=tmp_path, image_size=(16, 16), seed=1
    )
    np.testing.assert_array_equal(
        next(iter(datasets["validation"]))[0].numpy(), next(iter(again))[0].numpy()
    )
