"""Hyperparameter search over a recipe on KerasTuner: random, grid, Bayesian or Hyperband search,
coarse to fine.

    python scripts/hparam_search.py --recipe lenet5_fashion_mnist \
        --param lr=log:1e-4:1e-1 --param l2=log:1e-6:1e-2 --param activation=choice:relu,tanh \
        --trials 20 --stage2-trials 5 --stage1-epochs 1 --stage2-epochs 5 \
        --search-dir runs/search-x --dataset sample

`--search bayesian` and `--search hyperband` choose the other engines (hyperband decides each
trial's epochs and runs one stage). Writes trials.csv, scatter.png and best_config.yaml into the
search directory; run the same command again to resume. The syntax and outputs are described in docs/hparam_search.md.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from recipes.search.cli import main

if __name__ == "__main__":
    main()
