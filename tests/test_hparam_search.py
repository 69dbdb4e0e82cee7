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
from recipes.search import tuner as tuner_module
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
from recipes.search.stage import StagePlan, build_tuner, read_plan, write_plan
from recipes.search.tuner import (
    IDLE_WAIT_S,
    hyperband_budgets,
    hyperband_epochs,
    make_oracle,
    searched_values,
)
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


ONE_EPOCH_STAGES = ("--stage1-epochs", "1", "--stage2-epochs", "1")


def search_argv(search_dir: Path, *extra: str, epochs: tuple[str, ...] = ONE_EPOCH_STAGES):
    return [
        "--recipe",
        RECIPE,
        "--param",
        "lr=log:1e-3:3e-1",
        "--param",
        "l2=log:1e-6:1e-2",
        "--param",
        "activation=choice:relu,tanh",
        *epochs,
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
    # Flag spellings name the same column as the option names: trials.csv says batch_size.
    assert (batch.name, batch.low, batch.high, batch.points, batch.is_int) == (
        "batch_size",
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
    with pytest.raises(ValueError, match="unknown search engine 'bayes'"):
        make_plan(strategy="bayes")


def test_plans_written_before_the_engine_options_still_load(tmp_path):
    text = make_plan().to_json()
    old = {k: v for k, v in json.loads(text).items() if not k.startswith(("hyperband", "initial"))}
    assert len(old) == len(json.loads(text)) - 3
    assert StagePlan.from_json(json.dumps(old)) == make_plan()


def test_engine_options_belong_to_their_engine_plans():
    hyperband = make_plan(strategy="hyperband", hyperband_factor=3, hyperband_iterations=1)
    assert StagePlan.from_json(hyperband.to_json()) == hyperband
    with pytest.raises(ValueError, match="needs hyperband_factor"):
        make_plan(strategy="hyperband")
    with pytest.raises(ValueError, match="only a hyperband plan"):
        make_plan(hyperband_factor=3, hyperband_iterations=1)
    with pytest.raises(ValueError, match="initial_points belongs to bayesian plans"):
        make_plan(initial_points=2)
    assert make_plan(strategy="bayesian", initial_points=2).initial_points == 2


def test_trial_config_takes_the_searched_values_and_the_epoch_budget():
    plan = make_plan(epochs=4)
    expected = RunConfig().updated({"optim.lr": 0.5, "run.epochs": 4}).to_dict()
    assert plan.trial_config({"lr": 0.5}) == expected
    expected["run"]["epochs"] = 2
    assert plan.trial_config({"lr": 0.5}, 2) == expected


def test_make_oracle_validates():
    space = build_hyperparameters(parse_params(["lr=log:1e-4:1e-1"]), grid=False, default_points=3)
    assert isinstance(make_oracle("grid", space, 3, seed=2), keras_tuner.oracles.GridSearchOracle)
    with pytest.raises(
        ValueError,
        match="unknown search engine 'bayes'; the engines are: random, grid, bayesian, hyperband",
    ):
        make_oracle("bayes", space, 3, seed=1)
    with pytest.raises(ValueError, match="nonzero"):
        make_oracle("random", space, 3, seed=0)
    with pytest.raises(ValueError, match="needs max_epochs"):
        make_oracle("hyperband", space, 3, seed=1)


def test_make_oracle_for_the_bayesian_and_hyperband_engines():
    space = build_hyperparameters(parse_params(["lr=log:1e-4:1e-1"]), grid=False, default_points=3)
    bayesian = make_oracle("bayesian", space, 7, seed=2, initial_points=4)
    assert isinstance(bayesian, keras_tuner.oracles.BayesianOptimizationOracle)
    assert (bayesian.max_trials, bayesian.num_initial_points) == (7, 4)
    hyperband = make_oracle(
        "hyperband", space, 100, seed=2, max_epochs=9, hyperband_factor=3, hyperband_iterations=2
    )
    assert isinstance(hyperband, keras_tuner.oracles.HyperbandOracle)
    assert (hyperband.max_epochs, hyperband.factor, hyperband.hyperband_iterations) == (9, 3, 2)
    assert hyperband.max_trials == 2 * 23  # its own count (see the budgets below), not 100


def test_hyperband_budgets_follow_its_brackets():
    # max_epochs 2, factor 2: a bracket of 2 one-epoch trials whose best trains 2 epochs, then a
    # bracket of 2 two-epoch trials.
    assert hyperband_budgets(2, 2, 1) == [1, 1, 2, 2, 2]
    # The example of the Hyperband paper's shape: 3 brackets for 9 epochs at factor 3.
    assert hyperband_budgets(9, 3, 1) == [1] * 9 + [3] * 3 + [9] + [3] * 5 + [9] * 2 + [9] * 3
    assert hyperband_budgets(3, 3, 2) == [1, 1, 1, 3, 3, 3] * 2


def test_hyperband_entries_are_kept_out_of_the_searched_values():
    values = {"lr": 0.1, "tuner/epochs": 3, "tuner/initial_epoch": 1, "tuner/trial_id": "0"}
    assert searched_values(values) == {"lr": 0.1}
    assert hyperband_epochs(values) == 3
    assert hyperband_epochs({"lr": 0.1}) is None


def test_a_tuner_pauses_before_asking_again_after_an_idle_answer(tmp_path, monkeypatch):
    # KerasTuner's loop: pre_create_trial, then create_trial; on_trial_begin only if it got one.
    sleeps = []
    monkeypatch.setattr(tuner_module.time, "sleep", sleeps.append)
    plan = make_plan(strategy="hyperband", epochs=2, hyperband_factor=2, hyperband_iterations=1)
    tuner = build_tuner(tmp_path, plan)
    tuner.pre_create_trial()
    trial = tuner.oracle.create_trial("tuner0")
    tuner.on_trial_begin(trial)
    tuner.pre_create_trial()  # after a trial: asks at once
    assert sleeps == []
    tuner.pre_create_trial()  # no trial since the last ask (the oracle said IDLE): waits
    tuner.pre_create_trial()
    assert sleeps == [IDLE_WAIT_S, IDLE_WAIT_S]


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
    with pytest.raises(ValueError, match="unknown search engine 'bayes'"):
        SearchSettings(RECIPE, specs, base, tmp_path, strategy="bayes")


def test_settings_of_a_hyperband_search(tmp_path):
    specs = tuple(parse_params(["lr=log:1e-4:1e-1"]))
    base = RunConfig().updated({"run.epochs": 8}).to_dict()
    settings = SearchSettings(RECIPE, specs, base, tmp_path, strategy="hyperband")
    # One stage, up to the recipe's epochs; the brackets set the trial count.
    assert settings.epochs == {1: 8} and settings.stages == (1,)
    plan = settings.plan(1, specs)
    assert (plan.epochs, plan.hyperband_factor, plan.hyperband_iterations) == (8, 3, 1)
    assert plan.max_trials == len(hyperband_budgets(8, 3, 1))
    faster = SearchSettings(
        RECIPE, specs, base, tmp_path, strategy="hyperband", stage2_epochs=4, hyperband_factor=2
    )
    assert faster.plan(1, specs).max_trials == len(hyperband_budgets(4, 2, 1))
    # A stage-2 count of 0 says what hyperband does anyway.
    SearchSettings(RECIPE, specs, base, tmp_path, strategy="hyperband", stage2_trials=0)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"trials": 5}, "hyperband does not take --trials: it sets the number of trials"),
        ({"stage1_epochs": 1}, "does not take --stage1-epochs"),
        ({"stage2_trials": 2}, "does not take --stage2-trials"),
        ({"top_k": 2, "trials": 3}, "does not take --trials, --top-k"),
        ({"stage2_epochs": 2}, "budget of 2 epochs .* below its factor 3 has one bracket"),
        ({"hyperband_factor": 1}, "hyperband_factor must be >= 2"),
        ({"initial_points": 2}, "--initial-points belongs to --search bayesian, not --search h"),
    ],
)
def test_hyperband_settings_refuse_what_it_would_ignore(tmp_path, changes, message):
    specs = tuple(parse_params(["lr=log:1e-4:1e-1"]))
    with pytest.raises(ValueError, match=message):
        SearchSettings(RECIPE, specs, DEFAULT_CONFIG, tmp_path, "hyperband", **changes)


def test_settings_of_a_bayesian_search(tmp_path):
    specs = tuple(parse_params(["lr=log:1e-4:1e-1"]))
    settings = SearchSettings(
        RECIPE, specs, DEFAULT_CONFIG, tmp_path, strategy="bayesian", initial_points=2
    )
    assert settings.stages == (1, 2)
    plan = settings.plan(1, specs)
    assert (plan.max_trials, plan.initial_points, plan.hyperband_factor) == (10, 2, None)
    with pytest.raises(ValueError, match="--hyperband-factor belongs to --search hyperband"):
        SearchSettings(RECIPE, specs, DEFAULT_CONFIG, tmp_path, "bayesian", hyperband_factor=2)
    with pytest.raises(ValueError, match="--initial-points belongs to --search bayesian, not --s"):
        SearchSettings(RECIPE, specs, DEFAULT_CONFIG, tmp_path, initial_points=2)


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
    hyperband = parse_settings(
        search_argv(
            tmp_path / "h",
            "--search",
            "hyperband",
            "--hyperband-factor",
            "2",
            "--hyperband-iterations",
            "3",
            epochs=("--stage2-epochs", "4"),
        )
    )
    assert (hyperband.strategy, hyperband.hyperband_factor, hyperband.hyperband_iterations) == (
        "hyperband",
        2,
        3,
    )
    assert hyperband.epochs == {1: 4}
    bayesian = parse_settings(
        search_argv(tmp_path / "b", "--search", "bayesian", "--initial-points", "4")
    )
    assert (bayesian.strategy, bayesian.initial_points) == ("bayesian", 4)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--recipe", "nope", "--param", "lr=log:1e-4:1e-1"], "unknown recipe 'nope'"),
        (["--recipe", RECIPE, "--param", "lr=log:1:0.1"], "low < high"),
        (["--recipe", RECIPE, "--param", "lr=log:1e-3:1", "--out-dir", "x"], "--out-dir is set"),
        (["--recipe", RECIPE, "--param", "lr=log:1e-3:1", "--resume=1"], "--resume is set"),
        (["--recipe", RECIPE, "--param", "lr=log:1e-3:1", "--trials", "0"], "trials must be"),
        (["--recipe", RECIPE, "--param", "lr=log:1e-3:1", "--no-such"], "unrecognized"),
        (
            ["--recipe", RECIPE, "--param", "lr=log:1e-3:1", "--search", "bayes"],
            "invalid choice: 'bayes' (choose from 'random', 'grid', 'bayesian', 'hyperband')",
        ),
        (
            ["--recipe", RECIPE, "--param", "lr=log:1e-3:1", "--search", "hyperband", "--trials=4"],
            "--search hyperband does not take --trials",
        ),
        (
            [
                "--recipe",
                RECIPE,
                "--param",
                "lr=log:1e-3:1",
                "--search",
                "grid",
                "--initial-points=2",
            ],
            "--initial-points belongs to --search bayesian, not --search grid",
        ),
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


def history_epochs(run_dir: Path) -> int:
    """The epochs a run trained: the rows of its history.csv."""
    return len((run_dir / "history.csv").read_text().splitlines()) - 1


@pytest.mark.slow
def test_hyperband_search_trains_each_trial_its_budget(tmp_path, capsys):
    search_dir = tmp_path / "search"
    argv = search_argv(
        search_dir,
        "--search",
        "hyperband",
        "--hyperband-factor",
        "2",
        epochs=("--stage2-epochs", "2"),
    )
    best = main(argv)
    assert "runs up to 5 trials, each trained from scratch: 2 of 1 epoch, 3 of 2 epochs" in (
        capsys.readouterr().out
    )
    rows = read_rows(search_dir)
    # Bracket 1: two 1-epoch trials, the better trained again for 2; bracket 0: two 2-epoch trials.
    assert [(row["trial"], row["epochs"]) for row in rows] == [
        ("stage1-0", "1"),
        ("stage1-1", "1"),
        ("stage1-2", "2"),
        ("stage1-3", "2"),
        ("stage1-4", "2"),
    ]
    assert all(row["status"] == "completed" for row in rows)
    for row in rows:
        assert history_epochs(Path(row["run_dir"])) == int(row["epochs"])
    searched = ("lr", "l2", "activation")
    first_round = rows[:2]
    top = max(float(row["val_accuracy"]) for row in first_round)
    promoted = [[row[name] for name in searched] for row in first_round]
    assert [rows[2][name] for name in searched] in [
        values
        for values, row in zip(promoted, first_round, strict=True)
        if float(row["val_accuracy"]) == top
    ]
    assert read_plan(search_dir, 2) is None and not (search_dir / "stage2").exists()
    # The best config is one of the full-budget trials, with its epochs and no Hyperband entries.
    assert best.epochs == 2 and best.trial in {"stage1-2", "stage1-3", "stage1-4"}
    config_text = (search_dir / BEST_CONFIG).read_text()
    assert yaml.safe_load(config_text)["run"]["epochs"] == 2 and "tuner/" not in config_text
    resolved = resolve_config(
        lenet5_fashion_mnist.DEFAULTS, ["--config", str(search_dir / BEST_CONFIG)], "t", ""
    )
    assert resolved.optim.lr == pytest.approx(best.values["lr"]) and resolved.run.epochs == 2

    # Resuming the finished search trains nothing again.
    before = finished_runs(search_dir)
    main(argv)
    assert finished_runs(search_dir) == before and len(read_rows(search_dir)) == 5


@pytest.mark.slow
def test_bayesian_search_resumes_from_its_oracle_state(tmp_path):
    search_dir = tmp_path / "search"

    def search(trials: int) -> None:
        main(
            search_argv(
                search_dir,
                "--search",
                "bayesian",
                "--initial-points",
                "2",
                "--trials",
                str(trials),
                "--stage2-trials",
                "0",
            )
        )

    search(3)  # two random trials, then one the Gaussian process proposes
    rows = read_rows(search_dir)
    assert [row["trial"] for row in rows] == ["stage1-0", "stage1-1", "stage1-2"]
    assert all(row["status"] == "completed" and row["epochs"] == "1" for row in rows)
    assert (search_dir / BEST_CONFIG).is_file()
    oracle_state = json.loads((search_dir / "stage1" / "oracle.json").read_text())
    assert oracle_state["num_initial_points"] == 2 and len(oracle_state["end_order"]) == 3

    # Resumed after it finished: no trial trains again.
    before = finished_runs(search_dir)
    search(3)
    assert finished_runs(search_dir) == before and read_rows(search_dir) == rows
    # With one more trial allowed, only that trial runs.
    search(4)
    after = finished_runs(search_dir)
    assert sorted(set(after) - set(before)) == ["stage1-3"]
    assert {name: after[name] for name in before} == before
    assert read_rows(search_dir)[:3] == rows


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
