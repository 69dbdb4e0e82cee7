"""Keras callbacks a training run uses, each usable on its own with `model.fit`.

- `monitors`: the babysitting monitors (dead ReLUs, update/weight ratios, activation and gradient
  statistics per layer);
- `divergence`: `DivergenceGuard`, which stops a run whose loss turns NaN or explodes;
- `checkpoints`: `RunCheckpoint`, atomic per-epoch checkpoints, history and the resume state.
- `swa`: `SWACallback`, which ends a run on the stochastic weight average with BatchNorm
  statistics recomputed;
- `batches`: which training batches a batch callback covers under `steps_per_execution`.
"""
