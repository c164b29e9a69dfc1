"""Layer compression, deterministic: the same layer gives the same compressed bytes.

gzip comes from zlib with no file name and a zero mtime in its header, at a fixed level;
zstd from the zstandard package at a fixed level, single-threaded. The media types are
the OCI ones; a registry or loader takes them as Docker's equivalents.
"""

from __future__ import annotations

import zlib
from typing import Protocol

GZIP_LEVEL = 6
ZSTD_LEVEL = 3
COMPRESSIONS = ("none", "gzip", "zstd")
LAYER_MEDIA_TYPES = {
    "none": "application/vnd.oci.image.layer.v1.tar",
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
}


class Compressor(Protocol):
    def compress(self, data: bytes | memoryview) -> bytes | memoryview: ...

    def flush(self) -> bytes: ...


class _Identity:
    def compress(self, data: bytes | memoryview) -> bytes | memoryview:
        return data

    def flush(self) -> bytes:
        return b""


def compressor(name: str) -> Compressor:
    if name == "gzip":  # wbits 31: a gzip header without name, mtime 0
        return zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)
    if name == "zstd":
        import zstandard

        return zstandard.ZstdCompressor(level=ZSTD_LEVEL, threads=0).compressobj()
    return _Identity()
