"""Writing run-directory files so that a reader never sees a half-written file."""

import os
import tempfile
from pathlib import Path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Writes `text` to `path` through a temporary file in the same directory and `os.replace`.

    A crash or a concurrent reader sees either the previous file or the complete new one, never a
    truncated file, because `os.replace` is atomic within one filesystem.

    Args:
        path: destination file; its parent directory is created when missing.
        text: the whole content, written as UTF-8.

    Returns:
        The destination as a `Path`.
    """
    destination = Path(path)
    destination.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(
        dir=destination.parent, prefix=f".{destination.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, destination)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return destination
