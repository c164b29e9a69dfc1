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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from layered_image.archive.compression import LAYER_MEDIA_TYPES, compressor
from layered_image.archive.digest_cache import DigestCache, Digests
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
    data: bytes | None = None  # in memory (configs, manifests), or
    make: Callable[[], Path] | None = None  # made on first read (a layer known from digest_cache)
    made: list[Path] = field(default_factory=list, compare=False, repr=False)

    @property
    def hex(self) -> str:
        return self.digest.removeprefix("sha256:")

    def descriptor(self) -> dict[str, object]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size}

    def read(self, block: int = 1 << 20) -> Iterator[bytes]:
        if self.data is not None:
            yield self.data
            return
        with open(self._file(), "rb") as file:
            while chunk := file.read(block):
                yield chunk

    def read_range(self, offset: int, size: int) -> bytes:
        if self.data is not None:
            return self.data[offset : offset + size]
        with open(self._file(), "rb") as file:
            file.seek(offset)
            return file.read(size)

    def _file(self) -> Path:
        if self.path is not None:
            return self.path
        assert self.make is not None
        if not self.made:  # (each blob is read by one thread at a time)
            self.made.append(self.make())
        return self.made[0]


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


def layer_blob(
    layer: LayerSource, compression: str, scratch: Path, cache: DigestCache | None
) -> tuple[Blob, str]:
    """The layer's blob and diff_id hex: from the digest cache when it knows the layer (the
    bytes then made only if a reader asks, and checked against the record), else spooled
    now (and recorded)."""
    key = cache.key(layer, compression) if cache else None
    known = cache.get(key) if cache and key else None
    if cache is None or key is None:
        return spool_layer(layer, compression, scratch)
    if known is None:
        blob, diff_id = spool_layer(layer, compression, scratch)
        cache.put(key, Digests(diff_id, layer.size, blob.digest, blob.size))
        return blob, diff_id
    make = partial(_spool_as_recorded, layer, compression, scratch, cache, key, known)
    return Blob(known.blob_digest, known.blob_size, LAYER_MEDIA_TYPES[compression], make=make), known.diff_id


def _spool_as_recorded(
    layer: LayerSource, compression: str, scratch: Path, cache: DigestCache, key: str, known: Digests
) -> Path:
    blob, diff_id = spool_layer(layer, compression, scratch)
    if (blob.digest, blob.size, diff_id) != (known.blob_digest, known.blob_size, known.diff_id):
        cache.forget(key)
        raise UserError(
            f"layer ({layer.comment[:100]}) no longer makes the blob recorded for it"
            f" ({known.blob_digest[:19]}): its store paths changed? The record is forgotten: push again"
        )
    assert blob.path is not None
    return blob.path


def _layer_bytes(layer: LayerSource) -> Iterator[bytes | memoryview]:
    for chunk in layer.chunks():
        if isinstance(chunk, FileSpan):
            yield from chunk.blocks()
        elif chunk:
            yield bytes(chunk)
