"""Which training batches one call of a batch callback covers.

With `steps_per_execution` N, Keras runs N training steps per call of the compiled function and
calls `on_train_batch_begin(first)` before it and `on_train_batch_end(first + N - 1)` after it,
even for an epoch's last execution when it runs fewer steps (Keras 3's epoch iterator). The
epoch's number of steps, when Keras knows it (`Callback.params["steps"]`), gives the real end.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def last_batch(params: Mapping[str, Any] | None, batch: int) -> int:
    """The last batch the execution reported as ending with `batch` really trained.

    Args:
        params: the callback's `params` (Keras sets `steps`, the steps of an epoch, or None when
            it does not know them).
        batch: the batch `on_train_batch_end` received.
    """
    steps = (params or {}).get("steps")
    return min(batch, steps - 1) if steps else batch
