"""A KerasTuner tuner whose trials are runs of a recipe through the shared runner.

KerasTuner's oracles (random search, grid search, Bayesian optimization, Hyperband) choose each
trial's hyperparameters and keep the search state; `RecipeTuner.run_trial` turns a trial into a
recipe config, trains it with `recipes.train.runner.run` into its own run directory, and reports the
run's best validation accuracy. Reusing the runner means a trial is exactly what
`python -m recipes.<name>` would train.

Hyperband also sets each trial's epoch budget: its trials carry `tuner/epochs` (with the bracket
bookkeeping `tuner/initial_epoch`, `tuner/bracket`, `tuner/round` and `tuner/trial_id`) beside the
searched values. `searched_values` and `hyperband_epochs` keep the two apart: only the searched
values are written into the config, and the budget becomes the run's epochs.

Interruption is safe at any point: the oracle saves its state when a trial starts and ends, a
trial that was running is handed out again on restart (KerasTuner's retry queue), and its run
directory then continues with the runner's `--resume` from the last finished epoch.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import keras
import keras_tuner
from keras_tuner.engine.base_tuner import BaseTuner

from recipes.callbacks.divergence import TrainingDiverged
from recipes.train.config import CONFIG_FILE, RunConfig
from recipes.train.runner import run

OBJECTIVE = "val_accuracy"
# The search engines, each one of KerasTuner's oracles.
STRATEGIES = ("random", "grid", "bayesian", "hyperband")
# Hyperband's entries in a trial's values: its epoch budget and bracket bookkeeping.
ENGINE_PREFIX = "tuner/"
HYPERBAND_EPOCHS = "tuner/epochs"
# How long a worker waits before asking again when the oracle has no trial for it yet (Hyperband
# waiting for other workers to finish a round); KerasTuner's own loop asks again at once.
IDLE_WAIT_S = 2.0


def check_strategy(strategy: str) -> str:
    """Returns `strategy` if it names a search engine.

    Raises:
        ValueError: naming the value and the engines.
    """
    if strategy not in STRATEGIES:
        raise ValueError(
            f"unknown search engine {strategy!r}; the engines are: {', '.join(STRATEGIES)}"
        )
    return strategy


def searched_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """A trial's values of the searched options, without Hyperband's `tuner/...` entries."""
    return {name: value for name, value in values.items() if not name.startswith(ENGINE_PREFIX)}


def hyperband_epochs(values: Mapping[str, Any]) -> int | None:
    """The epochs Hyperband gave a trial (the run's whole budget), or None for other engines."""
    epochs = values.get(HYPERBAND_EPOCHS)
    return None if epochs is None else int(epochs)


def _objective() -> keras_tuner.Objective:
    return keras_tuner.Objective(OBJECTIVE, direction="max")


def _hyperband_oracle(
    max_epochs: int, factor: int, iterations: int, **common: Any
) -> keras_tuner.oracles.HyperbandOracle:
    return keras_tuner.oracles.HyperbandOracle(
        objective=_objective(),
        max_epochs=max_epochs,
        factor=factor,
        hyperband_iterations=iterations,
        **common,
    )


def hyperband_budgets(max_epochs: int, factor: int, iterations: int) -> list[int]:
    """The epoch budget of every trial Hyperband runs, in the order one process starts them.

    Brackets go from the most aggressive (many trials of `max_epochs / factor**k` epochs, of which
    the best `1 / factor` are trained again `factor` times longer, round after round) to a plain
    random search at `max_epochs`. The arithmetic is KerasTuner's own (its oracle's bracket, round,
    size and epoch methods), so the count cannot drift from what the oracle does. Trials that fail
    can leave later rounds short: this is the most trials a search runs.
    """
    oracle = _hyperband_oracle(max_epochs, factor, iterations)
    budgets = []
    for bracket in reversed(range(oracle._get_num_brackets())):
        for round_number in range(oracle._get_num_rounds(bracket)):
            size = oracle._get_size(bracket, round_number)
            budgets += [oracle._get_epochs(bracket, round_number)] * size
    return budgets * iterations


def make_oracle(
    strategy: str,
    hyperparameters: keras_tuner.HyperParameters,
    max_trials: int,
    seed: int,
    *,
    max_epochs: int | None = None,
    hyperband_factor: int | None = None,
    hyperband_iterations: int | None = None,
    initial_points: int | None = None,
) -> keras_tuner.Oracle:
    """The KerasTuner oracle of `strategy` over a fixed space, maximizing validation accuracy.

    Args:
        strategy: one of `STRATEGIES`.
        hyperparameters: the search space (see `recipes.search.space.build_hyperparameters`).
        max_trials: the number of trials to run (at most the grid's size for grid search); Hyperband
            takes its own count from its brackets (`hyperband_budgets`) instead.
        seed: the oracle's seed (must be nonzero: KerasTuner replaces 0 by a random seed).
        max_epochs: Hyperband (required): the budget of its longest trials.
        hyperband_factor: Hyperband (required): the budget ratio between successive rounds.
        hyperband_iterations: Hyperband (required): how many times it runs all its brackets.
        initial_points: Bayesian: random trials before the Gaussian process proposes any; None is
            KerasTuner's default, 3 per searched option.
    """
    check_strategy(strategy)
    if seed == 0:
        raise ValueError("the oracle seed must be nonzero (KerasTuner treats 0 as 'random')")
    if strategy == "hyperband":
        if None in (max_epochs, hyperband_factor, hyperband_iterations):
            raise ValueError("a hyperband oracle needs max_epochs, a factor and iterations")
        max_trials = len(hyperband_budgets(max_epochs, hyperband_factor, hyperband_iterations))
    common = {
        "seed": seed,
        "hyperparameters": hyperparameters,
        "allow_new_entries": False,
        "tune_new_entries": False,
        # A diverged trial is an outcome (its learning rate is too high), not a broken search:
        # the search goes on however many diverge; errors of any other kind stop it at once.
        "max_consecutive_failed_trials": max_trials + 1,
    }
    if strategy == "hyperband":
        oracle = _hyperband_oracle(max_epochs, hyperband_factor, hyperband_iterations, **common)
        # KerasTuner's Hyperband takes no trial count, and its base oracle then names trials by
        # the width of str(None) ("0000"); its exact maximum gives the names other engines have.
        oracle.max_trials = max_trials
        return oracle
    if strategy == "bayesian":
        return keras_tuner.oracles.BayesianOptimizationOracle(
            objective=_objective(),
            max_trials=max_trials,
            num_initial_points=initial_points,
            **common,
        )
    oracle_class = {
        "random": keras_tuner.oracles.RandomSearchOracle,
        "grid": keras_tuner.oracles.GridSearchOracle,
    }[strategy]
    return oracle_class(objective=_objective(), max_trials=max_trials, **common)


class RecipeTuner(BaseTuner):
    """Runs each KerasTuner trial as a recipe run and reports its best validation accuracy.

    Args:
        oracle: the KerasTuner oracle choosing the trials (see `make_oracle`).
        recipe: the recipe's name (labels the runs).
        trial_config: the configuration a trial trains, from its searched values and Hyperband's
            epochs for it (None: the stage's), e.g. `StagePlan.trial_config`.
        runs_dir: where each trial's run directory `<run_prefix><trial_id>/` is created.
        run_prefix: prefix of the run directory names, e.g. "stage1-".
        directory: the folder holding KerasTuner's project.
        project_name: the KerasTuner project (its state, for resuming).
        on_trial_done: called with no arguments after each trial the oracle has recorded (e.g. to
            refresh the reports); not called in worker processes of a parallel search.
    """

    def __init__(
        self,
        oracle: keras_tuner.Oracle,
        recipe: str,
        trial_config: Callable[[dict[str, Any], int | None], dict[str, Any]],
        runs_dir: str | os.PathLike,
        run_prefix: str,
        directory: str | os.PathLike,
        project_name: str,
        on_trial_done: Callable[[], None] | None = None,
    ):
        self.recipe = recipe
        self.trial_config = trial_config
        self._asked_in_vain = False
        self.runs_dir = Path(runs_dir)
        self.run_prefix = run_prefix
        self.on_trial_done = on_trial_done
        super().__init__(
            oracle=oracle, directory=str(directory), project_name=project_name, overwrite=False
        )
        # KerasTuner reloads a project only if this tuner id saved state in it; the chief of a
        # parallel search resuming a stage begun in one process (tuner id "tuner0") must too.
        started = (Path(self.project_dir) / "oracle.json").is_file()
        if started and not self._is_worker() and not self.oracle.trials:
            self.oracle.reload()

    def run_dir(self, trial_id: str) -> Path:
        """The run directory of a trial."""
        return self.runs_dir / f"{self.run_prefix}{trial_id}"

    def run_trial(self, trial: keras_tuner.engine.trial.Trial) -> dict[str, float]:
        """Trains the trial's configuration; returns `{"val_accuracy": best validation accuracy}`.

        Raises:
            keras_tuner.errors.FailedTrialError: the training diverged (the trial is recorded as
                failed and the search continues).
            keras_tuner.errors.FatalError: any other error (the search stops; the trial is run
                again when the search is resumed).
        """
        run_dir = self.run_dir(trial.trial_id)
        values = trial.hyperparameters.values
        # Hyperband's budget is the whole run: a trial trains from scratch (docs/hparam_search.md).
        config = RunConfig.from_dict(
            self.trial_config(searched_values(values), hyperband_epochs(values))
        ).updated(
            {
                "run.out_dir": str(run_dir),
                # A trial interrupted before is handed out again: continue its run.
                "run.resume": (run_dir / CONFIG_FILE).is_file(),
                "run.dry_run": False,
            }
        )
        # Each trial builds its model in a fresh Keras session so memory does not grow.
        keras.backend.clear_session()
        try:
            metrics = run(config, recipe=self.recipe)
        except TrainingDiverged as error:
            raise keras_tuner.errors.FailedTrialError(f"diverged: {error}") from error
        except Exception as error:
            raise keras_tuner.errors.FatalError(
                f"trial {trial.trial_id} ({trial.hyperparameters.values}) failed in {run_dir}: "
                f"{type(error).__name__}: {error}"
            ) from error
        if metrics.get("best_val_accuracy") is None:
            raise keras_tuner.errors.FatalError(
                f"trial {trial.trial_id} reported no validation accuracy; the search needs a "
                "validation split (--validation-fraction > 0)"
            )
        return {OBJECTIVE: float(metrics["best_val_accuracy"])}

    def pre_create_trial(self) -> None:
        # KerasTuner's search loop asks again at once when the oracle answers IDLE (a parallel
        # Hyperband worker waiting for the other workers to finish a round): pause between asks.
        if self._asked_in_vain:
            time.sleep(IDLE_WAIT_S)
        self._asked_in_vain = True

    def on_trial_begin(self, trial: keras_tuner.engine.trial.Trial) -> None:
        super().on_trial_begin(trial)
        self._asked_in_vain = False

    def on_trial_end(self, trial: keras_tuner.engine.trial.Trial) -> None:
        super().on_trial_end(trial)
        if self.on_trial_done is not None and not self._is_worker():
            self.on_trial_done()
