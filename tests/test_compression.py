"""Layer compression: the same bytes whatever the number of cores and however the layer's
bytes arrive; valid gzip and zstd that standard tools read back."""

from __future__ import annotations

import gzip
import os
import random
import subprocess

import pytest
import zstandard

from layered_image.archive import compression


def sample() -> bytes:
    rng = random.Random(7)
    words = [bytes(rng.choice(b"abcdefgh \n") for _ in range(rng.randint(1, 12))) for _ in range(500)]
    text = b" ".join(rng.choice(words) for _ in range(600_000))
    return text + os.urandom(300_000) + text[:1_500_000]  # text, noise, then a repeat


def compressed(name: str, data: bytes, feeds: list[int]) -> bytes:
    squeeze = compression.compressor(name)
    out, offset, step = [], 0, 0
    while offset < len(data):
        size = feeds[step % len(feeds)]
        out.append(bytes(squeeze.compress(data[offset : offset + size])))
        offset, step = offset + size, step + 1
    return b"".join(out) + squeeze.flush()


@pytest.mark.parametrize("name", ["gzip", "zstd"])
def test_the_bytes_do_not_depend_on_cores_or_how_the_input_arrives(name, monkeypatch):
    data = sample()
    reference = compressed(name, data, [1 << 20])
    for workers in (1, 3):
        monkeypatch.setattr(compression, "_workers", lambda workers=workers: workers)
        compression._pool.cache_clear()
        assert compressed(name, data, [1, 4096, 333_333, 3 << 20]) == reference
    compression._pool.cache_clear()
    reader = gzip.decompress if name == "gzip" else zstandard.ZstdDecompressor().decompressobj().decompress
    assert reader(reference) == data
    tool = ["gzip", "-dc"] if name == "gzip" else ["zstd", "-dc"]
    assert subprocess.run(tool, input=reference, capture_output=True, check=True).stdout == data


def test_gzip_uses_isal_blocks_when_installed_and_says_what_fixes_the_bytes():
    assert compression._isal() is not None  # a dependency: the fast path is the one tested
    assert compression.identity("gzip").startswith("gzip isal-")
    assert "libzstd-" in compression.identity("zstd")
    empty = compression.compressor("gzip")
    assert gzip.decompress(bytes(empty.compress(b"")) + empty.flush()) == b""
