"""Optimization: optimizers by name, learning-rate schedules and losses.

    from recipes.optim import get_optimizer, get_schedule, get_loss

- `optimizers`: `get_optimizer(name, ...)`: the ten tf.train optimizers computed exactly as
  tf.train computes them, and every other Keras 3 optimizer by name;
- `tf_train/`: the classes behind the tf.train names (`TFTrainMomentum`, `AdagradDA`, ...);
- `schedules`: `get_schedule(name, base_lr, ...)` (step, exponential, cosine, warmup, ...);
- `losses`: `get_loss(name)` (softmax cross-entropy, multiclass SVM hinge, attribute losses, ...);
- `wrappers`: `Lookahead` and `StochasticWeightAveraging` around any optimizer;
- `precision`: `wrap_for_policy(optimizer, policy)`, the loss scaling `"mixed_float16"` needs, and
  `applied_batches(optimizer)`, which counts the steps loss scaling skipped.

Importing this package (`import recipes` does) registers every optimizer, wrapper, schedule and
loss with Keras, so a saved model that uses them loads with plain `keras.models.load_model`.
"""

from recipes.optim.losses import LOSS_NAMES, get_loss
from recipes.optim.optimizers import KERAS_OPTIMIZER_NAMES, OPTIMIZER_NAMES, get_optimizer
from recipes.optim.precision import CountingLossScaleOptimizer, applied_batches, wrap_for_policy
from recipes.optim.schedules import SCHEDULE_NAMES, LinearWarmup, get_schedule
from recipes.optim.tf_train import (
    AdagradDA,
    ProximalAdagrad,
    ProximalGradientDescent,
    TFTrainAdadelta,
    TFTrainAdagrad,
    TFTrainAdam,
    TFTrainFtrl,
    TFTrainMomentum,
    TFTrainRMSProp,
)
from recipes.optim.wrappers import Lookahead, StochasticWeightAveraging, swa_steps

__all__ = [
    "KERAS_OPTIMIZER_NAMES",
    "LOSS_NAMES",
    "OPTIMIZER_NAMES",
    "SCHEDULE_NAMES",
    "AdagradDA",
    "CountingLossScaleOptimizer",
    "LinearWarmup",
    "Lookahead",
    "ProximalAdagrad",
    "ProximalGradientDescent",
    "StochasticWeightAveraging",
    "TFTrainAdadelta",
    "TFTrainAdagrad",
    "TFTrainAdam",
    "TFTrainFtrl",
    "TFTrainMomentum",
    "TFTrainRMSProp",
    "applied_batches",
    "get_loss",
    "get_optimizer",
    "get_schedule",
    "swa_steps",
    "wrap_for_policy",
]
