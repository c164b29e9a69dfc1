"""SPDX 2.3 JSON: the document DESCRIBES the image (a CONTAINER package), which CONTAINS
its layers (ARCHIVE packages, checksum = diff_id); a layer CONTAINS the store paths it
holds (packages with the NAR hash as checksum and the `pkg:nix` purl); a store path
DEPENDS_ON the ones it references."""

from __future__ import annotations

import re
from typing import Any

from layered_image import __version__
from layered_image.sbom.contents import ImageContents, Layer, StorePath, content_uuid

IMAGE_ID = "SPDXRef-Image"
NOASSERTION = "NOASSERTION"


def layer_id(index: int) -> str:
    return f"SPDXRef-Layer-{index + 1}"


def store_path_id(path: StorePath) -> str:
    """Unique by the store hash; the name only for people (SPDX ids: letters, digits, . and -)."""
    readable = re.sub(r"[^A-Za-z0-9.-]", "-", f"{path.name}-{path.version}" if path.version else path.name)
    return f"SPDXRef-Nix-{path.hash_part}-{readable}"


def spdx_document(image: ImageContents) -> dict[str, Any]:
    body: dict[str, Any] = {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": image.repo_tag,
        "creationInfo": {
            "created": _spdx_time(image.created),
            "creators": [f"Tool: layered-image-{__version__}"],
        },
        "documentDescribes": [IMAGE_ID],
        "packages": [_image_package(image)]
        + [_layer_package(layer, i) for i, layer in enumerate(image.layers)]
        + [_store_path_package(path, image) for path in image.store_paths],
        "relationships": _relationships(image),
    }
    return {"documentNamespace": f"urn:uuid:{content_uuid(body)}"} | body


def _spdx_time(rfc3339: str) -> str:
    """SPDX wants exactly YYYY-MM-DDThh:mm:ssZ: the fraction of a second goes."""
    return rfc3339[:19] + "Z"


def _image_package(image: ImageContents) -> dict[str, Any]:
    comment = f"image {image.repo_tag} for {image.platform}"
    if image.from_image:
        comment += f", on the base image {image.from_image}"
    return _package(IMAGE_ID, image.name, image.tag) | {
        "primaryPackagePurpose": "CONTAINER",
        "comment": comment,
    }


def _layer_package(layer: Layer, index: int) -> dict[str, Any]:
    return _package(layer_id(index), layer.title(index), None) | {
        "checksums": [{"algorithm": "SHA256", "checksumValue": layer.diff_id.removeprefix("sha256:")}],
        "primaryPackagePurpose": "ARCHIVE",
        "comment": f"diff_id {layer.diff_id}",
    }


def _store_path_package(path: StorePath, image: ImageContents) -> dict[str, Any]:
    package = _package(store_path_id(path), path.name, path.version or None)
    package["packageFileName"] = path.path
    if sha256 := path.sha256_hex:
        package["checksums"] = [{"algorithm": "SHA256", "checksumValue": sha256}]
    if path.meta.homepage:
        package["homepage"] = path.meta.homepage
    if path.meta.licenses:
        package["licenseDeclared"] = " AND ".join(path.meta.licenses)
    if path.meta.description:
        package["description"] = path.meta.description
    where = "the base image" if path.layer is None else image.layers[path.layer].diff_id
    package["comment"] = f"store path {path.path}, NAR hash {path.nar_hash or 'unknown'}, in {where}"
    package["externalRefs"] = [
        {"referenceCategory": "PACKAGE-MANAGER", "referenceType": "purl", "referenceLocator": path.purl}
    ]
    return package


def _package(spdx_id: str, name: str, version: str | None) -> dict[str, Any]:
    package: dict[str, Any] = {"SPDXID": spdx_id, "name": name}
    if version:
        package["versionInfo"] = version
    return package | {
        "downloadLocation": NOASSERTION,
        "filesAnalyzed": False,
        "licenseConcluded": NOASSERTION,
        "licenseDeclared": NOASSERTION,
        "copyrightText": NOASSERTION,
    }


def _relationships(image: ImageContents) -> list[dict[str, str]]:
    ids = {path.path: store_path_id(path) for path in image.store_paths}
    found = [_relationship("SPDXRef-DOCUMENT", "DESCRIBES", IMAGE_ID)]
    found += [_relationship(IMAGE_ID, "CONTAINS", layer_id(i)) for i in range(len(image.layers))]
    for path in image.store_paths:
        holder = IMAGE_ID if path.layer is None else layer_id(path.layer)
        found.append(_relationship(holder, "CONTAINS", ids[path.path]))
    for path in image.store_paths:
        found += [_relationship(ids[path.path], "DEPENDS_ON", ids[ref]) for ref in path.references]
    return found


def _relationship(element: str, kind: str, related: str) -> dict[str, str]:
    return {"spdxElementId": element, "relationshipType": kind, "relatedSpdxElement": related}
