"""Push an image to a registry: for each blob, HEAD first and skip it if the registry has
it; mount it from another repository of the same registry where it was seen before
(see blob_locations); upload the rest in parallel (see upload), each step with
retries; put the manifest only once every blob is there, so no manifest ever names a
missing blob."""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from layered_image.archive.blobs import Blob, json_blob
from layered_image.archive.oci import INDEX_MEDIA_TYPE, OciImage, index_json, platform_entry
from layered_image.errors import UserError
from layered_image.registry.blob_locations import BlobLocations
from layered_image.registry.client import Registry
from layered_image.registry.upload import has_blob, upload_blob

PARALLEL = 4


PUSHED, MOUNTED, THERE = "pushed", "mounted", "already there"


@dataclass
class PushResult:
    manifest_digest: str
    outcomes: dict[str, list[Blob]]  # PUSHED, MOUNTED or THERE: the blobs that went so

    def summary(self) -> str:
        parts = []
        for outcome in (PUSHED, MOUNTED, THERE):
            blobs = self.outcomes.get(outcome, [])
            if blobs or outcome != MOUNTED:
                count = _blobs(len(blobs)) if outcome == PUSHED else str(len(blobs))
                parts.append(f"{count} {outcome} ({sum(blob.size for blob in blobs):,} bytes)")
        return f"{', '.join(parts)}; manifest {self.manifest_digest}"


def push_image(
    image: OciImage, registry: Registry, tag: str, say: Callable[[str], None], seen: BlobLocations
) -> PushResult:
    blobs = list({blob.digest: blob for blob in [*image.layers, image.config]}.values())
    sources = {blob.digest: seen.elsewhere(registry.host, blob.digest, registry.repository) for blob in blobs}
    registry.pull_scopes = sorted({repo for repos in sources.values() for repo in repos})  # for mounts
    if registry.deadline is None:  # (an index has set one for all its images)
        registry.start_deadline(sum(blob.size for blob in blobs))
    registry.connect()
    with ThreadPoolExecutor(PARALLEL) as pool:
        outcomes = list(pool.map(lambda blob: _push_blob(registry, blob, sources[blob.digest], say), blobs))
    manifest = image.manifest
    registry.with_retries(f"putting the manifest {tag}", lambda: _put_manifest(registry, manifest, tag))
    seen.record(registry.host, registry.repository, [blob.digest for blob in blobs])
    by_outcome: dict[str, list[Blob]] = {}
    for blob, outcome in zip(blobs, outcomes, strict=True):
        by_outcome.setdefault(outcome, []).append(blob)
    return PushResult(manifest.digest, by_outcome)


def push_index(
    images: list[OciImage], registry: Registry, tag: str, say: Callable[[str], None], seen: BlobLocations
) -> str:
    """Each image by digest, then an OCI image index naming them per platform under `tag`."""
    platforms = [str(image.platform.normalized()) for image in images]
    twice = sorted({platform for platform in platforms if platforms.count(platform) > 1})
    if twice:
        raise UserError(f"two images for the same platform ({', '.join(twice)}); give one each")
    registry.start_deadline(sum(blob.size for image in images for blob in image.blobs()))
    for image in images:
        result = push_image(image, registry, image.manifest.digest, say, seen)
        say(f"{image.platform}: {result.summary()}")
    index = json_blob(index_json([platform_entry(image) for image in images]), INDEX_MEDIA_TYPE)
    registry.with_retries(f"putting the index {tag}", lambda: _put_manifest(registry, index, tag))
    return index.digest


def _push_blob(registry: Registry, blob: Blob, sources: list[str], say: Callable[[str], None]) -> str:
    name = f"{blob.digest[:19]} ({blob.size:,} bytes)"
    if registry.with_retries(f"checking {name}", lambda: has_blob(registry, blob)):
        say(f"already there {name}")
        return THERE
    for source in sources:
        if registry.with_retries(f"mounting {name}", lambda: _mount(registry, blob, source)):  # noqa: B023
            say(f"mounted from {source} {name}")
            return MOUNTED
    upload_blob(registry, blob, name)
    say(f"pushed {name}")
    return PUSHED


def _mount(registry: Registry, blob: Blob, source: str) -> bool:
    """Ask for the blob to be linked from `source`: 201 when it was. Otherwise (the blob is
    gone from there, or we may not read it) the upload the registry may have opened is
    cancelled, and the blob goes up as usual."""
    query = urllib.parse.urlencode({"mount": blob.digest, "from": source})
    answer = registry.request("POST", registry.url(f"blobs/uploads/?{query}"), refusal_ok=True)
    if answer.status == 201:
        return True
    if answer.status == 202 and answer.header("Location"):
        registry.request("DELETE", registry.location(answer), refusal_ok=True)
    return False


def _put_manifest(registry: Registry, manifest: Blob, tag: str) -> None:
    headers = {"Content-Type": manifest.media_type}
    answer = registry.request("PUT", registry.url(f"manifests/{tag}"), manifest.data or b"", headers)
    registry.expect(answer, 201, f"putting the manifest {tag}")


def _blobs(count: int) -> str:
    return f"{count} blob" if count == 1 else f"{count} blobs"
