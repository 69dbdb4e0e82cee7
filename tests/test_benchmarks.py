"""Benchmark modules return well-formed rows; the umbrella script runs; studies write their outputs.

No timing is asserted: how fast things are is what the benchmarks print, not what tests check.
"""

from __future__ import annotations

import math
import sys

import pytest

from scripts import (
    bench_execution,
    bench_export,
    bench_layers,
    bench_monitors,
    bench_optimizers,
    bench_scaling,
    bench_throughput,
    benchmark,
    study_activations,
    study_augmentation,
    study_batch_size,
    study_batchnorm,
    study_common,
    study_dead_relus,
    study_finetune,
    study_initializations,
    study_learning_rates,
    study_locally_connected,
    study_lrn,
    study_normalization,
    study_regularization,
    study_relu_speed,
    study_transfer_small,
)
from scripts.bench_common import format_rows, format_tables
from scripts.study_common import command_line, markdown_table
from tests.conftest import run_python

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def assert_positive(row: dict, keys: list[str]) -> None:
    for key in keys:
        value = row[key]
        assert isinstance(value, float | int) and math.isfinite(value) and value > 0, (key, row)


def test_format_rows_aligns_columns_and_formats_values():
    text = format_rows(
        [{"name": "a", "ratio": 1.23456, "ok": True}, {"name": "bb", "ratio": 250.4}]
    )
    header, rule, first, second = text.splitlines()
    assert header.split() == ["name", "ratio", "ok"]
    assert set(rule) == {"-"}
    assert first.split() == ["a", "1.23", "yes"]
    assert second.split() == ["bb", "250", "-"]
    assert len({len(header), len(first), len(second)}) == 1


def test_format_tables_splits_rows_with_different_columns():
    text = format_tables([{"a": 1}, {"a": 2}, {"b": 3.0}])
    first, second = text.split("\n\n")
    assert first.splitlines()[0].split() == ["a"] and len(first.splitlines()) == 4
    assert second.splitlines()[0].split() == ["b"]
    assert format_tables([]) == "(no rows)"


def test_benchmark_selection_accepts_known_names_and_rejects_others():
    assert benchmark.selected_benchmarks(None) == list(benchmark.SUB_BENCHMARKS)
    assert benchmark.selected_benchmarks("scaling, layers") == ["scaling", "layers"]
    with pytest.raises(ValueError, match="accepted: layers, optimizers"):
        benchmark.selected_benchmarks("layers,gpus")
    with pytest.raises(SystemExit):
        benchmark.main(["--only", "gpus"])


def test_every_sub_benchmark_is_a_module_with_run_benchmarks():
    for name in benchmark.SUB_BENCHMARKS:
        module = sys.modules[f"scripts.bench_{name}"]
        assert callable(module.run_benchmarks)


def test_markdown_table_and_command_line():
    table = markdown_table(
        [{"x": "relu", "acc": 0.8567, "n": 3}, {"x": "elu", "acc": math.nan, "n": 4}]
    )
    assert table.splitlines() == [
        "| x | acc | n |",
        "|---|---|---|",
        "| relu | 0.857 | 3 |",
        "| elu | - | 4 |",
    ]
    parser = study_learning_rates.study_parser("d", epochs=3)
    args = parser.parse_args(["--epochs", "5", "--out-dir", "/tmp/x"])
    assert command_line("s.py", args, parser.parse_args([])) == "python scripts/s.py --epochs 5"


def test_studies_over_seeds_take_a_list_and_refuse_a_malformed_one(capsys):
    parser = study_common.study_parser("d", epochs=3, seeds="0,1")
    args = parser.parse_args(["--seeds", "2,5"])
    assert args.seeds == [2, 5] and parser.parse_args([]).seeds == [0, 1]
    assert "seed" not in vars(args)
    assert study_common.study_config(args, seed=5).run.seed == 5
    assert command_line("s.py", args, parser.parse_args([])) == "python scripts/s.py --seeds 2,5"
    with pytest.raises(SystemExit):
        parser.parse_args(["--seeds", "0,one"])
    assert (
        "expected comma-separated int values such as 0,1,2; got '0,one'" in capsys.readouterr().err
    )


@pytest.mark.slow
def test_layers_rows():
    rows = bench_layers.run_benchmarks(quick=True)
    assert {row["pass"] for row in rows} == {"forward", "forward+backward"}
    for row in rows:
        assert row["layer"] and row["reference"]
        assert_positive(row, ["ours_ms", "reference_ms", "ratio"])
        assert row["ratio"] == pytest.approx(row["ours_ms"] / row["reference_ms"])


@pytest.mark.slow
def test_optimizers_rows():
    rows = bench_optimizers.run_benchmarks(quick=True)
    assert [row["optimizer"] for row in rows] == list(bench_optimizers.OPTIMIZER_NAMES)
    for row in rows:
        assert_positive(
            row, ["ours_ms", "keras_ms", "tf_train_ms", "ratio_vs_keras", "ratio_vs_tf_train"]
        )


@pytest.mark.slow
def test_monitors_rows():
    rows = bench_monitors.run_benchmarks(quick=True)
    assert [row["monitors"] for row in rows] == list(bench_monitors.MONITOR_SCHEDULES)
    assert rows[0]["ratio"] == 1.0
    for row in rows:
        assert_positive(row, ["seconds", "ratio"])


def test_throughput_passes_only_the_flags_the_recipe_knows():
    flags = [("--epochs", "3"), ("--no-such-speed-flag", "auto"), ("--augment", "light")]
    kept = bench_throughput.known_flags("lenet5_fashion_mnist", flags)
    assert kept == ["--epochs", "3", "--augment", "light"]


def test_throughput_cases_of_the_named_recipes_only():
    cases = bench_throughput.FULL_CASES
    assert bench_throughput.selected_cases(cases, None) == cases
    resnet = bench_throughput.selected_cases(cases, "resnet20_cifar10")
    assert [case.augment for case in resnet] == [None, "none", "flip_h,crop,erase"]
    both = bench_throughput.selected_cases(cases, "mlp_fashion_mnist, resnet20_cifar10")
    assert [case.recipe for case in both] == ["mlp_fashion_mnist"] + ["resnet20_cifar10"] * 3
    with pytest.raises(ValueError, match="recipes.*'lenet5_fashion_mnist'.*Received.*resnet_20"):
        bench_throughput.selected_cases(cases, "resnet_20")


@pytest.mark.slow
def test_throughput_rows():
    rows = bench_throughput.run_benchmarks(quick=True)
    cases = bench_throughput.QUICK_CASES
    assert [row["recipe"] for row in rows] == [case.recipe for case in cases]
    assert [row["augment"] for row in rows] == ["none", "none", "flip_h,crop"]
    for row in rows:
        assert row["examples"] == 3600  # the sample's training split
        assert_positive(
            row, ["recipe_img_s", "plain_img_s", "ratio", "cpu_ratio", "epoch_s", "input_share"]
        )
        assert row["input_share"] < 1.0
        assert row["ratio"] == pytest.approx(row["recipe_img_s"] / row["plain_img_s"])
    # The augmented LeNet-5 is compared with the LeNet-5 run without augmentation.
    assert [row["augment_cost"] is None for row in rows] == [True, True, False]
    assert math.isfinite(rows[2]["augment_cost"]) and rows[2]["augment_cost"] < 1.0


@pytest.mark.slow
def test_execution_rows():
    rows = bench_execution.run_benchmarks(quick=True)
    xla = [row for row in rows if "ms_step_xla" in row]
    steps = [row for row in rows if "steps_per_execution" in row]
    assert [row["model"] for row in xla] == [case.label for case in bench_execution.QUICK_CASES]
    for row in xla:
        assert_positive(row, ["ms_step", "ms_step_xla", "speedup", "best_speedup", "cpu_speedup"])
    counts = [row["steps_per_execution"] for row in steps]
    assert set(bench_execution.STEPS_PER_EXECUTION) <= set(counts) and counts == sorted(counts)
    assert sum(row["auto"] for row in steps) == 1 and steps[0]["speedup"] == 1.0
    for row in steps:
        assert_positive(row, ["estimate_ms", "ms_step", "speedup", "cpu_speedup"])


@pytest.mark.slow
def test_scaling_rows():
    rows = bench_scaling.run_benchmarks(quick=True)
    by_batch = [row for row in rows if row["sweep"] == "batch_size"]
    by_size = [row for row in rows if row["sweep"] == "dataset_size"]
    assert [row["batch_size"] for row in by_batch] == list(bench_scaling.QUICK_BATCH_SIZES)
    assert by_batch[0]["ratio"] == 1.0
    sizes = [row["examples"] for row in by_size]
    assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes)
    assert by_size[-1]["ratio"] == 1.0
    for row in rows:
        assert_positive(row, ["epoch_s", "ratio"])


@pytest.mark.slow
def test_export_rows():
    rows = bench_export.run_benchmarks(quick=True, calls=5)
    assert [row["format"] for row in rows] == ["keras", "tflite", "tflite_dynamic", "tflite_int8"]
    assert rows[1]["x_float"] == 1.0 and rows[3]["x_float"] < 0.5
    for row in rows:
        assert_positive(row, ["latency_ms", "cpu_ms"])


@pytest.mark.slow
def test_benchmark_script_runs_from_the_repository_root():
    result = run_python(["scripts/benchmark.py", "--quick", "--only", "scaling"], timeout=600)
    assert "== scaling" in result.stdout
    assert "dataset_size" in result.stdout and "batch_size" in result.stdout


def test_learning_rate_study_writes_figure_and_table(tmp_path):
    study_learning_rates.main(
        ["--epochs", "2", "--steps-per-epoch", "2", "--out-dir", str(tmp_path)]
    )
    assert (tmp_path / "learning_rates.png").read_bytes().startswith(PNG_SIGNATURE)
    markdown = (tmp_path / "learning_rates.md").read_text()
    assert "![" in markdown and "(learning_rates.png)" in markdown
    assert "--epochs 2 --steps-per-epoch 2" in markdown
    table = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + len(study_learning_rates.LEARNING_RATES)
    assert "The course's figure" in markdown


@pytest.mark.slow
def test_finetune_study_runs_every_mode(tmp_path, shared_dir):
    study_finetune.main(
        [
            "--epochs",
            "2",
            "--head-epochs",
            "1",
            "--per-class",
            "3",
            "--image-size",
            "32",
            "--shared-dir",
            str(shared_dir),
            "--out-dir",
            str(tmp_path),
        ]
    )
    assert (tmp_path / "finetune.png").read_bytes().startswith(PNG_SIGNATURE)
    markdown = (tmp_path / "finetune.md").read_text()
    for mode in ("| head |", "| full |", "| scratch |"):
        assert mode in markdown
    # The offline classifier labels the panda photo correctly (see the weights README).
    assert "| panda.jpg | giant_panda |" in markdown


def test_transfer_study_compares_the_three_settings_over_seeds(tmp_path):
    flags = ["--epochs", "2", "--head-epochs", "1", "--per-class", "5", "--seeds", "2"]
    study_transfer_small.main([*flags, "--out-dir", str(tmp_path)])
    assert (tmp_path / "transfer_small_lenet5.png").read_bytes().startswith(PNG_SIGNATURE)
    markdown = (tmp_path / "transfer_small_lenet5.md").read_text()
    assert "--epochs 2 --per-class 5 --head-epochs 1 --seeds 2" in markdown
    header, *rows = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert "test accuracy (mean ± std)" in header
    assert [row.split(" | ")[0] for row in rows] == ["| head", "| full", "| scratch"]
    assert all(" | 2 | " in row for row in rows)


def test_transfer_verdict_weighs_the_gain_against_the_seed_spread():
    def verdict(full: list[float], scratch: list[float]) -> str:
        runs = {"head": [0.80, 0.82], "full": full, "scratch": scratch}
        return study_transfer_small.findings("resnet20", runs, 100, 2)

    assert "pays: full beats training from scratch by 4.0 points" in verdict(
        [0.97, 0.98], [0.93, 0.94]
    )
    assert "scratch beats the better transfer setting (full) by 4.0 points" in verdict(
        [0.93, 0.94], [0.97, 0.98]
    )
    assert "differ by +1.0 points, within the seed spread (2.8 points)" in verdict(
        [0.93, 0.97], [0.93, 0.95]
    )


def speed_run(activation: str, lr: float, errors: list[float]) -> study_relu_speed.SpeedRun:
    return study_relu_speed.SpeedRun(activation, lr, 0, errors, 100, 1000.0, 0.9)


def test_relu_speed_counts_images_to_each_error_and_picks_each_activations_fastest_rate():
    relu = [speed_run("relu", 0.1, [0.3, 0.2, 0.09]), speed_run("relu", 0.1, [0.24, 0.2, 0.2])]
    assert [run.images_to(0.25) for run in relu] == [200, 100]
    assert relu[1].images_to(0.1) == math.inf
    assert study_relu_speed.median_images(relu, 0.25) == 150
    assert study_relu_speed.median_images(relu, 0.1) == math.inf  # half never got there
    slow = [speed_run("tanh", 0.01, [0.5, 0.4, 0.3, 0.24, 0.14, 0.11, 0.1])]
    fast = [speed_run("tanh", 0.1, [0.3, 0.24, 0.2, 0.16, 0.15, 0.1])]
    assert study_relu_speed.fastest_lr({0.01: slow, 0.1: fast}) == 0.1  # 10% first
    assert study_relu_speed.speedup(relu, fast, 0.25) == pytest.approx(200 / 150)
    assert math.isnan(study_relu_speed.speedup(relu, fast, 0.1))
    verdicts = [study_relu_speed.verdict(r) for r in (6.0, 2.0, 1.2, math.nan)]
    assert verdicts == ["holds", "holds partly", "does not hold here", "does not hold here"]


@pytest.mark.slow
def test_relu_speed_study_writes_figure_and_table(tmp_path):
    flags = ["--epochs", "3", "--steps-per-epoch", "5", "--seeds", "0", "--lrs", "0.05,0.1"]
    study_relu_speed.main([*flags, "--out-dir", str(tmp_path)])
    assert (tmp_path / "relu_speed.png").read_bytes().startswith(PNG_SIGNATURE)
    markdown = (tmp_path / "relu_speed.md").read_text()
    assert " ".join(flags) in markdown
    header, _, *rows = [line for line in markdown.splitlines() if line.startswith("|")]
    assert "images to 25%" in header and "images to 10%" in header
    assert [row.split(" | ")[:2] for row in rows] == [
        ["| relu", "0.050"],
        ["| relu", "0.100"],
        ["| tanh", "0.050"],
        ["| tanh", "0.100"],
        ["| tanh / relu", "-"],
    ]
    assert "Verdict: **" in markdown


def dead_run(
    lr: float, network_dead: float, diverged: bool = False, accuracy: float = 0.8
) -> study_dead_relus.DeadRun:
    dead = {"dense1_relu": [0.0, network_dead + 0.1], "dense2_relu": [0.0, network_dead - 0.1]}
    return study_dead_relus.DeadRun(lr, 0, [0, 100], dead, accuracy, diverged)


def test_dead_relu_verdict_needs_the_dead_fraction_to_grow_with_the_rate():
    assert dead_run(0.1, 0.35).network() == pytest.approx([0.0, 0.35])
    grows_a_lot = {0.01: [dead_run(0.01, 0.1)], 0.1: [dead_run(0.1, 0.35)]}
    assert study_dead_relus.verdict(grows_a_lot) == "holds"
    grows_a_little = {0.01: [dead_run(0.01, 0.1)], 0.1: [dead_run(0.1, 0.2)]}
    assert study_dead_relus.verdict(grows_a_little) == "holds partly"
    shrinks = {0.01: [dead_run(0.01, 0.4)], 0.1: [dead_run(0.1, 0.2)]}
    assert study_dead_relus.verdict(shrinks) == "does not hold here"
    only_one_trains = {0.01: [dead_run(0.01, 0.1)], 0.1: [dead_run(0.1, 0.9, diverged=True)]}
    assert study_dead_relus.verdict(only_one_trains).startswith("not measurable here")
    # A network that died whole no longer learns: its rate does not count for the claim.
    collapsed = {**grows_a_little, 0.2: [dead_run(0.2, 0.9, accuracy=0.1)]}
    assert study_dead_relus.verdict(collapsed) == "holds partly"


@pytest.mark.slow
def test_dead_relu_study_writes_figure_and_table(tmp_path):
    flags = ["--epochs", "2", "--steps-per-epoch", "4", "--seeds", "0", "--monitor-every", "2"]
    study_dead_relus.main([*flags, "--out-dir", str(tmp_path)])
    assert (tmp_path / "dead_relus.png").read_bytes().startswith(PNG_SIGNATURE)
    markdown = (tmp_path / "dead_relus.md").read_text()
    header, _, *rows = [line for line in markdown.splitlines() if line.startswith("|")]
    assert "dense1_relu dead (end)" in header and "dense3_relu dead (end)" in header
    assert [float(row.split(" | ")[0][2:]) for row in rows] == list(study_dead_relus.LEARNING_RATES)
    assert "Verdict: **" in markdown


def test_batchnorm_verdicts_compare_usable_rates_and_spreads_over_initializations():
    nan = math.nan
    plain = {0.01: 0.85, 0.1: 0.86, 1.0: nan}
    assert study_batchnorm.usable_rates(plain) == [0.01, 0.1]
    assert study_batchnorm.usable_rates({0.1: nan}) == []
    assert study_batchnorm.rate_verdict(plain, {0.01: 0.85, 0.1: 0.87, 1.0: 0.86}) == "holds"
    three_times = {0.1: 0.85, 0.3: 0.86}
    assert study_batchnorm.rate_verdict({0.1: 0.85, 0.3: nan}, three_times) == "holds"
    assert study_batchnorm.rate_verdict(plain, {0.01: 0.86, 0.1: 0.5, 1.0: 0.2}) == (
        "does not hold here"
    )
    assert study_batchnorm.spread([0.8, nan, 0.85]) == pytest.approx(0.75)  # diverged: chance
    assert study_batchnorm.init_verdict([0.85, 0.1, 0.6], [0.86, 0.84, 0.8]) == "holds"
    assert study_batchnorm.init_verdict([0.85, 0.1], [0.86, 0.4]) == "holds partly"
    assert study_batchnorm.init_verdict([0.85, 0.84], [0.86, 0.1]).startswith("not measurable")
    assert math.isnan(study_batchnorm.mean_accuracy([study_run(0.9), study_run(nan, True)]))


def study_run(accuracy: float, diverged: bool = False):
    return study_common.StudyRun("x", {"loss": [1.0]}, accuracy, 1.0, None, diverged)


@pytest.mark.slow
def test_batchnorm_study_writes_figure_and_table(tmp_path):
    flags = ["--epochs", "1", "--steps-per-epoch", "3", "--seeds", "0"]
    study_batchnorm.main([*flags, "--out-dir", str(tmp_path)])
    assert (tmp_path / "batchnorm.png").read_bytes().startswith(PNG_SIGNATURE)
    markdown = (tmp_path / "batchnorm.md").read_text()
    header, _, *rows = [line for line in markdown.splitlines() if line.startswith("|")]
    assert "test accuracy without BatchNorm" in header and "test accuracy with BatchNorm" in header
    expected = len(study_batchnorm.LEARNING_RATES) + len(study_batchnorm.INITIALIZATIONS)
    assert len(rows) == expected
    assert markdown.count("Verdict on") == 2


def seeded_runs(*accuracies: float, train: float = 0.95) -> list[study_common.StudyRun]:
    return [
        study_common.StudyRun(
            "x", {"accuracy": [0.5]}, a, 2.0, None, train_accuracy=train, images=100
        )
        for a in accuracies
    ]


def test_seed_summaries_report_mean_spread_gap_and_speed():
    assert study_common.mean_and_spread([0.9]) == (0.9, 0.0)
    mean, spread = study_common.mean_and_spread([0.8, 0.9])
    assert mean == pytest.approx(0.85) and spread == pytest.approx(0.0707, abs=1e-4)
    row = study_common.seeds_row("a", seeded_runs(0.8, 0.9))
    assert row["test accuracy"] == "0.8500 +- 0.0707"
    assert row["gap"] == pytest.approx(0.1) and row["images/s"] == pytest.approx(50.0)
    gain, noise = study_common.gain_and_noise(seeded_runs(0.9, 0.92), seeded_runs(0.88, 0.88))
    assert gain == pytest.approx(0.03) and noise == pytest.approx(0.01414, abs=1e-4)


def test_comparison_figure_draws_a_configuration_with_a_diverged_seed():
    trained = seeded_runs(0.9, 0.91)
    diverged = study_common.StudyRun(
        "x", {"accuracy": [0.3, 0.1, 0.1]}, math.nan, 1.0, None, True, math.nan, 100
    )
    figure = study_common.comparison_figure(
        {"fine": trained, "one diverged": [seeded_runs(0.8)[0], diverged]}, "t"
    )
    curve_axis, bar_axis = figure.axes
    assert [len(line.get_xdata()) for line in curve_axis.lines] == [1, 1]
    assert bar_axis.get_ylim() == pytest.approx((0.855, 1.0))  # from the finite mean, 0.905
    assert math.isnan(study_common.seed_mean([diverged]).test_accuracy)


def test_comparison_study_verdicts():
    by_label = {label: seeded_runs(0.88) for label in study_regularization.REGULARIZERS}
    by_label["dropout + max-norm"] = seeded_runs(0.90)
    assert study_regularization.verdict(by_label) == "holds"
    by_label["dropout + L2"] = seeded_runs(0.91)
    assert study_regularization.verdict(by_label) == "holds partly"
    by_label["none"] = seeded_runs(0.92)
    assert study_regularization.verdict(by_label) == "does not hold here"

    speed = {16: 1000.0, 4096: 5000.0}
    assert study_batch_size.verdict({16: 0.9, 4096: 0.8}, {16: 0.02, 4096: 0.03}, speed) == "holds"
    underfits = study_batch_size.verdict({16: 0.9, 4096: 0.8}, {16: 0.02, 4096: 0.0}, speed)
    assert underfits == "holds partly"
    assert study_batch_size.verdict({16: 0.9, 4096: 0.9}, {16: 0.0, 4096: 0.0}, speed) == (
        "does not hold here"
    )

    shared = seeded_runs(0.90, 0.91)
    assert study_locally_connected.verdict(seeded_runs(0.90, 0.90), shared) == "holds"
    assert study_locally_connected.verdict(seeded_runs(0.85, 0.85), shared) == "holds partly"

    assert study_lrn.verdict(0.01, 0.002) == "holds"
    assert study_lrn.verdict(0.01, 0.02) == "holds partly"  # within noise
    assert study_lrn.verdict(-0.001, 0.002) == "does not hold here"

    assert study_augmentation.verdict(0.01, 0.002, 0.01, 0.05) == "holds"
    assert study_augmentation.verdict(0.001, 0.002, 0.01, 0.05) == "holds partly"
    assert study_augmentation.verdict(-0.01, 0.002, 0.06, 0.05) == "does not hold here"


def assert_study_page(directory, name: str, flags: list[str], labels: list[str]) -> str:
    """The study wrote its figure and a page with its command, one row per label, a verdict."""
    assert (directory / f"{name}.png").read_bytes().startswith(PNG_SIGNATURE)
    markdown = (directory / f"{name}.md").read_text()
    assert " ".join(flags) in markdown
    _, _, *rows = [line for line in markdown.splitlines() if line.startswith("|")]
    assert [row.split(" | ")[0][2:] for row in rows] == labels
    return markdown


SMOKE_FLAGS = ["--epochs", "1", "--steps-per-epoch", "3", "--seeds", "3"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "study, name, labels",
    [
        (study_regularization, "regularization", list(study_regularization.REGULARIZERS)),
        (study_batch_size, "batch_size", [f"batch {n}" for n in study_batch_size.BATCH_SIZES]),
        (study_locally_connected, "locally_connected", list(study_locally_connected.VARIANTS)),
        (study_lrn, "lrn", list(study_lrn.VARIANTS)),
        (study_augmentation, "augmentation", list(study_augmentation.VARIANTS)),
    ],
)
def test_comparison_studies_write_figure_and_table_over_seeds(tmp_path, study, name, labels):
    study.main([*SMOKE_FLAGS, "--out-dir", str(tmp_path)])
    markdown = assert_study_page(tmp_path, name, SMOKE_FLAGS, labels)
    assert "over seeds 3" in markdown and "Verdict: **" in markdown


@pytest.mark.slow
def test_normalization_study_takes_batch_sizes_and_seeds(tmp_path):
    flags = [*SMOKE_FLAGS, "--batch-sizes", "2,8"]
    study_normalization.main([*flags, "--out-dir", str(tmp_path)])
    markdown = assert_study_page(
        tmp_path, "normalization", flags, ["none"] * 2 + ["batch"] * 2 + ["group"] * 2
    )
    assert "mean of seeds 3;" in markdown and "cut to the same number of steps" in markdown


@pytest.mark.slow
@pytest.mark.parametrize(
    "study, name", [(study_activations, "activations"), (study_initializations, "initializations")]
)
def test_single_seed_studies_write_figure_and_table(tmp_path, study, name):
    flags = ["--epochs", "1", "--steps-per-epoch", "2"]
    study.main([*flags, "--out-dir", str(tmp_path)])
    assert (tmp_path / f"{name}.png").read_bytes().startswith(PNG_SIGNATURE)
    assert " ".join(flags) in (tmp_path / f"{name}.md").read_text()
