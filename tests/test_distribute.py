"""Distributed training: strategy names, TF_CONFIG roles, outputs per worker, sync-BN, and real
runs on MirroredStrategy (2 logical CPU devices) and MultiWorkerMirroredStrategy (2 processes)."""

import json
import os
import socket
import subprocess
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import NamedTuple

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo
from recipes.callbacks.checkpoints import STATE_FILE, read_history, read_state
from recipes.lenet5_fashion_mnist import DEFAULTS as LENET5_RECIPE
from recipes.optim.optimizers import OPTIMIZER_NAMES
from recipes.train.config import DistributeConfig, RunConfig, resolve_config
from recipes.train.distribute import (
    STRATEGY_NAMES,
    ClusterRole,
    canonical_strategy_name,
    cluster_role,
    configure_cpu_replicas,
    continue_from_chief,
    discard_worker_outputs,
    is_chief,
    make_tf_config,
    parse_tf_config,
    shard_datasets,
    strategy_from_config,
    synchronize_batch_norm,
    worker_output_dir,
)
from recipes.train.runner import run
from tests.conftest import REPO_ROOT, run_python, wait_for_finished_epochs

# Weights after the same training on one device and on several replicas differ only by the
# order of floating-point sums (per-replica gradients added up instead of one batch's gradient).
WEIGHT_TOLERANCE = 5e-4
OPTIMIZER_TOLERANCE = 1e-5
# In float32: the runs are compared to float32 rounding, and `auto` trains in mixed_bfloat16 on
# CPUs with native bfloat16.
SMALL_RUN = {
    "precision": "float32",
    "dataset": "sample",
    "validation_fraction": 0.8,
    "batch_size": 64,
    "epochs": 1,
    "verbose": 0,
    "seed": 3,
}


def max_weight_difference(a: keras.Model, b: keras.Model) -> float:
    assert len(a.weights) == len(b.weights)
    return max(
        float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
        for x, y in zip(a.get_weights(), b.get_weights(), strict=True)
    )


# ------------------------------------------------------------------------------------------------
# Names and TF_CONFIG


@pytest.mark.parametrize(
    ("given", "expected"),
    [("default", "default"), ("Mirrored", "mirrored"), ("multi-worker", "multi_worker")],
)
def test_strategy_names_are_case_and_dash_insensitive(given, expected):
    assert canonical_strategy_name(given) == expected


def test_unknown_strategy_lists_the_valid_names():
    with pytest.raises(ValueError, match="Unknown strategy 'horovod'") as error:
        canonical_strategy_name("horovod")
    for name in STRATEGY_NAMES:
        assert name in str(error.value)


def test_parameter_server_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="ParameterServerStrategy.*multi_worker"):
        canonical_strategy_name("parameter_server")


def test_worker_zero_is_chief_without_a_chief_task():
    addresses = ["127.0.0.1:2222", "127.0.0.1:2223"]
    roles = [parse_tf_config(make_tf_config(addresses, i)) for i in range(2)]
    assert roles[0] == ClusterRole("worker", 0, 2, has_chief_task=False)
    assert [role.is_chief for role in roles] == [True, False]
    assert roles[1].worker_dir_name == "workertemp_worker_1"


def test_chief_task_is_chief_and_counts_as_a_worker():
    cluster = {"chief": ["a:1"], "worker": ["b:1", "c:1"]}
    chief = parse_tf_config(json.dumps({"cluster": cluster, "task": {"type": "chief"}}))
    worker0 = parse_tf_config(
        json.dumps({"cluster": cluster, "task": {"type": "worker", "index": 0}})
    )
    assert chief.is_chief and chief.num_workers == 3
    assert not worker0.is_chief


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"task": {"type": "worker", "index": 0}}', 'needs "cluster"'),
        ('{"cluster": {"worker": "a:1"}, "task": {"type": "worker"}}', "list of"),
        ('{"cluster": {"worker": ["a:1"]}}', 'needs "task"'),
        ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "ps"}}', "task type 'ps'"),
        ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 1}}', "range"),
        ('{"cluster": {"chief": ["a:1", "b:1"]}, "task": {"type": "chief"}}', 'one "chief"'),
    ],
)
def test_malformed_tf_config_is_rejected_with_the_reason(text, message):
    with pytest.raises(ValueError, match=message):
        parse_tf_config(text)


def test_cluster_role_reads_the_environment():
    assert cluster_role({}) is None
    environ = {"TF_CONFIG": make_tf_config(["h:1", "h:2"], 1)}
    assert cluster_role(environ) == ClusterRole("worker", 1, 2, has_chief_task=False)


# ------------------------------------------------------------------------------------------------
# Configuration and single-process behaviour


def test_flags_reach_the_config():
    config = resolve_config(
        {}, ["--strategy", "mirrored", "--sync-bn", "--cpu-replicas", "2"], "p", "d"
    )
    assert config.distribute == DistributeConfig("mirrored", sync_bn=True, cpu_replicas=2)
    assert RunConfig().distribute == DistributeConfig("default", sync_bn=False, cpu_replicas=None)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"strategy": "default", "cpu_replicas": 2}, "--cpu-replicas.*mirrored"),
        ({"strategy": "multi_worker", "out_dir": None}, "needs --out-dir"),
        ({"strategy": "multi_worker", "out_dir": "runs/x"}, "needs the TF_CONFIG"),
        ({"strategy": "nccl"}, "Accepted: default, mirrored"),
    ],
)
def test_bad_strategy_configs_fail_before_anything_runs(monkeypatch, overrides, message):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match=message):
        strategy_from_config(RunConfig.from_dict(overrides))


def test_cpu_replicas_after_tensorflow_started_explain_what_to_do():
    tf.constant(1.0)  # TensorFlow's devices are initialized from here on
    with pytest.raises(RuntimeError, match="fresh process"):
        configure_cpu_replicas(3)
    with pytest.raises(ValueError, match="positive integer"):
        configure_cpu_replicas(0)


def test_default_strategy_writes_to_the_run_dir_and_keeps_it(tmp_path):
    strategy = strategy_from_config(RunConfig())
    assert is_chief(strategy)
    assert worker_output_dir(tmp_path, strategy) == tmp_path
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss="mse")
    weights = model.get_weights()
    assert continue_from_chief(model, strategy, 4) == 4  # nothing to agree on with one process
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), weights, strict=True))
    discard_worker_outputs(tmp_path, strategy)
    assert tmp_path.is_dir()


def test_pipelines_are_sharded_by_data():
    datasets = shard_datasets({"train": tf.data.Dataset.range(8).batch(2)})
    policy = datasets["train"].options().experimental_distribute.auto_shard_policy
    assert policy == tf.data.experimental.AutoShardPolicy.DATA


def test_sync_bn_rewrites_every_batchnorm_and_keeps_weights(tmp_path):
    model = zoo.create("lenet5", input_shape=(28, 28, 1), num_classes=10, norm="batch")
    synced = synchronize_batch_norm(model)
    norms = [layer for layer in synced.layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert len(norms) >= 3 and all(layer.synchronized for layer in norms)
    assert max_weight_difference(model, synced) == 0.0
    synced.save(tmp_path / "m.keras")
    reloaded = keras.models.load_model(tmp_path / "m.keras")
    assert all(
        layer.synchronized
        for layer in reloaded.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    )


def test_sync_bn_leaves_models_without_batchnorm_alone():
    model = zoo.create("mlp", input_shape=(28, 28, 1), num_classes=10, width=8)
    assert synchronize_batch_norm(model) is model


# ------------------------------------------------------------------------------------------------
# Real distributed runs


@pytest.mark.slow
def test_mirrored_on_two_cpu_replicas_matches_one_device(tmp_path):
    """Same global batch and seed: MirroredStrategy ends with the default strategy's weights."""
    batch_norm = {
        **SMALL_RUN,
        "model": "lenet5",
        "norm": "batch",
        "optimizer": "Momentum",
        "tta": "flip",
    }
    mirrored = {"strategy": "mirrored", "cpu_replicas": 2}
    spec = {
        "cpu_replicas": 2,
        "out_dir": str(tmp_path),
        "runs": {
            "default": batch_norm,
            "mirrored_sync_bn": {**batch_norm, **mirrored, "sync_bn": True},
            "mirrored_local_bn": {**batch_norm, **mirrored},
        },
        "optimizers": list(OPTIMIZER_NAMES),
    }
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(json.dumps(spec))
    run_python(["tests/mirrored_cases.py", str(spec_path)], timeout=400)

    def final_model(name: str) -> keras.Model:
        return keras.models.load_model(tmp_path / name / "model.keras", compile=False)

    one_device = final_model("default")
    assert max_weight_difference(one_device, final_model("mirrored_sync_bn")) < WEIGHT_TOLERANCE
    # Test-time augmentation evaluates a mirrored model as it does the one-device model.
    metrics = {
        name: json.loads((tmp_path / name / "metrics.json").read_text())
        for name in ("default", "mirrored_sync_bn")
    }
    assert metrics["mirrored_sync_bn"]["test_accuracy_tta"] == pytest.approx(
        metrics["default"]["test_accuracy_tta"], abs=2e-3
    )
    # Without synchronization each replica normalizes with its half-batch statistics: a
    # different training, which is what --sync-bn is for.
    assert max_weight_difference(one_device, final_model("mirrored_local_bn")) > 0.01

    # Every custom layer, trained with every tf.train optimizer, on one device and mirrored.
    weights = np.load(tmp_path / "optimizers.npz")
    for name in spec["optimizers"]:
        for key in [k for k in weights.files if k.startswith(f"{name}/default/")]:
            np.testing.assert_allclose(
                weights[key.replace("/default/", "/mirrored/")],
                weights[key],
                atol=OPTIMIZER_TOLERANCE,
                err_msg=f"{name} under MirroredStrategy",
            )


def free_ports(count: int) -> list[int]:
    """Ports the OS reports free (bound to port 0, then released for the workers to take)."""
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]


EXCHANGE_WORKER = "tests.continue_from_chief_worker"


class Cluster(NamedTuple):
    workers: list[subprocess.Popen]
    logs: list[Path]

    def log_tails(self) -> str:
        return "\n".join(log.read_text()[-3000:] for log in self.logs)


def start_cluster(module: str, flags: list[str], cwd: Path, log_name: str) -> Cluster:
    """Two worker processes of `python -m module *flags` on free 127.0.0.1 ports."""
    addresses = [f"127.0.0.1:{port}" for port in free_ports(2)]
    logs = [cwd / f"{log_name}{index}.log" for index in range(2)]
    workers = []
    for index, log in enumerate(logs):
        env = {
            **os.environ,
            "TF_CONFIG": make_tf_config(addresses, index),
            "PYTHONPATH": str(REPO_ROOT),
        }
        with open(log, "w") as out:
            workers.append(
                subprocess.Popen(
                    [sys.executable, "-m", module, *flags],
                    cwd=cwd,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
    return Cluster(workers, logs)


def finish_cluster(cluster: Cluster, timeout: float = 300) -> None:
    """Waits for both workers and asserts they succeeded; kills any left on the way out."""
    try:
        codes = [worker.wait(timeout=timeout) for worker in cluster.workers]
    finally:
        kill_cluster(cluster)
    assert codes == [0, 0], cluster.log_tails()


def kill_cluster(cluster: Cluster) -> None:
    for worker in cluster.workers:
        if worker.poll() is None:
            worker.kill()
            worker.wait()


@pytest.mark.slow
def test_multi_worker_two_processes_train_and_the_chief_saves(tmp_path):
    """Two real worker processes on 127.0.0.1 under MultiWorkerMirroredStrategy."""
    config = {
        **SMALL_RUN,
        "model": "mlp",
        "model_options": {"width": 32},
        "norm": "weight",  # its data-dependent init all-reduces across workers
        "activation": "maxout",
        "optimizer": "RMSProp",
        "lr": 0.001,
        "tta": "flip",
    }
    flags = [
        "--strategy", "multi_worker",
        "--model", config["model"],
        "--model-option", "width=32",
        "--norm", config["norm"],
        "--activation", config["activation"],
        "--optimizer", config["optimizer"],
        "--out-dir", str(tmp_path / "cluster"),
    ]  # fmt: skip
    for key in (
        "precision",
        "lr",
        "dataset",
        "validation_fraction",
        "batch_size",
        "epochs",
        "seed",
        "verbose",
        "tta",
    ):
        flags += [f"--{key.replace('_', '-')}", str(config[key])]
    finish_cluster(start_cluster("recipes.lenet5_fashion_mnist", flags, tmp_path, "worker"))

    run_dir = tmp_path / "cluster"
    assert not (run_dir / "workertemp_worker_1").exists()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["epochs"] == 1 and (run_dir / "loss.png").is_file()
    assert metrics["steps_per_execution"] == 1  # auto, where several steps fail (see below)
    # The two workers each took half of every global batch of 64: the same training as one
    # device with batches of 64.
    alone = run(
        RunConfig.from_dict(LENET5_RECIPE).updated(
            {**config, "out_dir": str(tmp_path / "one_device")}
        )
    )
    one_device = keras.models.load_model(tmp_path / "one_device" / "model.keras")
    chief_model = keras.models.load_model(run_dir / "model.keras")  # with its optimizer and loss
    assert chief_model.optimizer.__class__ is one_device.optimizer.__class__
    assert max_weight_difference(chief_model, one_device) < WEIGHT_TOLERANCE
    # Test-time augmentation evaluates the same way across workers as on one device.
    assert metrics["tta"] == "flip"
    for key in ("test_accuracy", "test_accuracy_tta"):
        assert metrics[key] == pytest.approx(alone[key], abs=2e-3), key


@pytest.mark.slow
def test_several_steps_per_execution_under_multi_worker_are_refused_before_training(tmp_path):
    """Keras' multi-step training function fails under MultiWorkerMirroredStrategy; each worker
    says so in one line instead of a graph error from inside fit."""
    flags = [
        "--strategy", "multi_worker", "--model", "mlp", "--model-option", "width=32",
        "--dataset", "sample", "--epochs", "1", "--steps-per-execution", "4",
        "--out-dir", str(tmp_path / "cluster"),
    ]  # fmt: skip
    cluster = start_cluster("recipes.mlp_fashion_mnist", flags, tmp_path, "worker")
    try:
        codes = [worker.wait(timeout=300) for worker in cluster.workers]
    finally:
        kill_cluster(cluster)
    assert codes == [2, 2], cluster.log_tails()
    for log in cluster.logs:
        last_line = log.read_text().strip().splitlines()[-1]
        assert last_line.startswith("error: --steps-per-execution 4 cannot train under Multi")
        assert "run.steps_per_execution=4" in last_line
    assert not (tmp_path / "cluster" / "metrics.json").exists()


@pytest.mark.slow
def test_continue_from_chief_gives_every_worker_the_chiefs_state(tmp_path):
    """Two workers with different weights, BatchNorm statistics, WeightNorm flag, optimizer slots,
    step counters and epoch counts both end with the chief's, exactly."""
    finish_cluster(start_cluster(EXCHANGE_WORKER, [str(tmp_path)], tmp_path, "worker"))
    chief, other = (np.load(tmp_path / f"worker{index}.npz") for index in range(2))
    assert len(chief.files) == len(other.files) > 10
    for key in chief.files:
        assert chief[key].dtype == other[key].dtype, key
        np.testing.assert_array_equal(chief[key], other[key], err_msg=key)
    assert int(other["epochs_done"]) == 5  # the chief's epochs; the other worker had 4
    # The chief's own step counter (100; the other worker's was 101) and WeightNorm flag (set;
    # the other worker's was not).
    variables = [chief[key] for key in chief.files if key != "epochs_done"]
    assert [int(value) for value in variables if value.dtype == np.int64] == [100]
    assert [bool(value) for value in variables if value.dtype == np.bool_] == [True]


@pytest.mark.slow
def test_multi_worker_run_killed_mid_training_resumes_on_restart(tmp_path):
    """Both workers killed after a finished epoch; restarted with --resume, they finish the run.

    The other worker's checkpoint is left one epoch behind the chief's, as a kill during the
    epoch-end saves can leave it: every worker still continues from the chief's epoch and
    weights, and the cluster trains the remaining epochs in step. The epochs written before the
    kill are kept and the other worker's temporary directory is removed at the end.
    """
    run_dir = tmp_path / "cluster"
    epochs, kill_after = 6, 2
    flags = [
        "--strategy", "multi_worker",
        "--model", "mlp", "--model-option", "width=32",
        "--dataset", "sample", "--validation-fraction", "0.1",
        "--batch-size", "16", "--epochs", str(epochs), "--seed", "3", "--verbose", "0",
        "--out-dir", str(run_dir),
    ]  # fmt: skip
    first = start_cluster("recipes.mlp_fashion_mnist", flags, tmp_path, "first")
    try:
        wait_for_finished_epochs(run_dir, kill_after, first.workers, 300, first.log_tails)
    finally:
        kill_cluster(first)
    killed_at = read_state(run_dir)["epochs_done"]
    assert killed_at < epochs, "the run finished before it could be killed"
    rows_before = read_history(run_dir, killed_at)
    worker_dir = run_dir / "workertemp_worker_1"
    worker_state = read_state(worker_dir)
    worker_state["epochs_done"] = killed_at - 1
    (worker_dir / STATE_FILE).write_text(json.dumps(worker_state))

    second = start_cluster("recipes.mlp_fashion_mnist", [*flags, "--resume"], tmp_path, "second")
    finish_cluster(second)
    for log, directory in zip(second.logs, (run_dir, worker_dir), strict=True):
        resumed = f"Resuming {directory} after epoch {killed_at}\n"
        assert resumed in log.read_text(), log.read_text()[-3000:]
    rows = read_history(run_dir)
    assert [row["epoch"] for row in rows] == list(range(1, epochs + 1))
    assert rows[: len(rows_before)] == rows_before
    assert json.loads((run_dir / "metrics.json").read_text())["epochs"] == epochs
    assert not worker_dir.exists()
