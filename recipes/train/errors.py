"""Expected failures of a run, and how the command line reports them.

A recipe on the command line ends in one of three ways:

- it finishes (exit 0);
- it fails in a way the package anticipates: a bad setting, flag, file or name (exit 2), or a
  failure while running, such as a diverged loss, bad data or a damaged checkpoint (exit 1). Either
  prints one line, `error: <what went wrong and what to do>`, on stderr and no traceback;
- it hits something unexpected: the traceback is shown, as Python shows it.

`--traceback` shows the traceback of anticipated failures too.

A setting that is legal but probably not what was meant (a batch larger than the training set)
does not stop the run: `warn` prints one line, `warning: ...`, on stderr.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

USAGE_EXIT_CODE = 2
FAILURE_EXIT_CODE = 1
TRACEBACK_FLAG = "--traceback"


class RecipeError(Exception):
    """A failure the package anticipates; its message says what went wrong and what to do."""

    exit_code = FAILURE_EXIT_CODE


class ConfigurationError(RecipeError, ValueError):
    """A setting, flag, file or name that no run can use (found before training starts)."""

    exit_code = USAGE_EXIT_CODE


class DataError(RecipeError, ValueError):
    """Data that cannot be trained on as asked: empty splits, labels out of range, bad files."""


# What the setup of a run raises for bad settings: our own checks raise these (unknown names,
# values out of range, missing or existing files, unknown model options).
_SETUP_ERRORS = (ValueError, TypeError, KeyError, FileNotFoundError, FileExistsError)


@contextlib.contextmanager
def configuration_errors() -> Iterator[None]:
    """Marks errors raised inside as configuration errors (exit 2), unless already classified.

    Used around the part of a run that only checks and builds (configuration, names, run
    directory, data, model), where these error types come from the package's own checks.
    """
    try:
        yield
    except RecipeError:
        raise
    except _SETUP_ERRORS as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        raise ConfigurationError(str(message)) from error


def warn(message: str) -> None:
    """Reports a questionable but legal setting as one line, `warning: <message>`, on stderr."""
    print(f"warning: {' '.join(message.split())}", file=sys.stderr)


def one_line(error: BaseException) -> str:
    """The error's message on one line (Keras and TensorFlow messages can span several)."""
    return " ".join(str(error).split()) or type(error).__name__


def run_command(main: Callable[[], Any], argv: list[str]) -> int:
    """Runs `main`, reporting anticipated failures as one line; returns the exit code.

    Args:
        main: the command.
        argv: its arguments, only read for `--traceback`.
    """
    try:
        main()
    except RecipeError as error:
        if TRACEBACK_FLAG in argv:
            raise
        print(f"error: {one_line(error)}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("error: interrupted; continue with --out-dir DIR --resume", file=sys.stderr)
        return 130
    return 0
