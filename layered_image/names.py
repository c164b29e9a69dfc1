"""Image names and tags as Docker reads them (its reference grammar, distribution/reference),
so that a name `docker load` or a registry would refuse is refused before the first byte.

Checked here and not by Docker: `docker load` reads the names only after the whole stream.
The classes are spelt out ([a-z0-9], not \\w) and matched whole (fullmatch): Python's \\w
takes any letter (é, ٣) and its $ matches before a final newline.
"""

from __future__ import annotations

import re

_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(rf"{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*(?::[0-9]+)?")
_PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH = re.compile(rf"{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
NAME_MAX = 255  # Docker's limit on the whole name as it reads it (docker.io/library/... included)
DOCKER_HUB = "docker.io"


def split_domain(name: str) -> tuple[str | None, str]:
    """(registry host or None, path), as Docker splits them: the first component is a host
    when it has a dot or a port, or is localhost."""
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        return first, rest
    return None, name


def full_name(domain: str | None, path: str) -> str:
    """The name as Docker stores it: hello is docker.io/library/hello."""
    if domain in (None, "index.docker.io", DOCKER_HUB):
        return f"{DOCKER_HUB}/{path if '/' in path else 'library/' + path}"
    return f"{domain}/{path}"


def full_repo_tag(repo_tag: str) -> str:
    """NAME:TAG as Docker and containerd store it (`docker save`'s io.containerd.image.name):
    bb:v1 is docker.io/library/bb:v1, team/bb:v1 is docker.io/team/bb:v1."""
    name, _, tag = repo_tag.rpartition(":")
    return f"{full_name(*split_domain(name))}:{tag}"


def name_problem(domain: str | None, path: str) -> str | None:
    """What is wrong with an image name (registry host and path), or None."""
    if domain is not None and not _DOMAIN.fullmatch(domain):
        return f"{domain!r} is not a registry HOST[:PORT] (letters, digits, - inside, dots)"
    if not _PATH.fullmatch(path):
        return "the name is lower-case [a-z0-9] components joined by /, with ., _, __ or - inside"
    name = full_name(domain, path)
    if len(name) > NAME_MAX:
        return f"the name is {len(name)} characters as Docker reads it ({name[:30]}...), over {NAME_MAX}"
    return None


def tag_problem(tag: str) -> str | None:
    if not _TAG.fullmatch(tag):
        return "the tag is 1 to 128 of the ASCII characters A-Z a-z 0-9 _ . - (not starting with . or -)"
    return None


def repo_tag_problem(text: object) -> str | None:
    """What is wrong with NAME:TAG as `docker load` would read it, or None."""
    if not isinstance(text, str):
        return "not a string"
    name, colon, tag = text.rpartition(":")
    if not colon or "/" in tag:
        return "no :TAG"
    return name_problem(*split_domain(name)) or tag_problem(tag)
