"""`docker://HOST[:PORT]/REPOSITORY:TAG`, as skopeo spells a registry image."""

from __future__ import annotations

from dataclasses import dataclass

from layered_image.errors import UserError
from layered_image.names import name_problem, split_domain, tag_problem


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
    name, colon, tag = rest.rpartition(":")
    if not colon or "/" in tag:  # no tag, or the colon of a port
        name, tag = rest, "latest"
    domain, path = split_domain(name)
    if problem := name_problem(domain, path) or tag_problem(tag):
        raise UserError(f"{text!r}: bad repository name or tag ({problem}){hint}")
    if domain is None:
        return Reference("registry-1.docker.io", path if "/" in path else f"library/{path}", tag)
    return Reference(domain, path, tag)
