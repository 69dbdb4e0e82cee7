"""Hyperparameter search over recipes on KerasTuner: random, grid, Bayesian or Hyperband; coarse to
fine, resumable.

`scripts/hparam_search.py` is the command line (see `recipes.search.cli` and
docs/hparam_search.md); `run_search(SearchSettings(...))` is the same from Python.
"""

from recipes.search.coarse_to_fine import SearchSettings, run_search
from recipes.search.report import TrialRecord, read_trials, write_reports
from recipes.search.space import ParamSpec, parse_param, parse_params

__all__ = [
    "ParamSpec",
    "SearchSettings",
    "TrialRecord",
    "parse_param",
    "parse_params",
    "read_trials",
    "run_search",
    "write_reports",
]
