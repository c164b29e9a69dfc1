"""CycloneDX 1.6 JSON: the image is the BOM's subject (a container); each layer is a
`file` component hashed by its diff_id; each store path a `library` component hashed by
its NAR hash, with a `pkg:nix` purl and the layer holding it as properties."""

from __future__ import annotations

from typing import Any

from layered_image import __version__
from layered_image.sbom.contents import ImageContents, Layer, StorePath, content_uuid

MEDIA_TYPE = "application/vnd.cyclonedx+json"
IMAGE_REF = "image"
TOOL = {"type": "application", "name": "layered-image", "version": __version__}


def layer_ref(index: int) -> str:
    return f"layer-{index + 1}"


def cyclonedx_document(image: ImageContents) -> dict[str, Any]:
    body: dict[str, Any] = {
        "metadata": {
            "timestamp": image.created,
            "tools": {"components": [TOOL]},
            "component": _image_component(image),
        },
        "components": [_layer_component(layer, i) for i, layer in enumerate(image.layers)]
        + [_store_path_component(path, image) for path in image.store_paths],
        "dependencies": _dependencies(image),
    }
    serial = f"urn:uuid:{content_uuid(body)}"  # the same content, the same serial number
    return {"bomFormat": "CycloneDX", "specVersion": "1.6", "serialNumber": serial, "version": 1} | body


def _image_component(image: ImageContents) -> dict[str, Any]:
    properties = [
        _property("layered-image:repo_tag", image.repo_tag),
        _property("layered-image:platform", str(image.platform)),
    ]
    if image.from_image:
        properties.append(_property("layered-image:from_image", image.from_image))
    return {
        "type": "container",
        "bom-ref": IMAGE_REF,
        "name": image.name,
        "version": image.tag,
        "properties": properties,
    }


def _layer_component(layer: Layer, index: int) -> dict[str, Any]:
    return {
        "type": "file",
        "bom-ref": layer_ref(index),
        "name": layer.title(index),
        "hashes": [{"alg": "SHA-256", "content": layer.diff_id.removeprefix("sha256:")}],
        "properties": [
            _property("layered-image:diff_id", layer.diff_id),
            _property("layered-image:layer_index", str(index)),
            _property("layered-image:layer_kind", layer.kind),
        ],
    }


def _store_path_component(path: StorePath, image: ImageContents) -> dict[str, Any]:
    component: dict[str, Any] = {"type": "library", "bom-ref": path.path, "name": path.name}
    if path.version:
        component["version"] = path.version
    if path.meta.description:
        component["description"] = path.meta.description
    if sha256 := path.sha256_hex:
        component["hashes"] = [{"alg": "SHA-256", "content": sha256}]
    if path.meta.licenses:
        component["licenses"] = [{"expression": " AND ".join(path.meta.licenses)}]
    component["purl"] = path.purl
    if path.meta.homepage:
        component["externalReferences"] = [{"type": "website", "url": path.meta.homepage}]
    properties = [_property("nix:store_path", path.path)]
    if path.nar_hash:
        properties.append(_property("nix:nar_hash", path.nar_hash))
    properties.append(_property("nix:nar_size", str(path.nar_size)))
    if path.layer is None:
        properties.append(_property("layered-image:layer", "from_image"))
    else:
        properties += [
            _property("layered-image:layer", image.layers[path.layer].diff_id),
            _property("layered-image:layer_index", str(path.layer)),
        ]
    component["properties"] = properties
    return component


def _dependencies(image: ImageContents) -> list[dict[str, Any]]:
    """The image depends on its layers and on the store paths nothing else references;
    each store path on the store paths it references."""
    top = [layer_ref(i) for i in range(len(image.layers))] + image.roots()
    return [{"ref": IMAGE_REF, "dependsOn": top}] + [
        {"ref": path.path, "dependsOn": list(path.references)} for path in image.store_paths
    ]


def _property(name: str, value: str) -> dict[str, str]:
    return {"name": name, "value": value}
