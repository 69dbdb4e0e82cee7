"""Running a recipe on TensorFlow's own distribution strategies: several GPUs, machines or a TPU.

Nothing here is home-made distribution: `create_strategy` returns a `tf.distribute.Strategy`, the
runner creates the model, optimizer and metrics under its `scope()`, and Keras' `Model.fit` splits
every global batch across the replicas with the strategy's `experimental_distribute_dataset`. This
module adds what a recipe needs around that:

- strategies by name (`STRATEGY_NAMES`), with clear errors;
- `TF_CONFIG` parsing and validation for multi-worker runs, and `is_chief`;
- where each worker writes: the chief into the run directory, every other worker into a
  temporary directory inside it that is removed when the run finishes (every worker must still
  save, because saving a distributed model takes part in collective operations);
- resuming a cluster from the chief's checkpoint (`continue_from_chief`);
- the auto-shard policy of the input pipelines;
- synchronized BatchNormalization (`--sync-bn`) for any model, by rewriting its layer config;
- logical CPU devices, so that `mirrored` can be exercised on a machine without GPUs.

See docs/distributed.md for the user guide.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf
from keras import tree

from layers import naming

STRATEGY_NAMES: tuple[str, ...] = ("default", "mirrored", "multi_worker", "tpu")
# Strategies TensorFlow has but `Model.fit` in Keras 3 cannot drive, with what to use instead.
UNSUPPORTED_STRATEGIES: dict[str, str] = {
    "parameter_server": (
        "Keras 3's Model.fit does not drive ParameterServerStrategy (it needs a "
        "ClusterCoordinator and a custom training loop); use --strategy multi_worker for "
        "data-parallel training on several machines"
    ),
}
TF_CONFIG_ENV = "TF_CONFIG"
# Task types that train (TensorFlow's names); "chief" is a worker that also writes the outputs.
TRAINING_TASK_TYPES = ("chief", "worker")
WORKER_DIR_PREFIX = "workertemp_"
DEFAULT_SHARD_POLICY = tf.data.experimental.AutoShardPolicy.DATA


def _without_tf_distribute_affixes(name: str) -> str:
    """Reduces TensorFlow's class name to the strategy's: "tf.distribute.TPUStrategy" -> "TPU"."""
    name = re.sub(r"^(tf\.)?distribute\.", "", name)
    return re.sub(r"(?<=.)strategy$", "", name, flags=re.IGNORECASE)


_STRATEGY_NAMES = naming.Names(
    "strategy",
    (*STRATEGY_NAMES, *UNSUPPORTED_STRATEGIES),
    aliases={"multi_worker_mirrored": "multi_worker"},
    spelling=_without_tf_distribute_affixes,
    valid=f"Accepted: {', '.join(STRATEGY_NAMES)} (case, '-', '_' and spaces ignored).",
)


def canonical_strategy_name(name: str) -> str:
    """The strategy name in `STRATEGY_NAMES` that `name` spells.

    Case, `-`, `_` and spaces are ignored, and TensorFlow's class names are understood too:
    "Mirrored", "multi-worker", "MultiWorkerMirroredStrategy", "tf.distribute.TPUStrategy".

    Raises:
        ValueError: for an unknown name (suggesting the closest) or a strategy Keras 3 cannot
            train with (saying what to use instead).
    """
    canonical = _STRATEGY_NAMES.resolve(name)
    if canonical in UNSUPPORTED_STRATEGIES:
        raise ValueError(
            f"strategy {name!r} is not supported: {UNSUPPORTED_STRATEGIES[canonical]}."
        )
    return canonical


# --------------------------------------------------------------------------------------------
# TF_CONFIG


@dataclasses.dataclass(frozen=True)
class ClusterRole:
    """This process's place in a multi-worker cluster, as `TF_CONFIG` describes it.

    Attributes:
        task_type: "chief" or "worker".
        task_index: index of this task among the tasks of its type.
        num_workers: number of training tasks (chief and workers) in the cluster.
        has_chief_task: whether the cluster names a separate "chief" task; without one, worker 0
            is the chief (TensorFlow's convention).
    """

    task_type: str
    task_index: int
    num_workers: int
    has_chief_task: bool

    @property
    def is_chief(self) -> bool:
        """Whether this task writes the run's outputs."""
        return _is_chief_task(self.task_type, self.task_index, self.has_chief_task)

    @property
    def worker_dir_name(self) -> str:
        """The name of this task's temporary output directory (used when it is not the chief)."""
        return f"{WORKER_DIR_PREFIX}{self.task_type}_{self.task_index}"


def _is_chief_task(task_type: str, task_index: int, has_chief_task: bool) -> bool:
    return task_type == "chief" or (
        task_type == "worker" and task_index == 0 and not has_chief_task
    )


def parse_tf_config(text: str) -> ClusterRole:
    """Validates a `TF_CONFIG` value and returns this task's role.

    Args:
        text: the JSON value of `TF_CONFIG`, e.g.
            `{"cluster": {"worker": ["host1:12345", "host2:12345"]},
              "task": {"type": "worker", "index": 0}}`.

    Raises:
        ValueError: naming what is wrong (not JSON, no cluster, unknown task type, index out of
            range, ...).
    """
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{TF_CONFIG_ENV} is not valid JSON ({error}): {text!r}") from None
    if not isinstance(value, dict):
        raise ValueError(f"{TF_CONFIG_ENV} must be a JSON object, got {text!r}")
    cluster, task = value.get("cluster"), value.get("task")
    if not isinstance(cluster, dict) or not any(cluster.get(t) for t in TRAINING_TASK_TYPES):
        raise ValueError(
            f'{TF_CONFIG_ENV} needs "cluster" with a list of "worker" (and optionally one '
            f'"chief") addresses, got {cluster!r}'
        )
    for task_type, addresses in cluster.items():
        if not isinstance(addresses, list) or not all(isinstance(a, str) for a in addresses):
            raise ValueError(
                f'{TF_CONFIG_ENV} cluster "{task_type}" must be a list of "host:port" strings, '
                f"got {addresses!r}"
            )
    if len(cluster.get("chief", [])) > 1:
        raise ValueError(f'{TF_CONFIG_ENV} may name one "chief", got {cluster["chief"]!r}')
    if not isinstance(task, dict):
        raise ValueError(f'{TF_CONFIG_ENV} needs "task": {{"type": ..., "index": ...}}')
    task_type, task_index = task.get("type"), task.get("index", 0)
    if task_type not in TRAINING_TASK_TYPES:
        raise ValueError(
            f"{TF_CONFIG_ENV} task type {task_type!r} cannot run a recipe. Accepted: "
            f"{', '.join(TRAINING_TASK_TYPES)}."
        )
    tasks = cluster.get(task_type, [])
    if not isinstance(task_index, int) or not 0 <= task_index < len(tasks):
        raise ValueError(
            f"{TF_CONFIG_ENV} task index {task_index!r} is out of range: the cluster has "
            f"{len(tasks)} {task_type!r} task(s)"
        )
    return ClusterRole(
        task_type=task_type,
        task_index=task_index,
        num_workers=sum(len(cluster.get(t, [])) for t in TRAINING_TASK_TYPES),
        has_chief_task=bool(cluster.get("chief")),
    )


def make_tf_config(addresses: list[str], index: int) -> str:
    """The `TF_CONFIG` of worker `index` in a cluster of workers at `addresses` ("host:port").

    Worker 0 is the chief. Every worker gets the same address list and its own index.
    """
    config = {"cluster": {"worker": list(addresses)}, "task": {"type": "worker", "index": index}}
    text = json.dumps(config)
    parse_tf_config(text)
    return text


def cluster_role(environ: Mapping[str, str] | None = None) -> ClusterRole | None:
    """This process's role from the `TF_CONFIG` environment variable, or None when unset."""
    text = (os.environ if environ is None else environ).get(TF_CONFIG_ENV, "").strip()
    return parse_tf_config(text) if text else None


def strategy_role(strategy: tf.distribute.Strategy) -> ClusterRole | None:
    """The role of this process in `strategy`'s cluster; None for a single-machine strategy."""
    resolver = getattr(strategy, "cluster_resolver", None)
    jobs = resolver.cluster_spec().as_dict() if resolver is not None else {}
    if not any(jobs.get(t) for t in TRAINING_TASK_TYPES):
        return None
    return ClusterRole(
        task_type=resolver.task_type,
        task_index=int(resolver.task_id),
        num_workers=sum(len(jobs.get(t, [])) for t in TRAINING_TASK_TYPES),
        has_chief_task=bool(jobs.get("chief")),
    )


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run's outputs (always, outside multi-worker training)."""
    role = strategy_role(strategy)
    return role is None or role.is_chief


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    """Whether `strategy` trains across several worker processes."""
    role = strategy_role(strategy)
    return role is not None and role.num_workers > 1


# --------------------------------------------------------------------------------------------
# Devices and strategies


def configure_cpu_replicas(count: int) -> None:
    """Splits the CPU into `count` logical devices, so that `mirrored` has replicas on a CPU.

    Must run before TensorFlow initializes its devices (before the first tensor is created), i.e.
    at the start of a process. Calling it again with the same count is harmless.
    """
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise ValueError(f"cpu_replicas must be a positive integer, got {count!r}")
    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu)
    if current is not None and len(current) == count:
        return
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
        )
    except RuntimeError as error:
        raise RuntimeError(
            f"cannot split the CPU into {count} logical devices: TensorFlow has already "
            "initialized its devices in this process. Configure CPU replicas first thing in a "
            f"fresh process (the recipes' --cpu-replicas does). TensorFlow said: {error}"
        ) from None


def _mirrored_strategy() -> tf.distribute.MirroredStrategy:
    """MirroredStrategy over all GPUs when there are any (its default), else all logical CPUs.

    Replicas on logical CPUs share one memory, so their gradients are summed on one device
    (`ReductionToOneDevice`) rather than by collective all-reduce, whose instance keys also clash
    when one process creates a second strategy (e.g. successive runs or search trials).
    """
    if tf.config.list_logical_devices("GPU"):
        return tf.distribute.MirroredStrategy()
    return tf.distribute.MirroredStrategy(
        devices=[device.name for device in tf.config.list_logical_devices("CPU")],
        cross_device_ops=tf.distribute.ReductionToOneDevice(),
    )


def _tpu_strategy(tpu: str | None) -> tf.distribute.Strategy:
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except (ValueError, RuntimeError, tf.errors.OpError) as error:
        where = f"TPU {tpu!r}" if tpu else "a TPU (set TPU_NAME, or run on a TPU VM)"
        raise RuntimeError(f"--strategy tpu could not connect to {where}: {error}") from None
    return tf.distribute.TPUStrategy(resolver)


def create_strategy(name: str, *, tpu: str | None = None) -> tf.distribute.Strategy:
    """A `tf.distribute.Strategy` by name.

    Args:
        name: one of `STRATEGY_NAMES`:
            default: TensorFlow's default strategy (one device, no distribution);
            mirrored: `MirroredStrategy` over all local GPUs (over all logical CPUs when the
                machine has no GPU; see `configure_cpu_replicas`);
            multi_worker: `MultiWorkerMirroredStrategy`, workers described by `TF_CONFIG`;
            tpu: `TPUStrategy` on the TPU named by `tpu` (or `TPU_NAME`, or the local TPU VM).
        tpu: TPU name or grpc:// address for name="tpu".

    Raises:
        ValueError: for an unknown name, or a `TF_CONFIG` that is missing or malformed for
            multi_worker.
    """
    name = canonical_strategy_name(name)
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return _mirrored_strategy()
    if name == "multi_worker":
        if cluster_role() is None:
            raise ValueError(
                f"--strategy multi_worker needs the {TF_CONFIG_ENV} environment variable on every "
                "worker (the cluster's addresses and this worker's index); see "
                "docs/distributed.md"
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    return _tpu_strategy(tpu)


def strategy_from_config(config: Any) -> tf.distribute.Strategy:
    """The strategy a run's `RunConfig` asks for (its `distribute` section); call it first thing.

    Creating a multi-worker strategy and splitting the CPU both have to happen before TensorFlow
    initializes its devices, so the runner calls this before anything else touches TensorFlow.
    """
    name = canonical_strategy_name(config.distribute.strategy)
    if config.distribute.cpu_replicas is not None:
        if name != "mirrored":
            raise ValueError(f"--cpu-replicas splits the CPU for --strategy mirrored, not {name!r}")
        configure_cpu_replicas(config.distribute.cpu_replicas)
    if name == "multi_worker" and config.run.out_dir is None:
        raise ValueError(
            "--strategy multi_worker needs --out-dir (the same on every worker), so that the "
            "workers agree on where outputs and checkpoints go"
        )
    return create_strategy(name)


# --------------------------------------------------------------------------------------------
# Outputs


def worker_output_dir(run_dir: str | Path, strategy: tf.distribute.Strategy) -> Path:
    """Where this process writes: the run directory for the chief, a temporary one otherwise.

    Every worker saves checkpoints and the final model (saving a distributed model is a
    collective operation), but only the chief's files are kept. A non-chief worker's directory
    is fixed by its task (`run_dir/workertemp_<type>_<index>`), so that a restarted worker finds
    its own checkpoints; `discard_worker_outputs` removes it at the end of the run.
    """
    run_dir = Path(run_dir)
    role = strategy_role(strategy)
    if role is None or role.is_chief:
        return run_dir
    return run_dir / role.worker_dir_name


def discard_worker_outputs(output_dir: str | Path, strategy: tf.distribute.Strategy) -> None:
    """Removes a non-chief worker's temporary output directory; the chief's outputs stay."""
    if not is_chief(strategy):
        shutil.rmtree(output_dir, ignore_errors=True)


def continue_from_chief(
    model: keras.Model, strategy: tf.distribute.Strategy, epochs_done: int
) -> int:
    """Makes every worker of a resumed multi-worker run continue from the chief's last epoch.

    Each worker checkpoints into its own directory at the end of every epoch, so a failure
    during those saves can leave the workers one epoch apart. Resumed each from its own files,
    they would train different epochs and their collective operations would stop matching
    (or, with matching shapes, silently train different weights). Instead the chief's epoch
    count, weights and optimizer variables, which its run directory keeps, go to every worker
    in one collective operation. Call it under the strategy's scope, once the optimizer is
    built (after `prepare_for_fit`). Models that differ in their variables never get here: the
    strategy already fails creating their variables, whose initial values it takes from the
    chief.

    Args:
        model: the compiled model, restored from this worker's own checkpoint or newly built.
        strategy: the run's strategy; other than multi-worker, nothing is exchanged.
        epochs_done: the epochs this worker's own checkpoint holds.

    Returns:
        The chief's number of finished epochs, where every worker now continues.
    """
    if not is_multi_worker(strategy):
        return epochs_done
    variables = [*model.weights, *model.optimizer.variables]
    chief_epochs, *values = _from_first_replica(strategy, [epochs_done, *variables])
    for variable, value in zip(variables, values, strict=True):
        variable.assign(value)
    return int(chief_epochs)


def _from_first_replica(strategy: tf.distribute.Strategy, values: list[Any]) -> list[tf.Tensor]:
    """`values` as the cluster's first replica (the chief's) has them, on every worker: one
    all-reduce in which every other replica adds zeros."""
    tensors = [tf.convert_to_tensor(value) for value in values]
    # One all-reduce packs its inputs into one buffer of one dtype. float64 holds every float32,
    # boolean and integer up to 2**53 (step counters included) exactly.
    sendable = [tf.cast(t, tf.float64) for t in tensors]

    @tf.function
    def broadcast() -> list[tf.Tensor]:
        def replica_share() -> list[tf.Tensor]:
            context = tf.distribute.get_replica_context()
            first = tf.equal(context.replica_id_in_sync_group, 0)
            share = [tf.where(first, t, tf.zeros_like(t)) for t in sendable]
            return context.all_reduce(tf.distribute.ReduceOp.SUM, share)

        return strategy.run(replica_share)

    sums = tree.map_structure(lambda v: strategy.experimental_local_results(v)[0], broadcast())
    return [tf.cast(total, t.dtype) for total, t in zip(sums, tensors, strict=True)]


# --------------------------------------------------------------------------------------------
# Data and models


def shard_datasets(
    datasets: Mapping[str, tf.data.Dataset],
    policy: tf.data.experimental.AutoShardPolicy = DEFAULT_SHARD_POLICY,
) -> dict[str, tf.data.Dataset]:
    """The pipelines with the auto-shard policy tf.distribute uses to split them across workers.

    The default, DATA, suits the recipes' pipelines: they are built from in-memory or cached
    examples and shuffled with the run's seed, so every worker produces the same sequence and
    keeps its own part of each global batch. (FILE sharding would need at least as many input
    files as workers and would give workers unequal shares.)
    """
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = policy
    return {split: ds.with_options(options) for split, ds in datasets.items()}


def _nothing_to_build(iterator: Any = None, data_batch: Any = None) -> None:
    """Stands in for `Model._maybe_symbolic_build` once `prepare_for_fit` has built everything."""


def _with_replica_axis(step: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """`step` with each scalar it returns given a leading axis of length 1 (see below); a step
    that already has it is returned as is, so that preparing a model again (after recompiling it
    for a second fine-tuning phase) is harmless."""

    if getattr(step, "gives_replica_axis", False):
        return step

    def step_with_replica_axis(data: Any) -> Any:
        logs = step(data)
        return tree.map_structure(
            lambda value: tf.reshape(value, [1]) if value.shape.rank == 0 else value, logs
        )

    step_with_replica_axis.gives_replica_axis = True
    return step_with_replica_axis


def prepare_for_fit(model: keras.Model, dataset: tf.data.Dataset) -> None:
    """Gets a compiled model ready for `fit` and `evaluate` under the current strategy.

    Call it under the strategy's scope, after every compile (or load). It works around two
    limitations of Keras 3's TensorFlow trainer, on this model instance only:

    1. Under a strategy, Keras builds a model lazily by drawing a batch from the distributed
       data and averaging it over the replicas with `strategy.reduce`. That fails with
       MultiWorkerMirroredStrategy on several workers (keras-team/keras#20585), and it starts an
       extra pass over the data, so the first epoch would see a different shuffle than on one
       device. Here the model, loss, metrics and optimizer are built from the dataset's element
       spec (shapes and dtypes) instead, and the lazy build is switched off.
    2. On several workers Keras averages each step's logs with `strategy.reduce(..., axis=0)`,
       which needs a batch axis that scalar logs (loss, accuracy) lack. The train and test steps
       give them one of length 1, so the average over replicas is the scalar Keras means.

    Does nothing outside a strategy, where Keras builds the model while tracing.
    """
    if not tf.distribute.has_strategy():
        return
    model._symbolic_build(data_batch=dataset.element_spec)
    model._maybe_symbolic_build = _nothing_to_build
    if isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
        model.train_step = _with_replica_axis(model.train_step)
        model.test_step = _with_replica_axis(model.test_step)


def _synchronize_layer_configs(node: Any) -> Any:
    """`node` (a model config) with `synchronized=True` in every BatchNormalization config."""
    if isinstance(node, list):
        return [_synchronize_layer_configs(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _synchronize_layer_configs(value) for key, value in node.items()}
    if node.get("class_name") == "BatchNormalization" and isinstance(node.get("config"), dict):
        node["config"] = {**node["config"], "synchronized": True}
    return node


def synchronize_batch_norm(model: keras.Model) -> keras.Model:
    """A copy of `model` whose BatchNormalization layers average statistics over all replicas.

    Under a strategy each replica normally normalizes with the statistics of its own slice of
    the global batch; `keras.layers.BatchNormalization(synchronized=True)` all-reduces them, so
    the model trains as it would on one device with the whole global batch (which matters when
    the per-replica batch is small). Works for any Functional or Sequential model, nested models
    and pretrained weights included: the config is rewritten and the weights copied over. Build
    under the strategy's scope, before compiling.
    """
    config = model.get_config()
    synchronized = _synchronize_layer_configs(config)
    if synchronized == config:
        return model
    clone = model.__class__.from_config(synchronized)
    clone.set_weights(model.get_weights())
    return clone
