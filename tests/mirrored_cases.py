"""Trains cases on one device and on MirroredStrategy over logical CPU devices, in a fresh process.

Logical devices can only be configured before TensorFlow initializes its devices, so
tests/test_distribute.py runs this script in a subprocess:

    python tests/mirrored_cases.py SPEC.json

SPEC.json holds {"cpu_replicas": N, "out_dir": DIR, "runs": {NAME: CONFIG_OVERRIDES, ...},
"optimizers": [TF_TRAIN_NAME, ...]}. Each run goes through the recipe runner into DIR/NAME; for
each tf.train optimizer a small model made of the custom layers takes a few steps under the
default and the mirrored strategy, and its weights go to DIR/optimizers.npz as
"<optimizer>/<strategy>/<index>".
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from recipes.train.distribute import configure_cpu_replicas


def _custom_layers_model():
    """A small model made of every custom layer of `layers`."""
    import keras

    import layers

    return keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            layers.LocallyConnected2D(4, 3),
            layers.GroupNormalization(groups=2),
            layers.LocalResponseNormalization(depth_radius=1),
            # data_init all-reduces the first batch's statistics, so it matches one device.
            layers.WeightNormalization(keras.layers.Conv2D(6, 3), data_init=True),
            layers.Maxout(num_pieces=2),
            keras.layers.Flatten(),
            keras.layers.Dense(3),
        ]
    )


def _trained_weights(optimizer: str, strategy) -> list:
    """Weights of the custom-layers model after an epoch with a tf.train optimizer."""
    import keras
    import numpy as np
    import tensorflow as tf

    from recipes.optim.optimizers import get_optimizer

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8, 8, 1)).astype("float32")
    y = rng.integers(0, 3, size=64)
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    with strategy.scope():
        model = _custom_layers_model()
        model.compile(
            optimizer=get_optimizer(optimizer, learning_rate=0.05),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
    model.fit(data, epochs=1, verbose=0)
    return model.get_weights()


def main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    configure_cpu_replicas(spec["cpu_replicas"])

    import numpy as np

    from recipes.train.config import RunConfig
    from recipes.train.distribute import create_strategy
    from recipes.train.runner import run

    out_dir = Path(spec["out_dir"])
    for name, overrides in spec["runs"].items():
        run(RunConfig.from_dict({**overrides, "out_dir": str(out_dir / name)}), recipe=name)
    arrays = {}
    for name in spec["optimizers"]:
        for strategy_name in ("default", "mirrored"):
            strategy = create_strategy(strategy_name)
            assert strategy_name == "default" or strategy.num_replicas_in_sync > 1
            for index, weights in enumerate(_trained_weights(name, strategy)):
                arrays[f"{name}/{strategy_name}/{index}"] = weights
    np.savez(out_dir / "optimizers.npz", **arrays)


if __name__ == "__main__":
    main(sys.argv[1])
