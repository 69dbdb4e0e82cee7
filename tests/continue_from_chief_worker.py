"""One worker of the two-process test of `continue_from_chief` (see tests/test_distribute.py).

    TF_CONFIG=... python -m tests.continue_from_chief_worker OUT_DIR

Each worker gives its model values of its own (weights, BatchNormalization statistics, the
WeightNormalization `initialized` flag, optimizer slots and step counter) and its own count of
finished epochs, as workers resumed from checkpoints one epoch apart have. It then calls
`continue_from_chief` and writes what it ended with to `OUT_DIR/worker<i>.npz`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras
import numpy as np
import tensorflow as tf

from layers import WeightNormalization
from recipes.train.distribute import cluster_role, continue_from_chief

UNITS = 8


def main(out_dir: Path) -> None:
    index = cluster_role().task_index
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    keras.utils.set_random_seed(index)
    with strategy.scope():
        model = keras.Sequential(
            [
                keras.Input((4,)),
                WeightNormalization(keras.layers.Dense(UNITS)),
                keras.layers.BatchNormalization(),
                keras.layers.Dense(3),
            ]
        )
        model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), loss="mse")
        model.optimizer.build(model.trainable_variables)
    # The strategy gave every variable the chief's initial value; make them differ.
    for variable in model.weights + model.optimizer.variables:
        if variable.dtype == "float32":
            variable.assign(tf.random.normal(variable.shape, seed=index))
    model.layers[0].initialized.assign(index == 0)
    model.optimizer.iterations.assign(100 + index)
    epochs_done = continue_from_chief(model, strategy, epochs_done=5 - index)
    variables = [*model.weights, *model.optimizer.variables]
    values = [np.asarray(keras.ops.convert_to_numpy(v)) for v in variables]
    np.savez(out_dir / f"worker{index}.npz", *values, epochs_done=epochs_done)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
