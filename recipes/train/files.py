"""Writing run-directory files so that a reader never sees a half-written file."""

import os
import tempfile
from pathlib import Path


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


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
        # mkstemp creates the file private (0600); give it the permissions a plain open() would.
        os.chmod(temporary, 0o666 & ~_umask())
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, destination)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return destination


def atomic_save_model(model, path: str | os.PathLike) -> Path:
    """Saves a Keras model to a `.keras` file through a temporary file and `os.replace`.

    An interrupted save (crash, SIGKILL) leaves the previous file intact instead of a truncated zip.

    Args:
        model: the `keras.Model` to save (its compiled optimizer state included).
        path: destination; must end in `.keras`.

    Returns:
        The destination as a `Path`.
    """
    destination = Path(path)
    if destination.suffix != ".keras":
        raise ValueError(f"model files must end in .keras, got {destination}")
    destination.parent.mkdir(parents=True, exist_ok=True)
    temporary = destination.with_name(f".{destination.stem}.tmp.keras")
    try:
        model.save(temporary)
        os.replace(temporary, destination)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return destination
