"""Layer compression on every core, deterministic: the same layer gives the same bytes
whatever the machine's number of cores and however the layer's bytes arrive.

gzip: with ISA-L (the `isal` package), the layer is cut into 1 MiB blocks, each deflated
on its own (primed with the 32 KiB before it, as pigz does, so the ratio stays) in a
thread pool, and the blocks are joined into one gzip member (no name, mtime 0). The bytes
depend only on the input, BLOCK, ISAL_LEVEL and ISA-L's version. Without `isal`, zlib at
level 6 in one stream (other bytes, a tenth of the speed).
zstd: the zstandard package in its multi-threaded mode, whose output is the same for any
number of worker threads (and differs from its single-threaded mode): the bytes depend on
the input, ZSTD_LEVEL and the libzstd version the package bundles.
`identity(name)` names what fixes the bytes, for the digest cache.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from functools import cache
from types import ModuleType
from typing import Protocol

GZIP_LEVEL = 6  # zlib's, when isal is missing
ISAL_LEVEL = 2  # ISA-L's levels are 0-3; 2 is within a few per cent of zlib 6's ratio here
ZSTD_LEVEL = 3
BLOCK = 1 << 20
WINDOW = 32 << 10  # what deflate may refer back to: the primer of each block
COMPRESSIONS = ("none", "gzip", "zstd")
LAYER_MEDIA_TYPES = {
    "none": "application/vnd.oci.image.layer.v1.tar",
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
}
GZIP_HEADER = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"  # deflate, no name, mtime 0, OS unknown
LAST_EMPTY_BLOCK = b"\x03\x00"  # a final, empty fixed-Huffman deflate block


class Compressor(Protocol):
    def compress(self, data: bytes | memoryview) -> bytes | memoryview: ...

    def flush(self) -> bytes: ...


class _Identity:
    def compress(self, data: bytes | memoryview) -> bytes | memoryview:
        return data

    def flush(self) -> bytes:
        return b""


def compressor(name: str) -> Compressor:
    if name == "gzip":
        if _isal() is not None:
            return BlockGzip()
        return zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, 31)  # wbits 31: gzip, no name, mtime 0
    if name == "zstd":
        import zstandard

        # any number of threads >= 1 gives the same bytes
        return zstandard.ZstdCompressor(level=ZSTD_LEVEL, threads=_workers()).compressobj()
    return _Identity()


def identity(name: str) -> str:
    """What, besides the input, decides the compressed bytes."""
    if name == "gzip":
        isal = _isal()
        if isal is not None:
            return f"gzip isal-{isal.__version__} level {ISAL_LEVEL} block {BLOCK}"
        return f"gzip zlib-{zlib.ZLIB_RUNTIME_VERSION} level {GZIP_LEVEL}"
    if name == "zstd":
        import zstandard

        return (
            f"zstd zstandard-{zstandard.__version__} libzstd-{zstandard.ZSTD_VERSION} level {ZSTD_LEVEL} mt"
        )
    return name


@cache
def _isal() -> ModuleType | None:
    try:
        import isal
        from isal import isal_zlib  # noqa: F401
    except ImportError:
        return None
    return isal


def _workers() -> int:
    return max(1, os.cpu_count() or 1)


@cache
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(_workers(), thread_name_prefix="deflate")


class BlockGzip:
    """One gzip member of independently deflated blocks, compressed in the thread pool
    (ISA-L lets go of the GIL), handed back in order as they are done."""

    def __init__(self) -> None:
        self.pending = bytearray()
        self.primer = b""
        self.crc = 0
        self.size = 0
        self.in_flight: deque[Future[bytes]] = deque()
        self.started = False

    def compress(self, data: bytes | memoryview) -> bytes:
        self.crc = zlib.crc32(data, self.crc)
        self.size += len(data)
        self.pending += data
        while len(self.pending) >= BLOCK:
            self._submit(bytes(self.pending[:BLOCK]))
            del self.pending[:BLOCK]
        return self._collect(wait=len(self.in_flight) > 2 * _workers())  # a bounded backlog

    def flush(self) -> bytes:
        if self.pending:
            self._submit(bytes(self.pending))
            self.pending.clear()
        head = self._collect(wait=True, every=True)
        trailer = struct.pack("<II", self.crc & 0xFFFFFFFF, self.size & 0xFFFFFFFF)
        return head + LAST_EMPTY_BLOCK + trailer  # (head starts with the header if nothing came before)

    def _submit(self, block: bytes) -> None:
        self.in_flight.append(_pool().submit(_deflate_block, block, self.primer))
        self.primer = block[-WINDOW:]

    def _collect(self, wait: bool, every: bool = False) -> bytes:
        """The finished blocks at the front (the oldest waited for when `wait`)."""
        parts = [] if self.started else [GZIP_HEADER]
        self.started = True
        while self.in_flight and (every or wait or self.in_flight[0].done()):
            parts.append(self.in_flight.popleft().result())
            wait = False
        return b"".join(parts)


def _deflate_block(block: bytes, primer: bytes) -> bytes:
    """A raw deflate of `block`, ended on a byte boundary (sync flush), able to refer back
    into `primer`: it joins the blocks before and after it into one stream."""
    from isal import isal_zlib

    if primer:
        squeeze = isal_zlib.compressobj(ISAL_LEVEL, isal_zlib.DEFLATED, -15, zdict=primer)
    else:
        squeeze = isal_zlib.compressobj(ISAL_LEVEL, isal_zlib.DEFLATED, -15)
    return squeeze.compress(block) + squeeze.flush(isal_zlib.Z_SYNC_FLUSH)
