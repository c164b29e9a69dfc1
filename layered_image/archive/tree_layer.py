"""A directory tree as a layer tar: the customisation layer (contents linked into `/`,
what extraCommands and fakeRootCommands made). Owners are taken from the files as they
stand (under fakeroot, the ones fakeRootCommands set); mtime is the image's."""

from __future__ import annotations

import os
from pathlib import Path

from layered_image.archive.store_layer import stat_member, walk
from layered_image.archive.tar import REGULAR, end_of_archive, header, padding
from layered_image.files import replaced_file


def write_tree_layer(root: Path, target: Path, mtime: int) -> None:
    prefix = len(os.fsencode(root)) + 1
    offset = 0
    with replaced_file(target) as fd, os.fdopen(fd, "wb", closefd=False) as out:
        for source, info in walk(os.fsencode(root)):
            name = source[prefix:]
            if not name:
                continue  # the root itself: "/" is not a member
            member = stat_member(name, source, info, (mtime, info.st_uid, info.st_gid, b"", b""))
            data = Path(os.fsdecode(source)).read_bytes() if member.kind == REGULAR else b""
            block = header(member) + data + padding(len(data))
            out.write(block)
            offset += len(block)
        out.write(end_of_archive(offset))
