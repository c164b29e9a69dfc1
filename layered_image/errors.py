"""The one exception type for mistakes in a user's input, and how a process reports them.

The command line (and a Nix stream script) prints its message as a single line and exits
1; anything else escaping is a bug in this program and keeps its traceback.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Callable
from typing import NoReturn


class UserError(Exception):
    """Bad input: the message says what is wrong and what to do about it."""


class StoreChangedError(UserError):
    """A store file is not what it was when its layer was planned."""


def first_few(items: list[str], count: int = 3, separator: str = ", ") -> str:
    """The first `count` items and how many more, for a one-line message about a long list."""
    return separator.join(items[:count]) + (f" and {len(items) - count} more" if len(items) > count else "")


def silence_stdout() -> None:
    """After the output failed: Python flushes stdout at exit, which would fail again and
    print a second error."""
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives until exit


class Terminated(BaseException):
    """SIGTERM, turned into an exception so that temporary files are cleaned up."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


def exit_promptly(code: int) -> NoReturn:
    """Exit without the interpreter's teardown, which frees every object and module one
    by one (~0.07 s after a stream, which the reader waits out for its end of file)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # errors were reported already
            stream.flush()
    os._exit(code)


def reporting_errors(prefix: str, job: Callable[[], int]) -> int:
    """Run `job`; a user's mistake, Ctrl-C or SIGTERM become one line and exit 1/130/143."""
    signal.signal(signal.SIGTERM, _terminate)
    try:
        return job()
    except UserError as err:
        print(f"{prefix}: error: {err}", file=sys.stderr)
        return 1
    except OSError as err:  # writing the output: `layered-image layers ... | head`, a full disk
        silence_stdout()
        if isinstance(err, BrokenPipeError):
            problem = "the reader of the output went away before the end (broken pipe)"
        else:
            problem = f"{err.strerror or err}" + (f" ({err.filename})" if err.filename else "")
        print(f"{prefix}: error: {problem}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prefix}: interrupted", file=sys.stderr)
        return 130
    except Terminated:
        print(f"{prefix}: terminated", file=sys.stderr)
        return 143
