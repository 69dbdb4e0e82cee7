"""A KerasTuner tuner whose trials are runs of a recipe through the shared runner.

KerasTuner's oracles (random search, grid search) choose each trial's hyperparameters and keep the
search state; `RecipeTuner.run_trial` turns a trial into a recipe config, trains it with
`recipes.train.runner.run` into its own run directory, and reports the run's best validation accuracy.
Reusing the runner means a trial is exactly what `python -m recipes.<name>` would train.

Interruption is safe at any point: the oracle saves its state when a trial starts and ends, a
trial that was running is handed out again on restart (KerasTuner's retry queue), and its run
directory then continues with the runner's `--resume` from the last finished epoch.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras
import keras_tuner
from keras_tuner.engine.base_tuner import BaseTuner

from recipes.callbacks.divergence import TrainingDiverged
from recipes.search.space import apply_values
from recipes.train.config import CONFIG_FILE, RunConfig
from recipes.train.runner import run

OBJECTIVE = "val_accuracy"
STRATEGIES = ("random", "grid")


def make_oracle(
    strategy: str,
    hyperparameters: keras_tuner.HyperParameters,
    max_trials: int,
    seed: int,
) -> keras_tuner.Oracle:
    """The KerasTuner oracle of `strategy` over a fixed space, maximizing validation accuracy.

    Args:
        strategy: "random" or "grid".
        hyperparameters: the search space (see `recipes.search.space.build_hyperparameters`).
        max_trials: the number of trials to run (at most the grid's size for grid search).
        seed: the oracle's seed (must be nonzero: KerasTuner replaces 0 by a random seed).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown search strategy {strategy!r}; expected one of {STRATEGIES}")
    if seed == 0:
        raise ValueError("the oracle seed must be nonzero (KerasTuner treats 0 as 'random')")
    oracle_class = {
        "random": keras_tuner.oracles.RandomSearchOracle,
        "grid": keras_tuner.oracles.GridSearchOracle,
    }[strategy]
    return oracle_class(
        objective=keras_tuner.Objective(OBJECTIVE, direction="max"),
        max_trials=max_trials,
        seed=seed,
        hyperparameters=hyperparameters,
        allow_new_entries=False,
        tune_new_entries=False,
        # A diverged trial is an outcome (its learning rate is too high), not a broken search:
        # the search goes on however many diverge; errors of any other kind stop it at once.
        max_consecutive_failed_trials=max_trials + 1,
    )


class RecipeTuner(BaseTuner):
    """Runs each KerasTuner trial as a recipe run and reports its best validation accuracy.

    Args:
        oracle: the KerasTuner oracle choosing the trials (see `make_oracle`).
        recipe: the recipe's name (labels the runs).
        base_config: the recipe's full configuration; each trial overrides the searched options.
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
        base_config: dict[str, Any],
        runs_dir: str | os.PathLike,
        run_prefix: str,
        directory: str | os.PathLike,
        project_name: str,
        on_trial_done: Callable[[], None] | None = None,
    ):
        self.recipe = recipe
        self.base_config = base_config
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
        values = apply_values(self.base_config, trial.hyperparameters.values)
        config = RunConfig.from_dict(values).updated(
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

    def on_trial_end(self, trial: keras_tuner.engine.trial.Trial) -> None:
        super().on_trial_end(trial)
        if self.on_trial_done is not None and not self._is_worker():
            self.on_trial_done()
