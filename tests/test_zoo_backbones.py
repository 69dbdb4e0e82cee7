"""ImageNet backbones: raw-image front, fine-tuning modes, weights files, offline weights."""

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo
from tests.conftest import REPO_ROOT, run_python, run_recipe, write_image_folder
from tests.zoo_data import fashion_mnist_subset

# Expected top-1 labels, from ../shared/weights/README.md.
SAMPLE_LABELS = {
    "cat.png": "Egyptian_cat",
    "cheetah.jpg": "cheetah",
    "elephant1.jpg": "Indian_elephant",
    "elephant2.jpg": "African_elephant",
    "panda.jpg": "giant_panda",
}


def tiny_head_model(**options):
    settings = {"weights": None, "fine_tune": "head", "alpha": 0.25, "image_size": 32}
    return zoo.create("mobilenet", input_shape=(28, 28, 1), num_classes=10, **settings | options)


def weights_of(layer):
    return [keras.ops.convert_to_numpy(w).copy() for w in layer.weights]


def test_raw_image_front():
    model = tiny_head_model()
    assert [layer.name for layer in model.layers[:4]] == [
        "image",
        "resize",
        "gray_to_rgb",
        "preprocess",
    ]
    assert model.get_layer("backbone").input_shape == (None, 32, 32, 3)
    rgb = zoo.create("mobilenet_v2", input_shape=(None, None, 3), weights=None, image_size=32)
    assert "gray_to_rgb" not in [layer.name for layer in rgb.layers]
    assert rgb.output_shape == (None, 1000)
    # The backbone's own preprocess_input runs inside: MobileNet maps 0..255 to -1..1.
    preprocess = model.get_layer("preprocess")
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(preprocess(np.array([[0.0, 127.5, 255.0]]))), [[-1, 0, 1]]
    )


def test_head_mode_freezes_backbone_and_batchnorm():
    model = tiny_head_model()
    backbone = model.get_layer("backbone")
    assert not backbone.trainable
    assert [w.path for w in model.trainable_weights] == [
        "predictions/kernel",
        "predictions/bias",
    ]
    batchnorms = [x for x in backbone.layers if isinstance(x, keras.layers.BatchNormalization)]
    assert batchnorms and not any(layer.trainable for layer in batchnorms)


def train_steps(model, learning_rate=1e-2):
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy"
    )
    images = np.random.default_rng(0).uniform(0, 255, (16, 28, 28, 1)).astype("float32")
    model.fit(images, np.arange(16) % 10, batch_size=8, epochs=1, verbose=0)


def pretrained_no_top(shared_dir):
    return str(shared_dir / "weights" / "mobilenet_2_5_224_tf_no_top.h5")


def test_full_mode_unfreezes_top_blocks_with_batchnorm_in_inference(shared_dir):
    # Pretrained weights: a random backbone with BatchNorm in inference mode has ~0 features.
    model = tiny_head_model(fine_tune="full", weights=pretrained_no_top(shared_dir))
    blocks = zoo.backbone_blocks(model)
    assert [name for name, _ in blocks][:3] == ["stem", "1", "2"] and blocks[-1][0] == "13"
    assert zoo.unfreeze_backbone(model, top_n_blocks=2) == ["12", "13"]
    backbone = model.get_layer("backbone")
    before = {layer.name: weights_of(layer) for layer in backbone.layers}
    train_steps(model)
    changed = {
        layer.name
        for layer in backbone.layers
        if any(
            not np.array_equal(old, new)
            for old, new in zip(before[layer.name], weights_of(layer), strict=True)
        )
    }
    # Only the convolutions of blocks 12 and 13 learn; BatchNorm statistics stay put.
    assert changed == {"conv_dw_12", "conv_pw_12", "conv_dw_13", "conv_pw_13"}
    assert zoo.unfreeze_backbone(model)[0] == "stem"
    trainable = {w.path for w in model.trainable_weights}
    assert "conv1/kernel" in trainable and "conv1_bn/gamma" not in trainable, trainable
    with pytest.raises(ValueError, match="top_n_blocks"):
        zoo.unfreeze_backbone(model, top_n_blocks=0)


def test_full_mode_through_the_runner_trains_the_head_then_the_top_block(shared_dir, tmp_path):
    # fine_tune="full" is trained by the recipe runner alone: head first, then the top block at
    # lr x full_lr_factor.
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 8, 28, 28, 3), dtype=np.uint8)
    write_image_folder(tmp_path / "images", {"a": images[0], "b": images[1]})
    weights = pretrained_no_top(shared_dir)
    metrics = run_recipe(
        "finetune_imagenet",
        *("--dataset", str(tmp_path / "images"), "--image-size", "28"),
        *("--fine-tune", "full", "--weights", weights),
        *("--model-option", "alpha=0.25", "--model-option", "image_size=32"),
        *("--epochs", "2", "--head-epochs", "1", "--unfreeze-blocks", "1"),
        *("--lr", "0.001", "--full-lr-factor", "0.1", "--batch-size", "8"),
        *("--out-dir", str(tmp_path / "run"), "--verbose", "0"),
    )
    assert metrics["epochs"] == 2
    trained = keras.models.load_model(tmp_path / "run" / "model.keras")
    assert float(trained.optimizer.learning_rate.numpy()) == pytest.approx(1e-4)
    pretrained = tiny_head_model(fine_tune="full", weights=weights).get_layer("backbone")
    changed = {
        layer.name
        for layer, before in zip(
            trained.get_layer("backbone").layers, pretrained.layers, strict=True
        )
        if any(
            not np.array_equal(old, new)
            for old, new in zip(weights_of(before), weights_of(layer), strict=True)
        )
    }
    # Block 13 alone learned, in phase two; its BatchNorm statistics stayed put.
    assert changed == {"conv_dw_13", "conv_pw_13"}


def test_mode_and_weights_errors(tmp_path):
    with pytest.raises(ValueError, match="num_classes must be 1000"):
        zoo.create("mobilenet", num_classes=10, weights=None, fine_tune="predict")
    with pytest.raises(ValueError, match="'predict', 'head', 'full'"):
        tiny_head_model(fine_tune="partial")
    with pytest.raises(ValueError, match="weights"):
        tiny_head_model(weights=str(tmp_path / "missing.h5"))
    with pytest.raises(ValueError, match="1 or 3 channels"):
        zoo.create("mobilenet", input_shape=(28, 28, 2), weights=None)
    with pytest.raises(ValueError, match="ImageNet classifier"):
        zoo.predict_labels(tiny_head_model(), np.zeros((1, 28, 28, 1)))


@pytest.mark.parametrize("name", ["mobilenet_v2", "efficientnet_b0"])
def test_weights_file_round_trip(name, tmp_path):
    first = zoo.create(
        name, input_shape=(32, 32, 3), num_classes=5, weights=None, fine_tune="head", image_size=32
    )
    path = tmp_path / "backbone.weights.h5"
    first.get_layer("backbone").save_weights(path)
    second = zoo.create(
        name,
        input_shape=(32, 32, 3),
        num_classes=5,
        weights=str(path),
        fine_tune="head",
        image_size=32,
    )
    expected = weights_of(first.get_layer("backbone"))
    for a, b in zip(expected, weights_of(second.get_layer("backbone")), strict=True):
        np.testing.assert_array_equal(a, b)


def test_assembled_mobilenet_v2_weights_load(shared_dir):
    path = shared_dir / "weights" / "mobilenet_v2_1.0_224_no_top.assembled.h5"
    model = zoo.create(
        "mobilenet_v2",
        input_shape=(224, 224, 3),
        num_classes=3,
        weights=str(path),
        fine_tune="head",
    )
    kernel = keras.ops.convert_to_numpy(model.get_layer("backbone").get_layer("Conv1").kernel)
    assert kernel.std() > 0.05  # trained filters, not the ~0.02 of a fresh He/Glorot init


def test_class_index_decoding(shared_dir, tmp_path):
    index = zoo.load_class_index(shared_dir / "weights" / "imagenet_class_index.json")
    assert index[0] == ("n01440764", "tench")
    probabilities = np.zeros((1, 1000))
    probabilities[0, [388, 3]] = [0.7, 0.2]
    decoded = zoo.backbones.decode_top_k(probabilities, 2, index)
    assert decoded == [[("n02510455", "giant_panda", 0.7), (*index[3], 0.2)]]
    broken = tmp_path / "index.json"
    broken.write_text(json.dumps({"0": ["n0", "x"]}))
    with pytest.raises(ValueError, match="class index"):
        zoo.load_class_index(broken)


@pytest.fixture
def offline_keras_env(tmp_path):
    """Environment for a fresh process in which Keras has no cached file (ImageNet weights, class
    index) and cannot download one, with or without a network: an empty KERAS_HOME, and HTTP(S) proxies at a local
    port that refuses connections (a socket bound to it, not listening, holds it meanwhile)."""
    (tmp_path / "keras_home").mkdir()
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        proxy = f"http://127.0.0.1:{blocker.getsockname()[1]}"
        names = ("http_proxy", "https_proxy")
        yield {
            "KERAS_HOME": str(tmp_path / "keras_home"),
            **{name: proxy for name in names + tuple(n.upper() for n in names)},
            "no_proxy": "",
            "NO_PROXY": "",
        }


def test_predict_labels_without_class_index_offline_says_to_pass_one(offline_keras_env):
    code = (
        "import os, pathlib, numpy as np, zoo\n"
        "m = zoo.create('mobilenet', input_shape=(32, 32, 3), alpha=0.25, weights=None,\n"
        "               image_size=32)\n"
        "cache = pathlib.Path(os.environ['KERAS_HOME'], 'models')\n"
        "for case in ('absent', 'damaged'):\n"
        "    try:\n"
        "        zoo.predict_labels(m, np.zeros((1, 32, 32, 3)))\n"
        "    except zoo.ClassIndexUnavailable as error:\n"
        "        print(case, error)\n"
        "    (cache / 'imagenet_class_index.json').write_text('{}')\n"
    )
    output = run_python(["-c", code], timeout=300, env=offline_keras_env).stdout
    messages = dict(line.split(" ", 1) for line in output.splitlines() if " Keras has " in line)
    assert set(messages) == {"absent", "damaged"}, output
    for message in messages.values():
        assert "URL fetch failure" in message and "Connection refused" in message
        assert message.endswith("pass class_index= the path of an imagenet_class_index.json")


def failing_command(arguments, env) -> str:
    """The one-line error of a command that must fail with exit 1 or 2 and no traceback."""
    result = subprocess.run(
        [sys.executable, *arguments],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode in (1, 2) and "Traceback" not in result.stderr, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ")
    return f"{result.returncode} {last}"


def test_predict_recipe_without_class_index_offline_fails_in_one_line(
    offline_keras_env, tmp_path, monkeypatch
):
    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(2):
        image = np.full((40, 30, 3), 60 * i, dtype=np.uint8)
        (photos / f"{i}.png").write_bytes(tf.io.encode_png(image).numpy())
    flags = ["--fine-tune", "predict", "--dataset", str(photos), "--weights", "none"]
    flags += ["--image-size", "32"]
    last = failing_command(
        ["-m", "recipes.finetune_imagenet", *flags, "--out-dir", str(tmp_path / "a")],
        offline_keras_env,
    )
    assert last.startswith("1 error: Keras has no cached copy of the ImageNet class index")
    assert "URL fetch failure" in last
    assert last.endswith("pass --class-index PATH, the path of an imagenet_class_index.json")
    assert not (tmp_path / "a").exists()
    # What the message asks for is what fixes it.
    index = tmp_path / "index.json"
    index.write_text(json.dumps({str(i): [f"n{i:08d}", f"class{i}"] for i in range(1000)}))
    out = tmp_path / "b"
    predictions = run_recipe(
        "finetune_imagenet", *flags, "--class-index", str(index), "--out-dir", str(out)
    )["predictions"]
    assert sorted(predictions) == ["0.png", "1.png"]
    assert all(
        len(top) == 5 and top[0]["label"].startswith("class") for top in predictions.values()
    )
    assert (out / "predictions.csv").is_file()


def test_zoo_command_fails_in_one_line(offline_keras_env, shared_dir, tmp_path):
    weights_url = "keras-applications/mobilenet/mobilenet_2_5_224_tf.h5"
    cache = Path(offline_keras_env["KERAS_HOME"], "models")
    predict = ["-m", "zoo", "predict", "mobilenet", "--option", "alpha=0.25"]
    offline = failing_command([*predict, "photo.jpg"], offline_keras_env)
    assert offline.startswith("1 error: Keras has no cached copy of the backbone's ImageNet")
    assert weights_url in offline and "Connection refused" in offline
    assert offline.endswith(f"copy that file into {cache}, or pass --weights PATH")
    unknown = failing_command([*predict[:3], "mobilenett", "photo.jpg"], offline_keras_env)
    assert unknown.startswith("2 error: Unknown model 'mobilenett'. Did you mean 'mobilenet'?")
    # What the message asks for is what gets past it: the weights file, here by --weights.
    not_an_image = tmp_path / "notes.jpg"
    not_an_image.write_text("not an image")
    index = shared_dir / "weights" / "imagenet_class_index.json"
    weights = shared_dir / "weights" / "mobilenet_2_5_224_tf.h5"
    flags = ["--weights", str(weights), "--class-index", str(index)]
    unreadable = failing_command([*predict, *flags, str(not_an_image)], offline_keras_env)
    assert unreadable.startswith(f"1 error: {str(not_an_image)!r} is not an image Pillow can read")


def test_fine_tuning_offline_without_cached_weights_fails_in_one_line(
    offline_keras_env, cifar_shaped_folder, tmp_path
):
    out = tmp_path / "run"
    flags = ["--dataset", str(cifar_shaped_folder), "--image-size", "32"]
    error = failing_command(
        ["-m", "recipes.finetune_imagenet", *flags, "--out-dir", str(out)], offline_keras_env
    )
    assert error.startswith("1 error: Keras has no cached copy of the backbone's ImageNet weights")
    assert "mobilenet_2_5_224_tf_no_top.h5" in error and error.endswith("or pass --weights PATH")
    assert not out.exists()


@pytest.fixture
def keras_home(shared_dir, tmp_path):
    """A KERAS_HOME whose cache holds the offline ImageNet weights under Keras' own names."""
    models = tmp_path / "keras_home" / "models"
    models.mkdir(parents=True)
    for name in ("mobilenet_2_5_224_tf.h5", "mobilenet_2_5_224_tf_no_top.h5"):
        shutil.copy(shared_dir / "weights" / name, models / name)
    return models.parent


def run_with_keras_home(arguments, keras_home):
    """Python's output in a fresh process: Keras reads KERAS_HOME once, when it is imported."""
    return run_python(arguments, timeout=300, env={"KERAS_HOME": str(keras_home)}).stdout


@pytest.mark.slow
def test_predict_mode_labels_sample_photos(shared_dir, keras_home):
    photos = sorted((shared_dir / "images" / "imagenet-samples").iterdir())
    output = run_with_keras_home(
        [
            "-m",
            "zoo",
            "predict",
            "mobilenet",
            *map(str, photos),
            "--option",
            "alpha=0.25",
            "--class-index",
            str(shared_dir / "weights" / "imagenet_class_index.json"),
            "--top-k",
            "3",
            "--json",
        ],
        keras_home,
    )
    results = [json.loads(line) for line in output.splitlines()]
    top1 = {Path(r["image"]).name: r["labels"][0][1] for r in results}
    assert top1 == SAMPLE_LABELS
    assert all(len(r["labels"]) == 3 and r["labels"][0][2] > 0.3 for r in results)


@pytest.mark.slow
def test_imagenet_no_top_weights_come_from_keras_cache(shared_dir, keras_home):
    code = (
        "import numpy as np, zoo\n"
        "m = zoo.create('mobilenet', input_shape=(28, 28, 1), num_classes=10, alpha=0.25,\n"
        "               weights='imagenet', fine_tune='head', image_size=224)\n"
        "k = m.get_layer('backbone').get_layer('conv_pw_13').kernel.numpy()\n"
        "print(float(np.abs(k).sum()))\n"
    )
    from_cache = float(run_with_keras_home(["-c", code], keras_home).split()[-1])
    from_file = tiny_head_model(weights=pretrained_no_top(shared_dir), image_size=224)
    kernel = from_file.get_layer("backbone").get_layer("conv_pw_13").kernel
    assert from_cache == pytest.approx(float(np.abs(keras.ops.convert_to_numpy(kernel)).sum()))


@pytest.mark.slow
def test_head_mode_beats_random_backbone(shared_dir, fashion_mnist_dir):
    train_images, train_labels = fashion_mnist_subset(fashion_mnist_dir, per_class=100)
    test_images, test_labels = fashion_mnist_subset(fashion_mnist_dir, per_class=30, split="test")
    accuracies = {}
    for weights in (pretrained_no_top(shared_dir), None):
        keras.utils.set_random_seed(0)
        model = tiny_head_model(weights=weights, image_size=96, head_dropout=0.0)
        model.compile(
            optimizer=keras.optimizers.Adam(1e-2),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        model.fit(train_images, train_labels, batch_size=50, epochs=5, verbose=0)
        accuracies[weights is None] = model.evaluate(test_images, test_labels, verbose=0)[1]
    pretrained, random = accuracies[False], accuracies[True]
    assert pretrained > 0.65 and pretrained > random + 0.15, accuracies
