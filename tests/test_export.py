"""Exporting a real run: real conversions, the real TFLite interpreter, a real SavedModel reload."""

import dataclasses
import json
import shutil
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from recipes.data.datasets import load_dataset
from recipes.export import FORMATS, export_run, load_exported, tflite_ops
from recipes.export.formats import _BUILTIN_NAMES
from recipes.predict import load_predictor
from recipes.train.errors import ConfigurationError, DataError
from recipes.train.inference import (
    load_run,
    preprocessing_layers,
    raw_image_model,
    raw_images,
)
from recipes.train.model_card import EXPORT_FILE, MODEL_CARD_FILE
from recipes.train.runner import STATISTICS_FILE
from tests.conftest import REPO_ROOT


@pytest.fixture
def run_copy(trained_run, tmp_path):
    """A copy of the trained run that a test may write into."""
    return shutil.copytree(trained_run, tmp_path / "run")


def test_runner_saves_the_statistics_its_pipeline_used(trained_run):
    with np.load(trained_run / STATISTICS_FILE) as saved:
        saved = dict(saved)
    _, info = load_dataset("sample", "train", preprocessing="per_channel")
    assert set(saved) == set(info.statistics)
    for name, values in info.statistics.items():
        np.testing.assert_array_equal(saved[name], values)


@pytest.mark.parametrize("mode", ["scale", "mean_image", "per_channel", "none"])
def test_preprocessing_layers_match_the_pipeline(mode):
    raw, _ = load_dataset("sample", "test", preprocessing="none", shuffle=False, batch_size=50)
    done, info = load_dataset("sample", "test", preprocessing=mode, shuffle=False, batch_size=50)
    (images, _), (expected, _) = next(iter(raw)), next(iter(done))
    got = images
    for layer in preprocessing_layers(mode, info.statistics):
        got = layer(got)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(got), expected, atol=1e-5)


def test_raw_image_model_reproduces_the_run_test_accuracy(trained_run):
    run = load_run(trained_run)
    model = raw_image_model(run)
    correct = total = 0
    for images, labels in raw_images(run, "test"):
        correct += int(np.sum(np.argmax(model.predict_on_batch(images), -1) == labels.numpy()))
        total += len(labels)
    assert total == run.dataset["split_sizes"]["test"]
    assert abs(correct / total - run.metrics["test_accuracy"]) <= 0.5 / total


def test_raw_image_model_turns_hinge_scores_into_probabilities(trained_run):
    run = load_run(trained_run)
    hinge = dataclasses.replace(run, config=run.config.updated({"optim.loss": "svm_hinge"}))
    assert hinge.output_activation == "linear" and run.output_activation == "softmax"
    images = np.random.default_rng(0).integers(0, 256, (4, 28, 28, 1)).astype("float32")
    probabilities = raw_image_model(hinge).predict_on_batch(images)
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, rtol=1e-5)
    prepared = images
    for layer in preprocessing_layers(run.preprocessing, run.statistics):
        prepared = layer(prepared)
    scores = run.model.predict_on_batch(prepared)
    np.testing.assert_allclose(probabilities, keras.ops.softmax(scores), rtol=1e-5)


def test_tflite_exports_run_builtin_only_and_follow_keras(run_copy):
    images = np.random.default_rng(1).integers(0, 256, (8, 28, 28, 1)).astype(np.uint8)
    keras_probabilities = raw_image_model(load_run(run_copy)).predict_on_batch(
        images.astype("float32")
    )
    sizes = {}
    for fmt in FORMATS[1:]:
        record = export_run(run_copy, fmt, calibration_examples=200)
        path = run_copy / "export" / fmt / "model.tflite"
        assert record["path"] == str(path) and path.is_file()
        written = json.loads((path.parent / EXPORT_FILE).read_text())
        sizes[fmt] = written["size_bytes"]
        assert written["size_bytes"] == path.stat().st_size
        assert written["ops"] == tflite_ops(path.read_bytes())
        assert set(written["ops"]) <= set(_BUILTIN_NAMES.values())
        assert written["class_names"][0] == "T-shirt/top"
        assert written["source"]["checkpoint"] == "final"
        parity = written["parity"]
        assert parity["examples"] == 1000
        if fmt == "tflite":
            assert parity["top1_agreement"] == 1.0 and parity["max_abs_diff"] < 1e-4
            assert written["input"]["dtype"] == "float32"
        else:
            assert parity["top1_agreement"] >= 0.97
            assert abs(parity["test_accuracy_exported"] - parity["test_accuracy_keras"]) <= 0.02
        if fmt == "tflite_int8":
            assert written["input"]["dtype"] == "uint8" and written["output"]["dtype"] == "uint8"
            assert written["calibration"] == {"split": "train", "examples": 200}
        # The file alone, read back by a fresh interpreter, agrees with Keras on new images.
        exported, _ = load_exported(path)
        found = exported.predict(images)
        assert found.shape == (8, 10)
        assert np.abs(found - keras_probabilities).max() < (1e-4 if fmt == "tflite" else 0.1)
    card = (run_copy / MODEL_CARD_FILE).read_text()
    assert all(f"| {fmt} | `export/{fmt}/model.tflite` |" in card for fmt in sizes)
    assert sizes["tflite_dynamic"] < 0.4 * sizes["tflite"]
    assert sizes["tflite_int8"] < 0.4 * sizes["tflite"]


def test_savedmodel_reloads_and_takes_float_or_uint8_pixels(run_copy):
    record = export_run(run_copy, "savedmodel", parity_examples=300)
    assert record["parity"]["examples"] == 300 and record["parity"]["top1_agreement"] == 1.0
    assert record["parity"]["max_abs_diff"] < 1e-5
    loaded = tf.saved_model.load(record["path"])
    images = np.random.default_rng(2).integers(0, 256, (5, 28, 28, 1)).astype(np.uint8)
    expected = raw_image_model(load_run(run_copy)).predict_on_batch(images.astype("float32"))
    np.testing.assert_allclose(loaded.serve(images.astype("float32")).numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(loaded.serve_uint8(images).numpy(), expected, atol=1e-5)
    assert "Conv2D" in record["ops"]
    predictor = load_predictor(record["path"])
    assert predictor.image_shape == (28, 28, 1) and predictor.class_names[9] == "Ankle boot"
    np.testing.assert_allclose(predictor.probabilities(images), expected, atol=1e-5)


def test_best_checkpoint_and_explicit_output(run_copy, tmp_path):
    output = tmp_path / "phone" / "lenet.tflite"
    record = export_run(
        run_copy / "checkpoints" / "best.keras", "tflite", output, parity_examples=100
    )
    assert output.is_file() and record["source"]["checkpoint"] == "best"
    assert json.loads((output.parent / EXPORT_FILE).read_text())["file"] == "lenet.tflite"
    # Outside the run directory: the card does not list it.
    assert "lenet.tflite" not in (run_copy / MODEL_CARD_FILE).read_text()
    # Another export into the same folder would overwrite its record: refused.
    with pytest.raises(ConfigurationError, match="folder of its own"):
        export_run(run_copy, "tflite", output.parent / "other.tflite")


def test_old_run_without_statistics_recomputes_them(run_copy):
    saved = dict(np.load(run_copy / STATISTICS_FILE))
    (run_copy / STATISTICS_FILE).unlink()
    recomputed = load_run(run_copy).statistics
    for name in saved:
        np.testing.assert_array_equal(recomputed[name], saved[name])
    dataset = json.loads((run_copy / "dataset.json").read_text())
    dataset["fingerprint"]["train"] = "0" * 32
    (run_copy / "dataset.json").write_text(json.dumps(dataset))
    with pytest.raises(DataError, match="not the one this run started with"):
        load_run(run_copy)


def test_refusals(run_copy, tmp_path):
    results = tmp_path / "results_copy"
    results.mkdir()
    for name in ("metrics.json", "history.csv"):
        shutil.copy(run_copy / name, results / name)
    cases = [
        (results, "tflite", {}, "holds no trained model"),
        (tmp_path, "tflite", {}, "not a run directory"),
        (run_copy / "history.csv", "tflite", {}, "neither a run directory nor a .keras"),
        (run_copy, "onnx", {}, "`format` must be one of"),
        (run_copy, "tflite", {"output": tmp_path / "model.bin"}, "ending in .tflite"),
        (run_copy, "savedmodel", {"output": tmp_path / "x.tflite"}, "a directory"),
        (run_copy, "tflite", {"model": "worst"}, "`model` must be one of"),
    ]
    for source, fmt, options, message in cases:
        with pytest.raises(ConfigurationError, match=message):
            export_run(source, fmt, **options)
    (run_copy / "model.keras").unlink()
    with pytest.raises(ConfigurationError, match="--model best uses"):
        export_run(run_copy, "tflite")


def test_command_line(run_copy, tmp_path):
    def export(*arguments):
        return subprocess.run(
            [sys.executable, "-m", "recipes.export", *map(str, arguments)],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=600,
        )

    output = tmp_path / "cli" / "model.tflite"
    done = export(run_copy, "--format", "tflite", "--output", output, "--parity-examples", "50")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "top-1 agreement 1.0000" in done.stdout and output.is_file()
    refused = export(tmp_path / "missing", "--format", "tflite")
    assert refused.returncode == 2
    assert (
        refused.stderr.strip().splitlines()[-1] == f"error: {tmp_path / 'missing'} does not exist"
    )
