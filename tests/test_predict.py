"""python -m recipes.predict on real image files, with a real run and a real exported file."""

import csv
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from recipes.data.datasets import load_dataset, resize_uint8
from recipes.data.image_folder import ImageFolderError
from recipes.export import export_run
from recipes.predict import (
    ImageChannelsError,
    find_images,
    load_image,
    load_predictor,
    predict_images,
)
from recipes.predict.__main__ import main
from recipes.train.errors import ConfigurationError, DataError
from recipes.train.inference import load_run, raw_image_model
from tests.conftest import REPO_ROOT


def write_png(path, image):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(tf.io.encode_png(np.asarray(image, dtype=np.uint8)).numpy())
    return path


@pytest.fixture(scope="module")
def test_images(tmp_path_factory):
    """The first 12 test images of the sample as PNG files, and the images themselves."""
    pipeline, _ = load_dataset("sample", "test", preprocessing="none", shuffle=False, batch_size=12)
    images, labels = next(iter(pipeline))
    images = images.numpy().astype(np.uint8)
    folder = tmp_path_factory.mktemp("images")
    for i, (image, label) in enumerate(zip(images, labels.numpy(), strict=True)):
        write_png(folder / f"{i:02d}_{label}.png", image)
    return folder, images


def test_predictions_are_the_run_model_on_the_files(trained_run, test_images):
    folder, images = test_images
    predictor = load_predictor(trained_run)
    predictions = predict_images(predictor, find_images([folder]), top_k=3, batch_size=5)
    expected = raw_image_model(load_run(trained_run)).predict_on_batch(images.astype("float32"))
    assert list(predictions) == sorted(str(p) for p in folder.iterdir())
    for row, top in zip(expected, predictions.values(), strict=True):
        assert [label["class_id"] for label in top] == list(np.argsort(-row)[:3])
        assert top[0]["label"] == predictor.class_names[top[0]["class_id"]]
        assert top[0]["probability"] == pytest.approx(float(row.max()), abs=1e-6)


def test_command_line_writes_csv_and_json(trained_run, test_images, tmp_path, capsys):
    folder, _ = test_images
    output = tmp_path / "out" / "labels.csv"
    main([str(trained_run), str(folder), "--top-k", "2", "--output", str(output)])
    rows = list(csv.DictReader(output.open()))
    assert list(rows[0]) == ["file", "rank", "class_id", "label", "probability"]
    assert len(rows) == 2 * 12 and [row["rank"] for row in rows[:2]] == ["1", "2"]
    written = json.loads(output.with_suffix(".json").read_text())
    assert written[rows[0]["file"]][0]["label"] == rows[0]["label"]
    assert f"predictions for 12 images in {output}" in capsys.readouterr().out


def test_exported_tflite_predicts_like_the_run(trained_run, test_images, tmp_path):
    folder, _ = test_images
    run = shutil.copytree(trained_run, tmp_path / "run")
    exported = export_run(run, "tflite_int8", parity_examples=100, calibration_examples=100)
    files = find_images([folder])
    from_run = predict_images(load_predictor(run), files, top_k=1)
    from_file = predict_images(load_predictor(exported["path"]), files, top_k=1)
    agree = [from_run[f][0]["class_id"] == from_file[f][0]["class_id"] for f in files]
    assert sum(agree) >= len(files) - 1
    moved = tmp_path / "moved.tflite"
    shutil.copy(exported["path"], moved)
    with pytest.raises(ConfigurationError, match="no export.json beside it"):
        load_predictor(moved)


def test_images_are_converted_to_the_model_input(tmp_path):
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (56, 40, 1), dtype=np.uint8)
    colour = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
    resized = load_image(write_png(tmp_path / "gray.png", gray), (28, 28, 1))
    np.testing.assert_array_equal(resized, resize_uint8(gray, (28, 28)).numpy())
    as_rgb = load_image(write_png(tmp_path / "gray_rgb.png", np.repeat(gray, 3, -1)), (56, 40, 1))
    np.testing.assert_array_equal(as_rgb, gray)
    to_colour = load_image(tmp_path / "gray.png", (56, 40, 3))
    np.testing.assert_array_equal(to_colour, np.repeat(gray, 3, -1))
    with_alpha = np.concatenate([colour, np.full((20, 20, 1), 255, np.uint8)], -1)
    np.testing.assert_array_equal(
        load_image(write_png(tmp_path / "rgba.png", with_alpha), (20, 20, 3)), colour
    )
    with pytest.raises(ImageChannelsError, match="colour image .* takes grayscale"):
        load_image(write_png(tmp_path / "colour.png", colour), (28, 28, 1))


def test_refusals(trained_run, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "fake.png").write_text("not a png")
    (tmp_path / "cut.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    with pytest.raises(ImageFolderError, match="holds no images"):
        find_images([empty])
    with pytest.raises(ConfigurationError, match="does not exist"):
        find_images([tmp_path / "missing.png"])
    with pytest.raises(ConfigurationError, match="not an image file"):
        find_images([tmp_path / "notes.txt"])
    with pytest.raises(ImageFolderError, match="not a valid PNG"):
        find_images([tmp_path / "fake.png"])
    with pytest.raises(ConfigurationError, match="no images found"):
        find_images([])
    with pytest.raises(DataError, match="cannot be decoded"):
        load_image(tmp_path / "cut.png", (28, 28, 1))
    with pytest.raises(ConfigurationError, match="`model` must be one of"):
        load_predictor(trained_run, model="worst")
    with pytest.raises(ConfigurationError, match=r"`top_k` must be an integer in \[1, 10\]"):
        predict_images(load_predictor(trained_run), [], top_k=11)


def test_command_line_errors_are_one_line(trained_run, tmp_path):
    colour = write_png(tmp_path / "colour.png", np.full((8, 8, 3), (255, 0, 0)))
    result = subprocess.run(
        [sys.executable, "-m", "recipes.predict", str(trained_run), str(colour)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: {colour} is a colour image")
    assert not (tmp_path / "predictions.csv").exists()
