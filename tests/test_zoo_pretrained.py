"""The zoo's trained weights: cards, weights="<tag>", the sha256 check, new heads and features,
the accuracy each card records (re-measured on the full test set), and scripts/ship_weights.py."""

import configparser
import dataclasses
import fnmatch
import hashlib
import json
import shutil

import keras
import numpy as np
import pytest

import zoo
from recipes.__main__ import recipe_defaults
from recipes.data import load_dataset
from recipes.data.tta import tta_metrics
from recipes.train.config import RunConfig, resolve_config
from scripts import ship_weights
from tests.conftest import REPO_ROOT, run_recipe, write_image_folder
from zoo import finetune, pretrained

# At least these ship (issue #23); every card found is checked.
REQUIRED = {
    "lenet5": "fashion_mnist",
    "mlp": "fashion_mnist",
    "mobilenet_tiny": "fashion_mnist",
    "resnet20": "fashion_mnist",
    "wide_resnet16_2": "fashion_mnist",
}
CARDS = [card for tags in pretrained.pretrained_cards().values() for card in tags.values()]


def stored(card):
    with np.load(pretrained.weights_path(card.model, card.tag)) as archive:
        return {key: archive[key] for key in archive.files}


def values(model):
    return {w.path: keras.ops.convert_to_numpy(w) for w in model.weights}


@pytest.fixture
def weights_copy(tmp_path, monkeypatch):
    """The shipped weights copied to a folder the zoo then reads instead of its own."""
    copy = shutil.copytree(pretrained.WEIGHTS_DIR, tmp_path / "weights")
    monkeypatch.setattr(pretrained, "WEIGHTS_DIR", copy)
    yield copy
    pretrained.clear_card_cache()


def test_the_required_weights_ship_and_are_listed():
    for model, tag in REQUIRED.items():
        assert tag in pretrained.pretrained_cards()[model]
    listed = zoo.list_models(pretrained=True)
    assert listed == sorted(pretrained.pretrained_cards())
    assert set(REQUIRED) <= set(listed) < set(zoo.list_models())
    assert zoo.list_models("LeNet*", pretrained=True) == ["lenet5"]


@pytest.mark.parametrize("card", CARDS, ids=lambda card: f"{card.model}-{card.tag}")
def test_cards_describe_their_files(card):
    path = pretrained.weights_path(card.model, card.tag)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == card.sha256
    assert {array.dtype for array in stored(card).values()} == {np.dtype("float16")}
    model = zoo.create(card.model, weights=card.tag)
    assert model.count_params() == card.num_params
    assert model.input_shape[1:] == card.input_shape
    assert len(card.class_names) == card.num_classes == model.output_shape[-1]
    assert card.preprocessing["mode"] == "scale" and "255" in card.preprocessing["input"]
    assert card.command.startswith(f"python -m recipes.{card.recipe} --seed ")
    assert 0.8 < card.test_accuracy < 1 and 0 < card.test_accuracy_tta < 1
    # Four decimals, as measured.
    assert round(card.test_accuracy, 4) == card.test_accuracy
    assert zoo.describe(card.model)["pretrained"][card.tag] == json.loads(card.to_json())


def test_weights_load_as_stored():
    card = pretrained.pretrained_cards()["lenet5"]["fashion_mnist"]
    model = zoo.create("LeNet-5", weights="Fashion-MNIST")  # any spelling of both
    got = values(model)
    expected = stored(card)
    assert set(got) == set(expected)
    for path, array in expected.items():
        np.testing.assert_array_equal(got[path], array.astype("float32"))
    # The architecture comes from the card: relu/he, not lenet5's own tanh/xavier defaults.
    assert model.get_layer("conv1_relu").get_config()["activation"] == "relu"


def test_unknown_tags_list_the_shipped_ones():
    with pytest.raises(ValueError, match="Unknown lenet5 weights 'mnist'.*fashion_mnist"):
        zoo.create("lenet5", weights="mnist")
    with pytest.raises(
        ValueError, match=r"`weights` must be None for 'vgg_small'.*lenet5: fashion_mnist"
    ):
        zoo.create("vgg_small", weights="fashion_mnist")
    with pytest.raises(ValueError, match="`weights` must be None or one of 'fashion_mnist'"):
        zoo.create("lenet5", weights=True)


def test_a_changed_file_is_refused(weights_copy):
    card = pretrained.pretrained_cards()["lenet5"]["fashion_mnist"]
    path = weights_copy / card.weights_file
    arrays = stored(card)
    arrays["predictions/bias"] = arrays["predictions/bias"] + np.float16(0.01)
    pretrained.save_weights(arrays, path)  # a valid weights file, but not the card's
    with pytest.raises(
        ValueError, match=f"is not the weights file its card describes.*{card.sha256}"
    ):
        zoo.create("lenet5", weights="fashion_mnist")
    path.unlink()
    with pytest.raises(FileNotFoundError, match="weights file of card lenet5-fashion_mnist"):
        zoo.create("lenet5", weights="fashion_mnist")


def test_a_card_must_match_its_file_name(weights_copy):
    card = pretrained.pretrained_cards()["lenet5"]["fashion_mnist"]
    moved = pretrained.card_path("lenet5", "fashion_mnist", weights_copy)
    moved.rename(weights_copy / "lenet5-mnist.json")
    pretrained.clear_card_cache()
    with pytest.raises(ValueError, match="holds the card of lenet5-fashion_mnist"):
        zoo.create("lenet5", weights=card.tag)


def test_trained_architecture_is_kept():
    with pytest.raises(
        ValueError, match="`activation` must be 'relu' with weights='fashion_mnist'"
    ):
        zoo.create("lenet5", weights="fashion_mnist", activation="tanh")
    with pytest.raises(ValueError, match="`subsampling` must be left unset"):
        zoo.create("lenet5", weights="fashion_mnist", subsampling="max")
    with pytest.raises(ValueError, match="`output_activation` must be 'softmax'"):
        zoo.create("lenet5", weights="fashion_mnist", output_activation="linear")
    with pytest.raises(ValueError, match=r"does not match the weights mlp-fashion_mnist.*dense1"):
        zoo.create("mlp", input_shape=(32, 32, 1), weights="fashion_mnist")
    # Training-only knobs may change: they do not change what the trained layers compute.
    model = zoo.create("lenet5", weights="fashion_mnist", dropout=0.3, l2=1e-4)
    assert model.get_layer("dense1_dropout").rate == 0.3


def test_other_classes_get_a_new_head():
    card = pretrained.pretrained_cards()["lenet5"]["fashion_mnist"]
    keras.utils.set_random_seed(1)
    model = zoo.create("lenet5", weights="fashion_mnist", num_classes=3, output_activation="linear")
    got, expected = values(model), stored(card)
    assert got["predictions/kernel"].shape == (84, 3)
    for path, array in expected.items():
        if not path.startswith("predictions"):
            np.testing.assert_array_equal(got[path], array.astype("float32"))


def test_features_of_trained_weights():
    trained = zoo.create("lenet5", weights="fashion_mnist")
    features = zoo.create("lenet5", weights="fashion_mnist", num_classes=0)
    images = np.random.default_rng(0).uniform(0, 1, (4, 28, 28, 1)).astype("float32")
    logits_layer = trained.get_layer("predictions")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(logits_layer(features(images))),
        keras.ops.convert_to_numpy(trained(images)),
        rtol=1e-5,
        atol=1e-6,
    )
    maps = zoo.create("lenet5", weights="fashion_mnist", features_only=True)
    assert [info["channels"] for info in zoo.feature_info(maps)] == [6, 16, 16]


@pytest.mark.slow
@pytest.mark.parametrize("card", CARDS, ids=lambda card: f"{card.model}-{card.tag}")
def test_recorded_test_accuracy(card, fashion_mnist_dir):
    # The full test set through the data pipeline the card names, at the recorded 4 decimals.
    assert card.dataset["name"] == "fashion_mnist"
    test, info = load_dataset(
        "fashion_mnist",
        "test",
        manual_dir=fashion_mnist_dir,
        preprocessing=card.preprocessing["mode"],
        batch_size=500,
    )
    assert info.fingerprint["test"] == card.dataset["test_fingerprint"]
    assert info.split_sizes["test"] == card.dataset["test_images"] == 10_000
    assert tuple(info.class_names) == card.class_names
    model = zoo.create(card.model, weights=card.tag)
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    accuracy = model.evaluate(test, verbose=0, return_dict=True)["accuracy"]
    assert round(accuracy, 4) == card.test_accuracy
    with_tta = tta_metrics(model, test, card.tta)["test_accuracy_tta"]
    assert round(with_tta, 4) == card.test_accuracy_tta


def test_recipe_command_reproduces_the_configuration():
    defaults = {"model": {"name": "lenet5", "knobs": {"activation": "relu"}}, "run": {"epochs": 3}}
    config = RunConfig.from_dict(defaults).updated(
        {
            "data": {"augment": "flip_h,crop", "manual_dir": "/data/fm", "image_size": (32, 30)},
            "model": {"knobs": {"l2": 1e-4, "norm": "batch"}, "options": {"subsampling": "max"}},
            "optim": {"lr": 0.2, "options": {"momentum": 0.95}, "lookahead": True},
            "run": {"seed": 3, "tta": "flip", "out_dir": "somewhere", "verbose": 2},
        }
    )
    flags = ship_weights.recipe_flags(config, RunConfig.from_dict(defaults))
    parsed = resolve_config(defaults, flags, "test", "")
    assert dataclasses.replace(parsed.run, out_dir="somewhere", verbose=2) == config.run
    assert (parsed.data, parsed.model, parsed.optim) == (config.data, config.model, config.optim)
    assert "--out-dir" not in flags and "--lookahead" in flags and "--image-size" in flags
    with pytest.raises(ship_weights.ShipError, match="no flag removes"):
        ship_weights.recipe_flags(RunConfig(), RunConfig.from_dict(defaults))


def test_recipe_command_of_another_recipe():
    """A run of one recipe with flags is the plain command of a recipe whose defaults are them."""
    settings = {"model": {"name": "resnet20", "knobs": {"l2": 2.5e-4}}, "run": {"seed": 1}}
    config = RunConfig.from_dict(recipe_defaults("resnet20_fashion_mnist")).updated(settings)
    assert ship_weights.recipe_command("resnet20_fashion_mnist", config) == (
        "python -m recipes.resnet20_fashion_mnist --seed 1 --l2 0.00025"
    )
    assert ship_weights.recipe_command("resnet20_cifar10", config).startswith(
        "python -m recipes.resnet20_cifar10 --seed 1 --dataset fashion_mnist"
    )
    with pytest.raises(ship_weights.ShipError, match="unknown recipe 'resnet_20'; the recipes"):
        ship_weights.recipe_command("resnet_20", config)
    with pytest.raises(SystemExit, match="unknown recipe 'resnet_20'"):
        ship_weights.main(["somewhere", "--recipe", "resnet_20", "--tag", "x"])


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["float32", "mixed_bfloat16"])
def test_ship_a_run(tmp_path, precision):
    """A run trained in mixed precision ships too: its float32 variables, computing in float32."""
    run_dir = tmp_path / "run"
    run_recipe(
        "lenet5_fashion_mnist",
        *("--dataset", "sample", "--epochs", "1", "--seed", "2", "--precision", precision),
        *("--model-option", "subsampling=max", "--out-dir", str(run_dir), "--verbose", "0"),
    )
    card = ship_weights.ship_run(run_dir, "sample", {}, tmp_path / "shipped")
    assert card.command == (
        "python -m recipes.lenet5_fashion_mnist --seed 2 --dataset sample "
        f"--model-option subsampling=max --epochs 1 --precision {precision}"
    )
    assert card.options == {"subsampling": "max"} and card.knobs["activation"] == "relu"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert card.training["precision"] == metrics["precision"] == precision
    if precision == "float32":
        assert card.training["test_accuracy_float32"] == round(metrics["test_accuracy"], 4)
    else:  # the same weights, only the activations' rounding differs: a few images at most
        test_images = metrics["dataset"]["split_sizes"]["test"]
        moved = abs(card.training["test_accuracy_float32"] - metrics["test_accuracy"])
        assert moved <= 5 / test_images
    assert abs(card.test_accuracy - card.training["test_accuracy_float32"]) <= 0.0005
    assert (
        card.tta == "flip"
        and card.dataset["test_images"] == metrics["dataset"]["split_sizes"]["test"]
    )
    files = sorted(path.name for path in (tmp_path / "shipped").iterdir())
    assert files == ["lenet5-sample.json", "lenet5-sample.weights.npz"]
    shipped = pretrained.PretrainedCard.from_json((tmp_path / "shipped" / files[0]).read_text())
    assert shipped == card
    stored_weights = pretrained.read_weights(card, tmp_path / "shipped")
    assert stored_weights["conv1/kernel"].dtype == np.float16


def test_command_line_lists_and_describes_trained_weights(capsys):
    from zoo.__main__ import main

    assert main(["list", "--pretrained"]) == 0
    assert capsys.readouterr().out.split() == zoo.list_models(pretrained=True)
    assert main(["describe", "lenet5"]) == 0
    card = pretrained.pretrained_cards()["lenet5"]["fashion_mnist"]
    out = capsys.readouterr().out
    assert card.sha256 in out and card.command in out


def trainable(model):
    return [w.path for w in model.trainable_weights]


def test_fine_tuning_modes_of_trained_weights():
    # As for the backbones: predict for the trained classes, head (frozen, new classifier)
    # otherwise; full starts as head.
    assert len(trainable(zoo.create("lenet5", weights="fashion_mnist"))) == 10
    for options in ({"num_classes": 4}, {"fine_tune": "head"}, {"fine_tune": "full"}):
        model = zoo.create("lenet5", weights="fashion_mnist", **options)
        assert trainable(model) == ["predictions/kernel", "predictions/bias"]
    card = pretrained.pretrained_cards()["lenet5"]["fashion_mnist"]
    keras.utils.set_random_seed(0)
    new_head = values(zoo.create("lenet5", weights="fashion_mnist", fine_tune="head"))
    assert not np.array_equal(new_head["predictions/bias"], stored(card)["predictions/bias"])
    np.testing.assert_array_equal(new_head["dense2/kernel"], stored(card)["dense2/kernel"])
    features = zoo.create("lenet5", weights="fashion_mnist", features_only=True)
    assert not features.trainable_weights
    with pytest.raises(ValueError, match="so num_classes must be 10, got 4"):
        zoo.create("lenet5", weights="fashion_mnist", num_classes=4, fine_tune="predict")
    with pytest.raises(ValueError, match="`fine_tune` must be None or one of 'predict'"):
        zoo.create("lenet5", weights="fashion_mnist", fine_tune="partial")
    with pytest.raises(ValueError, match=r"`fine_tune` starts from trained weights.*fashion_mnist"):
        zoo.create("lenet5", fine_tune="head")


def test_unfreezing_the_top_blocks_of_a_small_model():
    model = zoo.create("mlp", weights="fashion_mnist", fine_tune="full", num_classes=3)
    assert [name for name, _ in zoo.backbone_blocks(model)] == ["dense1", "dense2"]
    assert zoo.unfreeze_backbone(model, top_n_blocks=1) == ["dense2"]
    assert trainable(model) == [
        "dense2/kernel",
        "dense2/bias",
        "predictions/kernel",
        "predictions/bias",
    ]
    # BatchNormalization stays in inference mode, as in a backbone (here a ResNet's units).
    resnet = zoo.create("resnet20", input_shape=(28, 28, 1))
    finetune.freeze_trunk(resnet)
    assert finetune.unfreeze_trunk(resnet, 2) == ["stage3_block3_conv1", "stage3_block3_conv2"]
    assert trainable(resnet) == [
        "stage3_block3_conv1/kernel",
        "stage3_block3_conv2/kernel",
        "predictions/kernel",
        "predictions/bias",
    ]
    assert not resnet.get_layer("stage3_block3_conv1_batchnorm").trainable


def test_fine_tuning_needs_the_trained_input():
    assert zoo.fine_tune_preprocessing("LeNet-5", "fashion_mnist") == "scale"
    assert zoo.fine_tune_preprocessing("mobilenet", "imagenet") == "none"
    with pytest.raises(ValueError, match="data.preprocessing must be 'scale'"):
        RunConfig.from_dict(
            {
                "model": {"weights": "fashion_mnist", "fine_tune": "head"},
                "data": {"preprocessing": "per_channel"},
            }
        )


def test_full_fine_tuning_of_trained_weights_through_the_runner(tmp_path):
    # The runner trains the new head first, then the top block (dense2) at a lower rate; the
    # blocks below keep their trained weights.
    run_recipe(
        "lenet5_fashion_mnist",
        *("--dataset", "sample", "--weights", "fashion_mnist", "--fine-tune", "full"),
        *("--epochs", "2", "--head-epochs", "1", "--unfreeze-blocks", "1", "--batch-size", "256"),
        *("--out-dir", str(tmp_path / "run"), "--verbose", "0"),
    )
    tuned = values(keras.models.load_model(tmp_path / "run" / "model.keras", compile=False))
    trained = stored(pretrained.pretrained_cards()["lenet5"]["fashion_mnist"])
    for path in ("conv1/kernel", "conv2/kernel", "dense1/kernel", "dense1/bias"):
        np.testing.assert_array_equal(tuned[path], trained[path].astype("float32"))
    for path in ("dense2/kernel", "predictions/kernel"):
        assert not np.allclose(tuned[path], trained[path].astype("float32"))


def test_head_fine_tuning_of_trained_weights_on_a_folder_of_gray_images(tmp_path):
    # A user's own small grayscale dataset: gray PNGs of another size, one folder per class.
    rng = np.random.default_rng(0)
    classes = {f"class{c}": rng.integers(0, 256, (12, 36, 36, 1), dtype=np.uint8) for c in range(3)}
    folder = write_image_folder(tmp_path / "gray", classes)
    metrics = run_recipe(
        "lenet5_fashion_mnist",
        *("--dataset", str(folder), "--image-size", "28"),
        *("--weights", "fashion_mnist", "--fine-tune", "head", "--epochs", "1"),
        *("--out-dir", str(tmp_path / "run"), "--verbose", "0"),
    )
    assert metrics["dataset"]["image_shape"] == [28, 28, 1]
    tuned = values(keras.models.load_model(tmp_path / "run" / "model.keras", compile=False))
    trained = stored(pretrained.pretrained_cards()["lenet5"]["fashion_mnist"])
    np.testing.assert_array_equal(tuned["conv1/kernel"], trained["conv1/kernel"].astype("float32"))
    assert tuned["predictions/kernel"].shape[-1] == 3


def test_the_weights_are_package_data():
    # A wheel built from setup.cfg carries every file of zoo/weights.
    setup = configparser.ConfigParser()
    setup.read(REPO_ROOT / "setup.cfg")
    patterns = setup["options.package_data"]["zoo.weights"].replace(",", " ").split()
    files = sorted(path.name for path in pretrained.WEIGHTS_DIR.iterdir())
    assert files and all(any(fnmatch.fnmatch(name, p) for p in patterns) for name in files)
