"""Trains cases on one device and on MirroredStrategy over logical CPU devices, in a fresh process.

Logical devices can only be configured before TensorFlow initializes its devices, so
tests/test_distribute.py runs this script in a subprocess:

    python tests/mirrored_cases.py SPEC.json

SPEC.json holds {"cpu_replicas": N, "out_dir": DIR, "runs": {NAME: CONFIG_OVERRIDES, ...},
"optimizers": [TF_TRAIN_NAME, ...]}. Each run goes through the recipe runner into DIR/NAME; for
each optimizer a small model takes a few steps under the default and the mirrored strategy, and
the weights go to DIR/optimizers.npz as "<name>/<strategy>/<index>".
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from recipes.distribute import configure_cpu_replicas


def _optimizer_weights(name: str, strategy) -> list:
    import keras
    import numpy as np
    import tensorflow as tf

    from recipes.optimizers import get_optimizer

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6)).astype("float32")
    y = rng.integers(0, 3, size=64)
    data = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    with strategy.scope():
        model = keras.Sequential(
            [keras.Input((6,)), keras.layers.Dense(5, activation="tanh"), keras.layers.Dense(3)]
        )
        model.compile(
            optimizer=get_optimizer(name, learning_rate=0.05),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        )
    model.fit(data, epochs=2, verbose=0)
    return model.get_weights()


def main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    configure_cpu_replicas(spec["cpu_replicas"])

    import numpy as np

    from recipes.config import BASE_DEFAULTS
    from recipes.distribute import create_strategy
    from recipes.runner import run

    out_dir = Path(spec["out_dir"])
    for name, overrides in spec["runs"].items():
        run({**BASE_DEFAULTS, **overrides, "out_dir": str(out_dir / name)}, recipe=name)
    arrays = {}
    for name in spec["optimizers"]:
        for strategy_name in ("default", "mirrored"):
            strategy = create_strategy(strategy_name)
            assert strategy_name == "default" or strategy.num_replicas_in_sync > 1
            for index, weights in enumerate(_optimizer_weights(name, strategy)):
                arrays[f"{name}/{strategy_name}/{index}"] = weights
    np.savez(out_dir / "optimizers.npz", **arrays)


if __name__ == "__main__":
    main(sys.argv[1])
