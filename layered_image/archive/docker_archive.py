"""The docker-archive format (what `docker save` writes and `docker load` reads).

Written in one pass: each layer's tar size is known before its bytes, its sha256
(the diff_id) is computed while it streams, and the image config and manifest.json,
which need those digests, come last. A stream cut short therefore never holds a
manifest: no loader takes a truncated image for a complete one.
"""

from __future__ import annotations

import hashlib

from layered_image.archive.image import ImageMeta, canonical_json, image_config
from layered_image.archive.layer_source import LayerSource
from layered_image.archive.output import Output
from layered_image.archive.tar import REGULAR, Member, end_of_archive, header, padding
from layered_image.errors import UserError


def write_docker_archive(out: Output, layers: list[LayerSource], meta: ImageMeta) -> str:
    """Write the whole archive; return the image ID (sha256 of the config)."""
    diff_ids = []
    names = []
    for number, layer in enumerate(layers, start=1):
        name = f"{number:03d}/layer.tar"
        out.label(f"layer {number}/{len(layers)}: {layer.comment[:200]}")
        diff_ids.append(_write_layer(out, name, layer, meta.mtime))
        names.append(name)
    config = canonical_json(image_config(meta, layers, diff_ids))
    image_id = hashlib.sha256(config).hexdigest()
    manifest = [{"Config": f"{image_id}.json", "RepoTags": [meta.repo_tag], "Layers": names}]
    out.label("config and manifest")
    out.write_file(f"{image_id}.json", len(config), [config], meta.mtime)
    manifest_bytes = canonical_json(manifest)
    out.write_file("manifest.json", len(manifest_bytes), [manifest_bytes], meta.mtime)
    out.write(end_of_archive(out.offset))
    out.finish()
    return image_id


def _write_layer(out: Output, name: str, layer: LayerSource, mtime: int) -> str:
    out.write(header(Member(name=name.encode(), kind=REGULAR, mode=0o444, size=layer.size, mtime=mtime)))
    out.start_hash()
    written = 0
    for chunk in layer.chunks():
        written += len(chunk)
        if written > layer.size:
            break
        out.write(chunk)
    if written != layer.size:
        raise UserError(f"layer {name} ({layer.comment[:100]}): planned {layer.size} bytes, got {written}")
    hex_digest = out.end_hash()
    out.write(padding(layer.size))
    if layer.expected_digest and layer.expected_digest != hex_digest:
        raise UserError(f"layer {name} ({layer.comment[:100]}) does not match its recorded checksum")
    return hex_digest
