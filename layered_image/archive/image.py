"""What every image format shares: the image's metadata and its config JSON."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from layered_image import strict_json
from layered_image.archive.layer_source import LayerSource
from layered_image.platform import Platform


@dataclass
class ImageMeta:
    """Everything about the image but its layers' bytes."""

    repo_tag: str
    platform: Platform
    created: str  # RFC 3339
    mtime: int  # of the archive's own members
    config: dict[str, Any] | None
    base_history: list[dict[str, Any]] | None = None  # the base image's, kept as it is
    base_layers: int = 0  # how many of the layers come from the base image
    held_by_base: tuple[str, ...] = ()  # store paths left out of the store layers: the base has them


def image_config(meta: ImageMeta, layers: list[LayerSource], diff_ids: list[str]) -> dict[str, Any]:
    history = list(meta.base_history or [])
    history += [
        {"created": meta.created, "created_by": layer.created_by, "comment": layer.comment}
        for layer in layers[meta.base_layers :]
    ]
    config: dict[str, Any] = {"architecture": meta.platform.architecture}
    if meta.platform.variant:
        config["variant"] = meta.platform.variant
    config |= {
        "config": meta.config or {},  # OCI's schema wants an object, not null
        "created": meta.created,
        "history": history,
        "os": meta.platform.os,
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{d}" for d in diff_ids]},
    }
    return config


def canonical_json(value: Any) -> bytes:
    """Compact, key order as built: the same bytes for the same image on every run."""
    return strict_json.dumps(value, separators=(",", ":")).encode()
