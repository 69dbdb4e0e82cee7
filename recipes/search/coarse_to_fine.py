"""Coarse-to-fine search: short runs over wide ranges, then longer runs around the best of them.

The course's recipe for hyperparameter search: a first stage of few-epoch trials over wide ranges
(learning rate and regularization sampled log-uniformly) finds the region worth training; a second
stage runs fewer, longer trials in ranges narrowed around the best first-stage trials.

Random search, grid search and Bayesian optimization run both stages (Bayesian optimization
starts afresh in stage 2: stage 1's shorter runs score on another scale). Hyperband runs one stage:
its brackets are a coarse-to-fine schedule of their own, many short runs whose best are trained
longer, up to the stage-2 epochs (see docs/hparam_search.md).

Each stage is a KerasTuner project in the search directory, so running the same search again
resumes it: finished trials are kept, an interrupted trial continues from its last epoch, and
stage 2 starts once stage 1 is done. A search directory belongs to one search: resuming it with a
different recipe, engine, space or base configuration is refused; only the trial counts may change.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from recipes.search.parallel import run_stage_parallel
from recipes.search.report import TrialRecord, read_trials, write_reports
from recipes.search.space import ParamSpec
from recipes.search.stage import StagePlan, grid_size, read_plan, run_stage, write_plan
from recipes.search.tuner import check_strategy, hyperband_budgets

DEFAULT_TRIALS = {1: 10, 2: 5}  # random search; grid search defaults to the whole grid
DEFAULT_HYPERBAND_FACTOR = 3  # KerasTuner's


@dataclasses.dataclass(frozen=True)
class SearchSettings:
    """A whole search.

    Args:
        recipe: the recipe module's name.
        specs: the stage-1 search space.
        base_config: the recipe's resolved configuration the trials start from.
        search_dir: the search directory (created; reused to resume).
        strategy: the search engine: "random", "grid", "bayesian" or "hyperband".
        trials: stage-1 trials; None: 10 (random, bayesian), the whole grid for grid search.
            Hyperband decides its own and refuses one.
        stage2_trials: stage-2 trials; 0 skips stage 2; None: 5 (random, bayesian) or the whole
            grid. Hyperband runs no stage 2 and refuses a nonzero count.
        stage1_epochs: epochs of a stage-1 trial; None: a quarter of stage 2's, at least 1.
            Hyperband sets each trial's epochs itself and refuses one.
        stage2_epochs: epochs of a stage-2 trial; None: the base configuration's epochs. Hyperband:
            the budget of its longest trials (its `max_epochs`).
        grid_points: points of a numeric range in grid search unless its spec gives some.
        top_k: the best stage-1 trials stage 2 narrows around; None: a quarter of the completed
            ones, at least 2.
        widen: how far a narrowed range reaches past its best trials, as a fraction of their span.
        workers: trials run at the same time (KerasTuner chief/worker processes when > 1).
        hyperband_factor: Hyperband's budget ratio between rounds (>= 2); None: 3.
        hyperband_iterations: how many times Hyperband runs all its brackets; None: 1.
        initial_points: Bayesian optimization's random trials in each stage before its Gaussian
            process proposes any; None: KerasTuner's default, 3 per searched option.
    """

    recipe: str
    specs: tuple[ParamSpec, ...]
    base_config: dict[str, Any]
    search_dir: Path
    strategy: str = "random"
    trials: int | None = None
    stage2_trials: int | None = None
    stage1_epochs: int | None = None
    stage2_epochs: int | None = None
    grid_points: int = 3
    top_k: int | None = None
    widen: float = 0.25
    workers: int = 1
    hyperband_factor: int | None = None
    hyperband_iterations: int | None = None
    initial_points: int | None = None

    def __post_init__(self) -> None:
        check_strategy(self.strategy)
        positive = {
            "trials": self.trials,
            "stage1_epochs": self.stage1_epochs,
            "stage2_epochs": self.stage2_epochs,
            "top_k": self.top_k,
            "workers": self.workers,
            "hyperband_iterations": self.hyperband_iterations,
            "initial_points": self.initial_points,
        }
        for name, value in positive.items():
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if self.stage2_trials is not None and self.stage2_trials < 0:
            raise ValueError(f"stage2_trials must be >= 0, got {self.stage2_trials}")
        if self.grid_points < 2:
            raise ValueError(f"grid_points must be >= 2, got {self.grid_points}")
        if self.widen < 0:
            raise ValueError(f"widen must be >= 0, got {self.widen}")
        if self.hyperband_factor is not None and self.hyperband_factor < 2:
            raise ValueError(f"hyperband_factor must be >= 2, got {self.hyperband_factor}")
        self._check_engine_options()

    def _check_engine_options(self) -> None:
        """Refuses settings that the engine would silently ignore."""
        engine_options = {
            "--hyperband-factor": ("hyperband", self.hyperband_factor),
            "--hyperband-iterations": ("hyperband", self.hyperband_iterations),
            "--initial-points": ("bayesian", self.initial_points),
        }
        for flag, (engine, value) in engine_options.items():
            if value is not None and engine != self.strategy:
                raise ValueError(
                    f"{flag} belongs to --search {engine}, not --search {self.strategy}"
                )
        if self.strategy != "hyperband":
            return
        stage_options = {
            "--trials": self.trials,
            "--stage1-epochs": self.stage1_epochs,
            "--stage2-trials": self.stage2_trials or None,
            "--top-k": self.top_k,
        }
        given = [flag for flag, value in stage_options.items() if value is not None]
        if given:
            raise ValueError(
                f"--search hyperband does not take {', '.join(given)}: it sets the number of "
                "trials and each one's epochs itself, in one stage whose brackets replace stage 1 "
                "and stage 2 (--stage2-epochs sets its longest trials' epochs)"
            )
        max_epochs = self.epochs[1]
        factor = self.hyperband_factor or DEFAULT_HYPERBAND_FACTOR
        if max_epochs < factor:
            raise ValueError(
                f"hyperband with a budget of {max_epochs} epochs (--stage2-epochs, default the "
                f"recipe's epochs) below its factor {factor} has one bracket, in which every "
                f"trial trains all {max_epochs} epochs: a random search. Raise --stage2-epochs, "
                "lower --hyperband-factor, or use --search random"
            )

    @property
    def stages(self) -> tuple[int, ...]:
        """The stages the search runs: Hyperband and a search without stage-2 trials run one."""
        return (1,) if self.strategy == "hyperband" or self.stage2_trials == 0 else (1, 2)

    @property
    def epochs(self) -> dict[int, int]:
        """The training epochs of each stage's trials."""
        final = self.stage2_epochs or int(self.base_config["run"]["epochs"])
        if self.strategy == "hyperband":
            # Its one stage trains from a fraction of `final` epochs up to `final` itself.
            return {1: final}
        return {1: self.stage1_epochs or max(1, final // 4), 2: final}

    def stage_trials(self, stage: int, plan: StagePlan) -> int:
        """The number of trials of a stage; grid search never runs more than its grid."""
        if self.strategy == "hyperband":
            return len(
                hyperband_budgets(plan.epochs, plan.hyperband_factor, plan.hyperband_iterations)
            )
        requested = self.trials if stage == 1 else self.stage2_trials
        if self.strategy == "grid":
            return min(requested or grid_size(plan), grid_size(plan))
        return requested or DEFAULT_TRIALS[stage]

    def plan(self, stage: int, specs: tuple[ParamSpec, ...] | list[ParamSpec]) -> StagePlan:
        """The plan of a stage over `specs`, with its trial count resolved."""
        hyperband = {}
        if self.strategy == "hyperband":
            hyperband = {
                "hyperband_factor": self.hyperband_factor or DEFAULT_HYPERBAND_FACTOR,
                "hyperband_iterations": self.hyperband_iterations or 1,
            }
        plan = StagePlan(
            recipe=self.recipe,
            stage=stage,
            strategy=self.strategy,
            params=tuple(spec.to_text() for spec in specs),
            epochs=self.epochs[stage],
            max_trials=1,
            grid_points=self.grid_points,
            # KerasTuner takes a seed of 0 for "random"; these are never 0.
            seed=int(self.base_config["run"]["seed"]) * 10 + stage,
            # The JSON form, as every process reads it back from the plan file.
            base_config=json.loads(json.dumps(self.base_config)),
            initial_points=self.initial_points,
            **hyperband,
        )
        return dataclasses.replace(plan, max_trials=self.stage_trials(stage, plan))


def _start_stage(search_dir: Path, plan: StagePlan, compare: tuple[str, ...]) -> StagePlan:
    """Writes a new stage's plan, or checks a started stage's plan against it and updates its trials.

    Args:
        compare: the fields a resumed stage must keep.
    """
    started = read_plan(search_dir, plan.stage)
    if started is not None:
        ignored = tuple(f.name for f in dataclasses.fields(plan) if f.name not in compare)
        changed = started.differences(plan, ignore=ignored)
        if changed:
            raise ValueError(
                f"{search_dir} holds a stage-{plan.stage} search with other settings "
                f"({'; '.join(changed)}); resume it with the same settings or use another "
                "--search-dir"
            )
        plan = dataclasses.replace(started, max_trials=plan.max_trials)
    write_plan(search_dir, plan)
    return plan


def describe_hyperband(plan: StagePlan) -> str:
    """What a Hyperband stage will train: how many trials of how many epochs."""
    budgets = hyperband_budgets(plan.epochs, plan.hyperband_factor, plan.hyperband_iterations)
    counts = ", ".join(
        f"{budgets.count(epochs)} of {epochs} epoch{'s' if epochs > 1 else ''}"
        for epochs in sorted(set(budgets))
    )
    return (
        f"Hyperband (factor {plan.hyperband_factor}, {plan.hyperband_iterations} iteration(s)) "
        f"runs up to {len(budgets)} trials, each trained from scratch: {counts}"
    )


def default_top_k(completed: int) -> int:
    """A quarter of the completed stage-1 trials, at least 2 (when there are that many)."""
    return min(completed, max(2, round(completed / 4)))


def narrow(
    specs: list[ParamSpec], records: list[TrialRecord], top_k: int | None, widen: float
) -> list[ParamSpec]:
    """The stage-2 space: each range narrowed around the `top_k` best completed trials."""
    completed = sorted(
        (r for r in records if r.val_accuracy is not None), key=lambda r: -r.val_accuracy
    )
    if not completed:
        raise RuntimeError(
            "stage 1 completed no trial (see trials.csv: all failed or diverged), so there is "
            "nothing to narrow around; lower the learning-rate range and search again"
        )
    best = completed[: top_k or default_top_k(len(completed))]
    for spec in specs:
        if spec.at_edge(best[0].values[spec.name]):
            print(
                f"Note: the best stage-1 {spec.name}={best[0].values[spec.name]:.4g} lies at the "
                f"edge of its range [{spec.low:g}, {spec.high:g}]: the best value may lie outside; "
                "consider a wider range."
            )
    return [spec.narrowed([r.values[spec.name] for r in best], widen) for spec in specs]


def _run(settings: SearchSettings, stage: int) -> None:
    if settings.workers > 1:
        run_stage_parallel(settings.search_dir, stage, settings.workers)
    else:
        run_stage(
            settings.search_dir, stage, on_trial_done=lambda: write_reports(settings.search_dir)
        )
    write_reports(settings.search_dir)


def run_search(settings: SearchSettings) -> TrialRecord | None:
    """Runs (or resumes) both stages; returns the best trial (None if none completed).

    The reports (trials.csv, scatter.png, best_config.yaml) are rebuilt after every trial in a
    single-process search, and after each stage in a parallel one.
    """
    search_dir = settings.search_dir
    search_dir.mkdir(parents=True, exist_ok=True)
    # Everything but the trial count is what the trials mean.
    compare = tuple(
        field.name for field in dataclasses.fields(StagePlan) if field.name != "max_trials"
    )
    stage1 = _start_stage(search_dir, settings.plan(1, settings.specs), compare)
    if stage1.strategy == "hyperband":
        print(describe_hyperband(stage1))
    _run(settings, 1)
    if settings.stages == (1,):
        return write_reports(search_dir)
    started = read_plan(search_dir, 2)
    if started is None:
        specs = narrow(stage1.specs, read_trials(search_dir), settings.top_k, settings.widen)
    else:
        # Stage 2's space was fixed when it started; more stage-1 trials do not move it.
        specs = started.specs
    # The narrowed space derives from stage 1, so a resumed stage 2 is checked on the rest only.
    _start_stage(search_dir, settings.plan(2, specs), tuple(n for n in compare if n != "params"))
    _run(settings, 2)
    return write_reports(search_dir)
