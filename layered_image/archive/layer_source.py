"""A layer ready to be written: its exact tar size known before its first byte, its bytes
on demand. The size may be measured late (`measure`), so that planning a store layer
overlaps with writing the one before it."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from layered_image.archive.output import FileSpan
from layered_image.errors import UserError

Chunks = Iterable["bytes | FileSpan"]
CHUNK = 1 << 20


@dataclass
class LayerSource:
    measure: Callable[[], int]
    chunks: Callable[[], Chunks]
    comment: str
    created_by: str = "layered-image"
    expected_digest: str | None = None  # sha256 hex the bytes must hash to, when known
    identity: str | None = None  # what fixes the bytes without reading them (digest_cache.py)

    @cached_property
    def size(self) -> int:
        return self.measure()


def file_layer(path: Path, comment: str, expected_digest: str | None = None) -> LayerSource:
    """An uncompressed layer tar already on disk (nixpkgs' customisation layer)."""
    try:
        size = path.stat().st_size
    except OSError as err:
        raise UserError(f"cannot read layer {path}: {err.strerror}") from None

    def chunks() -> Chunks:
        with open(path, "rb", buffering=0) as file:
            left = size
            while left:
                data = file.read(min(left, CHUNK))
                if not data:
                    raise UserError(f"{path} shrank while the image was streamed")
                left -= len(data)
                yield data

    return LayerSource(lambda: size, chunks, comment, expected_digest=expected_digest)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def read_checksum(directory: Path) -> str | None:
    checksum = directory / "checksum"
    if not checksum.exists():
        return None
    words = checksum.read_bytes().split()  # bytes: a file that is not UTF-8 is just not a digest
    digest = words[0] if words else b""
    if len(digest) != 64 or any(c not in b"0123456789abcdef" for c in digest):
        raise UserError(f"{checksum}: not a sha256 hex digest")
    return digest.decode()


def customisation_layer(directory: Path) -> LayerSource:
    if not (directory / "layer.tar").is_file():
        raise UserError(f"customisation_layer {directory} has no layer.tar")
    return file_layer(directory / "layer.tar", "customisation layer", read_checksum(directory))
