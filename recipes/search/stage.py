"""One stage of a search: its plan (a JSON file in the search directory) and running it.

A search directory holds, per stage N:

    stageN/plan.json             what the stage searches (recipe, engine, space, epochs, trials, seed)
    stageN/oracle.json, ...      KerasTuner's project: the oracle's state and one file per trial
    trials/stageN-<id>/          each trial's run directory (the runner's outputs)

The plan is written when the stage starts, and every process of a parallel search rebuilds the
stage's tuner from it: `python -m recipes.search.stage SEARCH_DIR N` runs the stage in this process,
as the chief or a worker when KerasTuner's `KERASTUNER_*` variables say so.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from recipes.search.space import ParamSpec, apply_values, build_hyperparameters, parse_params
from recipes.search.tuner import RecipeTuner, check_strategy, make_oracle
from recipes.train.files import atomic_write_text

PLAN_FILE = "plan.json"
TRIALS_DIR = "trials"


def stage_dir(search_dir: str | Path, stage: int) -> Path:
    """The KerasTuner project directory of a stage."""
    return Path(search_dir) / f"stage{stage}"


@dataclasses.dataclass(frozen=True)
class StagePlan:
    """What one stage searches.

    Args:
        recipe: the recipe module's name (`recipes.<recipe>`).
        stage: the stage number, from 1.
        strategy: the search engine, one of `recipes.search.tuner.STRATEGIES`.
        params: the search space, as `NAME=KIND:ARGS` specs.
        epochs: training epochs of every trial of the stage; Hyperband: of its longest trials.
        max_trials: trials to run in the stage (Hyperband: the most its brackets run).
        grid_points: grid points of numeric ranges that give none (grid search).
        seed: the oracle's seed (nonzero).
        base_config: the recipe's configuration the trials start from (JSON values).
        hyperband_factor: Hyperband's budget ratio between rounds (None for other engines).
        hyperband_iterations: how many times Hyperband runs its brackets (None for other engines).
        initial_points: Bayesian optimization's random trials before its Gaussian process
            proposes any; None: KerasTuner's default (3 per searched option), or another engine.
    """

    recipe: str
    stage: int
    strategy: str
    params: tuple[str, ...]
    epochs: int
    max_trials: int
    grid_points: int
    seed: int
    base_config: dict[str, Any]
    # Engine options, defaulted so that plans written before they existed still load.
    hyperband_factor: int | None = None
    hyperband_iterations: int | None = None
    initial_points: int | None = None

    def __post_init__(self) -> None:
        check_strategy(self.strategy)
        if self.stage < 1 or self.epochs < 1 or self.max_trials < 1 or self.grid_points < 2:
            raise ValueError(
                f"stage plan needs stage >= 1, epochs >= 1, max_trials >= 1, grid_points >= 2; "
                f"got {self.stage}, {self.epochs}, {self.max_trials}, {self.grid_points}"
            )
        hyperband = (self.hyperband_factor, self.hyperband_iterations)
        if (self.strategy == "hyperband") != (None not in hyperband):
            raise ValueError(
                "a hyperband plan needs hyperband_factor and hyperband_iterations, and only a "
                f"hyperband plan has them; got {self.strategy} with {hyperband}"
            )
        if self.initial_points is not None and self.strategy != "bayesian":
            raise ValueError(f"initial_points belongs to bayesian plans, not {self.strategy}")

    @property
    def specs(self) -> list[ParamSpec]:
        return parse_params(self.params)

    def trial_config(self, values: dict[str, Any], epochs: int | None = None) -> dict[str, Any]:
        """The configuration a trial of this stage trains: the base configuration with the
        searched `values` set, for `epochs` epochs (Hyperband's budget; None: the stage's)."""
        run = {**self.base_config["run"], "epochs": epochs or self.epochs}
        return apply_values({**self.base_config, "run": run}, values)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> StagePlan:
        values = json.loads(text)
        return cls(**{**values, "params": tuple(values["params"])})

    def differences(self, other: StagePlan, ignore: tuple[str, ...] = ()) -> list[str]:
        """The fields (outside `ignore`) in which `other` differs, as "field: this vs other"."""
        return [
            f"{field.name}: {getattr(self, field.name)!r} vs {getattr(other, field.name)!r}"
            for field in dataclasses.fields(self)
            if field.name not in ignore and getattr(self, field.name) != getattr(other, field.name)
        ]


def read_plan(search_dir: str | Path, stage: int) -> StagePlan | None:
    """The plan of a stage that was started in `search_dir`, or None."""
    path = stage_dir(search_dir, stage) / PLAN_FILE
    return StagePlan.from_json(path.read_text()) if path.is_file() else None


def write_plan(search_dir: str | Path, plan: StagePlan) -> None:
    atomic_write_text(stage_dir(search_dir, plan.stage) / PLAN_FILE, plan.to_json())


def build_tuner(
    search_dir: str | Path, plan: StagePlan, on_trial_done: Callable[[], None] | None = None
) -> RecipeTuner:
    """The stage's tuner; reloads the stage's KerasTuner state when the stage was started before."""
    search_dir = Path(search_dir)
    specs = plan.specs
    grid = plan.strategy == "grid"
    hyperparameters = build_hyperparameters(specs, grid=grid, default_points=plan.grid_points)
    oracle = make_oracle(
        plan.strategy,
        hyperparameters,
        plan.max_trials,
        plan.seed,
        max_epochs=plan.epochs,
        hyperband_factor=plan.hyperband_factor,
        hyperband_iterations=plan.hyperband_iterations,
        initial_points=plan.initial_points,
    )
    return RecipeTuner(
        oracle,
        recipe=plan.recipe,
        trial_config=plan.trial_config,
        runs_dir=search_dir / TRIALS_DIR,
        run_prefix=f"stage{plan.stage}-",
        directory=search_dir,
        project_name=stage_dir(search_dir, plan.stage).name,
        on_trial_done=on_trial_done,
    )


def grid_size(plan: StagePlan) -> int:
    """The number of points in a stage's grid (the product of each option's grid values)."""
    size = 1
    for spec in plan.specs:
        size *= len(spec.grid_values(plan.grid_points))
    return size


def run_stage(
    search_dir: str | Path, stage: int, on_trial_done: Callable[[], None] | None = None
) -> None:
    """Runs (or resumes) a planned stage in this process until its trials are done."""
    plan = read_plan(search_dir, stage)
    if plan is None:
        raise FileNotFoundError(f"no plan for stage {stage} in {search_dir}")
    build_tuner(search_dir, plan, on_trial_done).search()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m recipes.search.stage",
        description="Runs one planned stage of a search (a process of a parallel search).",
    )
    parser.add_argument("search_dir")
    parser.add_argument("stage", type=int)
    args = parser.parse_args(argv)
    run_stage(args.search_dir, args.stage)


if __name__ == "__main__":
    main()
