"""The stream conf: what to put in an image. A superset of the conf.json nixpkgs'
stream_layered_image.py reads, so a conf nixpkgs produced streams unchanged."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from layered_image.archive.store_layer import Owner
from layered_image.config import load_json_file, validate_config, validate_timestamp
from layered_image.errors import UserError
from layered_image.graph import is_store_path
from layered_image.platform import Platform, validate_platform

EPOCH_PLUS_ONE = "1970-01-01T00:00:01Z"
# Docker's reference grammar, simplified: lower-case path components, optional registry
# host[:port], then a tag.
REPO_TAG = re.compile(
    r"((?:[a-zA-Z0-9-]+\.)*[a-zA-Z0-9-]+(?::[0-9]+)?/)?"
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r":[\w][\w.-]{0,127}"
)


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
    raw = load_json_file(file, "conf")
    if not isinstance(raw, dict):
        raise ConfError(f"{file}: a conf is a JSON object (keys config, store_layers, repo_tag, ...)")
    return parse_conf(raw, repo_tag, source=str(file))


def parse_conf(raw: dict[str, Any], repo_tag: str | None = None, source: str = "conf") -> StreamConf:
    problems: list[str] = []
    config = raw.get("config") or None
    problems += validate_config(config)
    architecture = raw.get("architecture", "amd64")
    problems += validate_platform(architecture, raw.get("variant"))
    created_text = raw.get("created", EPOCH_PLUS_ONE)
    mtime_text = raw.get("mtime", EPOCH_PLUS_ONE)
    problems += validate_timestamp("created", created_text)
    problems += validate_timestamp("mtime", mtime_text)
    tag = repo_tag or raw.get("repo_tag")
    if not isinstance(tag, str) or not REPO_TAG.fullmatch(tag):
        problems.append(f"repo_tag: {tag!r} is not NAME:TAG (lower-case name, e.g. hello:latest)")
    store_dir = raw.get("store_dir", "/nix/store")
    layers = raw.get("store_layers", [])
    problems += _check_store_layers(layers, store_dir)
    owner_problems, owner = _owner(raw)
    problems += owner_problems
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise ConfError(f"{source}: {shown}")
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
        try:
            owner[key] = int(value)
            if owner[key] < 0 or isinstance(value, bool | float):
                raise ValueError
        except (TypeError, ValueError):
            problems.append(f"{key}: {value!r} is not a non-negative integer")
    for key in ("uname", "gname"):
        value = raw.get(key, "root")
        if not isinstance(value, str) or "\0" in value:
            problems.append(f"{key}: {value!r} is not a user/group name")
        owner[key] = value
    return problems, owner


def _optional_path(value: Any) -> Path | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise ConfError(f"expected a path, got {value!r}")
    return Path(value)


def parse_time(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("z", "Z").replace("t", "T"))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def rfc3339(moment: datetime) -> str:
    text = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return text + (f".{moment.microsecond:06d}".rstrip("0") if moment.microsecond else "") + "Z"
