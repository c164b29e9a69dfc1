"""The one exception type for mistakes in a user's input.

The command line prints its message as a single line and exits 1; anything else
escaping is a bug in this program and keeps its traceback.
"""

import os
import sys


class UserError(Exception):
    """Bad input: the message says what is wrong and what to do about it."""


class StoreChangedError(UserError):
    """A store file is not what it was when its layer was planned."""


def silence_stdout() -> None:
    """After the output failed: Python flushes stdout at exit, which would fail again and
    print a second error."""
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives until exit
