"""Hyperparameter search: spec parsing, narrowing, stage plans, reports, and real tiny searches."""

import csv
import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras_tuner
import pytest
import yaml

from recipes import lenet5_fashion_mnist
from recipes.search import SearchSettings, TrialRecord, parse_param, parse_params, run_search
from recipes.search.cli import main, parse_settings
from recipes.search.report import (
    BEST_CONFIG,
    SCATTER_PNG,
    TRIALS_CSV,
    best_trial,
    plot_scatter,
    write_trials_csv,
)
from recipes.search.space import apply_values, build_hyperparameters
from recipes.search.stage import StagePlan, read_plan, write_plan
from recipes.search.tuner import make_oracle
from recipes.train.config import RunConfig, resolve_config
from recipes.train.runner import recipe_main
from tests.conftest import REPO_ROOT

RECIPE = "lenet5_fashion_mnist"
# The configuration every run starts from, in the sectioned form a search's plans hold.
DEFAULT_CONFIG = RunConfig().to_dict()
# A tiny model on the embedded sample: a trial trains in about a second.
TINY_RECIPE_FLAGS = [
    "--dataset",
    "sample",
    "--model",
    "mlp",
    "--model-option",
    "depth=1",
    "--model-option",
    "width=8",
    "--batch-size",
    "256",
]


def search_argv(search_dir: Path, *extra: str) -> list[str]:
    return [
        "--recipe",
        RECIPE,
        "--param",
        "lr=log:1e-3:3e-1",
        "--param",
        "l2=log:1e-6:1e-2",
        "--param",
        "activation=choice:relu,tanh",
        "--stage1-epochs",
        "1",
        "--stage2-epochs",
        "1",
        "--search-dir",
        str(search_dir),
        *extra,
        *TINY_RECIPE_FLAGS,
    ]


def read_rows(search_dir: Path) -> list[dict[str, str]]:
    with open(search_dir / TRIALS_CSV, newline="") as handle:
        return list(csv.DictReader(handle))


# ---- search space specs ----


def test_parse_numeric_kinds():
    lr = parse_param("lr=log:1e-4:1e-1")
    assert (lr.name, lr.kind, lr.low, lr.high, lr.is_log, lr.points) == (
        "lr",
        "log",
        1e-4,
        0.1,
        True,
        None,
    )
    batch = parse_param("batch-size=logint:32:256:4")
    # The name stays as given: the config reads flag spellings and dotted keys alike.
    assert (batch.name, batch.low, batch.high, batch.points, batch.is_int) == (
        "batch-size",
        32,
        256,
        4,
        True,
    )
    width = parse_param("model_options.width=int:8:64")
    assert width.name == "model_options.width" and isinstance(width.low, int)
    assert parse_param("dropout=float:0:0.5").kind == "float"


def test_parse_choice_values_are_typed():
    assert parse_param("activation=choice:relu,tanh").values == ("relu", "tanh")
    # "1e-3" is a string to YAML 1.1; a choice reads numbers as numbers and unifies int/float.
    assert parse_param("lr=choice:1e-3,1,0.1").values == (0.001, 1.0, 0.1)
    assert parse_param("batch_size=choice:32,64").values == (32, 64)
    assert parse_param("balance_classes=choice:true,false").values == (True, False)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("lr", "expected NAME=KIND"),
        ("lr=", "expected NAME=KIND"),
        ("lr=uniform:0:1", "unknown range kind 'uniform'"),
        ("activaton=choice:a,b", "Unknown option 'activaton' in --param. Did you mean activation"),
        ("out_dir=choice:a,b", "set by the search"),
        ("model_options=int:1:3", "search one entry of it"),
        ("lr.x=log:1e-4:1e-1", "Unknown option 'optim.lr.x'"),
        ("lr=log:1e-1:1e-4", "low < high"),
        ("lr=log:0.1:0.1", "low < high"),
        ("lr=log:0:1e-1", "positive bounds"),
        ("l2=log:-1:1", "positive bounds"),
        ("batch_size=int:32.5:64", "integer bounds"),
        ("lr=log:1e-4", "LOW:HIGH"),
        ("lr=log:a:1", "'a' is not a number"),
        ("lr=log:1e-4:1e-1:1", "at least 2 points"),
        ("activation=choice:relu", "at least two values"),
        (
            "activation=choice:relu,1",
            "must all be numbers, all booleans or all strings, got int, str",
        ),
        ("activation=choice:relu,relu", "repeat"),
    ],
)
def test_parse_errors_name_the_problem(text, message):
    with pytest.raises(ValueError, match=message):
        parse_param(text)


def test_parse_params_rejects_repeats_and_empty():
    with pytest.raises(ValueError, match="more than once for lr"):
        parse_params(["lr=log:1e-4:1e-1", "lr=float:0.1:0.2"])
    with pytest.raises(ValueError, match="at least one --param"):
        parse_params([])


def test_spec_text_round_trip():
    for text in ("lr=log:0.0001:0.1:4", "model_options.width=int:8:64", "x=choice:relu,tanh"):
        spec = parse_param(text.replace("x=", "activation="))
        assert parse_param(spec.to_text()) == spec


def test_grid_values_are_evenly_spaced_in_sampling_space():
    assert parse_param("lr=log:1e-4:1e-1:4").grid_values(3) == (1e-4, 1e-3, 1e-2, 1e-1)
    assert parse_param("dropout=float:0:0.5").grid_values(3) == (0.0, 0.25, 0.5)
    # Integers round and repeat values collapse.
    assert parse_param("model_options.depth=int:1:2").grid_values(5) == (1, 2)


def test_search_space_for_random_and_grid():
    specs = parse_params(["lr=log:1e-4:1e-1", "batch_size=logint:32:256", "activation=choice:a,b"])
    random_space = build_hyperparameters(specs, grid=False, default_points=3)
    lr, batch, activation = random_space.space
    assert isinstance(lr, keras_tuner.engine.hyperparameters.Float) and lr.sampling == "log"
    assert isinstance(batch, keras_tuner.engine.hyperparameters.Int) and batch.sampling == "log"
    assert list(activation.values) == ["a", "b"]
    grid_space = build_hyperparameters(specs, grid=True, default_points=3)
    assert [list(hp.values) for hp in grid_space.space] == [
        [1e-4, pytest.approx(3.16228e-3), 0.1],
        [32, 91, 256],
        ["a", "b"],
    ]


def test_narrowed_log_range_spans_the_best_widened_and_clipped():
    spec = parse_param("lr=log:1e-4:1e-0")
    narrowed = spec.narrowed([1e-3, 1e-2], widen=0.5)  # span: one decade, half a decade each side
    assert narrowed.low == pytest.approx(10**-3.5) and narrowed.high == pytest.approx(10**-1.5)
    near_top = spec.narrowed([0.5, 0.9], widen=20.0)  # reaches past both ends: clipped
    assert near_top.low == pytest.approx(1e-4) and near_top.high == pytest.approx(1.0)
    # A single best value gets `widen` times the whole range around it.
    single = spec.narrowed([1e-2], widen=0.125)
    assert math.log10(single.low) == pytest.approx(-2.5) and math.log10(single.high) == (
        pytest.approx(-1.5)
    )


def test_narrowed_int_and_choice():
    depth = parse_param("model_options.depth=int:1:10")
    assert depth.narrowed([4, 6], widen=0.5) == parse_param("model_options.depth=int:3:7")
    assert depth.narrowed([4], widen=0.0) == parse_param("model_options.depth=int:3:5")
    activation = parse_param("activation=choice:relu,tanh,elu")
    assert activation.narrowed(["elu", "relu", "elu"], widen=0.25).values == ("relu", "elu")


def test_edge_warning_positions():
    spec = parse_param("lr=log:1e-4:1e-1")
    assert spec.at_edge(1.1e-4) and spec.at_edge(0.095) and not spec.at_edge(3e-3)


def test_apply_values_sets_options_and_entries_without_mutating():
    config = RunConfig().updated({"optim.lr": 0.1, "model.options": {"depth": 2}}).to_dict()
    before = json.dumps(config)
    updated = apply_values(config, {"lr": 0.01, "model_options.width": 16})
    assert updated["optim"]["lr"] == 0.01
    assert updated["model"]["options"] == {"depth": 2, "width": 16}
    assert json.dumps(config) == before


# ---- plans, oracles, settings ----


def make_plan(**changes) -> StagePlan:
    values = {
        "recipe": RECIPE,
        "stage": 1,
        "strategy": "random",
        "params": ("lr=log:0.0001:0.1",),
        "epochs": 1,
        "max_trials": 3,
        "grid_points": 3,
        "seed": 1,
        "base_config": DEFAULT_CONFIG,
    }
    return StagePlan(**{**values, **changes})


def test_stage_plan_file_round_trip(tmp_path):
    plan = make_plan()
    write_plan(tmp_path, plan)
    assert read_plan(tmp_path, 1) == plan
    assert read_plan(tmp_path, 2) is None
    assert plan.differences(make_plan(max_trials=5), ignore=("max_trials",)) == []
    assert plan.differences(make_plan(epochs=2)) == ["epochs: 1 vs 2"]
    with pytest.raises(ValueError, match="unknown search strategy"):
        make_plan(strategy="bayesian")


def test_make_oracle_validates():
    space = build_hyperparameters(parse_params(["lr=log:1e-4:1e-1"]), grid=False, default_points=3)
    assert isinstance(make_oracle("grid", space, 3, seed=2), keras_tuner.oracles.GridSearchOracle)
    with pytest.raises(ValueError, match="unknown search strategy"):
        make_oracle("bayes", space, 3, seed=1)
    with pytest.raises(ValueError, match="nonzero"):
        make_oracle("random", space, 3, seed=0)


def test_settings_defaults_and_validation(tmp_path):
    specs = tuple(parse_params(["lr=log:1e-4:1e-1:4", "activation=choice:relu,tanh"]))
    base = RunConfig().updated({"run.epochs": 8}).to_dict()
    settings = SearchSettings(RECIPE, specs, base, tmp_path)
    assert settings.epochs == {1: 2, 2: 8}
    plan1 = settings.plan(1, specs)
    assert (plan1.max_trials, plan1.seed, plan1.epochs) == (10, 1, 2)
    grid = SearchSettings(RECIPE, specs, base, tmp_path, strategy="grid", trials=100)
    assert grid.plan(1, specs).max_trials == 8  # capped at the 4 x 2 grid
    with pytest.raises(ValueError, match="workers must be >= 1"):
        SearchSettings(RECIPE, specs, base, tmp_path, workers=0)
    with pytest.raises(ValueError, match="unknown search 'bayes'"):
        SearchSettings(RECIPE, specs, base, tmp_path, strategy="bayes")


def test_resuming_with_other_settings_is_refused_before_training(tmp_path):
    specs = tuple(parse_params(["lr=log:1e-4:1e-1"]))
    settings = SearchSettings(RECIPE, specs, DEFAULT_CONFIG, tmp_path)
    write_plan(tmp_path, settings.plan(1, parse_params(["lr=log:1e-3:1e-1"])))
    with pytest.raises(ValueError, match="other settings.*params"):
        run_search(settings)


# ---- command line ----


def test_cli_resolves_recipe_flags_and_search_flags(tmp_path):
    settings = parse_settings(search_argv(tmp_path / "s", "--search", "grid", "--workers", "1"))
    assert settings.strategy == "grid" and settings.search_dir == tmp_path / "s"
    assert settings.base_config["model"]["name"] == "mlp"
    assert settings.base_config["model"]["options"] == {"depth": 1, "width": 8}
    assert settings.base_config["optim"]["options"] == {"momentum": 0.9}  # recipe default
    assert settings.base_config["run"]["verbose"] == 0
    assert [spec.name for spec in settings.specs] == ["lr", "l2", "activation"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--recipe", "nope", "--param", "lr=log:1e-4:1e-1"], "unknown recipe 'nope'"),
        (["--recipe", RECIPE, "--param", "lr=log:1:0.1"], "low < high"),
        (["--recipe", RECIPE, "--param", "lr=log:1e-3:1", "--out-dir", "x"], "--out-dir is set"),
        (["--recipe", RECIPE, "--param", "lr=log:1e-3:1", "--resume=1"], "--resume is set"),
        (["--recipe", RECIPE, "--param", "lr=log:1e-3:1", "--trials", "0"], "trials must be"),
        (["--recipe", RECIPE, "--param", "lr=log:1e-3:1", "--no-such"], "unrecognized"),
    ],
)
def test_cli_errors(argv, message, capsys):
    with pytest.raises(SystemExit):
        parse_settings(argv)
    assert message in capsys.readouterr().err


# ---- reports ----


def record(name: str, stage: int, accuracy: float | None, epochs: int, **values) -> TrialRecord:
    return TrialRecord(
        trial=name,
        stage=stage,
        status="completed" if accuracy is not None else "failed",
        val_accuracy=accuracy,
        epochs=epochs,
        values=values,
        run_dir=Path("trials", name),
        message="" if accuracy is not None else "diverged: loss became nan",
    )


def test_best_trial_prefers_the_longest_runs():
    records = [
        record("stage1-0", 1, 0.9, 1, lr=0.1),
        record("stage2-0", 2, 0.7, 5, lr=0.1),
        record("stage2-1", 2, 0.8, 5, lr=0.1),
        record("stage2-2", 2, None, 5, lr=0.1),
    ]
    assert best_trial(records).trial == "stage2-1"
    assert best_trial(records[:1]).trial == "stage1-0"
    assert best_trial(records[3:]) is None


def test_trials_table_and_scatter_files(tmp_path):
    specs = parse_params(["lr=log:1e-4:1e-1", "l2=log:1e-6:1e-2", "activation=choice:a,b"])
    records = [
        record("stage1-0", 1, 0.5, 1, lr=1e-3, l2=1e-4, activation="a"),
        record("stage1-1", 1, None, 1, lr=9e-2, l2=1e-5, activation="b"),
    ]
    write_trials_csv(records, [s.name for s in specs], tmp_path / TRIALS_CSV)
    rows = read_rows(tmp_path)
    assert [row["status"] for row in rows] == ["completed", "failed"]
    assert rows[0]["val_accuracy"] == "0.5" and rows[1]["val_accuracy"] == ""
    assert float(rows[0]["lr"]) == 1e-3 and rows[1]["message"] == "diverged: loss became nan"
    # Two numeric options, one, only a choice; and nothing completed yet.
    for index, (chosen, shown) in enumerate(
        [(specs, records), (specs[:1], records), (specs[2:], records), (specs, records[1:])]
    ):
        path = plot_scatter(shown, chosen, tmp_path / f"scatter{index}.png")
        assert path.read_bytes().startswith(b"\x89PNG")


# ---- real tiny searches ----


def finished_runs(search_dir: Path) -> dict[str, int]:
    """Trial run directories with a finished run, and when their metrics were written."""
    return {
        path.parent.name: path.stat().st_mtime_ns
        for path in (search_dir / "trials").glob("*/metrics.json")
    }


@pytest.mark.slow
def test_two_stage_search_end_to_end_and_resume(tmp_path, capsys):
    search_dir = tmp_path / "search"
    best = main(search_argv(search_dir, "--trials", "3", "--stage2-trials", "2"))
    rows = read_rows(search_dir)
    assert [(row["trial"], row["stage"]) for row in rows] == [
        ("stage1-0", "1"),
        ("stage1-1", "1"),
        ("stage1-2", "1"),
        ("stage2-0", "2"),
        ("stage2-1", "2"),
    ]
    assert all(
        row["status"] == "completed" and 0 <= float(row["val_accuracy"]) <= 1 for row in rows
    )
    assert (search_dir / SCATTER_PNG).read_bytes().startswith(b"\x89PNG")
    # Stage 2 stays inside stage 1's ranges, around its best trials.
    stage2_plan = read_plan(search_dir, 2)
    for text in stage2_plan.params:
        spec = parse_param(text)
        if spec.is_numeric:
            stage1_spec = parse_param(
                next(p for p in read_plan(search_dir, 1).params if p.startswith(spec.name + "="))
            )
            assert stage1_spec.low <= spec.low < spec.high <= stage1_spec.high
    # The best config is a recipe --config: it resolves and the recipe runs with it.
    config_file = search_dir / BEST_CONFIG
    config = resolve_config(lenet5_fashion_mnist.DEFAULTS, ["--config", str(config_file)], "t", "")
    assert config.optim.lr == pytest.approx(best.values["lr"])
    assert config.model.knobs["activation"] == best.values["activation"]
    assert config.model.options == {"depth": 1, "width": 8}
    assert yaml.safe_load(config_file.read_text())["run"]["epochs"] == 1
    capsys.readouterr()
    recipe_main(
        RECIPE, "", lenet5_fashion_mnist.DEFAULTS, ["--config", str(config_file), "--dry-run"]
    )
    assert '"name": "mlp"' in capsys.readouterr().out

    # Rerunning with one more stage-1 trial runs only that trial; stage 2 is done already.
    before = finished_runs(search_dir)
    main(search_argv(search_dir, "--trials", "4", "--stage2-trials", "2"))
    after = finished_runs(search_dir)
    assert sorted(set(after) - set(before)) == ["stage1-3"]
    assert {name: after[name] for name in before} == before  # finished trials did not run again
    assert len(read_rows(search_dir)) == 6


def script_command(search_dir: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        str(REPO_ROOT / "scripts" / "hparam_search.py"),
        *search_argv(search_dir, *extra),
    ]


@pytest.mark.slow
def test_killed_search_resumes_its_interrupted_trial(tmp_path):
    search_dir = tmp_path / "search"
    command = script_command(
        search_dir, "--trials", "1", "--stage2-trials", "0", "--stage1-epochs", "4"
    )
    state = search_dir / "trials" / "stage1-0" / "checkpoints" / "state.json"
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not state.is_file() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert process.poll() is None, "the search ended before its first epoch was saved"
        process.send_signal(signal.SIGKILL)  # no chance to clean up, like a crash
    finally:
        process.kill()
        process.wait()
    assert not (search_dir / "trials" / "stage1-0" / "metrics.json").exists()

    resumed = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "Resuming" in resumed.stdout and "stage1-0" in resumed.stdout
    history = (search_dir / "trials" / "stage1-0" / "history.csv").read_text().splitlines()
    assert len(history) == 1 + 4  # header and each epoch once
    assert [row["status"] for row in read_rows(search_dir)] == ["completed"]


@pytest.mark.slow
def test_parallel_grid_search_with_two_workers(tmp_path):
    search_dir = tmp_path / "search"
    command = [
        sys.executable,
        str(REPO_ROOT / "scripts" / "hparam_search.py"),
        "--recipe",
        RECIPE,
        "--search",
        "grid",
        "--param",
        "lr=log:1e-3:1e-1:2",
        "--stage2-trials",
        "0",
        "--stage1-epochs",
        "1",
        "--workers",
        "2",
        "--search-dir",
        str(search_dir),
        *TINY_RECIPE_FLAGS,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=400)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = read_rows(search_dir)
    assert sorted(float(row["lr"]) for row in rows) == [1e-3, 1e-1]  # the whole 2-point grid
    assert all(row["status"] == "completed" for row in rows)
    # Both trials ran in worker processes (each saves its own tuner state).
    assert {"chief.json", "tuner0.json", "tuner1.json"} <= {
        path.name for path in (search_dir / "stage1").glob("*.json")
    }
