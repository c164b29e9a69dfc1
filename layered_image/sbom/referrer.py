"""`push --sbom`: the CycloneDX document attached to the pushed image as an OCI 1.1 referrer.

The document is the one layer of an artifact manifest (artifactType
application/vnd.cyclonedx+json, the empty config) whose `subject` is the image manifest.
A registry with the referrers API says so by answering the manifest's PUT with an
OCI-Subject header, and then lists it at GET /v2/NAME/referrers/DIGEST by itself. One
without it (distribution 2.8) gets the referrers tag schema: the index tagged
`sha256-<hex of the image manifest digest>` gains the artifact's descriptor.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from layered_image.archive.blobs import Blob, json_blob
from layered_image.archive.image import canonical_json
from layered_image.archive.oci import INDEX_MEDIA_TYPE, MANIFEST_MEDIA_TYPE
from layered_image.errors import UserError
from layered_image.registry.client import Registry
from layered_image.registry.upload import has_blob, upload_blob
from layered_image.sbom.cyclonedx import MEDIA_TYPE as CYCLONEDX_MEDIA_TYPE

EMPTY_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"


def artifact_manifest(subject: Blob, document: Blob, empty: Blob) -> Blob:
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "artifactType": CYCLONEDX_MEDIA_TYPE,
        "config": empty.descriptor(),
        "layers": [document.descriptor()],
        "subject": subject.descriptor(),
    }
    return json_blob(canonical_json(manifest), MANIFEST_MEDIA_TYPE)


def attach_sbom(registry: Registry, subject: Blob, document: bytes, say: Callable[[str], None]) -> str:
    """Push the document as a referrer of `subject`; the artifact manifest's digest."""
    sbom = json_blob(document, CYCLONEDX_MEDIA_TYPE)
    empty = json_blob(b"{}", EMPTY_MEDIA_TYPE)
    for blob in (empty, sbom):
        if not registry.with_retries(f"checking {blob.digest[:19]}", lambda b=blob: has_blob(registry, b)):
            upload_blob(registry, blob, f"SBOM blob {blob.digest[:19]}")
    artifact = artifact_manifest(subject, sbom, empty)
    answer = registry.with_retries("putting the SBOM", lambda: _put(registry, artifact, artifact.digest))
    if answer.header("OCI-Subject") == subject.digest:  # the registry keeps the referrers itself
        say(f"SBOM {artifact.digest} attached (referrers API)")
        return artifact.digest
    tag = referrers_tag(subject.digest)
    registry.with_retries(f"updating the index {tag}", lambda: _add_to_index(registry, tag, artifact))
    say(f"SBOM {artifact.digest} attached (referrers tag {tag})")
    return artifact.digest


def referrers_tag(digest: str) -> str:
    """The referrers tag schema's tag: `<algorithm>-<hex>`."""
    algorithm, _, hex_digest = digest.partition(":")
    return f"{algorithm}-{hex_digest}"[:128]


def _put(registry: Registry, manifest: Blob, reference: str) -> Any:
    headers = {"Content-Type": manifest.media_type}
    answer = registry.request("PUT", registry.url(f"manifests/{reference}"), manifest.data or b"", headers)
    registry.expect(answer, 201, f"putting the manifest {reference}")
    return answer


def _add_to_index(registry: Registry, tag: str, artifact: Blob) -> None:
    """Read the tag's index (if any), add the artifact unless listed, put it back."""
    manifests = _referrers_index(registry, tag)
    if any(entry.get("digest") == artifact.digest for entry in manifests):
        return
    entry = artifact.descriptor() | {"artifactType": CYCLONEDX_MEDIA_TYPE}
    index = {"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": [*manifests, entry]}
    _put(registry, json_blob(canonical_json(index), INDEX_MEDIA_TYPE), tag)


def _referrers_index(registry: Registry, tag: str) -> list[dict[str, Any]]:
    answer = registry.request("GET", registry.url(f"manifests/{tag}"), headers={"Accept": INDEX_MEDIA_TYPE})
    if answer.status == 404:
        return []
    registry.expect(answer, 200, f"reading the referrers index {tag}")
    try:
        index = json.loads(answer.body)
        manifests = index["manifests"]
        if not isinstance(manifests, list) or not all(isinstance(entry, dict) for entry in manifests):
            raise ValueError
    except (ValueError, KeyError, TypeError):
        raise UserError(f"the tag {tag} holds no OCI image index; cannot list the SBOM there") from None
    return manifests
