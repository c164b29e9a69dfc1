"""Store layers: store paths as a layer tar, laid out as nixpkgs' stream script does.

`/nix` and `/nix/store` first (mode 0755), then every store path with its whole tree
in sorted order; permission bits from the store, mtime and owner from the conf; hard
links become regular files (an optimised store gives the same image) and symlinks
stay symlinks. The layer is planned from metadata first (its exact tar size, before any byte is
written; about 300 bytes of memory per file, none per byte), then streamed; a file
whose size or type is no longer what was planned stops the stream with its name
instead of corrupting the image.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from layered_image.archive.output import FileSpan
from layered_image.archive.tar import (
    BLOCK,
    DIRECTORY,
    REGULAR,
    SYMLINK,
    Member,
    OwnerFields,
    end_of_archive,
    owner_fields,
    padding,
)
from layered_image.errors import StoreChangedError, UserError

CHUNK = 1 << 20
SMALL_FILE = 256 << 10  # read in one go and batched with its neighbours


@dataclass(frozen=True)
class Owner:
    """What every member of a store layer gets instead of its on-disk mtime and owner."""

    mtime: int = 1
    uid: int = 0
    gid: int = 0
    uname: str = "root"
    gname: str = "root"

    def common(self) -> tuple[int, int, int, bytes, bytes]:
        """mtime, uid, gid, uname, gname: in Member's field order."""
        return self.mtime, self.uid, self.gid, self.uname.encode(), self.gname.encode()

    def fields(self) -> OwnerFields:
        return owner_fields(*self.common())


@dataclass
class StoreLayerPlan:
    paths: list[str]
    members: list[tuple[Member, bytes]]  # with the file each comes from
    size: int  # of the whole layer tar
    fields: OwnerFields  # mtime and owner, laid out once for every header


def plan_store_layer(paths: list[str], store_dir: str, owner: Owner) -> StoreLayerPlan:
    fields = owner.fields()
    planned = list(members(paths, store_dir, owner))
    offset = sum([fields.size(member) for member, _ in planned])
    return StoreLayerPlan(paths, planned, offset + len(end_of_archive(offset)), fields)


Item = tuple[bytes, bytes, int, bytes]  # header bytes, source file, data size, member kind
RAW = b""  # an item that is bytes only (the end-of-archive blocks)


def stream_store_layer(plan: StoreLayerPlan) -> Iterator[bytes | FileSpan]:
    return layer_bytes(layer_items(plan))


def layer_items(plan: StoreLayerPlan) -> Iterator[Item]:
    """The layer as headers and the files their data comes from: all the metadata work,
    which can run apart from the reading (see planner.py)."""
    offset, header = 0, plan.fields.header
    for member, source in plan.members:
        head = header(member)
        offset += len(head) + member.size + (-member.size % BLOCK)
        yield head, source, member.size, member.kind
    yield end_of_archive(offset), b"", 0, RAW


def layer_bytes(items: Iterable[Item]) -> Iterator[memoryview | bytes | FileSpan]:
    """The layer tar's bytes: headers and small files read straight into batches of about
    CHUNK bytes (no copy besides the read), big files handed over open."""
    batch = _Batch()
    for head, source, size, kind in items:
        if kind == REGULAR and size > SMALL_FILE:
            yield batch.take()
            yield head
            yield _open_file(source, size)
            yield padding(size)
            continue
        batch.add(head)
        if kind == REGULAR:
            batch.read_file(source, size)
        if batch.full():
            yield batch.take()
    yield batch.take()


class _Batch:
    """Headers and small files gathered into one buffer, handed over whole as a memoryview.

    Buffers are reused round a small pool once whoever took them has let go (the writer
    thread's queue is bounded, so that is soon); a buffer still referenced is left alone and a
    new one made. Every byte handed over is written first: reuse never leaks old bytes."""

    CAPACITY = CHUNK + SMALL_FILE + 64 * BLOCK  # a header set and a small file past CHUNK
    POOL = 16  # the two writer queues hold 16 pieces, not all batches: on the bench conf
    # a buffer was still in use at its turn 7 times in ~1,000 (a new one is made then)

    def __init__(self) -> None:
        self.pool: list[bytearray] = []
        self.turn = 0
        self._fresh()

    def _fresh(self) -> None:
        self.buffer = self._free_buffer()
        self.view = memoryview(self.buffer)
        self.used = 0

    def _free_buffer(self) -> bytearray:
        if len(self.pool) < self.POOL:
            self.pool.append(bytearray(self.CAPACITY))
            return self.pool[-1]
        self.turn = (self.turn + 1) % self.POOL
        buffer = self.pool[self.turn]
        try:  # a bytearray that anyone still views cannot change size
            buffer.append(0)
        except BufferError:
            buffer = self.pool[self.turn] = bytearray(self.CAPACITY)
        else:
            del buffer[-1]
        return buffer

    def add(self, data: bytes) -> None:
        if self.used + len(data) > len(self.buffer):  # only for very long names: grow
            self._grow(len(data))
        self.view[self.used : self.used + len(data)] = data
        self.used += len(data)

    def _grow(self, extra: int) -> None:
        self.view.release()
        self.buffer.extend(bytes(extra))
        self.view = memoryview(self.buffer)

    def read_file(self, source: bytes, size: int) -> None:
        """The whole file, asking for one byte more (which shows whether it grew), then padding."""
        if self.used + size + 1 + BLOCK > len(self.buffer):
            self._grow(size + 1 + BLOCK)
        fd = _open(source)
        try:
            got = os.readv(fd, [self.view[self.used : self.used + size + 1]])
        except OSError as err:  # EISDIR: a directory now stands where the file was
            raise StoreChangedError(f"{_name(source)} is no longer a file ({err.strerror})") from None
        finally:
            os.close(fd)
        if got != size:
            raise StoreChangedError(f"{_name(source)} changed size since the layer was planned")
        end = self.used + size + (-size % BLOCK)
        self.view[self.used + size : end] = padding(size)  # over the extra byte asked for
        self.used = end

    def full(self) -> bool:
        return self.used >= CHUNK

    def take(self) -> memoryview:
        taken = self.view[: self.used]
        self.view.release()  # `taken` alone now holds the buffer
        self._fresh()
        return taken


def members(paths: list[str], store_dir: str, owner: Owner) -> Iterator[tuple[Member, bytes]]:
    """Every member of the layer with the file it comes from, in nixpkgs' order."""
    common = owner.common()
    for directory in _parents(store_dir):
        yield Member(directory + b"/", DIRECTORY, 0o755, 0, b"", *common), b""
    for path in paths:
        for source, info in walk(os.fsencode(path)):
            yield stat_member(source, source, info, common), source


def _parents(store_dir: str) -> list[bytes]:
    """/nix/store -> [/nix, /nix/store]"""
    parts = os.fsencode(store_dir).strip(b"/").split(b"/")
    return [b"/" + b"/".join(parts[: i + 1]) for i in range(len(parts))]


def walk(root: bytes) -> Iterator[tuple[bytes, os.stat_result]]:
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
            with os.scandir(path) as entries:
                children = [(entry.name, entry.path, entry.stat(follow_symlinks=False)) for entry in entries]
            if all(name.isascii() for name, _, _ in children):  # bytes sort as the text does
                children.sort(reverse=True)
            else:
                children.sort(key=lambda child: child[0].decode("utf-8", "surrogateescape"), reverse=True)
            stack.extend([(child_path, child_info) for _, child_path, child_info in children])


def stat_member(name: bytes, source: bytes, info: os.stat_result, common: tuple) -> Member:
    """The member for the file at `source`, named `name`, with `common`: mtime, uid, gid,
    uname, gname (positional: this runs once per file)."""
    mode = info.st_mode
    if stat.S_ISREG(mode):
        return Member(name, REGULAR, mode & 0o7777, info.st_size, b"", *common)
    if stat.S_ISDIR(mode):
        return Member(name + b"/", DIRECTORY, mode & 0o7777, 0, b"", *common)
    if stat.S_ISLNK(mode):
        return Member(name, SYMLINK, mode & 0o7777, 0, os.readlink(source), *common)
    raise UserError(f"{source.decode(errors='replace')}: not a file, directory or symlink; cannot be stored")


def _open_file(source: bytes, size: int) -> FileSpan:
    """Open a big store file for the writer thread, checked against the plan."""
    fd = _open(source)
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_size != size:
        os.close(fd)
        raise StoreChangedError(f"{_name(source)} changed size or type since the layer was planned")
    return FileSpan(fd, size, _name(source))


def _open(source: bytes) -> int:
    try:
        return os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as err:
        raise StoreChangedError(f"{_name(source)} can no longer be read ({err.strerror})") from None


def _name(source: bytes) -> str:
    return source.decode(errors="replace")
