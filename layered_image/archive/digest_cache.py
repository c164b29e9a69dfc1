"""What a layer's blob is, remembered, so that a push of layers seen before reads nothing.

Store paths never change, so a store layer's bytes are fixed by its paths, the owner and
mtime its members get, this tool's version (the tar writer) and what fixes the
compression (compression.identity). A layer that comes with its digest (a base image's
layer, the customisation layer's checksum) is known by that. For each such identity the
cache keeps the diff_id, the compressed blob's digest and both sizes, one small file per
layer under $XDG_CACHE_HOME/layered-image/layer-digests/ (else ~/.cache/...).

A record is trusted to name the blob; the bytes are made again only when a registry
lacks the blob, and then they must hash to the record, or the push stops (and the record
is forgotten). A record that cannot be read is no record; one that cannot be written, a
note. Delete the directory to forget them all.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from layered_image import __version__
from layered_image.archive.compression import identity as compression_identity
from layered_image.archive.layer_source import LayerSource
from layered_image.files import write_file

HEX = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Digests:
    diff_id: str  # hex, of the uncompressed layer
    size: int  # uncompressed
    blob_digest: str  # "sha256:<hex>", of the compressed blob
    blob_size: int

    def well_formed(self) -> bool:
        return (
            bool(HEX.fullmatch(self.diff_id))
            and self.blob_digest.startswith("sha256:")
            and bool(HEX.fullmatch(self.blob_digest[7:]))
            and all(
                isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in (self.size, self.blob_size)
            )
        )


def default_directory() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "layered-image" / "layer-digests"


class DigestCache:
    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or default_directory()
        self.notes: list[str] = []

    def key(self, layer: LayerSource, compression: str) -> str | None:
        """The layer's content identity with what fixes its compressed bytes; None when the
        layer has no identity (its bytes can only be known by reading them)."""
        content = layer.identity or (f"diff_id {layer.expected_digest}" if layer.expected_digest else None)
        if content is None:
            return None
        text = json.dumps([__version__, content, compression_identity(compression)])
        return hashlib.sha256(text.encode()).hexdigest()

    def get(self, key: str) -> Digests | None:
        try:
            fields = json.loads((self.directory / f"{key}.json").read_text())
            digests = Digests(**fields)
        except (OSError, ValueError, TypeError):
            return None
        return digests if digests.well_formed() else None

    def known(self, layer: LayerSource, compression: str) -> Digests | None:
        key = self.key(layer, compression)
        return self.get(key) if key else None

    def put(self, key: str, digests: Digests) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            write_file(self.directory / f"{key}.json", json.dumps(digests.__dict__).encode())
        except OSError as err:
            self.notes.append(f"note: cannot record layer digests in {self.directory}: {err.strerror or err}")

    def forget(self, key: str) -> None:
        with contextlib.suppress(OSError):  # already gone
            (self.directory / f"{key}.json").unlink()
