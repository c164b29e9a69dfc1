"""Checks on what a user writes about an image: `config` (Docker Image Spec v1.3, via the
JSON Schema shipped in config_schema.json) and timestamps (the platform: platform.py).

Every check returns a list of one-line problems, `config.<path>: <problem>`; empty means valid.
"""

from __future__ import annotations

import difflib
import json
import re
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from layered_image import strict_json
from layered_image.errors import UserError

RFC3339 = re.compile(r"\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)")


@cache
def config_schema() -> dict[str, Any]:
    text = resources.files("layered_image").joinpath("config_schema.json").read_text()
    return json.loads(text)


@cache
def conf_schema() -> dict[str, Any]:
    """The conf's own schema (conf_schema.json): its keys and their types."""
    text = resources.files("layered_image").joinpath("conf_schema.json").read_text()
    return json.loads(text)


@cache
def _validator_class() -> Any:
    """Draft 2020-12, except that 1.5e9 is not an integer: Go's encoding/json refuses a
    float for an int field, so Docker would refuse it too."""
    from jsonschema import Draft202012Validator, validators  # slow to import: only when needed

    checker = Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _, value: isinstance(value, int) and not isinstance(value, bool)
    )
    return validators.extend(Draft202012Validator, type_checker=checker)


def validate_config(config: Any) -> list[str]:
    """Every problem with an image `config` object (null is allowed, as Docker allows it)."""
    if config is None:
        return []
    return schema_problems(config_schema(), config, "config")


def schema_problems(schema: dict[str, Any], value: Any, name: str) -> list[str]:
    """Every problem of `value` against `schema`, one per place, `name.path: problem`;
    an unknown key with the known key it was probably meant to be."""
    errors = sorted(
        _validator_class()(schema).iter_errors(value),
        key=lambda e: ([str(p) for p in e.absolute_path], str(e.validator)),
    )
    seen: dict[str, str] = {}
    for error in errors:
        for where, problem in _describe(error, name):
            seen.setdefault(where, problem)
    return [f"{where}: {problem}" for where, problem in seen.items()]


def _describe(error: Any, name: str) -> list[tuple[str, str]]:
    where = format_path([name, *error.absolute_path])
    if error.validator == "additionalProperties" and error.schema.get("additionalProperties") is False:
        known = list(error.schema.get("properties", {}))
        extra = sorted(k for k in error.instance if k not in known)
        return [(format_path([name, *error.absolute_path, k]), _unknown_key(k, known)) for k in extra]
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        return [(format_path([name, *error.absolute_path, missing]), "missing (required)")]
    if "propertyNames" in error.schema_path:
        return [(format_path([name, *error.absolute_path, error.instance]), error.schema["x-problem"])]
    problem = error.schema.get("x-problem") or _generic_problem(error)
    return [(where, problem)]


def _unknown_key(key: str, known: list[str]) -> str:
    by_case = {k.lower(): k for k in known}
    guess = by_case.get(key.lower()) or next(
        iter(difflib.get_close_matches(key.lower(), list(by_case), n=1, cutoff=0.75)), None
    )
    guess = by_case.get(guess, guess) if guess else None
    hint = f" (did you mean {guess!r}?)" if guess else f"; known keys: {', '.join(known)}"
    return f"unknown key{hint}"


def _generic_problem(error: Any) -> str:
    if error.validator == "type":
        expected = error.validator_value
        expected = " or ".join(expected) if isinstance(expected, list) else expected
        return f"must be {expected}, not {json_type(error.instance)}"
    return error.message


def json_type(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def format_path(parts: list[Any]) -> str:
    text = str(parts[0])
    for part in parts[1:]:
        if isinstance(part, int):
            text += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", part):
            text += f".{part}"
        else:
            text += f"[{json.dumps(part)}]"
    return text


def validate_timestamp(name: str, value: Any) -> list[str]:
    """`created` / `mtime`: RFC 3339 (e.g. 1970-01-01T00:00:01Z) or "now"."""
    if value == "now":
        return []
    if isinstance(value, str) and RFC3339.fullmatch(value):
        try:
            moment = datetime.fromisoformat(value.replace("z", "Z").replace("t", "T"))
        except ValueError:
            moment = None
        if moment and _in_utc_years(moment):
            return []
        if moment:
            return [f"{name}: {value!r} is out of range: in UTC it is before year 1 or after 9999"]
    return [f'{name}: {value!r:.100} is not an RFC 3339 date-time such as 1970-01-01T00:00:01Z, or "now"']


def _in_utc_years(moment: datetime) -> bool:
    """Whether `moment` in UTC, as the image config states it, is within years 1-9999."""
    try:
        moment.astimezone(UTC)
        return True
    except OverflowError:
        return False


def load_json_file(file: str | Path, what: str) -> Any:
    """The JSON document in `file`, or on stdin for `-`."""
    try:
        return strict_json.loads(strict_json.read_input(file))
    except OSError as err:
        raise UserError(f"cannot read {what} file {file}: {err.strerror}") from None
    except (ValueError, RecursionError) as err:
        raise UserError(f"{strict_json.input_name(file)}: {what} is not valid JSON ({err})") from None
