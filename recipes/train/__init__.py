"""The training application behind every recipe: configuration, runner and what surrounds a run.

- `config`: the run configuration (defaults < recipe < `--config` file < flags) and its command line;
- `runner`: `recipe_main` and `run`: data -> model -> fit -> outputs in a run directory;
- `distribute`: tf.distribute strategies, multi-worker outputs and resume;
- `sanity`: the checks before training (initial loss, overfitting a few examples, lr range test);
- `diagnosis`: what a run's curves say is wrong;
- `plots`, `files`: learning curves, and atomic writes of every output file.
"""
