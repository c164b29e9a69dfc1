"""What an SBOM says of an image, gathered once and written out by each format.

The facts come from three places: the conf (which store path is in which layer, the base
image, the customisation layer), a closure graph (each path's NAR hash, size and
references: Nix's exportReferencesGraph or `nix path-info --json --recursive` output) and,
from a Nix build, the `meta` of the `contents` packages. Layer diff_ids are computed from
the layers' bytes, as the image has them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import urllib.parse
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

from layered_image.archive.layer_source import LayerSource
from layered_image.archive.output import FileSpan
from layered_image.conf import StreamConf, rfc3339
from layered_image.errors import UserError
from layered_image.graph import ClosureGraph
from layered_image.platform import Platform

NIX32_ALPHABET = "0123456789abcdfghijklmnpqrsvwxyz"  # Nix's base32: no e, o, u, t
SHA256_BYTES = 32


class SbomError(UserError):
    pass


@dataclass(frozen=True)
class PackageMeta:
    """The parts of a package's Nix `meta` an SBOM has a place for."""

    licenses: tuple[str, ...] = ()  # SPDX license ids
    homepage: str | None = None
    description: str | None = None


@dataclass(frozen=True)
class StorePath:
    path: str
    name: str  # builtins.parseDrvName's name of the path's name
    version: str  # and its version ("" when it has none)
    nar_hash: str  # as the graph has it ("" when it has none)
    nar_size: int
    references: tuple[str, ...]  # store paths of the image, itself left out
    layer: int | None  # index into ImageContents.layers; None: somewhere in the base image's
    meta: PackageMeta = PackageMeta()

    @property
    def hash_part(self) -> str:
        return os.path.basename(self.path).partition("-")[0]

    @property
    def sha256_hex(self) -> str | None:
        return nar_hash_hex(self.nar_hash)

    @property
    def purl(self) -> str:
        return nix_purl(self.name, self.version, self.path)


@dataclass(frozen=True)
class Layer:
    diff_id: str  # "sha256:<hex>"
    kind: str  # "base", "store" or "customisation"
    store_paths: tuple[str, ...] = ()

    def title(self, index: int) -> str:
        """`layer 3 (store paths)`: counted from the bottom, as rootfs.diff_ids lists them."""
        what = {"base": "from the base image", "store": "store paths", "customisation": "customisation"}
        return f"layer {index + 1} ({what[self.kind]})"


@dataclass
class ImageContents:
    repo_tag: str
    platform: Platform
    created: str  # RFC 3339, the image's own `created`
    layers: list[Layer]
    store_paths: list[StorePath]  # sorted by path
    from_image: str | None = None
    held_by_base: tuple[str, ...] = ()  # image store paths the base image's layers hold
    notes: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.repo_tag.rpartition(":")[0]

    @property
    def tag(self) -> str:
        return self.repo_tag.rpartition(":")[2]

    def roots(self) -> list[str]:
        """Store paths no other store path of the image references: what was asked for."""
        referenced = {ref for path in self.store_paths for ref in path.references}
        return [path.path for path in self.store_paths if path.path not in referenced]


def parse_drv_name(name: str) -> tuple[str, str]:
    """builtins.parseDrvName: the name ends at the first `-` followed by anything but an
    ASCII letter; the version is everything after that dash ("" when there is none)."""
    for index, char in enumerate(name[:-1]):
        following = name[index + 1]
        if char == "-" and not (following.isascii() and following.isalpha()):
            return name[:index], name[index + 1 :]
    return name, ""


def store_path_name(path: str) -> str:
    """The name part of a store path: what follows `<hash>-`."""
    return os.path.basename(path).partition("-")[2]


def nar_hash_hex(nar_hash: str) -> str | None:
    """A sha256 NAR hash as hex: from SRI (`sha256-<base64>`), `sha256:<nix32>` or
    `sha256:<hex>`; None when it is another algorithm or not a whole sha256."""
    algorithm, separator, value = nar_hash.partition("-" if nar_hash.startswith("sha256-") else ":")
    if algorithm != "sha256" or not separator:
        return None
    digest: bytes | None
    if separator == "-":
        try:
            digest = base64.b64decode(value, validate=True)
        except ValueError:
            return None
    elif len(value) == 2 * SHA256_BYTES and all(c in "0123456789abcdef" for c in value):
        digest = bytes.fromhex(value)
    else:
        digest = nix32_decode(value)
    return digest.hex() if digest is not None and len(digest) == SHA256_BYTES else None


def nix32_decode(text: str) -> bytes | None:
    """Nix's base32: the last character holds the lowest 5 bits of the first byte."""
    size = len(text) * 5 // 8
    if len(text) != (size * 8 + 4) // 5:  # not a length Nix prints
        return None
    result = bytearray(size)
    for position, char in enumerate(reversed(text)):
        digit = NIX32_ALPHABET.find(char)
        if digit < 0:
            return None
        bit = position * 5
        byte, shift = divmod(bit, 8)
        result[byte] |= (digit << shift) & 0xFF
        carry = digit >> (8 - shift)
        if byte + 1 < size:
            result[byte + 1] |= carry
        elif carry:  # bits beyond the hash: not a hash Nix printed
            return None
    return bytes(result)


def nix_purl(name: str, version: str, store_path: str) -> str:
    """`pkg:nix/NAME@VERSION?store_path=PATH`: NAME and VERSION as parseDrvName gives them,
    the store path itself, which names the exact build, as a qualifier."""
    quoted = urllib.parse.quote(name, safe="")
    at_version = f"@{urllib.parse.quote(version, safe='')}" if version else ""
    return f"pkg:nix/{quoted}{at_version}?store_path={urllib.parse.quote(store_path, safe='')}"


def package_meta(raw: Any) -> PackageMeta:
    """What the Nix side passed for one package (strings only; anything else is dropped)."""
    if not isinstance(raw, dict):
        return PackageMeta()
    licenses = raw.get("licenses")
    return PackageMeta(
        licenses=tuple(sorted({x for x in licenses if isinstance(x, str) and x}))
        if isinstance(licenses, list)
        else (),
        homepage=_text(raw.get("homepage")),
        description=_text(raw.get("description")),
    )


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value.strip() else None


def meta_by_path(entries: Any) -> dict[str, PackageMeta]:
    """`[{path, licenses, homepage, description}, ...]` as the Nix build passes it."""
    if not isinstance(entries, list):
        return {}
    found: dict[str, PackageMeta] = {}
    for entry in entries:
        if isinstance(entry, dict) and isinstance(entry.get("path"), str):
            found.setdefault(entry["path"], package_meta(entry))
    return found


def gather(
    conf: StreamConf,
    graph: ClosureGraph,
    layers: list[Layer],
    held_by_base: Iterable[str] = (),
    meta: dict[str, PackageMeta] | None = None,
) -> ImageContents:
    """The image's store paths with what the graph says of them; every one must be in it."""
    meta = meta or {}
    held = tuple(sorted(held_by_base))
    layer_of: dict[str, int | None] = {
        path: index for index, layer in enumerate(layers) for path in layer.store_paths
    }
    for path in held:  # the base image's copy is the image's (held_paths.py says which match)
        layer_of.setdefault(path, None)
    if missing := sorted(path for path in layer_of if path not in graph.index):
        raise SbomError(
            f"the closure graph has no entry for {missing[0]}"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
            + "; give the graph of this image's closure"
        )
    store_paths = []
    for path in sorted(layer_of):
        index = graph.index[path]
        name, version = parse_drv_name(store_path_name(path))
        references = sorted(ref for r in graph.references[index] if (ref := graph.paths[r]) in layer_of)
        store_paths.append(
            StorePath(
                path=path,
                name=name,
                version=version,
                nar_hash=graph.nar_hash[index],
                nar_size=graph.nar_size[index],
                references=tuple(references),
                layer=layer_of[path],
                meta=meta.get(path, PackageMeta()),
            )
        )
    return ImageContents(
        repo_tag=conf.repo_tag,
        platform=conf.platform,
        created=rfc3339(conf.created),
        layers=layers,
        store_paths=store_paths,
        from_image=str(conf.from_image) if conf.from_image else None,
        held_by_base=held,
    )


def image_layers(conf: StreamConf, resources: ExitStack) -> tuple[list[Layer], tuple[str, ...]]:
    """The image's layers as `stream` makes them, each with its diff_id (a store layer's
    bytes are made and hashed, as for streaming), and the store paths the base holds."""
    from layered_image.engine import plan_image  # the archive machinery, only when needed

    sources, meta = plan_image(conf, resources)
    held = set(meta.held_by_base)
    kept = [kept for paths in conf.store_layers if (kept := [p for p in paths if p not in held])]
    top = 1 if conf.customisation_layer else 0
    if meta.base_layers + len(kept) + top != len(sources):
        raise SbomError(f"{len(sources)} layers planned, not the base's, the store's and the top (a bug)")
    kinds = ["base"] * meta.base_layers + ["store"] * len(kept) + ["customisation"] * top
    paths = [[]] * meta.base_layers + kept + [[]] * top
    layers = [
        Layer(f"sha256:{layer_diff_id(source)}", kind, tuple(layer_paths))
        for source, kind, layer_paths in zip(sources, kinds, paths, strict=True)
    ]
    return layers, meta.held_by_base


def layer_diff_id(layer: LayerSource) -> str:
    """The sha256 hex of the layer's uncompressed bytes: as recorded, or as made."""
    if layer.expected_digest:
        return layer.expected_digest
    digest = hashlib.sha256()
    for block in _layer_bytes(layer):
        digest.update(block)
    return digest.hexdigest()


def _layer_bytes(layer: LayerSource) -> Iterator[bytes | memoryview]:
    for chunk in layer.chunks():
        if isinstance(chunk, FileSpan):
            yield from chunk.blocks()
        elif chunk:
            yield chunk


def content_uuid(document: Any) -> str:
    """A UUID that only this content gives: a name-based UUID of the document's hash."""
    import uuid

    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "sha256:" + hashlib.sha256(text.encode()).hexdigest()))
