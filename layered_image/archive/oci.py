"""OCI image layout: as a directory (`oci-dir`) or as a tar (`oci-archive`).

The archive is what Docker 25+ `docker save` writes: an OCI layout (oci-layout,
index.json, blobs/sha256/...) plus a docker manifest.json pointing into blobs/, so that
`docker load`, `podman load` and `skopeo copy oci-archive:` all take it. Layers are
spooled into blobs first (see blobs.py); index.json and manifest.json come last, so a
cut-short archive names no image.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from layered_image.archive.blobs import Blob, json_blob, layer_blob
from layered_image.archive.digest_cache import DigestCache
from layered_image.archive.image import ImageMeta, canonical_json, image_config
from layered_image.archive.layer_source import LayerSource
from layered_image.archive.output import Output
from layered_image.archive.tar import DIRECTORY, Member, end_of_archive, header
from layered_image.errors import UserError
from layered_image.files import Directory, LinkInTheWay
from layered_image.names import full_repo_tag, repo_tag_problem
from layered_image.platform import Platform
from layered_image.progress import Progress

CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"
OCI_LAYOUT = b'{"imageLayoutVersion":"1.0.0"}'
IMAGE_NAME = "io.containerd.image.name"
REF_NAME = "org.opencontainers.image.ref.name"


@dataclass
class OciImage:
    config: Blob
    manifest: Blob
    layers: list[Blob]
    repo_tag: str
    platform: Platform

    def blobs(self) -> list[Blob]:
        return [*self.layers, self.config, self.manifest]


def build_oci_image(
    layers: list[LayerSource],
    meta: ImageMeta,
    compression: str,
    scratch: Path,
    progress: Progress,
    cache: DigestCache | None = None,
    on_layer: Callable[[Blob], None] = lambda blob: None,
) -> OciImage:
    """Every layer as a blob in `scratch` (or, with a digest cache that knows it, as a
    blob made only if read), each handed to `on_layer` once made (a push sends it while
    the next is made), then the config and the manifest."""
    blobs, diff_ids = [], []
    for number, layer in enumerate(layers, start=1):
        progress.step(f"layer {number}/{len(layers)}: {layer.comment[:200]}")
        blob, diff_id = layer_blob(layer, compression, scratch, cache)
        if blob.make is None:
            progress.advance(layer.size)
        blobs.append(blob)
        diff_ids.append(diff_id)
        on_layer(blob)
    config = json_blob(canonical_json(image_config(meta, layers, diff_ids)), CONFIG_MEDIA_TYPE)
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": config.descriptor(),
        "layers": [blob.descriptor() for blob in blobs],
    }
    return OciImage(config, json_blob(canonical_json(manifest), MANIFEST_MEDIA_TYPE), blobs,
                    meta.repo_tag, meta.platform)  # fmt: skip


def index_entry(image: OciImage) -> dict[str, object]:
    """The manifest's descriptor in a layout's index.json, named as Docker 25+ `docker save`
    names it: the full name (as containerd and `ctr import` read it) and the tag."""
    tag = image.repo_tag.rpartition(":")[2]
    annotations = {IMAGE_NAME: full_repo_tag(image.repo_tag), REF_NAME: tag}
    return image.manifest.descriptor() | {"annotations": annotations, "platform": image.platform.descriptor()}


def platform_entry(image: OciImage) -> dict[str, object]:
    """The manifest's descriptor in an index pushed to a registry: picked by platform, the
    index itself being what the tag names."""
    return image.manifest.descriptor() | {"platform": image.platform.descriptor()}


def index_json(entries: list[dict[str, object]]) -> bytes:
    return canonical_json({"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": entries})


def docker_manifest(image: OciImage) -> bytes:
    return canonical_json([{
        "Config": f"blobs/sha256/{image.config.hex}",
        "RepoTags": [image.repo_tag],
        "Layers": [f"blobs/sha256/{blob.hex}" for blob in image.layers],
    }])  # fmt: skip


def write_oci_archive(out: Output, image: OciImage, mtime: int) -> None:
    for directory in ("blobs/", "blobs/sha256/"):
        out.write(header(Member(name=directory.encode(), kind=DIRECTORY, mode=0o755, mtime=mtime)))
    written: set[str] = set()
    for blob in image.blobs():
        if blob.digest not in written:  # two identical layers are one blob
            written.add(blob.digest)
            out.write_file(f"blobs/sha256/{blob.hex}", blob.size, blob.read(), mtime)
    _write_bytes(out, "oci-layout", OCI_LAYOUT, mtime)
    _write_bytes(out, "index.json", index_json([index_entry(image)]), mtime)
    _write_bytes(out, "manifest.json", docker_manifest(image), mtime)
    out.write(end_of_archive(out.offset))
    out.finish()


def _write_bytes(out: Output, name: str, data: bytes, mtime: int) -> None:
    out.write_file(name, len(data), [data], mtime)


def write_oci_dir(image: OciImage, directory: Path) -> None:
    """Blobs into DIR/blobs/sha256, then index.json, read and rewritten under a lock on DIR:
    writers at the same time keep each other's tags. The image replaces an entry of the same
    name; an entry of another name with the same tag (ref.name) keeps its place but loses the
    tag, as skopeo does: a tag names one image in a layout, and the older's blobs stay named."""
    with _layout_errors(), Directory.open(directory) as layout:
        with _blob_directory(layout) as blobs:
            for blob in image.blobs():
                if blob.path is not None:
                    blobs.move_in(blob.path, blob.hex)
                elif not blobs.holds_regular_file(blob.hex):  # named by its digest: one there is it
                    blobs.write_file(blob.hex, blob.data or b"")
        layout.write_file("oci-layout", OCI_LAYOUT)
        with layout.locked():
            entry = index_entry(image)
            name, tag = _image_name(entry), _annotation(entry, REF_NAME)
            kept = [_without_tag(e, tag) for e in _index_entries(layout) if _image_name(e) != name]
            layout.write_file("index.json", index_json([*kept, entry]))


@contextlib.contextmanager
def oci_dir_scratch(directory: Path) -> Iterator[Path]:
    """A scratch directory inside DIR, so that finished blobs are renamed into place."""
    with _layout_errors():
        directory.mkdir(parents=True, exist_ok=True)
        with Directory.open(directory) as layout:
            _index_entries(layout)  # refuse a directory that is not an OCI layout
            _blob_directory(layout).close()  # and links in place of its directories, before the work
    with tempfile.TemporaryDirectory(prefix=".layered-image-", dir=directory) as scratch:
        yield Path(scratch)


@contextlib.contextmanager
def _layout_errors() -> Iterator[None]:
    try:
        yield
    except LinkInTheWay as err:
        raise UserError(
            f"{err.filename} is a symbolic link; an OCI layout's index and directories must be its own "
            "(remove the link, or give a new directory)"
        ) from None
    except OSError as err:
        where = err.filename or "OCI layout"
        raise UserError(f"cannot write {where}: {err.strerror or err}") from None


def _blob_directory(layout: Directory) -> Directory:
    with layout.subdirectory("blobs") as blobs:
        return blobs.subdirectory("sha256")


def _index_entries(layout: Directory) -> list[dict[str, object]]:
    index = layout.read_file("index.json")
    if index is None:
        foreign = [n for n in os.listdir(layout.fd) if n not in ("blobs", "oci-layout") and n[:1] != "."]
        if foreign:
            raise UserError(f"{layout.path} is neither empty nor an OCI layout; give a new directory")
        return []
    try:
        entries = json.loads(index)["manifests"]
        assert isinstance(entries, list)
        return entries
    except (ValueError, KeyError, TypeError, AssertionError):
        raise UserError(f"{layout.path / 'index.json'} is not an OCI index; give a new directory") from None


def _annotation(entry: dict[str, object], key: str) -> object:
    annotations = entry.get("annotations")
    return annotations.get(key) if isinstance(annotations, dict) else None


def _image_name(entry: dict[str, object]) -> object:
    """The entry's full name; entries written before names were written in full have
    bb:1 for docker.io/library/bb:1."""
    name = _annotation(entry, IMAGE_NAME)
    return full_repo_tag(name) if isinstance(name, str) and repo_tag_problem(name) is None else name


def _without_tag(entry: dict[str, object], tag: object) -> dict[str, object]:
    """The entry with no ref.name if its ref.name is `tag`; else as it is."""
    annotations = entry.get("annotations")
    if not isinstance(annotations, dict) or annotations.get(REF_NAME) != tag:
        return entry
    untagged, rest = dict(entry), {k: v for k, v in annotations.items() if k != REF_NAME}
    if rest:
        untagged["annotations"] = rest
    else:
        del untagged["annotations"]
    return untagged
