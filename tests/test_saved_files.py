"""Files written by earlier versions of the package still load.

`tests/data/legacy_custom_objects.keras` was saved before `recipes/` was split into subpackages: its
optimizer, schedule and loss name the old module paths (`recipes.optim.momentum`,
`recipes.schedules`, ...). Keras resolves them by their registered names, which must not change.
"""

from __future__ import annotations

import keras
import numpy as np

import layers
import recipes.optim
from tests.conftest import REPO_ROOT

DATA = REPO_ROOT / "tests" / "data"


def test_model_saved_by_the_flat_layout_loads_with_its_optimizer_schedule_and_loss():
    model = keras.models.load_model(DATA / "legacy_custom_objects.keras")
    reference = np.load(DATA / "legacy_custom_objects_io.npz")

    np.testing.assert_array_equal(
        model.predict(reference["images"], verbose=0), reference["predictions"]
    )
    assert isinstance(model.optimizer, recipes.optim.TFTrainMomentum)
    assert isinstance(model.optimizer._learning_rate, recipes.optim.LinearWarmup)
    assert model.optimizer.iterations.numpy() == 2
    assert type(model.loss).__name__ == "SoftmaxCrossEntropy"
    layer_types = {type(layer) for layer in model.layers}
    assert {
        layers.MeanImageSubtraction,
        layers.LocalResponseNormalization,
        layers.GroupNormalization,
        layers.LocallyConnected2D,
        layers.WeightNormalization,
        layers.Maxout,
    } <= layer_types
    # Training goes on from the restored optimizer state.
    model.fit(reference["images"], np.arange(16) % 3, batch_size=8, epochs=1, verbose=0)
    assert model.optimizer.iterations.numpy() == 4
