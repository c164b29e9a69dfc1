"""The stream conf: what to put in an image. A superset of the conf.json nixpkgs'
stream_layered_image.py reads, so a conf nixpkgs produced streams unchanged."""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from layered_image.archive.store_layer import Owner
from layered_image.config import (
    conf_schema,
    load_json_file,
    schema_problems,
    validate_config,
    validate_timestamp,
)
from layered_image.errors import UserError, first_few
from layered_image.graph import is_store_path
from layered_image.names import repo_tag_problem
from layered_image.platform import Platform, validate_platform
from layered_image.strict_json import input_name

EPOCH_PLUS_ONE = "1970-01-01T00:00:01Z"
MAX_OWNER_ID = 2**32 - 2  # Docker reads 2^32-1 as "no owner": the files would show as root's


class ConfError(UserError):
    pass


@dataclass
class StreamConf:
    config: dict[str, Any] | None
    platform: Platform
    store_dir: str
    store_layers: list[list[str]]
    customisation_layer: Path | None
    repo_tag: str
    created: datetime
    owner: Owner
    from_image: Path | None = None
    from_image_tag: str | None = None  # which image of a multi-image from_image archive


def load_conf(file: str | Path, repo_tag: str | None = None) -> StreamConf:
    """The conf in `file`, or on stdin for `-`."""
    raw = load_json_file(file, "conf")
    source = input_name(file)
    if not isinstance(raw, dict):
        raise ConfError(f"{source}: a conf is a JSON object (keys config, store_layers, repo_tag, ...)")
    return parse_conf(raw, repo_tag, source=source)


CONF_VERSION = 1  # what the Nix builder writes; nixpkgs' confs have none


def parse_conf(raw: dict[str, Any], repo_tag: str | None = None, source: str = "conf") -> StreamConf:
    """Checked whole (conf_schema.json: every key known, of its type; then every value), so
    that a typo is an error, not an image without what the misspelt key held."""
    problems = schema_problems(conf_schema(), raw, "conf")
    if problems:
        raise ConfError(f"{source}: {first_few(problems, 5, '; ')}")
    config = raw.get("config")
    if config == {}:  # nixpkgs' default: the same as none (written as {})
        config = None
    problems = validate_config(config)
    architecture = raw.get("architecture", "amd64")
    problems += validate_platform(architecture, raw.get("variant"))
    created_text = raw.get("created", EPOCH_PLUS_ONE)
    mtime_text = raw.get("mtime", EPOCH_PLUS_ONE)
    problems += validate_timestamp("created", created_text)
    problems += validate_timestamp("mtime", mtime_text)
    tag = repo_tag or raw.get("repo_tag")
    if problem := repo_tag_problem(tag):
        problems.append(f"repo_tag: {tag!r} is not NAME:TAG ({problem}), e.g. hello:latest")
    problems += [problem for key in PATH_KEYS if (problem := _path_problem(key, raw.get(key)))]
    store_dir = raw.get("store_dir", "/nix/store")
    layers = raw.get("store_layers", [])
    problems += _check_store_layers(layers, store_dir)
    owner_problems, owner = _owner(raw)
    problems += owner_problems
    if problems:
        raise ConfError(f"{source}: {first_few(problems, 5, '; ')}")
    created = now() if created_text == "now" else parse_time(created_text)
    mtime = int(created.timestamp()) if mtime_text == "now" else int(parse_time(mtime_text).timestamp())
    return StreamConf(
        config=config,
        platform=Platform(architecture, raw.get("variant") or None),
        store_dir=store_dir,
        store_layers=layers,
        customisation_layer=_optional_path(raw.get("customisation_layer")),
        from_image=_optional_path(raw.get("from_image")),
        from_image_tag=raw.get("from_image_tag") if isinstance(raw.get("from_image_tag"), str) else None,
        repo_tag=tag,
        created=created,
        owner=Owner(mtime=mtime, **owner),
    )


def _check_store_layers(layers: Any, store_dir: Any) -> list[str]:
    if not isinstance(store_dir, str) or not store_dir.startswith("/"):
        return [f"store_dir: {store_dir!r} is not an absolute path"]
    if not isinstance(layers, list) or not all(isinstance(layer, list) for layer in layers):
        return ["store_layers: must be a list of lists of store paths"]
    seen: set[str] = set()
    for number, layer in enumerate(layers):
        for path in layer:
            if not isinstance(path, str) or not is_store_path(path, store_dir):
                return [f"store_layers[{number}]: {path!r} is not a path in {store_dir}"]
            if path in seen:
                return [f"store_layers[{number}]: {path} is in more than one layer"]
            seen.add(path)
    return []


def _owner(raw: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    problems, owner = [], {}
    for key in ("uid", "gid"):
        value = raw.get(key, 0)
        owner[key] = _owner_id(value)
        if owner[key] is None:
            problems.append(f"{key}: {value!r:.40} is not a user/group id, a whole number 0-{MAX_OWNER_ID}")
    for key in ("uname", "gname"):
        value = raw.get(key, "root")
        if not isinstance(value, str) or not value.isprintable():  # no control characters, no lone surrogates
            problems.append(f"{key}: {value!r:.40} is not a user/group name (printable characters only)")
        owner[key] = value
    return problems, owner


def _owner_id(value: Any) -> int | None:
    """An integer, or its decimal digits as a string (nixpkgs' confs have either); None if
    it is neither, or out of the range Docker takes."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 10:
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_OWNER_ID:
        return value
    return None


PATH_KEYS = ("from_image", "customisation_layer")  # store_dir: its paths must exist


def _path_problem(key: str, value: Any) -> str | None:
    """A path the file system can be asked about: no NUL, no lone surrogate (a byte that is
    not UTF-8 comes as its surrogate escape, U+DC80-U+DCFF, and is fine)."""
    if value is None or value == "":
        return None
    if isinstance(value, str) and "\0" not in value:
        try:
            os.fsencode(value)
            return None
        except UnicodeEncodeError:
            pass
    return f"{key}: {value!r:.100} is not a path"


def _optional_path(value: Any) -> Path | None:
    return None if value in (None, "") else Path(value)


def parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("z", "Z").replace("t", "T"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def rfc3339(moment: datetime) -> str:
    text = moment.astimezone(UTC).replace(tzinfo=None, microsecond=0).isoformat()  # years < 1000: 4 digits
    return text + (f".{moment.microsecond:06d}".rstrip("0") if moment.microsecond else "") + "Z"
