"""Which of the image's store paths a base image already holds, as the store has them.

Left out of our layers, a store path is whatever the base has under its name: a planted
file, a symlink, a partial or different tree. So a path is left out only when the base's
copy lists the same entries as the store's: names, kinds, permission bits, file sizes and
symlink targets. Contents are not compared (that would read every such file again; a store
path's name is the hash of how it was built, so a copy that matches this far is the path
as a Nix build made it, or was made to look like one by a base that could plant anything
anyway). Ours is stored again, above the base's copy where it wins, and a warning names it,
when the base's copy differs, is spread over several layers, or is touched by a whiteout.
"""

from __future__ import annotations

import os
import stat
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass, field

from layered_image.archive.store_layer import walk
from layered_image.errors import first_few

Signature = tuple[object, ...]  # what is compared of one entry: kind, mode, size or target
Listing = dict[str, Signature]  # by name relative to the store path ("" for itself)
WHITEOUT = ".wh."  # OCI's whiteouts: .wh.NAME deletes NAME from the layers below
OPAQUE = ".wh..opq"  # .wh..wh..opq: everything below in the layers below


@dataclass
class HeldPaths:
    kept: list[list[str]]  # the store layers less the paths held
    held: list[str]  # in the base as in the store: not stored again
    differing: list[str]  # in the base, but not as in the store: stored again above it


def split_held(
    store_layers: list[list[str]], store_dir: str, base_layers: Iterable[Iterable[tarfile.TarInfo]]
) -> HeldPaths:
    """`base_layers`: the members of each base layer, bottom first."""
    wanted = {path for paths in store_layers for path in paths}
    base = _BaseStore(store_dir, wanted)
    for number, members in enumerate(base_layers):
        base.read_layer(number, members)
    found = set(base.listings) | base.doubtful
    candidates = {path: listing for path, listing in base.listings.items() if path not in base.doubtful}
    held = {path for path, listing in candidates.items() if listing == store_listing(path)}
    kept = [remaining for paths in store_layers if (remaining := [p for p in paths if p not in held])]
    return HeldPaths(kept, sorted(held), sorted(found - held))


def differing_note(paths: list[str], where: str) -> str:
    shown = first_few(paths)
    return (
        f"warning: {where} has {len(paths)} store path(s) of this image, but not as the store has them"
        f" (other files or kinds); stored again above the base's: {shown}"
    )


def store_listing(path: str) -> Listing:
    root = os.fsencode(path)
    listing = {}
    for source, info in walk(root):
        mode = info.st_mode
        if stat.S_ISDIR(mode):
            signature: Signature = ("dir", stat.S_IMODE(mode))
        elif stat.S_ISREG(mode):
            signature = ("file", stat.S_IMODE(mode), info.st_size)
        elif stat.S_ISLNK(mode):
            signature = ("symlink", os.fsdecode(os.readlink(source)))
        else:
            signature = ("other",)
        listing[os.fsdecode(source[len(root) + 1 :])] = signature
    return listing


@dataclass
class _BaseStore:
    """The entries of the wanted store paths, read from the base's layers in turn."""

    store_dir: str
    wanted: set[str]
    listings: dict[str, Listing] = field(default_factory=dict)
    layer_of: dict[str, int] = field(default_factory=dict)
    doubtful: set[str] = field(default_factory=set)  # had, then touched in a way not worth following

    def __post_init__(self) -> None:
        self.prefix = _parts(self.store_dir)

    def read_layer(self, number: int, members: Iterable[tarfile.TarInfo]) -> None:
        sizes: dict[str, int] = {}  # regular files of this layer, for its hard links
        depth = len(self.prefix)
        for member in members:
            parts = _parts(member.name)
            if len(parts) > depth and parts[:depth] == self.prefix:
                self._add(number, member, parts[depth:], sizes)
            elif self._replaces_store_dir(parts, member):  # what it had of our paths is gone
                self.doubtful |= set(self.listings)

    def _replaces_store_dir(self, parts: list[str], member: tarfile.TarInfo) -> bool:
        """Whether `member` deletes or replaces the store directory or one above it."""
        if parts and parts[-1].startswith(WHITEOUT):  # .wh.NAME deletes NAME, .wh..wh..opq all below
            name = parts[-1].removeprefix(WHITEOUT)
            parts = parts[:-1] if name == OPAQUE else [*parts[:-1], name]
            return self.prefix[: len(parts)] == parts
        return self.prefix[: len(parts)] == parts and not member.isdir()

    def _add(self, number: int, member: tarfile.TarInfo, parts: list[str], sizes: dict[str, int]) -> None:
        """`parts`: the member's name under the store directory."""
        if parts[0].startswith(WHITEOUT):  # a store path deleted, or all of them (opaque)
            name = parts[0].removeprefix(WHITEOUT)
            self.doubtful |= set(self.listings) if name == OPAQUE else {self._path(name)} & set(self.listings)
            return
        path = self._path(parts[0])
        if path not in self.wanted:
            return
        if self.layer_of.setdefault(path, number) != number or parts[-1].startswith(WHITEOUT):
            self.doubtful.add(path)
            return
        linked_size = sizes.get("/".join(_parts(member.linkname))) if member.islnk() else None
        signature = _signature(member, linked_size)
        if signature is None:
            self.doubtful.add(path)
            return
        if member.isreg():
            sizes["/".join([*self.prefix, *parts])] = member.size
        self.listings.setdefault(path, {})["/".join(parts[1:])] = signature

    def _path(self, name: str) -> str:
        return "/" + "/".join([*self.prefix, name])


def _signature(member: tarfile.TarInfo, linked_size: int | None) -> Signature | None:
    """As store_listing has it; a hard link is the file it links to (None if not seen)."""
    mode = member.mode & 0o7777
    if member.isdir():
        return ("dir", mode)
    if member.isreg():
        return ("file", mode, member.size)
    if member.issym():
        return ("symlink", member.linkname)
    if member.islnk():
        return None if linked_size is None else ("file", mode, linked_size)
    return ("other",)


def _parts(name: str) -> list[str]:
    return [part for part in name.split("/") if part not in ("", ".")]
