"""Saved files load in plain Keras: what the package writes now, after one import, and what earlier
versions wrote.

What the package writes is loaded in one fresh process per case, which first checks that each file
naming a class of the project fails to load without the import, then runs the import line the
docs give (docs/architecture.md, "Saved models") and compares each model with the file loaded
here: tiny models with every optimizer, wrapper, schedule and loss, and zoo models, after
`import recipes`; every file of a short run of each recipe (and runs with Lookahead, SWA, a warmup
schedule and a hinge loss) after `import recipes` (slow); `zoo.create(...).save` files after
`import zoo`.

`tests/data/legacy_custom_objects.keras` was saved before `recipes/` was split into subpackages: its
optimizer, schedule and loss name the old module paths (`recipes.optim.momentum`,
`recipes.schedules`, ...). Keras resolves them by their registered names, which must not change.
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest

import layers
import recipes.optim
import zoo
from recipes.optim import (
    LOSS_NAMES,
    OPTIMIZER_NAMES,
    SCHEDULE_NAMES,
    Lookahead,
    StochasticWeightAveraging,
    get_loss,
    get_optimizer,
    get_schedule,
)
from tests.conftest import REPO_ROOT, SHORT_RUNS_GROUP, run_python
from tests.load_saved_models import model_record
from tests.test_recipes import RECIPES

DATA = REPO_ROOT / "tests" / "data"


def test_model_saved_by_the_flat_layout_loads_with_its_optimizer_schedule_and_loss():
    model = keras.models.load_model(DATA / "legacy_custom_objects.keras")
    reference = np.load(DATA / "legacy_custom_objects_io.npz")

    # Saved on another CPU, whose float32 kernels round the sums in another order.
    np.testing.assert_allclose(
        model.predict(reference["images"], verbose=0), reference["predictions"], rtol=1e-5
    )
    assert isinstance(model.optimizer, recipes.optim.TFTrainMomentum)
    assert isinstance(model.optimizer._learning_rate, recipes.optim.LinearWarmup)
    assert model.optimizer.iterations.numpy() == 2
    assert type(model.loss).__name__ == "SoftmaxCrossEntropy"
    layer_types = {type(layer) for layer in model.layers}
    assert {
        layers.MeanImageSubtraction,
        layers.LocalResponseNormalization,
        layers.GroupNormalization,
        layers.LocallyConnected2D,
        layers.WeightNormalization,
        layers.Maxout,
    } <= layer_types
    # Training goes on from the restored optimizer state.
    model.fit(reference["images"], np.arange(16) % 3, batch_size=8, epochs=1, verbose=0)
    assert model.optimizer.iterations.numpy() == 4


# Runs beyond each recipe's defaults: Lookahead around Adam with a warmup schedule; stochastic
# weight averaging with a hinge loss and a step schedule.
EXTRA_RUNS = {
    "lookahead_warmup": (
        "weightnorm_fashion_mnist",
        "--lookahead --lr-schedule cosine --warmup-epochs 0.5",
    ),
    "swa_hinge": (
        "lenet5_fashion_mnist",
        "--swa-start-epoch 1 --epochs 2 --loss svm_hinge --lr-schedule step",
    ),
}


def docs_import_line(package: str) -> str:
    """The import line of the first code block under "Saved models" in docs/architecture.md."""
    text = (REPO_ROOT / "docs" / "architecture.md").read_text()
    section = text.split("## Saved models", 1)[1]
    block = section.split("```python", 1)[1].split("```", 1)[0]
    return next(line for line in block.splitlines() if re.match(rf"import {package}\b", line))


@pytest.fixture(scope="module")
def recipe_files(short_recipe_run) -> list[str]:
    """Every .keras file of a short run of each recipe and of the `EXTRA_RUNS`."""
    runs = [(name, "") for name in RECIPES] + list(EXTRA_RUNS.values())
    files = []
    for recipe, extra in runs:
        run_dir, _ = short_recipe_run(recipe, extra)
        found = sorted(map(str, run_dir.rglob("*.keras")))
        assert len(found) == 3, found  # model.keras, checkpoints/{best,last}.keras
        files += found
    return files


def tiny_model(**compile_options) -> keras.Model:
    """A compiled Dense classifier, its optimizer built (so that a save stores its variables)."""
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    model.compile(**compile_options)
    model.optimizer.build(model.trainable_variables)
    return model


@pytest.fixture(scope="module")
def optimization_files(tmp_path_factory) -> list[str]:
    """Tiny models: trained one step with each tf.train optimizer, a Keras one (AdamW), and
    momentum under both wrappers with a warmup schedule; compiled with each schedule and loss."""
    directory = tmp_path_factory.mktemp("optim")
    images = np.random.default_rng(1).normal(size=(8, 4)).astype("float32")
    labels = np.arange(8) % 3
    cross_entropy = get_loss("cross_entropy")
    timing = {"steps_per_epoch": 1, "epochs": 4}
    warmup = get_schedule("cosine", 0.1, **timing, warmup_epochs=2)
    trained = {name: get_optimizer(name, 0.01) for name in (*OPTIMIZER_NAMES, "AdamW")}
    trained["wrapped"] = StochasticWeightAveraging(
        Lookahead(get_optimizer("Momentum", warmup, momentum=0.9), k=1)
    )
    compiled = {
        f"schedule_{name}": {
            "optimizer": get_optimizer("Momentum", get_schedule(name, 0.1, **timing)),
            "loss": cross_entropy,
        }
        for name in SCHEDULE_NAMES
    } | {f"loss_{name}": {"optimizer": "sgd", "loss": get_loss(name)} for name in LOSS_NAMES}
    files = []
    for name, optimizer in trained.items():
        model = tiny_model(optimizer=optimizer, loss=cross_entropy)
        model.fit(images, labels, epochs=1, verbose=0)
        files.append(str(directory / f"{name}.keras"))
        model.save(files[-1])
    for name, compile_options in compiled.items():
        files.append(str(directory / f"{name}.keras"))
        tiny_model(**compile_options).save(files[-1])
    return files


@pytest.fixture(scope="module")
def zoo_files(tmp_path_factory) -> list[str]:
    """`zoo.create(...).save` files: models with the custom layers, and a backbone head trained
    one step with Keras' own optimizer and loss."""
    directory = tmp_path_factory.mktemp("zoo")
    small = {
        "lenet5": {"norm": "weight", "init": "sparse"},
        "alexnet_small": {"norm": "lrn"},
        "resnet20": {"norm": "group"},
        "maxout_conv": {},
        "locally_connected_net": {},
    }
    files = []
    for name, knobs in small.items():
        files.append(str(directory / f"{name}.keras"))
        zoo.create(name, input_shape=(28, 28, 1), num_classes=3, **knobs).save(files[-1])
    head = zoo.create(
        "mobilenet",
        input_shape=(28, 28, 1),
        num_classes=3,
        weights=None,
        fine_tune="head",
        alpha=0.25,
        image_size=32,
    )
    head.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    head.fit(np.zeros((4, 28, 28, 1)), np.arange(4) % 3, epochs=1, verbose=0)
    files.append(str(directory / "mobilenet_head.keras"))
    head.save(files[-1])
    return files


def load_in_fresh_process(files: list[str], import_line: str, tmp_path: Path) -> dict:
    """What tests/load_saved_models.py reports of `files` with `import_line`, and its records."""
    listing = tmp_path / "files.json"
    listing.write_text(json.dumps(files))
    out = tmp_path / "records.npz"
    result = run_python(
        ["tests/load_saved_models.py", str(listing), str(out), import_line],
        timeout=900,
        env={"PYTHONPATH": str(REPO_ROOT)},
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    with np.load(out) as records:
        report["records"] = {key: records[key] for key in records.files}
    return report


def project_classes(path: str) -> set[str]:
    """The project's classes a .keras file names (registered as `layers>X`, `zoo>X`,
    `recipes>X`)."""
    with zipfile.ZipFile(path) as archive:
        config = archive.read("config.json").decode()
    return set(re.findall(r'"(?:layers|zoo|recipes)>(\w+)"', config))


def assert_fails_without_import(files: list[str], failures: dict[str, str]) -> None:
    """A file that names a class of the project failed to load without the import, with Keras'
    message naming one of them; a file of Keras' classes only loaded."""
    for path in files:
        classes = project_classes(path)
        if not classes:
            assert path not in failures, failures[path]
            continue
        message = failures.get(path, "it loaded")
        named = re.findall(r"Could not locate class '(\w+)'", message)
        assert set(named) & classes, (path, classes, message[:500])


def assert_same_as_here(files: list[str], records: dict[str, np.ndarray]) -> None:
    """Each file's record from the fresh process equals that of the file loaded here."""
    for i, path in enumerate(files):
        expected = model_record(keras.models.load_model(path))
        got = {
            key.split("/", 1)[1]: value for key, value in records.items() if key.startswith(f"{i}/")
        }
        assert sorted(got) == sorted(expected), path
        for key, value in expected.items():
            if value.dtype.kind == "U":
                np.testing.assert_array_equal(got[key], value, err_msg=f"{path} {key}")
            else:
                np.testing.assert_allclose(got[key], value, rtol=1e-6, err_msg=f"{path} {key}")


def check_import_recipes_loads(files: list[str], tmp_path: Path) -> None:
    """In one fresh process: each file that needs the docs' import fails without it and loads
    with it, as it loads here; the import loads neither the application nor the search."""
    report = load_in_fresh_process(files, docs_import_line("recipes"), tmp_path)
    assert_fails_without_import(files, report["failures"])
    assert_same_as_here(files, report["records"])
    assert not [
        m for m in report["project_modules"] if m.startswith(("recipes.train", "recipes.search"))
    ]
    assert report["other_modules"] == []


def test_import_recipes_loads_every_optimizer_schedule_and_loss(
    optimization_files, zoo_files, tmp_path
):
    check_import_recipes_loads(optimization_files + zoo_files, tmp_path)


@pytest.mark.slow
@pytest.mark.xdist_group(SHORT_RUNS_GROUP)
def test_import_recipes_loads_every_file_a_recipe_writes(recipe_files, tmp_path):
    assert all(project_classes(path) for path in recipe_files)
    check_import_recipes_loads(recipe_files, tmp_path)


def test_import_zoo_loads_what_zoo_writes(zoo_files, tmp_path):
    report = load_in_fresh_process(zoo_files, "import zoo", tmp_path)
    assert all(project_classes(path) for path in zoo_files)
    assert_fails_without_import(zoo_files, report["failures"])
    assert_same_as_here(zoo_files, report["records"])
    assert not [m for m in report["project_modules"] if m.startswith("recipes")]
