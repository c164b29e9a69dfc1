"""Store layers: store paths as a layer tar, laid out as nixpkgs' stream script does.

`/nix` and `/nix/store` first (mode 0755), then every store path with its whole tree
in sorted order; permission bits from the store, mtime and owner from the conf; hard
links become regular files (an optimised store gives the same image) and symlinks
stay symlinks. The layer is walked twice: once to plan the exact tar size (only a few
bytes per file are kept, so memory does not grow with the image), once to stream it,
checking every member against the plan so that a store that changes in between stops
the stream instead of corrupting it.
"""

from __future__ import annotations

import os
import stat
from array import array
from collections.abc import Iterator
from dataclasses import dataclass

from layered_image.archive.tar import (
    DIRECTORY,
    REGULAR,
    SYMLINK,
    Member,
    end_of_archive,
    header,
    member_size,
    padding,
)
from layered_image.errors import UserError

CHUNK = 1 << 20


class StoreChangedError(UserError):
    """A store file is not what it was when the layer was planned."""


@dataclass(frozen=True)
class Owner:
    """What every member of a store layer gets instead of its on-disk mtime and owner."""

    mtime: int = 1
    uid: int = 0
    gid: int = 0
    uname: str = "root"
    gname: str = "root"


@dataclass
class StoreLayerPlan:
    paths: list[str]
    store_dir: str
    owner: Owner
    sizes: array  # bytes each member takes, in walk order
    size: int  # the whole layer tar

    @property
    def files(self) -> int:
        return len(self.sizes)


def plan_store_layer(paths: list[str], store_dir: str, owner: Owner) -> StoreLayerPlan:
    sizes = array("Q")
    offset = 0
    for member, _ in members(paths, store_dir, owner):
        taken = member_size(member)
        sizes.append(taken)
        offset += taken
    return StoreLayerPlan(paths, store_dir, owner, sizes, offset + len(end_of_archive(offset)))


def stream_store_layer(plan: StoreLayerPlan, buffer: bytearray) -> Iterator[bytes | memoryview]:
    """The layer tar's bytes, in pieces; `buffer` is reused for file contents."""
    offset = 0
    walked = 0
    for index, (member, source) in enumerate(members(plan.paths, plan.store_dir, plan.owner)):
        taken = member_size(member)
        if index >= plan.files or taken != plan.sizes[index]:
            raise StoreChangedError(f"{source.decode(errors='replace')} changed while the image was streamed")
        yield header(member)
        if member.kind == REGULAR:
            yield from _file_contents(source, member.size, buffer)
            yield padding(member.size)
        offset += taken
        walked = index + 1
    if walked != plan.files:
        raise StoreChangedError(f"files vanished from {', '.join(plan.paths)} while the image was streamed")
    yield end_of_archive(offset)


def members(paths: list[str], store_dir: str, owner: Owner) -> Iterator[tuple[Member, bytes]]:
    """Every member of the layer with the file it comes from, in nixpkgs' order."""
    common = {
        "mtime": owner.mtime,
        "uid": owner.uid,
        "gid": owner.gid,
        "uname": owner.uname.encode(),
        "gname": owner.gname.encode(),
    }
    for directory in _parents(store_dir):
        yield Member(name=directory + b"/", kind=DIRECTORY, mode=0o755, **common), b""
    for path in paths:
        for source, info in _walk(os.fsencode(path)):
            yield _member(source, info, common), source


def _parents(store_dir: str) -> list[bytes]:
    """/nix/store -> [/nix, /nix/store]"""
    parts = os.fsencode(store_dir).strip(b"/").split(b"/")
    return [b"/" + b"/".join(parts[: i + 1]) for i in range(len(parts))]


def _walk(root: bytes) -> Iterator[tuple[bytes, os.stat_result]]:
    """`root` and, for a directory, everything under it: pre-order, siblings sorted by name
    (as nixpkgs sorts pathlib paths), symlinks not followed."""
    try:
        info = os.lstat(root)
    except OSError as err:
        raise UserError(f"cannot read store path {root.decode(errors='replace')}: {err.strerror}") from None
    stack = [(root, info)]
    while stack:
        path, info = stack.pop()
        yield path, info
        if stat.S_ISDIR(info.st_mode):
            children = []
            with os.scandir(path) as entries:
                for entry in entries:
                    children.append((entry.name, entry.path, entry.stat(follow_symlinks=False)))
            children.sort(key=lambda child: child[0].decode("utf-8", "surrogateescape"), reverse=True)
            stack.extend((child_path, child_info) for _, child_path, child_info in children)


def _member(source: bytes, info: os.stat_result, common: dict) -> Member:
    mode = info.st_mode
    if stat.S_ISDIR(mode):
        return Member(name=source + b"/", kind=DIRECTORY, mode=mode & 0o7777, **common)
    if stat.S_ISLNK(mode):
        return Member(name=source, kind=SYMLINK, mode=mode & 0o7777, linkname=os.readlink(source), **common)
    if stat.S_ISREG(mode):
        return Member(name=source, kind=REGULAR, mode=mode & 0o7777, size=info.st_size, **common)
    raise UserError(f"{source.decode(errors='replace')}: not a file, directory or symlink; cannot be stored")


def _file_contents(source: bytes, size: int, buffer: bytearray) -> Iterator[memoryview]:
    name = source.decode(errors="replace")
    try:
        fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as err:
        raise StoreChangedError(f"{name} can no longer be read ({err.strerror})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size != size:
            raise StoreChangedError(f"{name} changed size or type while the image was streamed")
        view = memoryview(buffer)
        left = size
        while left:
            got = os.readv(fd, [view[: min(left, len(buffer))]])
            if not got:
                raise StoreChangedError(f"{name} shrank while the image was streamed")
            left -= got
            yield view[:got]
        if os.read(fd, 1):
            raise StoreChangedError(f"{name} grew while the image was streamed")
    finally:
        os.close(fd)
