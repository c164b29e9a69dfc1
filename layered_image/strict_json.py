"""JSON as RFC 8259 defines it, read and written: no NaN, Infinity or -Infinity.

Python's json module reads and writes those by default, and reads a number too big for
a float (1e400) as infinity; copied into an image config, any of them makes a file that
Docker and every other JSON reader refuse. Everything read from outside goes through
`loads`, and everything written through `dumps`.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any, NoReturn

from layered_image.errors import UserError

STDIN = "-"
_stdin_read = False  # a second `-` would get an empty document: refused instead


class NotJsonNumber(ValueError):
    """A NaN, an infinity or a number beyond a float; the message names where it is."""


def loads(data: str | bytes) -> Any:
    """json.loads, refusing what is not a JSON number (ValueError naming its place)."""
    try:
        return json.loads(data, parse_constant=_refuse, parse_float=_finite_float)
    except NotJsonNumber as err:
        raise NotJsonNumber(f"{_place(data)} is {err}, which JSON does not allow") from None


def read_input(file: str | Path) -> bytes:
    """The bytes of a JSON input: the file, or stdin for `-` (once per run); OSError as open gives it."""
    global _stdin_read
    if str(file) != STDIN:
        return Path(file).read_bytes()
    if _stdin_read:
        raise UserError("only one input can be - (stdin): give the others as files")
    _stdin_read = True
    return sys.stdin.buffer.read()


def input_name(file: str | Path) -> str:
    """How messages name an input."""
    return "stdin" if str(file) == STDIN else str(file)


def dumps(value: Any, **options: Any) -> str:
    """json.dumps that raises ValueError rather than write NaN or Infinity."""
    return json.dumps(value, allow_nan=False, **options)


def _place(data: str | bytes) -> str:
    """Where the first NaN or infinity is: read again, with them allowed (only on this error path)."""
    try:
        return _place_of_non_finite(json.loads(data))
    except (ValueError, RecursionError):  # the rest of the text is broken too
        return "a value"


def _refuse(constant: str) -> NoReturn:
    raise NotJsonNumber(constant)


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise NotJsonNumber(text)
    return number


def _place_of_non_finite(value: Any) -> str:
    """Where the first NaN or infinity in `value` is, e.g. history[0].comment."""
    stack: list[tuple[Any, str]] = [(value, "")]
    while stack:
        item, place = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            return place.lstrip(".") or "the document"
        if isinstance(item, dict | list):
            children = item.items() if isinstance(item, dict) else enumerate(item)
            stack += reversed([(child, place + _step(key)) for key, child in children])
    return "a value"


def _step(key: str | int) -> str:
    if isinstance(key, int):
        return f"[{key}]"
    return f".{key}" if key.isidentifier() else f"[{json.dumps(key)}]"
