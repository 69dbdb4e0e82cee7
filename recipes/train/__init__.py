"""The training application behind every recipe: configuration, runner and what surrounds a run.

- `config`: the run configuration (defaults < recipe < `--config` file < flags) and its command line;
- `runner`: `recipe_main` and `run`: data -> model -> fit -> outputs in a run directory;
- `distribute`: tf.distribute strategies, multi-worker outputs and resume;
- `execution`, `hardware`: precision, XLA and steps per execution, and what `auto` picks for the
  hardware (docs/performance.md);
- `sanity`: the checks before training (initial loss, overfitting a few examples, lr range test);
- `diagnosis`: what a run's curves say is wrong;
- `plots`, `files`: learning curves, and atomic writes of every output file;
- `model_card`: MODEL_CARD.md, written when a run finishes and rewritten by each export;
- `inference`: a finished run's model behind its own preprocessing (raw pixels in, probabilities
  out), what `recipes.export` and `recipes.predict` use;
- `predictions`: the predictions CSV/JSON writer.
"""
