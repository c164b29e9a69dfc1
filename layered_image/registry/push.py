"""Push an image to a registry: for each blob, HEAD first and skip it if the registry has
it; upload the rest in parallel (in chunks when large), each with retries; put the
manifest only once every blob is there, so no manifest ever names a missing blob."""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from layered_image.archive.blobs import Blob, json_blob
from layered_image.archive.oci import INDEX_MEDIA_TYPE, OciImage, index_entry, index_json
from layered_image.errors import UserError
from layered_image.registry.client import Registry, Response

CHUNK = 16 << 20  # blobs larger than this go up in PATCHes of this size
PARALLEL = 4


@dataclass
class PushResult:
    manifest_digest: str
    pushed: list[Blob]
    skipped: list[Blob]

    def summary(self) -> str:
        sent = sum(blob.size for blob in self.pushed)
        kept = sum(blob.size for blob in self.skipped)
        return (
            f"{_blobs(len(self.pushed))} pushed ({sent:,} bytes), {len(self.skipped)} already there "
            f"({kept:,} bytes); manifest {self.manifest_digest}"
        )


def push_image(image: OciImage, registry: Registry, tag: str, say: Callable[[str], None]) -> PushResult:
    registry.connect()
    blobs = list({blob.digest: blob for blob in [*image.layers, image.config]}.values())
    with ThreadPoolExecutor(PARALLEL) as pool:
        sent = list(pool.map(lambda blob: _push_blob(registry, blob, say), blobs))
    manifest = image.manifest
    registry.with_retries(f"putting the manifest {tag}", lambda: _put_manifest(registry, manifest, tag))
    pushed = [blob for blob, was_sent in zip(blobs, sent, strict=True) if was_sent]
    skipped = [blob for blob, was_sent in zip(blobs, sent, strict=True) if not was_sent]
    return PushResult(manifest.digest, pushed, skipped)


def push_index(images: list[OciImage], registry: Registry, tag: str, say: Callable[[str], None]) -> str:
    """Each image by digest, then an OCI image index naming them per platform under `tag`."""
    platforms = [image.architecture for image in images]
    if len(set(platforms)) != len(platforms):
        raise UserError(
            f"two images for the same architecture ({', '.join(sorted(platforms))}); give one each"
        )
    for image in images:
        result = push_image(image, registry, image.manifest.digest, say)
        say(f"{image.architecture}: {result.summary()}")
    index = json_blob(index_json([index_entry(image) for image in images]), INDEX_MEDIA_TYPE)
    registry.with_retries(f"putting the index {tag}", lambda: _put_manifest(registry, index, tag))
    return index.digest


def _push_blob(registry: Registry, blob: Blob, say: Callable[[str], None]) -> bool:
    name = f"{blob.digest[:19]} ({blob.size:,} bytes)"
    if registry.with_retries(f"checking {name}", lambda: _has_blob(registry, blob)):
        say(f"already there {name}")
        return False
    registry.with_retries(f"uploading {name}", lambda: _upload(registry, blob))
    say(f"pushed {name}")
    return True


def _has_blob(registry: Registry, blob: Blob) -> bool:
    answer = registry.request("HEAD", registry.url(f"blobs/{blob.digest}"))
    if answer.status not in (200, 404):
        _refused(registry, answer, f"checking blob {blob.digest}")
    return answer.status == 200


def _upload(registry: Registry, blob: Blob) -> None:
    answer = registry.request("POST", registry.url("blobs/uploads/"))
    _expect(registry, answer, 202, f"starting the upload of {blob.digest}")
    location = _location(registry, answer)
    if blob.size > CHUNK:
        offset = 0
        for chunk in blob.read(CHUNK):
            headers = {"Content-Type": "application/octet-stream",
                       "Content-Range": f"{offset}-{offset + len(chunk) - 1}"}  # fmt: skip
            answer = registry.request("PATCH", location, chunk, headers)
            _expect(registry, answer, 202, f"uploading {blob.digest}")
            location = _location(registry, answer)
            offset += len(chunk)
        body = b""
    else:
        body = b"".join(blob.read())
    separator = "&" if "?" in location else "?"
    headers = {"Content-Type": "application/octet-stream"}
    answer = registry.request("PUT", f"{location}{separator}digest={blob.digest}", body, headers)
    _expect(registry, answer, 201, f"finishing the upload of {blob.digest}")


def _put_manifest(registry: Registry, manifest: Blob, tag: str) -> None:
    headers = {"Content-Type": manifest.media_type}
    answer = registry.request("PUT", registry.url(f"manifests/{tag}"), manifest.data or b"", headers)
    _expect(registry, answer, 201, f"putting the manifest {tag}")


def _location(registry: Registry, answer: Response) -> str:
    location = answer.header("Location")
    if not location:
        raise UserError(f"{registry.host}: an upload answer without a Location header")
    return urllib.parse.urljoin(f"{registry.scheme}://{registry.host}/", location)


def _expect(registry: Registry, answer: Response, status: int, what: str) -> None:
    if answer.status != status:
        _refused(registry, answer, what)


def _refused(registry: Registry, answer: Response, what: str) -> None:
    detail = answer.body[:300].decode(errors="replace").strip()
    raise UserError(f"{registry.host} refused {what}: {answer.status} {detail}")


def _blobs(count: int) -> str:
    return f"{count} blob" if count == 1 else f"{count} blobs"
