"""Every registered model builds for gray 28x28 and RGB 32x32, trains, and round-trips `.keras`."""

import keras
import numpy as np
import pytest

import zoo
from tests.conftest import CI_BACKBONES, model_cases
from tests.zoo_data import fashion_mnist_subset

BACKBONE_TEST_OPTIONS = {"weights": None, "fine_tune": "head", "image_size": 32}
SMALL = [name for name in zoo.list_models() if name not in zoo.BACKBONES]
BACKBONES = [name for name in zoo.list_models() if name in zoo.BACKBONES]
LARGE_BACKBONES = [name for name in BACKBONES if name not in CI_BACKBONES]


def build(name, input_shape, num_classes=10):
    options = BACKBONE_TEST_OPTIONS if name in zoo.BACKBONES else {}
    return zoo.create(name, input_shape=input_shape, num_classes=num_classes, **options)


def check_builds_and_round_trips(name, tmp_path):
    for input_shape in ((28, 28, 1), (32, 32, 3)):
        model = build(name, input_shape)
        assert model.output_shape == (None, 10)
    images = np.random.default_rng(0).uniform(0, 1, (2, 32, 32, 3)).astype("float32")
    path = tmp_path / f"{name}.keras"
    model.save(path)
    restored = keras.models.load_model(path)
    np.testing.assert_allclose(
        restored.predict(images, verbose=0), model.predict(images, verbose=0)
    )
    assert [w.shape for w in restored.weights] == [w.shape for w in model.weights]


@pytest.mark.parametrize("name", SMALL)
def test_small_model_builds_and_round_trips(name, tmp_path):
    check_builds_and_round_trips(name, tmp_path)


@pytest.mark.parametrize("name", model_cases(BACKBONES, sweep=LARGE_BACKBONES))
def test_backbone_builds_and_round_trips(name, tmp_path):
    check_builds_and_round_trips(name, tmp_path)


@pytest.mark.parametrize("input_shape", [(28, 28, 3), (48, 40, 1), (64, 64, 3)])
@pytest.mark.parametrize("name", SMALL)
def test_small_model_accepts_other_sizes(name, input_shape):
    assert build(name, input_shape).output_shape == (None, 10)


@pytest.fixture(scope="module")
def fashion_batch(fashion_mnist_dir):
    images, labels = fashion_mnist_subset(fashion_mnist_dir, per_class=4)
    return images.astype("float32") / 255.0, labels


# ResNet-20 stands for its deeper variants in the default run.
@pytest.mark.parametrize(
    "name", model_cases(SMALL + BACKBONES, sweep=[*LARGE_BACKBONES, "resnet32", "resnet56"])
)
def test_trains_on_real_data(name, fashion_batch):
    images, labels = fashion_batch
    if name in zoo.BACKBONES:
        images = images * 255.0  # backbones take raw 0..255 images
    keras.utils.set_random_seed(0)
    model = build(name, (28, 28, 1))
    if name in zoo.BACKBONES:
        # From scratch, BatchNorm included: with BatchNorm frozen in inference mode, a randomly
        # initialised MobileNet or EfficientNet gives near-zero features and nothing to learn.
        backbone = model.get_layer("backbone")
        for layer in (backbone, *backbone.layers):
            layer.trainable = True
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    # The training loss: in inference mode, BatchNorm's moving statistics lag a few steps behind.
    losses = model.fit(images, labels, batch_size=len(images), epochs=6, verbose=0).history["loss"]
    assert np.isfinite(losses).all() and losses[-1] < losses[0]
