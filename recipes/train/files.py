"""Writing run-directory files so that a reader never sees a half-written file, and owning a run
directory so that two processes never write into the same one.

Every writer here puts the new content in a temporary file in the destination's directory,
flushes it to disk, and renames it over the destination with `os.replace`. On POSIX a rename
within one filesystem is atomic: a crash, SIGKILL or concurrent reader sees either the previous
file or the complete new one, never a truncated file. The directory is flushed after the rename
so that a power failure cannot undo it either. A process killed during a write can leave its
temporary file behind (`.NAME.*.tmp`, `.NAME.tmp.SUFFIX`); `remove_temporary_files` clears them.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import io
import os
import re
import shutil
import socket
import tempfile
import time
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

from recipes.train.errors import RecipeError

# The file whose lock says which process owns a run directory.
LOCK_FILE = "run.lock"
_TEMPORARY_NAME = re.compile(r"\..+\.tmp(\.[A-Za-z0-9]+)?")


class RunDirectoryBusy(RecipeError):
    """Another live process holds the run directory's lock; nothing was written."""


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


@contextlib.contextmanager
def _replacing(destination: Path, suffix: str = ".tmp") -> Iterator[Path]:
    """A temporary path beside `destination` to write; on success it replaces `destination`.

    The temporary file is flushed to disk before the rename and removed if writing fails.
    """
    destination.parent.mkdir(parents=True, exist_ok=True)
    descriptor, name = tempfile.mkstemp(
        dir=destination.parent, prefix=f".{destination.name}.", suffix=suffix
    )
    os.close(descriptor)
    temporary = Path(name)
    try:
        # mkstemp creates the file private (0600); give it the permissions a plain open() would.
        os.chmod(temporary, 0o666 & ~_umask())
        yield temporary
        with open(temporary, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, destination)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_directory(destination.parent)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Writes `text` to `path` atomically (see the module docstring).

    Args:
        path: destination file; its parent directory is created when missing.
        text: the whole content, written as UTF-8.

    Returns:
        The destination as a `Path`.
    """
    destination = Path(path)
    with _replacing(destination) as temporary:
        temporary.write_text(text, encoding="utf-8")
    return destination


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Writes `data` to `path` atomically (see the module docstring); returns the destination."""
    destination = Path(path)
    with _replacing(destination, suffix=".tmp" + destination.suffix) as temporary:
        temporary.write_bytes(data)
    return destination


def atomic_save_arrays(path: str | os.PathLike, arrays: Mapping[str, np.ndarray]) -> Path:
    """Saves named arrays to an `.npz` file atomically (see the module docstring); read them back
    with `numpy.load`."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return atomic_write_bytes(path, buffer.getvalue())


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary directory beside `path` to fill; on success it replaces `path` as a whole.

    For outputs that are directories (a TensorFlow SavedModel): a reader sees the previous
    directory or the complete new one. The previous one is renamed aside (`.NAME.*.old`), the new
    one renamed in, and the previous one removed; a crash between the renames leaves the previous
    one aside. The temporary directory (`.NAME.*.partial`) is removed if filling it fails.
    """
    destination = Path(path)
    destination.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{destination.name}."
    temporary = Path(tempfile.mkdtemp(dir=destination.parent, prefix=prefix, suffix=".partial"))
    try:
        yield temporary
        for file in (p for p in temporary.rglob("*") if p.is_file()):
            with open(file, "rb") as handle:
                os.fsync(handle.fileno())
        aside = None
        if destination.exists():
            # An empty directory to rename over: POSIX renames a directory onto an empty one.
            aside = Path(tempfile.mkdtemp(dir=destination.parent, prefix=prefix, suffix=".old"))
            os.replace(destination, aside)
        os.replace(temporary, destination)
        _fsync_directory(destination.parent)
        if aside is not None:
            shutil.rmtree(aside)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise


def atomic_save_model(
    model, path: str | os.PathLike, members: Mapping[str, str] | None = None
) -> Path:
    """Saves a Keras model to a `.keras` file atomically (see the module docstring).

    Args:
        model: the `keras.Model` to save (its compiled optimizer state included).
        path: destination; must end in `.keras`.
        members: more files to store in the `.keras` archive beside Keras' own (name -> text),
            committed together with the model. Keras ignores them when loading.

    Returns:
        The destination as a `Path`.
    """
    destination = Path(path)
    if destination.suffix != ".keras":
        raise ValueError(f"model files must end in .keras, got {destination}")
    with _replacing(destination, suffix=".tmp.keras") as temporary:
        model.save(temporary)
        if members:
            with zipfile.ZipFile(temporary, "a") as archive:
                for name, text in members.items():
                    archive.writestr(name, text)
    return destination


def atomic_copy(source: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Copies the file `source` to `path` atomically (see the module docstring)."""
    destination = Path(path)
    with _replacing(destination, suffix=".tmp" + destination.suffix) as temporary:
        shutil.copyfile(source, temporary)
    return destination


def atomic_replace_members(path: str | os.PathLike, members: Mapping[str, str]) -> Path:
    """Rewrites the zip archive `path` (a `.keras` file) atomically with `members` (name -> text)
    replacing or joining its files; every other file is copied unchanged."""
    destination = Path(path)
    with (
        _replacing(destination, suffix=".tmp" + destination.suffix) as temporary,
        zipfile.ZipFile(destination) as original,
        zipfile.ZipFile(temporary, "w") as rewritten,
    ):
        for info in original.infolist():
            if info.filename not in members:
                # A copy of the entry's header: writing fills in offsets of the new archive.
                with original.open(info) as source, rewritten.open(copy.copy(info), "w") as target:
                    shutil.copyfileobj(source, target)
        for name, text in members.items():
            rewritten.writestr(name, text)
    return destination


def remove_temporary_files(directory: str | os.PathLike) -> list[Path]:
    """Removes the temporary files that writers killed mid-write left in `directory`; returns
    them. Call it only while owning the directory (`hold_run_directory`)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    leftovers = [p for p in directory.iterdir() if _TEMPORARY_NAME.fullmatch(p.name)]
    for path in leftovers:
        path.unlink(missing_ok=True)
    return leftovers


def _lock_holder(descriptor: int) -> str:
    """The holder's "PID on HOST" as its lock file says, waiting briefly for a holder that has
    just taken the lock to write it."""
    for _ in range(20):
        text = os.pread(descriptor, 256, 0).decode(errors="replace").strip()
        if text:
            pid, _, host = text.partition(" ")
            return f"PID {pid}" + (f" on {host}" if host and host != socket.gethostname() else "")
        time.sleep(0.05)
    return "a process that has not written its PID yet"


@contextlib.contextmanager
def hold_run_directory(directory: str | os.PathLike) -> Iterator[Path]:
    """Owns `directory` for the duration of the block: no other process can hold it meanwhile.

    Takes an exclusive `fcntl.flock` on `directory/run.lock` (creating the directory and the file
    if needed) and writes this process's PID and host name into it. The operating system
    releases the lock when the process ends, however it ends (a SIGKILL or a crash included), so
    a lock file left behind by a dead process never blocks anyone; on leaving the block the file
    is removed, and so are the directories created here if nothing was written in them. A lock
    file another process removed between our opening and our locking it is not a lock: the file
    is opened again.

    Raises:
        RunDirectoryBusy: a live process holds the lock (the message names its PID). Nothing is
            written in that case.
    """
    directory = Path(directory)
    # The directories created here, innermost first.
    created = [path for path in (directory, *directory.parents) if not path.exists()]
    path = directory / LOCK_FILE
    while True:
        directory.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _lock_holder(descriptor)
            os.close(descriptor)
            raise RunDirectoryBusy(
                f"{directory} is in use by another run ({holder}, lock file {path}): wait for "
                "it to finish or stop it, or choose another --out-dir; nothing was written"
            ) from None
        with contextlib.suppress(FileNotFoundError):
            if os.path.samestat(os.fstat(descriptor), os.stat(path)):
                break
        os.close(descriptor)
    try:
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"{os.getpid()} {socket.gethostname()}\n".encode(), 0)
        yield path
    finally:
        # Removed while still locked, so that nobody can lock the file we are about to let go.
        path.unlink(missing_ok=True)
        os.close(descriptor)
        # A run that failed before writing anything leaves no empty directories behind.
        with contextlib.suppress(OSError):
            for empty in created:
                empty.rmdir()
