"""The zoo's trained weights: cards, weights="<tag>", the sha256 check, new heads and features,
the accuracy each card records (re-measured on the full test set), and scripts/ship_weights.py."""

import dataclasses
import hashlib
import json
import shutil

import keras
import numpy as np
import pytest

import zoo
from recipes.data import load_dataset
from recipes.data.tta import tta_metrics
from recipes.train.config import RunConfig, resolve_config
from scripts import ship_weights
from tests.test_recipes import run_recipe
from zoo import pretrained

# At least these ship (issue #23); every card found is checked.
REQUIRED = {"lenet5": "fashion_mnist", "mlp": "fashion_mnist"}
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


@pytest.mark.slow
def test_ship_a_run(tmp_path):
    run_dir = tmp_path / "run"
    run_recipe(
        "lenet5_fashion_mnist",
        *("--dataset", "fashion_mnist_sample", "--epochs", "1", "--seed", "2"),
        *("--model-option", "subsampling=max", "--out-dir", str(run_dir), "--verbose", "0"),
    )
    card = ship_weights.ship_run(run_dir, "sample", {}, tmp_path / "shipped")
    assert card.command == (
        "python -m recipes.lenet5_fashion_mnist --seed 2 --dataset fashion_mnist_sample --epochs 1 "
        "--model-option subsampling=max"
    )
    assert card.options == {"subsampling": "max"} and card.knobs["activation"] == "relu"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert card.training["test_accuracy_float32"] == round(metrics["test_accuracy"], 4)
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
