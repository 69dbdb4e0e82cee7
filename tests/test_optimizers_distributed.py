"""Every optimizer under tf.distribute.MirroredStrategy with two replicas (in a subprocess)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from recipes.optim.optimizers import OPTIMIZER_NAMES
from tests.conftest import REPO_ROOT


@pytest.mark.slow
def test_mirrored_strategy_matches_single_device_and_survives_save_load() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "tests" / "mirrored_strategy_check.py")],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stdout + result.stderr[-4000:]
    for name in OPTIMIZER_NAMES:
        assert f"{name}: ok" in result.stdout
