"""A directory tree as a layer tar: the customisation layer (contents linked into `/`,
what extraCommands and fakeRootCommands made). Owners are taken from the files as they
stand (under fakeroot, the ones fakeRootCommands set); mtime is the image's. FIFOs and
devices are kept, as nixpkgs' tar keeps them: under fakeroot, `mknod` makes an empty file
that stat reports as the device, with its numbers."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from layered_image.archive.store_layer import stat_member, walk
from layered_image.archive.tar import (
    BLOCK_DEVICE,
    CHARACTER_DEVICE,
    FIFO,
    REGULAR,
    Member,
    end_of_archive,
    header,
    padding,
)
from layered_image.errors import UserError
from layered_image.files import replaced_file

_SPECIAL_KINDS = {stat.S_IFIFO: FIFO, stat.S_IFCHR: CHARACTER_DEVICE, stat.S_IFBLK: BLOCK_DEVICE}


def write_tree_layer(root: Path, target: Path, mtime: int) -> None:
    prefix = len(os.fsencode(root)) + 1
    offset = 0
    with replaced_file(target) as fd, os.fdopen(fd, "wb", closefd=False) as out:
        for source, info in walk(os.fsencode(root)):
            name = source[prefix:]
            if not name:
                continue  # the root itself: "/" is not a member
            member = tree_member(name, source, info, mtime)
            data = Path(os.fsdecode(source)).read_bytes() if member.kind == REGULAR else b""
            block = header(member) + data + padding(len(data))
            out.write(block)
            offset += len(block)
        out.write(end_of_archive(offset))


def tree_member(name: bytes, source: bytes, info: os.stat_result, mtime: int) -> Member:
    """The member for the file at `source`: a store layer's kinds, plus FIFOs and devices."""
    kind = _SPECIAL_KINDS.get(stat.S_IFMT(info.st_mode))
    if kind is None:
        if stat.S_ISSOCK(info.st_mode):
            raise UserError(
                f"{source.decode(errors='replace')} is a socket, which a layer cannot hold "
                "(tar has none); remove it in extraCommands or fakeRootCommands"
            )
        return stat_member(name, source, info, (mtime, info.st_uid, info.st_gid, b"", b""))
    device = kind != FIFO
    return Member(
        name, kind, info.st_mode & 0o7777, 0, b"", mtime, info.st_uid, info.st_gid, b"", b"",
        os.major(info.st_rdev) if device else 0, os.minor(info.st_rdev) if device else 0,
    )  # fmt: skip
