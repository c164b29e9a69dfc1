"""`docker://HOST[:PORT]/REPOSITORY:TAG`, as skopeo spells a registry image."""

from __future__ import annotations

import re
from dataclasses import dataclass

from layered_image.errors import UserError

_REPOSITORY = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")


@dataclass(frozen=True)
class Reference:
    host: str  # with the port, if any
    repository: str
    tag: str

    def __str__(self) -> str:
        return f"{self.host}/{self.repository}:{self.tag}"


def parse_reference(text: str) -> Reference:
    """docker://HOST/REPO:TAG; a name without a registry host means Docker Hub."""
    hint = "; expected docker://HOST[:PORT]/REPOSITORY:TAG"
    if not text.startswith("docker://"):
        raise UserError(f"{text!r} is not a registry reference{hint}")
    rest = text.removeprefix("docker://")
    first, _, remainder = rest.partition("/")
    if remainder and ("." in first or ":" in first or first == "localhost"):
        host, name = first, remainder
    else:
        host, name = "registry-1.docker.io", rest if "/" in rest else f"library/{rest}"
    repository, colon, tag = name.rpartition(":")
    if not colon or "/" in tag:
        repository, tag = name, "latest"
    if not _REPOSITORY.fullmatch(repository) or not _TAG.fullmatch(tag):
        raise UserError(f"{text!r}: bad repository name or tag{hint} (lower-case repository)")
    return Reference(host, repository, tag)
