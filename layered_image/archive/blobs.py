"""Layers as content-addressed blobs, for the OCI formats and registries.

A blob's name is its digest, which is known only after its last byte. So each layer is
written once, through its compressor, into a temporary file in a scratch directory
(on the output's disk), hashed on the way both before compression (the diff_id) and
after (the blob digest). Only one pass over the store files, and one layer on disk at a
time beyond the finished blobs.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from layered_image.archive.compression import LAYER_MEDIA_TYPES, compressor
from layered_image.archive.layer_source import LayerSource
from layered_image.archive.output import FileSpan
from layered_image.errors import UserError
from layered_image.files import new_file


@dataclass(frozen=True)
class Blob:
    digest: str  # "sha256:<hex>"
    size: int
    media_type: str
    path: Path | None = None  # on disk, or
    data: bytes | None = None  # in memory (configs, manifests)

    @property
    def hex(self) -> str:
        return self.digest.removeprefix("sha256:")

    def descriptor(self) -> dict[str, object]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}

    def read(self, block: int = 1 << 20) -> Iterator[bytes]:
        if self.data is not None:
            yield self.data
            return
        assert self.path is not None
        with open(self.path, "rb") as file:
            while chunk := file.read(block):
                yield chunk

    def read_range(self, offset: int, size: int) -> bytes:
        if self.data is not None:
            return self.data[offset : offset + size]
        assert self.path is not None
        with open(self.path, "rb") as file:
            file.seek(offset)
            return file.read(size)


def json_blob(data: bytes, media_type: str) -> Blob:
    return Blob(f"sha256:{hashlib.sha256(data).hexdigest()}", len(data), media_type, data=data)


def spool_layer(layer: LayerSource, compression: str, scratch: Path) -> tuple[Blob, str]:
    """Write the layer, compressed, into `scratch`; return its blob and its diff_id hex."""
    planned = layer.size  # measured (planned) before its bytes are asked for
    diff_id, digest = hashlib.sha256(), hashlib.sha256()
    squeeze = compressor(compression)
    fd, name = new_file(scratch, ".blob")  # with the umask's mode: it may become an oci-dir blob
    written = size = 0
    with os.fdopen(fd, "wb") as file:
        for data in _layer_bytes(layer):
            size += len(data)
            diff_id.update(data)
            packed = squeeze.compress(data)
            digest.update(packed)
            file.write(packed)
            written += len(packed)
        tail = squeeze.flush()
        digest.update(tail)
        file.write(tail)
        written += len(tail)
    if size != planned:
        raise UserError(f"layer ({layer.comment[:100]}): planned {planned} bytes, got {size}")
    if layer.expected_digest and layer.expected_digest != diff_id.hexdigest():
        raise UserError(f"layer ({layer.comment[:100]}) does not match its recorded checksum")
    blob = Blob(f"sha256:{digest.hexdigest()}", written, LAYER_MEDIA_TYPES[compression], path=name)
    return blob, diff_id.hexdigest()


def _layer_bytes(layer: LayerSource) -> Iterator[bytes | memoryview]:
    for chunk in layer.chunks():
        if isinstance(chunk, FileSpan):
            yield from chunk.blocks()
        elif chunk:
            yield bytes(chunk)
