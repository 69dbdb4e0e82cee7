"""The command line of `scripts/hparam_search.py`: search flags, then any flags of the recipe.

    python scripts/hparam_search.py --recipe lenet5_fashion_mnist \\
        --param lr=log:1e-4:1e-1 --param l2=log:1e-6:1e-2 --param activation=choice:relu,tanh \\
        --trials 20 --stage2-trials 5 --stage1-epochs 1 --stage2-epochs 5 \\
        --search-dir runs/search-x  --dataset sample --batch-size 128

Engines (--search): random and grid search, and bayesian (a Gaussian process proposes each trial
from the finished ones) run the two stages above; hyperband runs one stage of its own brackets,
many short trials whose best are trained longer, up to --stage2-epochs:

    python scripts/hparam_search.py --recipe lenet5_fashion_mnist --search hyperband \\
        --param lr=log:1e-4:1e-1 --param l2=log:1e-6:1e-2 --stage2-epochs 9 --dataset sample

Flags this parser does not know are the recipe's own (`python -m recipes.<name> --help`), layered
as in the recipe: its defaults < `--config FILE` < flags; they fix everything the search does not
vary. Run the same command again to resume an interrupted search. See docs/hparam_search.md.
"""

from __future__ import annotations

import argparse
from datetime import datetime
from pathlib import Path

from recipes.__main__ import recipe_defaults
from recipes.search.coarse_to_fine import SearchSettings, run_search
from recipes.search.report import BEST_CONFIG, SCATTER_PNG, TRIALS_CSV, TrialRecord
from recipes.search.space import RESERVED_KEYS, parse_params
from recipes.search.tuner import STRATEGIES
from recipes.train.config import option_key, resolve_config


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python scripts/hparam_search.py",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        # Recipe flags pass through; no abbreviation may swallow one of them.
        allow_abbrev=False,
    )
    parser.add_argument("--recipe", required=True, help="recipe module, e.g. lenet5_fashion_mnist")
    parser.add_argument(
        "--param",
        action="append",
        required=True,
        metavar="NAME=KIND:ARGS",
        help="an option to search: NAME=log|float|int|logint:LOW:HIGH[:POINTS] or "
        "NAME=choice:A,B,...; NAME is a recipe option (lr, l2, batch_size) or "
        "model_options.KEY / optimizer_options.KEY / schedule_options.KEY / loss_options.KEY, or a "
        "dotted key (optim.lr, model.knobs.l2)",
    )
    parser.add_argument(
        "--search",
        choices=STRATEGIES,
        default="random",
        metavar="ENGINE",
        help=f"the search engine, one of {', '.join(STRATEGIES)} (default: random): KerasTuner's "
        "RandomSearch, GridSearch, BayesianOptimization or Hyperband oracle",
    )
    parser.add_argument(
        "--trials",
        type=int,
        help="stage-1 trials (default: 10; grid: the whole grid; hyperband: set by its brackets)",
    )
    parser.add_argument(
        "--stage2-trials",
        type=int,
        help="stage-2 trials, 0 for a single stage (default: 5; grid: the whole narrowed grid; "
        "hyperband: none)",
    )
    parser.add_argument(
        "--stage1-epochs",
        type=int,
        help="epochs per stage-1 trial (default: stage 2's / 4; hyperband: set per trial)",
    )
    parser.add_argument(
        "--stage2-epochs",
        type=int,
        help="epochs per stage-2 trial; hyperband: of its longest trials (default: the recipe's)",
    )
    parser.add_argument(
        "--grid-points", type=int, default=3, help="grid points per numeric range (default: 3)"
    )
    parser.add_argument(
        "--top-k",
        type=int,
        help="best stage-1 trials the stage-2 ranges narrow around (default: a quarter, >= 2)",
    )
    parser.add_argument(
        "--widen",
        type=float,
        default=0.25,
        help="narrowed ranges reach this fraction of the best trials' span past them "
        "(default: 0.25)",
    )
    parser.add_argument(
        "--workers", type=int, default=1, help="trials run at once in worker processes"
    )
    parser.add_argument(
        "--hyperband-factor",
        type=int,
        metavar="F",
        help="hyperband: each round trains 1/F of the trials F times longer (default: 3)",
    )
    parser.add_argument(
        "--hyperband-iterations",
        type=int,
        metavar="N",
        help="hyperband: how many times to run all its brackets (default: 1)",
    )
    parser.add_argument(
        "--initial-points",
        type=int,
        metavar="N",
        help="bayesian: random trials per stage before the Gaussian process proposes any "
        "(default: 3 per --param)",
    )
    parser.add_argument(
        "--search-dir", type=Path, help="default: runs/search/<recipe>-<timestamp>; reuse to resume"
    )
    return parser


def _option_key_or_none(name: str) -> str | None:
    """The dotted key a recipe flag sets, or None for flags that are not config options."""
    try:
        return option_key(name)
    except ValueError:
        return None


def parse_settings(argv: list[str] | None = None) -> SearchSettings:
    """Reads the search flags and resolves the recipe's configuration from the remaining flags."""
    parser = build_parser()
    args, recipe_flags = parser.parse_known_args(argv)
    for flag in recipe_flags:
        option = flag.partition("=")[0]
        if option.startswith("--") and _option_key_or_none(option[2:]) in RESERVED_KEYS:
            parser.error(f"{option} is set by the search for each trial; leave it out")
    try:
        defaults = recipe_defaults(args.recipe)
        specs = parse_params(args.param)
    except ValueError as error:
        parser.error(str(error))
    # Trials train quietly unless the recipe flags ask for progress bars.
    base_config = resolve_config(
        {**defaults, "run.verbose": 0},
        recipe_flags,
        prog=f"python -m recipes.{args.recipe}",
        description=f"recipe flags of the {args.recipe} search",
    ).to_dict()
    search_dir = args.search_dir or Path("runs", "search") / (
        f"{args.recipe}-{datetime.now():%Y%m%d-%H%M%S}"
    )
    try:
        return SearchSettings(
            recipe=args.recipe,
            specs=tuple(specs),
            base_config=base_config,
            search_dir=search_dir,
            strategy=args.search,
            trials=args.trials,
            stage2_trials=args.stage2_trials,
            stage1_epochs=args.stage1_epochs,
            stage2_epochs=args.stage2_epochs,
            grid_points=args.grid_points,
            top_k=args.top_k,
            widen=args.widen,
            workers=args.workers,
            hyperband_factor=args.hyperband_factor,
            hyperband_iterations=args.hyperband_iterations,
            initial_points=args.initial_points,
        )
    except ValueError as error:
        parser.error(str(error))


def main(argv: list[str] | None = None) -> TrialRecord | None:
    """Runs (or resumes) the search the command line describes; returns its best trial."""
    settings = parse_settings(argv)
    print(f"Searching {settings.recipe} in {settings.search_dir}")
    best = run_search(settings)
    directory = settings.search_dir
    print(f"Trials: {directory / TRIALS_CSV}; plot: {directory / SCATTER_PNG}")
    if best is None:
        print("No trial completed: see the messages in the trials table.")
    else:
        print(
            f"Best: {best.trial} {best.values} with validation accuracy {best.val_accuracy:.4f}; "
            f"train it with: python -m recipes.{settings.recipe} --config {directory / BEST_CONFIG}"
        )
    return best
