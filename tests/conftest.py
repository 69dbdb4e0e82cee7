"""Shared test fixtures and helpers: quiet TensorFlow, paths to the offline material beside the
repo, image-folder datasets, waiting on a run's epochs, running Python in a fresh process, mixed
precision policies."""

import os
import subprocess
import sys
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras
import ml_dtypes
import numpy as np
import pytest
import tensorflow as tf

from recipes.__main__ import recipe_defaults
from recipes.callbacks.checkpoints import read_state
from recipes.train.execution import MIXED_PRECISIONS, dtype_policy
from recipes.train.runner import recipe_main

REPO_ROOT = Path(__file__).resolve().parent.parent
# The backbones every run of the suite checks; the other (larger) ones are swept on demand
# (`pytest -m sweep`): MobileNet is the fine-tuning headline, EfficientNet the one whose export
# needs the training=False endpoint.
CI_BACKBONES = ("mobilenet", "efficientnet_b0")
SHARED_DIR = REPO_ROOT.parent / "shared"
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


def model_cases(
    names: Sequence[str],
    *,
    fast: Collection[str] = (),
    sweep: Collection[str] = (),
    known_failures: Mapping[str, str] | None = None,
) -> list:
    """`pytest.param`s of model names for `parametrize`: marked slow unless in `fast`, `sweep`
    (outside the default run) when in `sweep`, and a strict expected failure, with its reason,
    when in `known_failures`."""
    known_failures = known_failures or {}
    params = []
    for name in names:
        marks = [] if name in fast else [pytest.mark.slow]
        if name in sweep:
            marks.append(pytest.mark.sweep)
        if name in known_failures:
            marks.append(pytest.mark.xfail(reason=known_failures[name], strict=True))
        params.append(pytest.param(name, marks=marks))
    return params


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The offline material (ImageNet weights, sample photos) that lives beside the checkout."""
    if not (SHARED_DIR / "weights").is_dir():
        pytest.skip(f"offline ImageNet material not found at {SHARED_DIR}")
    return SHARED_DIR


@pytest.fixture(scope="session")
def fashion_mnist_dir() -> Path:
    """Debian's Fashion-MNIST IDX files (`apt-get install dataset-fashion-mnist`)."""
    if not (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"Fashion-MNIST IDX files not found at {FASHION_MNIST_DIR}")
    return FASHION_MNIST_DIR


def write_image_folder(root: Path, images: Mapping[str, np.ndarray]) -> Path:
    """A class-per-folder dataset: `root/<class>/<i>.png` for each class's uint8 images
    (N, H, W, C); returns `root`."""
    for class_name, class_images in images.items():
        (root / class_name).mkdir(parents=True)
        for i, image in enumerate(class_images):
            (root / class_name / f"{i}.png").write_bytes(tf.io.encode_png(image).numpy())
    return root


@pytest.fixture(scope="session")
def cifar_shaped_folder(tmp_path_factory) -> Path:
    """32x32 RGB images in 3 class folders: small data of CIFAR-10's shape."""
    rng = np.random.default_rng(0)
    colours = ([200, 30, 30], [30, 200, 30], [30, 30, 200])
    noisy = [rng.normal(colour, 40, size=(12, 32, 32, 3)).clip(0, 255) for colour in colours]
    images = {f"class{label}": array.astype(np.uint8) for label, array in enumerate(noisy)}
    return write_image_folder(tmp_path_factory.mktemp("cifar_like"), images)


# Recipes whose default data is CIFAR-10: tested on `cifar_shaped_folder`, at 32x32.
CIFAR_SHAPED = frozenset(
    {
        "alexnet_lrn_cifar10",
        "vgg_small_cifar10",
        "resnet20_cifar10",
        "resnet20_groupnorm_small_batch",
    }
)
# pytest-xdist runs the tests of this group in one process (`--dist loadgroup`), so that the
# short runs they share are trained once.
SHORT_RUNS_GROUP = "short_recipe_runs"


def run_recipe(name: str, *flags: str) -> dict:
    """Runs recipe `name` with command-line `flags` in this process; returns its metrics."""
    module = __import__(f"recipes.{name}", fromlist=["DEFAULTS"])
    return recipe_main(name, module.__doc__, module.DEFAULTS, list(flags))


def short_run_flags(name: str, cifar_shaped_folder: Path) -> list[str]:
    """Flags for a quick one-epoch run of recipe `name` on tiny data (add --out-dir)."""
    flags = ["--epochs", "1", "--verbose", "0"]
    if name in CIFAR_SHAPED:
        flags += ["--dataset", str(cifar_shaped_folder), "--image-size", "32"]
        flags += ["--batch-size", "8"]
    elif name == "finetune_imagenet":
        flags += ["--dataset", str(cifar_shaped_folder), "--weights", "none", "--fine-tune"]
        flags += ["head", "--image-size", "32", "--batch-size", "8"]
    else:
        flags += ["--dataset", "sample", "--batch-size", "256"]
    if recipe_defaults(name).get("optim", {}).get("swa_start_epoch") is not None:
        flags += ["--swa-start-epoch", "1"]  # averaging over the one epoch, so it still runs
    return flags


@pytest.fixture(scope="session")
def short_recipe_run(tmp_path_factory, cifar_shaped_folder) -> Callable[..., tuple[Path, dict]]:
    """`short_recipe_run(name, extra="")`: the run directory and metrics of a one-epoch run of
    recipe `name` on tiny data (`short_run_flags`) with the `extra` flags, trained on first use
    and shared by the tests of the process, which only read it. Tests using it belong to
    `SHORT_RUNS_GROUP`."""
    runs: dict[tuple[str, str], tuple[Path, dict]] = {}

    def run(name: str, extra: str = "") -> tuple[Path, dict]:
        if (name, extra) not in runs:
            run_dir = tmp_path_factory.mktemp(f"short_{name}")
            flags = [*short_run_flags(name, cifar_shaped_folder), *extra.split()]
            runs[name, extra] = run_dir, run_recipe(name, *flags, "--out-dir", str(run_dir))
        return runs[name, extra]

    return run


def wait_for_finished_epochs(
    run_dir: Path,
    epochs: int,
    processes: Sequence[subprocess.Popen],
    timeout: float = 240.0,
    describe: Callable[[], str] = str,
) -> None:
    """Waits until the run's checkpoint state counts `epochs` finished epochs, while every one of
    `processes` still runs (so that a test can then kill them mid-run).

    Fails if a process ends first or `timeout` seconds pass; `describe()` adds to the message
    (worker logs, say).
    """
    deadline = time.monotonic() + timeout
    while (done := (read_state(run_dir) or {}).get("epochs_done", 0)) < epochs:
        assert all(p.poll() is None for p in processes), (
            f"the run ended after {done} epochs, before it could be killed\n{describe()}"
        )
        assert time.monotonic() < deadline, f"{done} epochs done after {timeout} s\n{describe()}"
        time.sleep(0.05)


def run_python(
    arguments: Sequence[str], *, timeout: float, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess:
    """Runs `python <arguments>` in a fresh process from the repository root and returns it.

    `env` is added to this process's environment. No PYTHONPATH is set unless `env` sets one, so
    that a script run by its path is tested with its own path set-up. The test fails, showing the
    end of the process's output, unless it exits with 0.
    """
    result = subprocess.run(
        [sys.executable, *arguments],
        cwd=REPO_ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, f"{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory) -> Path:
    """A finished LeNet-5 run on the embedded sample: one epoch, per-channel standardization (so
    that its preprocessing has training statistics), in float32 (`auto` picks mixed_bfloat16 on
    CPUs with native bfloat16), since exports compute in float32 and are compared with the run to
    float32 rounding. Tests that write into a run copy it."""
    run_dir = tmp_path_factory.mktemp("trained") / "run"
    flags = ["--dataset", "sample", "--epochs", "1", "--preprocessing", "per_channel"]
    flags += ["--precision", "float32"]
    run_recipe("lenet5_fashion_mnist", *flags, "--verbose", "0", "--out-dir", str(run_dir))
    return run_dir


MIXED_POLICIES = MIXED_PRECISIONS
# What computing in a policy's compute dtype may cost, relative to the largest magnitude of the
# float32 result: about ten units in the last place (float16 keeps 11 significant bits, bfloat16
# 8). The tolerance stated in docs/layers.md and docs/losses.md.
SCALE_TOLERANCE = {"mixed_float16": 5e-3, "mixed_bfloat16": 4e-2}


def half_ulp(policy: str) -> float:
    """The largest relative error of one rounding to the compute dtype of `policy`: 2**-11 for
    float16 (11 significant bits), 2**-8 for bfloat16 (8)."""
    return float(ml_dtypes.finfo(keras.DTypePolicy(policy).compute_dtype).eps) / 2


@pytest.fixture(params=MIXED_POLICIES)
def global_mixed_policy(request: pytest.FixtureRequest) -> Iterator[str]:
    """Each mixed policy as the global dtype policy for the test; the previous one is restored
    afterwards, so no test leaks its policy into the next (`recipes.train.execution.dtype_policy`,
    as the runner builds models)."""
    with dtype_policy(request.param):
        yield request.param
