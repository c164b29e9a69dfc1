"""A small top layer of symlinks (an image's `contents` linked into `/`), made at stream
time with the tar writer, so it is as deterministic as the store layers."""

from __future__ import annotations

import hashlib

from layered_image.archive.layer_source import LayerSource
from layered_image.archive.tar import DIRECTORY, SYMLINK, Member, end_of_archive, header


def links_layer(links: dict[str, str], mtime: int) -> LayerSource:
    data = links_tar(links, mtime)
    digest = hashlib.sha256(data).hexdigest()
    return LayerSource(lambda: len(data), lambda: [data], "contents linked into /", expected_digest=digest)


def links_tar(links: dict[str, str], mtime: int) -> bytes:
    """Parent directories (0755, root) then the symlinks, all in sorted order."""
    directories = {
        "/".join(parts[:i])
        for path in links
        for parts in [path.strip("/").split("/")]
        for i in range(1, len(parts))
    }
    entries = [(d, None) for d in directories] + [(p.strip("/"), target) for p, target in links.items()]
    out = bytearray()
    for name, target in sorted(entries, key=lambda entry: entry[0].split("/")):
        if target is None:
            member = Member(name.encode() + b"/", DIRECTORY, 0o755, mtime=mtime, uname=b"root", gname=b"root")
        else:
            member = Member(name.encode(), SYMLINK, 0o777, linkname=target.encode(), mtime=mtime,
                            uname=b"root", gname=b"root")  # fmt: skip
        out += header(member)
    return bytes(out + end_of_archive(len(out)))
