"""The one exception type for mistakes in a user's input.

The command line prints its message as a single line and exits 1; anything else
escaping is a bug in this program and keeps its traceback.
"""


class UserError(Exception):
    """Bad input: the message says what is wrong and what to do about it."""


class StoreChangedError(UserError):
    """A store file is not what it was when its layer was planned."""
