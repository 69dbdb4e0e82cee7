"""How a run executes its training steps: numeric precision, XLA, and steps per execution.

Three run settings, shared by every recipe (`run.precision`, `run.jit_compile`,
`run.steps_per_execution`; see docs/performance.md), each with an `auto` that this module
resolves for the hardware (`recipes.train.hardware`) and the model:

- precision: a Keras mixed-precision policy, applied while the model is built (`dtype_policy`,
  which restores the global policy after). `auto` is mixed_float16 on GPUs with float16 tensor
  cores (compute capability >= 7.0), mixed_bfloat16 on a TPU and on CPUs with native bfloat16
  instructions, float32 elsewhere. The zoo's output layers compute in float32 under any policy,
  so predictions and losses stay float32; under mixed_float16 the runner compiles with loss
  scaling (`recipes.optim.wrap_for_policy`).
- jit_compile: XLA compilation of the training step. `auto` is on for GPUs and TPUs, off under
  tf.distribute's GPU strategies (as Keras itself decides), and on a CPU only for the model
  families that XLA measurably made faster there in float32 (`CPU_XLA_SPEEDUP`, from
  scripts/bench_execution.py; none on the machine measured).
- steps_per_execution: training steps run by one call of the compiled function. `auto` aims at
  executions of about `TARGET_EXECUTION_SECONDS`, from a timed forward pass of the model
  (`estimate_step_seconds`), capped by the steps of an epoch and `MAX_AUTO_STEPS_PER_EXECUTION`;
  1 under MultiWorkerMirroredStrategy, where Keras' multi-step function fails
  (`check_steps_per_execution`).

`Execution` holds the resolved values, which metrics.json reports.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from collections.abc import Iterator
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from recipes.train.hardware import Hardware

AUTO = "auto"
# The Keras mixed-precision policies: layers compute in float16 or bfloat16, variables stay float32.
MIXED_PRECISIONS = ("mixed_bfloat16", "mixed_float16")
PRECISIONS = (AUTO, "float32", *MIXED_PRECISIONS)
JIT_COMPILE_MODES = (AUTO, "on", "off")
# What a run did before these settings existed: config.json files without them load with these.
LEGACY_SETTINGS = {"precision": "float32", "jit_compile": "off", "steps_per_execution": 1}

# XLA on a CPU: step time without XLA / with it, per zoo model family (the model, with its norm
# knob when a recipe sets one) in float32, the least favourable of the measurements on a 2-core
# AMD EPYC (Zen 3, AVX2, no AVX-512: no native bfloat16), TensorFlow 2.21, Keras 3.15:
# `python scripts/bench_execution.py --only xla` (twice for the Fashion-MNIST models, on a machine
# shared with other jobs) and the `xla` variant of `scripts/bench_throughput.py` (docs/
# benchmarks.md). docs/performance.md has every figure. `auto` turns XLA on on a CPU for the
# families at or above `XLA_MIN_SPEEDUP`, set above the spread of repeated measurements of one
# case (more than +-20% there), and leaves it off for every family not listed: none qualifies on
# that machine. mixed_bfloat16 is not listed: measured there it was emulated, and `auto` picks it
# only on CPUs that compute it natively, where no figure was taken.
CPU_XLA_SPEEDUP: dict[str, float] = {
    "mlp": 0.36,
    "lenet5": 0.60,
    "lenet5 norm=weight": 1.11,
    "maxout_mlp": 0.10,
    "alexnet_small": 0.73,
    "vgg_small norm=batch": 0.68,
    "resnet20 norm=batch": 0.46,
    "resnet20 norm=group": 0.56,
}
XLA_MIN_SPEEDUP = 1.2

# steps_per_execution=auto: executions of about this long, at most this many steps each.
TARGET_EXECUTION_SECONDS = 0.05
MAX_AUTO_STEPS_PER_EXECUTION = 64
# A training step (forward, backward, update) takes about this many forward passes.
STEP_PER_FORWARD = 3.0


@dataclasses.dataclass(frozen=True)
class Execution:
    """The resolved execution settings of a training session (no `auto` left), and the hardware
    they were resolved for (`Hardware.describe()`)."""

    precision: str
    jit_compile: bool
    steps_per_execution: int
    hardware: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def resolve_precision(requested: str, hardware: Hardware) -> str:
    """The Keras dtype policy name `requested` ("auto" or a policy name) means on `hardware`."""
    if requested != AUTO:
        return requested
    if hardware.kind == "gpu":
        return "mixed_float16" if hardware.float16_tensor_cores else "float32"
    if hardware.kind == "tpu" or hardware.native_bfloat16:
        return "mixed_bfloat16"
    return "float32"


def model_family(model_name: str, norm: str | None = None) -> str:
    """The key of a model in `CPU_XLA_SPEEDUP`: the zoo model, and its norm knob when set."""
    return model_name if norm is None else f"{model_name} norm={norm}"


def resolve_jit_compile(
    requested: str, hardware: Hardware, family: str, precision: str, distributed: bool = False
) -> bool:
    """Whether XLA compiles the training step.

    Args:
        requested: "auto", "on" or "off".
        hardware: what the run trains on.
        family: the model's `model_family`, looked up in `CPU_XLA_SPEEDUP` on a CPU.
        precision: the resolved precision; the CPU figures are float32's.
        distributed: whether a tf.distribute strategy other than the default one trains.
    """
    if requested != AUTO:
        return requested == "on"
    if hardware.kind == "tpu":
        return True
    if distributed:
        return False  # Keras' own choice under tf.distribute on GPUs and CPUs
    if hardware.kind == "gpu":
        return True
    if precision != "float32":
        return False
    return CPU_XLA_SPEEDUP.get(family, 0.0) >= XLA_MIN_SPEEDUP


def check_jit_compile(requested: str, strategy: tf.distribute.Strategy) -> None:
    """Refuses `--jit-compile on` under a strategy with several replicas (TPUs aside).

    Keras compiles the whole step of all replicas as one XLA computation, and XLA refuses the
    variables of the other replicas' devices ("Trying to access resource ... located in device
    CPU:1 from device CPU:0"); `auto` leaves XLA off there, as Keras does.
    """
    replicas = strategy.num_replicas_in_sync
    if requested == "on" and replicas > 1 and not isinstance(strategy, tf.distribute.TPUStrategy):
        raise ValueError(
            f"--jit-compile on cannot compile the training step of {replicas} replicas under "
            f"{type(strategy).__name__}: Keras compiles all replicas' step as one XLA "
            "computation, which cannot reach variables on several devices. Use --jit-compile off "
            "or auto (off under tf.distribute). Received: run.jit_compile='on'"
        )


def several_steps_fail(strategy: tf.distribute.Strategy) -> bool:
    """Whether Keras cannot run several training steps per execution under `strategy`.

    Under MultiWorkerMirroredStrategy, Keras 3's multi-step training function stops with
    "You must feed a value for placeholder tensor 'while/cond/Placeholder'" at its first call
    (measured with TensorFlow 2.21 and Keras 3.15 on two workers; keras-team/keras#19246).
    """
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def check_steps_per_execution(requested: int | str, strategy: tf.distribute.Strategy) -> None:
    """Refuses several steps per execution where `several_steps_fail`."""
    if requested != AUTO and requested > 1 and several_steps_fail(strategy):
        raise ValueError(
            f"--steps-per-execution {requested} cannot train under MultiWorkerMirroredStrategy: "
            "Keras' multi-step training function fails there (keras-team/keras#19246). Use "
            "--steps-per-execution 1 or auto (1 under multi-worker training). Received: "
            f"run.steps_per_execution={requested}"
        )


def auto_steps_per_execution(
    step_seconds: float, steps_per_epoch: int, every_n_batches: int | None = None
) -> int:
    """Steps per execution for executions of about `TARGET_EXECUTION_SECONDS`.

    At most `MAX_AUTO_STEPS_PER_EXECUTION` and the steps of an epoch; with `every_n_batches` (the
    monitors' period), the largest divisor of it, so that every measurement falls on the end of
    an execution.
    """
    steps = int(TARGET_EXECUTION_SECONDS // max(step_seconds, 1e-9))
    steps = max(1, min(steps, MAX_AUTO_STEPS_PER_EXECUTION, steps_per_epoch))
    if every_n_batches is not None:
        steps = max(n for n in range(1, steps + 1) if every_n_batches % n == 0)
    return steps


def estimate_step_seconds(
    model: keras.Model, batch_size: int, jit_compile: bool, passes: int = 8, repeats: int = 3
) -> float | None:
    """The compute time of one training step of `model` on a global batch of `batch_size`,
    estimated as `STEP_PER_FORWARD` forward passes on a fixed batch.

    The forward passes run `passes` at a time inside one compiled function, so that the time
    of a call into it (what several steps per execution save) is left out; the fastest of
    `repeats` calls counts. A step found to take `TARGET_EXECUTION_SECONDS` or more from a
    single pass is not measured further (it runs one step per execution anyway). They run in inference mode: no weight, statistic or random state
    changes, so the run is the same as without the estimate. Under a strategy each replica
    computes its share of the batch. Returns None for a model whose inputs have unknown sizes.
    """
    strategy = tf.distribute.get_strategy()
    per_replica = max(1, math.ceil(batch_size / strategy.num_replicas_in_sync))
    rng = np.random.default_rng(0)
    batch = []
    for tensor in model.inputs:
        shape = (per_replica, *tensor.shape[1:])
        if None in shape:
            return None
        batch.append(tf.constant(rng.normal(size=shape), dtype=tensor.dtype))
    inputs = batch[0] if len(batch) == 1 else batch

    def forward(x: Any, count: tf.Tensor) -> tf.Tensor:
        total = tf.constant(0.0)
        for _ in tf.range(count):  # each pass depends on the last, so none is left out
            outputs = model(x, training=False)
            total += tf.add_n(
                [tf.reduce_sum(tf.cast(y, "float32")) for y in tf.nest.flatten(outputs)]
            )
        return total

    forward = tf.function(forward, jit_compile=jit_compile)
    run = tf.function(lambda x, count: strategy.run(forward, args=(x, count)))

    def seconds(count: int) -> float:
        start = time.perf_counter()
        for local in strategy.experimental_local_results(run(inputs, tf.constant(count))):
            local.numpy()
        return time.perf_counter() - start

    seconds(1)  # traces
    single = STEP_PER_FORWARD * seconds(1)
    # A step this slow gets one step per execution whatever its exact time: a large model on
    # large images (ResNet-20 at 224x224) would spend minutes in the full estimate.
    if single >= TARGET_EXECUTION_SECONDS:
        return single
    return STEP_PER_FORWARD * min(seconds(passes) for _ in range(repeats)) / passes


@contextlib.contextmanager
def dtype_policy(precision: str) -> Iterator[None]:
    """Builds (or loads) models under the Keras dtype policy `precision`, restoring the global
    policy after, so that nothing else in the process is affected."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(precision)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def _policy_name(dtype: Any) -> Any:
    """The policy name of a layer config's `dtype`: a name, or a serialized `DTypePolicy`."""
    return dtype.get("config", {}).get("name") if isinstance(dtype, dict) else dtype


def _float32_dtypes(config: Any) -> Any:
    """`config` (a model's, nested) with every mixed dtype policy replaced by float32."""
    if isinstance(config, dict):
        return {
            key: "float32"
            if key == "dtype" and _policy_name(value) in MIXED_PRECISIONS
            else _float32_dtypes(value)
            for key, value in config.items()
        }
    if isinstance(config, list):
        return [_float32_dtypes(item) for item in config]
    return config


def _mixed_dtypes(config: Any, precision: str, float32_layers: frozenset[str]) -> Any:
    """`config` (a float32 model's, nested) with the dtype policy of every layer set to the mixed
    `precision`, except input layers (whose `dtype` is their input's) and `float32_layers`."""
    if isinstance(config, list):
        return [_mixed_dtypes(item, precision, float32_layers) for item in config]
    if not isinstance(config, dict):
        return config
    config = {key: _mixed_dtypes(value, precision, float32_layers) for key, value in config.items()}
    layer = config.get("config")
    if (
        isinstance(layer, dict)
        and config.get("class_name") != "InputLayer"
        and layer.get("name") not in float32_layers
        and _policy_name(layer.get("dtype")) == "float32"
    ):
        config["config"] = {**layer, "dtype": precision}
    return config


def float32_model(model: keras.Model) -> keras.Model:
    """`model` computing in float32: itself if it does, else a copy of it built from its config
    with every layer in float32, holding the same weights.

    For deployment: TFLite has no builtin float16/bfloat16 kernels for most ops (a mixed model
    does not convert), and rounds weights itself when asked to quantize. A mixed-precision
    model's variables are float32 already, so the copy computes what the model would in float32.
    """
    if model_precision(model) == "float32":
        return model
    return _copy_with_config(model, _float32_dtypes(model.get_config()))


def _copy_with_config(model: keras.Model, config: dict[str, Any]) -> keras.Model:
    copy = model.__class__.from_config(config)
    copy.set_weights(model.get_weights())
    return copy


def training_model_in(model: keras.Model, precision: str) -> keras.Model:
    """`model` rebuilt to train in `precision` ("float32" or "mixed_bfloat16"), compiled as it
    is, with the same weights and optimizer state; `model` itself if it trains in it already.

    For a run resumed on hardware where `--precision auto` chooses another precision than the
    run trained in: a checkpoint from a CPU with native bfloat16 resumed on one that emulates
    bfloat16 several times slower than float32, and back. The variables are float32 in either
    precision, so training goes on from the same weights and optimizer state; only the rounding
    of activations changes. Loss scaling, which neither precision needs, is left out: the copy's
    optimizer is the one it wrapped, whose `iterations` (and so its schedule) exclude the steps
    loss scaling skipped. In mixed_bfloat16 the layers that produce the model's outputs stay in
    float32, as the zoo builds them under any policy.

    Args:
        model: a compiled, built model with a built optimizer (a loaded checkpoint).
        precision: "float32" or "mixed_bfloat16". Into mixed_float16 a run would start loss
            scaling midway, which this does not do.

    Raises:
        ValueError: `model` has not been compiled, or an unsupported `precision`.
    """
    if getattr(model, "optimizer", None) is None:
        raise ValueError(f"`model` must be compiled. Received: model={model.name!r}")
    targets = ("float32", "mixed_bfloat16")
    if precision not in targets:
        raise ValueError(f"`precision` must be one of {targets}. Received: precision={precision!r}")
    if model_precision(model) == precision:
        return model
    optimizer = model.optimizer
    if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        optimizer = optimizer.inner_optimizer
    config = _float32_dtypes(model.get_config())
    if precision != "float32":
        outputs = frozenset(tensor._keras_history.operation.name for tensor in model.outputs)
        config = _mixed_dtypes(config, precision, outputs)
    copy = _copy_with_config(model, config)
    compile_config = model.get_compile_config()
    compile_config["optimizer"] = keras.optimizers.serialize(optimizer)
    copy.compile_from_config(compile_config)  # builds the new optimizer for the copy's weights
    _copy_optimizer_state(optimizer, copy.optimizer)
    return copy


def _copy_optimizer_state(
    source: keras.optimizers.Optimizer, target: keras.optimizers.Optimizer
) -> None:
    """Assigns `source`'s variables to `target`'s, built the same way for the same weights."""
    pairs = list(zip(source.variables, target.variables, strict=False))
    if len(source.variables) != len(target.variables) or any(
        tuple(old.shape) != tuple(new.shape) for old, new in pairs
    ):
        raise ValueError(
            f"cannot carry the state of optimizer {source.name!r} over: its "
            f"{len(source.variables)} variables do not match the {len(target.variables)} of its "
            "copy built for the rebuilt model"
        )
    for old, new in pairs:
        new.assign(old)


def model_precision(model: keras.Model) -> str:
    """The precision `model` was built with, from its layers' dtype policies (saved with them):
    its mixed policy, or "float32" when none is mixed (output layers are float32 under any
    policy)."""
    names = {layer.dtype_policy.name for layer in model._flatten_layers()}
    return next((precision for precision in MIXED_PRECISIONS if precision in names), "float32")
