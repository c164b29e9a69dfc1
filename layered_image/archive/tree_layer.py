"""A directory tree as a layer tar: the customisation layer (contents linked into `/`,
what extraCommands and fakeRootCommands made). Owners are taken from the files as they
stand (under fakeroot, the ones fakeRootCommands set); mtime is the image's."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from layered_image.archive.store_layer import walk
from layered_image.archive.tar import DIRECTORY, REGULAR, SYMLINK, Member, end_of_archive, header, padding
from layered_image.errors import UserError


def write_tree_layer(root: Path, target: Path, mtime: int) -> None:
    prefix = len(os.fsencode(root)) + 1
    offset = 0
    with open(target, "wb") as out:
        for source, info in walk(os.fsencode(root)):
            name = source[prefix:]
            if not name:
                continue  # the root itself: "/" is not a member
            member, data = _member(name, source, info, mtime)
            block = header(member) + data + padding(len(data))
            out.write(block)
            offset += len(block)
        out.write(end_of_archive(offset))


def _member(name: bytes, source: bytes, info: os.stat_result, mtime: int) -> tuple[Member, bytes]:
    owner = {"uid": info.st_uid, "gid": info.st_gid, "mtime": mtime}
    mode = info.st_mode & 0o7777
    if stat.S_ISDIR(info.st_mode):
        return Member(name + b"/", DIRECTORY, mode, **owner), b""
    if stat.S_ISLNK(info.st_mode):
        return Member(name, SYMLINK, mode, linkname=os.readlink(source), **owner), b""
    if stat.S_ISREG(info.st_mode):
        data = Path(os.fsdecode(source)).read_bytes()
        return Member(name, REGULAR, mode, len(data), **owner), data
    raise UserError(f"{source.decode(errors='replace')}: only files, directories and symlinks go in a layer")
