"""The execution settings' `auto` rules and helpers: hardware described by the text and details
the operating system and TensorFlow give (any machine's, not this one's), the precision of built
and saved models, the dtype policy scope, and the step-time estimate."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo
from recipes.optim import wrap_for_policy
from recipes.train.execution import (
    CPU_XLA_SPEEDUP,
    MAX_AUTO_STEPS_PER_EXECUTION,
    XLA_MIN_SPEEDUP,
    auto_steps_per_execution,
    check_jit_compile,
    dtype_policy,
    estimate_step_seconds,
    model_family,
    model_precision,
    resolve_jit_compile,
    resolve_precision,
    training_model_in,
)
from recipes.train.hardware import (
    Hardware,
    detect_hardware,
    hardware_from,
    parse_cpu_flags,
    read_cpu_flags,
)

# /proc/cpuinfo excerpts: a Sapphire Rapids core (AMX, AVX512_BF16), this project's Zen 3 machine
# (AVX2 only), a Neoverse V1 (Arm, BF16 extension) and a Neoverse N1 (Arm, no BF16).
SAPPHIRE_RAPIDS = (
    "processor\t: 0\nvendor_id\t: GenuineIntel\n"
    "flags\t\t: fpu vme sse2 avx2 avx512f avx512_bf16 avx512_fp16 amx_bf16 amx_tile amx_int8\n"
    "bugs\t\t: spectre_v1\n\nprocessor\t: 1\n"
    "flags\t\t: fpu vme sse2 avx2 avx512f avx512_bf16 avx512_fp16 amx_bf16 amx_tile amx_int8\n"
)
ZEN3 = (
    "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\n"
    "flags\t\t: fpu vme sse2 fma avx f16c avx2 sha_ni vaes vpclmulqdq rdpid fsrm\n"
)
NEOVERSE_V1 = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes sve asimdbf16 bf16 i8mm\n"
NEOVERSE_N1 = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics\n"


@pytest.mark.parametrize(
    ("cpuinfo", "native"),
    [
        (SAPPHIRE_RAPIDS, True),
        (ZEN3, False),
        (NEOVERSE_V1, True),
        (NEOVERSE_N1, False),
        ("", False),
    ],
    ids=["sapphire_rapids", "zen3", "neoverse_v1", "neoverse_n1", "nothing"],
)
def test_native_bfloat16_from_cpuinfo(cpuinfo, native):
    hardware = hardware_from(cpu_flags=parse_cpu_flags(cpuinfo))
    assert hardware.kind == "cpu" and hardware.native_bfloat16 is native
    assert resolve_precision("auto", hardware) == ("mixed_bfloat16" if native else "float32")


def test_cpu_flags_are_read_from_a_file_and_missing_ones_are_none(tmp_path):
    (tmp_path / "cpuinfo").write_text(SAPPHIRE_RAPIDS)
    flags = read_cpu_flags(tmp_path / "cpuinfo")
    assert {"avx512_bf16", "amx_bf16", "avx2"} <= flags and "bugs" not in flags
    assert "spectre_v1" not in flags  # the bugs line is not a flags line
    assert read_cpu_flags(tmp_path / "missing") == frozenset()


@pytest.mark.parametrize(
    ("capabilities", "precision"),
    [
        ([(8, 0)], "mixed_float16"),
        ([(7, 0), (9, 0)], "mixed_float16"),
        ([(6, 1)], "float32"),
        ([(8, 6), (6, 1)], "float32"),  # one GPU without tensor cores holds the others back
        ([None], "float32"),  # a GPU that reports no compute capability (ROCm)
    ],
)
def test_gpu_precision_follows_the_compute_capability(capabilities, precision):
    details = [
        {} if c is None else {"compute_capability": c, "device_name": "x"} for c in capabilities
    ]
    hardware = hardware_from(gpu_details=details, cpu_flags=parse_cpu_flags(SAPPHIRE_RAPIDS))
    assert hardware.kind == "gpu"
    assert resolve_precision("auto", hardware) == precision
    assert "compute capability" in hardware.describe()


def test_tpu_and_explicit_precisions():
    tpu = hardware_from(tpu=True, gpu_details=[{"compute_capability": (8, 0)}])
    assert tpu.kind == "tpu" and resolve_precision("auto", tpu) == "mixed_bfloat16"
    for precision in ("float32", "mixed_bfloat16", "mixed_float16"):
        assert resolve_precision(precision, tpu) == precision
        assert resolve_precision(precision, Hardware()) == precision
    with pytest.raises(ValueError, match="kind='fpga'"):
        Hardware("fpga")


def test_xla_auto_is_on_for_gpus_and_tpus_and_on_cpus_only_where_measured_faster():
    cpu, gpu = Hardware(), hardware_from(gpu_details=[{"compute_capability": (8, 0)}])
    assert resolve_jit_compile("auto", gpu, "resnet20", "mixed_float16") is True
    assert resolve_jit_compile("auto", gpu, "resnet20", "float32", distributed=True) is False
    assert resolve_jit_compile("auto", Hardware("tpu"), "resnet20", "float32", True) is True
    for family, speedup in CPU_XLA_SPEEDUP.items():
        assert resolve_jit_compile("auto", cpu, family, "float32") is (speedup >= XLA_MIN_SPEEDUP)
        assert resolve_jit_compile("auto", cpu, family, "mixed_bfloat16") is False  # unmeasured
    assert resolve_jit_compile("auto", cpu, "no_such_model", "float32") is False
    assert model_family("lenet5", "weight") == "lenet5 norm=weight" in CPU_XLA_SPEEDUP
    assert model_family("mlp") == "mlp" in CPU_XLA_SPEEDUP
    assert resolve_jit_compile("on", cpu, "no_such_model", "float32") is True
    assert resolve_jit_compile("off", gpu, "resnet20", "float32") is False


def test_xla_on_is_accepted_with_one_replica():
    # Several replicas are refused (tests/test_speed_flags.py: a mirrored run on two CPUs).
    check_jit_compile("on", tf.distribute.get_strategy())
    one_replica = tf.distribute.MirroredStrategy(devices=["/cpu:0"])
    check_jit_compile("on", one_replica)
    check_jit_compile("auto", one_replica)


@pytest.mark.parametrize(
    ("step_seconds", "steps_per_epoch", "every", "expected"),
    [
        (0.001, 1000, None, 50),  # 50 ms executions
        (0.0001, 1000, None, MAX_AUTO_STEPS_PER_EXECUTION),
        (0.1, 1000, None, 1),
        (0.02, 1000, None, 2),
        (0.001, 8, None, 8),  # an epoch is at most one execution
        (0.005, 1000, 25, 5),  # the largest divisor of the monitors' period
        (0.005, 1000, 7, 7),
        (0.005, 1000, 13, 1),
    ],
)
def test_auto_steps_per_execution(step_seconds, steps_per_epoch, every, expected):
    assert auto_steps_per_execution(step_seconds, steps_per_epoch, every) == expected


def test_dtype_policy_is_restored_even_when_the_build_fails():
    before = keras.config.dtype_policy().name
    with dtype_policy("mixed_bfloat16"):
        assert keras.config.dtype_policy().name == "mixed_bfloat16"
    assert keras.config.dtype_policy().name == before
    with pytest.raises(RuntimeError), dtype_policy("mixed_float16"):
        raise RuntimeError("the build failed")
    assert keras.config.dtype_policy().name == before


def _tiny_model() -> keras.Model:
    inputs = keras.Input((6,))
    hidden = keras.layers.Dense(8, activation="relu")(inputs)
    return keras.Model(inputs, keras.layers.Dense(3, activation="softmax", dtype="float32")(hidden))


@pytest.mark.parametrize("precision", ["float32", "mixed_bfloat16", "mixed_float16"])
def test_precision_of_built_and_saved_models(precision, tmp_path):
    with dtype_policy(precision):
        model = _tiny_model()
    assert model_precision(model) == precision
    optimizer = wrap_for_policy(keras.optimizers.SGD(), precision)  # as the runner compiles
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    model.fit(np.ones((4, 6)), np.zeros(4), verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert model_precision(loaded) == precision
    # The loss scaling is saved with the model: a plain load_model keeps it.
    loss_scaled = isinstance(loaded.optimizer, keras.optimizers.LossScaleOptimizer)
    assert loss_scaled is (precision == "mixed_float16")


def _layer_policies(model: keras.Model) -> list[tuple[str, str]]:
    return [
        (type(layer).__name__, layer.dtype_policy.name)
        for layer in model._flatten_layers(include_self=False)
        if not isinstance(layer, keras.layers.InputLayer)
    ]


@pytest.mark.parametrize(
    "built, target",
    [
        ("mixed_bfloat16", "float32"),
        ("mixed_float16", "float32"),
        ("float32", "mixed_bfloat16"),
        ("mixed_float16", "mixed_bfloat16"),
    ],
)
def test_a_training_copy_in_another_precision_keeps_the_weights_and_the_optimizer_state(
    built, target, tmp_path
):
    with dtype_policy(built):
        model = _tiny_model()
    optimizer = wrap_for_policy(keras.optimizers.SGD(0.1, momentum=0.9), built)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["acc"])
    data = np.random.default_rng(0).normal(size=(12, 6)), np.arange(12) % 3
    model.fit(*data, batch_size=4, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")  # as a resume loads its checkpoint

    copy = training_model_in(loaded, target)
    assert model_precision(copy) == target
    with dtype_policy(target):
        assert _layer_policies(copy) == _layer_policies(_tiny_model())  # output layer in float32
    assert all(
        np.array_equal(a, b) for a, b in zip(loaded.get_weights(), copy.get_weights(), strict=True)
    )
    # Loss scaling is left out; the wrapped optimizer's momentum slots and step count carry over.
    assert type(copy.optimizer) is keras.optimizers.SGD
    inner = loaded.optimizer
    if isinstance(inner, keras.optimizers.LossScaleOptimizer):
        inner = inner.inner_optimizer
    assert int(copy.optimizer.iterations.numpy()) == 3
    momentums = [v for v in copy.optimizer.variables if "momentum" in v.path]
    assert len(momentums) == 4 and any(np.any(v.numpy() != 0) for v in momentums)
    for old, new in zip(inner.variables, copy.optimizer.variables, strict=True):
        np.testing.assert_array_equal(old.numpy(), new.numpy())
    # It trains on, compiled as the checkpoint was (loss and metrics), in its new precision.
    hidden = copy.layers[1]
    assert (
        hidden(np.ones((1, 6), "float32")).dtype
        == keras.mixed_precision.Policy(target).compute_dtype
    )
    history = copy.fit(*data, batch_size=4, verbose=0).history
    assert set(history) == {"loss", "acc"} and np.isfinite(history["loss"][0])
    assert int(copy.optimizer.iterations.numpy()) == 6
    assert training_model_in(copy, target) is copy


def test_a_training_copy_needs_a_compiled_model_and_a_precision_without_loss_scaling():
    with pytest.raises(ValueError, match="`model` must be compiled"):
        training_model_in(_tiny_model(), "float32")
    model = _tiny_model()
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    with pytest.raises(
        ValueError, match=r"one of \('float32', 'mixed_bfloat16'\).*'mixed_float16'"
    ):
        training_model_in(model, "mixed_float16")


@pytest.mark.parametrize("name", [name for name in zoo.list_models() if name not in zoo.BACKBONES])
def test_a_zoo_model_rebuilt_in_mixed_bfloat16_is_the_one_built_in_it(name):
    # The rebuild sets every layer but the outputs' to the policy: what building under it does.
    model = zoo.create(name, input_shape=(28, 28, 1), num_classes=10)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    with dtype_policy("mixed_bfloat16"):
        built = zoo.create(name, input_shape=(28, 28, 1), num_classes=10)
    assert _layer_policies(training_model_in(model, "mixed_bfloat16")) == _layer_policies(built)


def test_step_time_estimate_leaves_the_model_unchanged():
    model = _tiny_model()
    weights = [w.copy() for w in model.get_weights()]
    seconds = estimate_step_seconds(model, batch_size=32, jit_compile=False)
    assert isinstance(seconds, float) and seconds > 0
    assert all(np.array_equal(a, b) for a, b in zip(weights, model.get_weights(), strict=True))
    unknown = keras.Input((None, 3))
    assert estimate_step_seconds(keras.Model(unknown, unknown * 2), 8, False) is None


def test_this_machine_is_described():
    hardware = detect_hardware()
    gpus = tf.config.list_physical_devices("GPU")
    assert hardware.kind == ("gpu" if gpus else "cpu")
    assert len(hardware.gpu_capabilities) == len(gpus)
