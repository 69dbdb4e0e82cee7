"""What the run trains on: CPU (and whether it computes bfloat16 natively), GPUs, or a TPU.

The `auto` choices of `--precision` and `--jit-compile` (see `recipes.train.execution`) depend
on the hardware, found here from what the operating system and TensorFlow report:

- a CPU computes bfloat16 natively when it has AVX512_BF16 or AMX-BF16 (x86, the `flags` line
  of /proc/cpuinfo) or the BF16 extension (Arm, the `Features` line); elsewhere TensorFlow
  emulates bfloat16 arithmetic, which is slower than float32;
- a GPU's compute capability comes from `tf.config.experimental.get_device_details`: from 7.0
  (Volta) on, its tensor cores multiply float16;
- a TPU strategy means a TPU, whose matrix units multiply bfloat16.

The parsing functions take the text or the details as arguments, so that they are tested without
the machine they describe.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import tensorflow as tf

CPUINFO = Path("/proc/cpuinfo")
# CPU feature flags of native bfloat16 arithmetic: AVX512_BF16 and AMX (x86, Linux's names in
# /proc/cpuinfo), and the BF16 extension of Armv8.6 ("bf16" in the Features line on aarch64).
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})
# The first compute capability with float16 tensor cores (Volta).
FLOAT16_TENSOR_CORES = (7, 0)
HARDWARE_KINDS = ("cpu", "gpu", "tpu")


@dataclasses.dataclass(frozen=True)
class Hardware:
    """The devices a run trains on.

    Attributes:
        kind: "cpu", "gpu" (one or more visible GPUs) or "tpu".
        cpu_flags: the CPU's feature flags (empty where the operating system does not list them).
        gpu_capabilities: the compute capability of each visible GPU, as (major, minor); None for
            a GPU that does not report one.
    """

    kind: str = "cpu"
    cpu_flags: frozenset[str] = frozenset()
    gpu_capabilities: tuple[tuple[int, int] | None, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in HARDWARE_KINDS:
            raise ValueError(
                f"`kind` must be one of {', '.join(HARDWARE_KINDS)}. Received: kind={self.kind!r}"
            )

    @property
    def native_bfloat16(self) -> bool:
        """Whether the CPU computes bfloat16 natively (see `NATIVE_BF16_FLAGS`)."""
        return bool(self.cpu_flags & NATIVE_BF16_FLAGS)

    @property
    def float16_tensor_cores(self) -> bool:
        """Whether every visible GPU has float16 tensor cores (compute capability >= 7.0)."""
        return bool(self.gpu_capabilities) and all(
            capability is not None and capability >= FLOAT16_TENSOR_CORES
            for capability in self.gpu_capabilities
        )

    def describe(self) -> str:
        """One line for logs and metrics.json: "cpu (native bfloat16)", "gpu x2 (cc 8.0, 8.0)"."""
        if self.kind == "gpu":
            capabilities = ", ".join(
                "unknown" if capability is None else f"{capability[0]}.{capability[1]}"
                for capability in self.gpu_capabilities
            )
            return f"gpu x{len(self.gpu_capabilities)} (compute capability {capabilities})"
        if self.kind == "cpu":
            return f"cpu ({'native' if self.native_bfloat16 else 'no native'} bfloat16)"
        return self.kind


def parse_cpu_flags(cpuinfo: str) -> frozenset[str]:
    """The feature flags listed in the text of /proc/cpuinfo: x86's `flags` lines and Arm's
    `Features` lines, lower-cased. Empty when there are none."""
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, separator, value = line.partition(":")
        if separator and key.strip().lower() in ("flags", "features"):
            flags.update(value.lower().split())
    return frozenset(flags)


def read_cpu_flags(path: str | Path = CPUINFO) -> frozenset[str]:
    """This machine's CPU feature flags (`parse_cpu_flags` of /proc/cpuinfo); empty where the
    file does not exist (macOS, Windows), which `auto` then treats as no native bfloat16."""
    try:
        return parse_cpu_flags(Path(path).read_text(errors="replace"))
    except OSError:
        return frozenset()


def compute_capability(details: Mapping[str, Any]) -> tuple[int, int] | None:
    """A GPU's (major, minor) compute capability from `tf.config.experimental.get_device_details`
    (`{"compute_capability": (8, 0), "device_name": ...}`); None when it reports none (ROCm)."""
    capability = details.get("compute_capability")
    if capability is None:
        return None
    major, minor = capability
    return int(major), int(minor)


def hardware_from(
    *,
    tpu: bool = False,
    gpu_details: Iterable[Mapping[str, Any]] = (),
    cpu_flags: Iterable[str] = (),
) -> Hardware:
    """The `Hardware` the given facts describe: a TPU, else GPUs when any are given, else a CPU."""
    capabilities = tuple(compute_capability(details) for details in gpu_details)
    kind = "tpu" if tpu else "gpu" if capabilities else "cpu"
    return Hardware(kind, frozenset(cpu_flags), capabilities)


def detect_hardware(strategy: tf.distribute.Strategy | None = None) -> Hardware:
    """The hardware this process trains on under `strategy` (the current one if None).

    A TPU strategy means a TPU. Otherwise any GPU TensorFlow sees is where it places the
    training, so GPUs win over the CPU.
    """
    strategy = strategy or tf.distribute.get_strategy()
    gpus = tf.config.list_physical_devices("GPU")
    return hardware_from(
        tpu=isinstance(strategy, tf.distribute.TPUStrategy),
        gpu_details=[tf.config.experimental.get_device_details(gpu) for gpu in gpus],
        cpu_flags=read_cpu_flags(),
    )
