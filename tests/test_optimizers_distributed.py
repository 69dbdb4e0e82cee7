"""Every optimizer under tf.distribute.MirroredStrategy with two replicas (in a subprocess)."""

from __future__ import annotations

import pytest

from recipes.optim.optimizers import OPTIMIZER_NAMES
from tests.conftest import REPO_ROOT, run_python


@pytest.mark.slow
def test_mirrored_strategy_matches_single_device_and_survives_save_load() -> None:
    result = run_python(
        ["tests/mirrored_strategy_check.py"], timeout=900, env={"PYTHONPATH": str(REPO_ROOT)}
    )
    for name in OPTIMIZER_NAMES:
        assert f"{name}: ok" in result.stdout
