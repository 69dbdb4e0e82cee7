"""Test-time augmentation: the averaging model, its metrics, the runner's and the script's use."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from recipes.data.tta import TTA_MODES, check_tta, tta_metrics, with_test_time_augmentation
from scripts import evaluate_run
from tests.conftest import run_recipe


def small_classifier(seed: int = 0) -> keras.Model:
    """A convolutional classifier that is not mirror-symmetric (random weights)."""
    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((6, 6, 1)),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    model.compile(loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def images_and_labels(count: int = 40):
    rng = np.random.default_rng(1)
    return rng.random((count, 6, 6, 1), dtype=np.float32), rng.integers(0, 3, count)


def test_flip_averages_the_image_and_its_mirror_image():
    model = small_classifier()
    images, _ = images_and_labels()
    averaged = with_test_time_augmentation(model, "flip")
    expected = (model.predict(images, verbose=0) + model.predict(images[:, :, ::-1], verbose=0)) / 2
    np.testing.assert_allclose(averaged.predict(images, verbose=0), expected, rtol=1e-5, atol=1e-6)
    # The views are really different: a single view does not give the average.
    assert not np.allclose(model.predict(images, verbose=0), expected, atol=1e-4)
    assert averaged.count_params() == model.count_params()  # shared weights, nothing copied


def test_none_is_the_model_itself_and_bad_modes_are_named():
    model = small_classifier()
    assert with_test_time_augmentation(model, "none") is model
    assert set(TTA_MODES) == {"none", "flip"}
    with pytest.raises(ValueError, match="unknown tta 'rotate'; accepted: none, flip"):
        check_tta("rotate")
    flat = keras.Sequential([keras.Input((36,)), keras.layers.Dense(3)])
    with pytest.raises(ValueError, match=r"\(batch, height, width, channels\).*\(None, 36\)"):
        with_test_time_augmentation(flat, "flip")


def test_metrics_score_the_averaged_predictions():
    model = small_classifier()
    images, labels = images_and_labels()
    dataset = tf.data.Dataset.from_tensor_slices((images, labels)).batch(16)
    result = tta_metrics(model, dataset, "flip")

    averaged = (model.predict(images, verbose=0) + model.predict(images[:, :, ::-1], verbose=0)) / 2
    assert result["tta"] == "flip"
    assert result["test_accuracy_tta"] == pytest.approx(np.mean(averaged.argmax(1) == labels))
    log_likelihood = np.log(averaged[np.arange(len(labels)), labels])
    assert result["test_loss_tta"] == pytest.approx(-log_likelihood.mean(), rel=1e-4)

    uncompiled = keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Flatten()])
    with pytest.raises(ValueError, match="is not compiled"):
        tta_metrics(uncompiled, dataset, "flip")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A one-epoch LeNet-5 run on the sample, evaluated with --tta flip by the runner."""
    run_dir = tmp_path_factory.mktemp("tta") / "run"
    metrics = run_recipe(
        "lenet5_fashion_mnist",
        "--dataset",
        "sample",
        "--epochs",
        "1",
        "--tta",
        "flip",
        "--out-dir",
        str(run_dir),
        "--verbose",
        "0",
    )
    return run_dir, metrics


def test_runner_records_single_view_and_averaged_accuracy(finished_run):
    run_dir, metrics = finished_run
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved["tta"] == "flip" == saved["config"]["run"]["tta"]
    assert saved["test_accuracy_tta"] == metrics["test_accuracy_tta"]
    assert 0.3 < saved["test_accuracy_tta"] <= 1 and saved["test_accuracy"] > 0.3
    assert saved["test_accuracy_tta"] != saved["test_accuracy"] or (
        saved["test_loss_tta"] != saved["test_loss"]
    )


def test_script_adds_the_same_metrics_to_a_finished_run(finished_run, tmp_path, capsys):
    run_dir, metrics = finished_run
    stripped = {k: v for k, v in metrics.items() if k not in ("tta", "test_accuracy_tta")}
    stripped.pop("test_loss_tta")
    copy = tmp_path / "run"
    copy.mkdir()
    for name in ("config.json", "model.keras"):
        (copy / name).write_bytes((run_dir / name).read_bytes())
    (copy / "metrics.json").write_text(json.dumps(stripped, default=str))

    evaluate_run.main([str(copy), "--tta", "flip"])
    assert "with tta flip" in capsys.readouterr().out
    updated = json.loads((copy / "metrics.json").read_text())
    assert updated["test_accuracy_tta"] == pytest.approx(metrics["test_accuracy_tta"], abs=1e-6)
    assert {k: v for k, v in updated.items() if k in stripped} == json.loads(
        json.dumps(stripped, default=str)
    )


def test_script_refuses_unfinished_runs_and_other_test_data(finished_run, tmp_path):
    run_dir, metrics = finished_run
    with pytest.raises(FileNotFoundError, match="not a finished run: config.json, model.keras"):
        evaluate_run.evaluate_run(tmp_path, "flip", {})

    copy = tmp_path / "run"
    copy.mkdir()
    for name in ("config.json", "model.keras"):
        (copy / name).write_bytes((run_dir / name).read_bytes())
    recorded = json.dumps({**metrics, "test_accuracy": metrics["test_accuracy"] - 0.1}, default=str)
    (copy / "metrics.json").write_text(recorded)
    with pytest.raises(ValueError, match="not the data it was tested on"):
        evaluate_run.evaluate_run(copy, "flip", {})
    assert (copy / "metrics.json").read_text() == recorded
