"""Push an image to a registry: for each blob, HEAD first and skip it if the registry has
it; mount it from another repository of the same registry where it was seen before
(see blob_locations); upload the rest in parallel (see upload), each step with
retries; put the manifest only once every blob is there, so no manifest ever names a
missing blob.

Blobs go up as they are made: while layer k+1 is compressed into scratch, layer k is
already being checked and sent (a blob's digest, which the HEAD and the upload need, is
known only after its last byte). A failure on either side stops the other: no more
layers are made once an upload failed, and no more are sent once making one failed."""

from __future__ import annotations

import threading
import urllib.parse
from collections.abc import Callable
from concurrent import futures
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from layered_image.archive.blobs import Blob, json_blob
from layered_image.archive.oci import INDEX_MEDIA_TYPE, OciImage, index_json, platform_entry
from layered_image.errors import UserError
from layered_image.platform import Platform
from layered_image.registry.blob_locations import BlobLocations
from layered_image.registry.client import Registry
from layered_image.registry.upload import has_blob, upload_blob

PARALLEL = 4
STOP_WAIT = 5  # seconds a failed push waits for its threads to reach a stop


PUSHED, MOUNTED, THERE = "pushed", "mounted", "already there"

SendBlob = Callable[[Blob], None]


@dataclass
class ImageToPush:
    """An image not made yet: `make(send)` makes it, handing each layer's blob to `send`
    as soon as it is made, and returns it."""

    make: Callable[[SendBlob], OciImage]
    platform: Platform
    known_digests: list[str]  # blobs known before making (the digest cache's): their mount sources


@dataclass
class PushResult:
    image: OciImage
    outcomes: dict[str, list[Blob]]  # PUSHED, MOUNTED or THERE: the blobs that went so

    @property
    def manifest_digest(self) -> str:
        return self.image.manifest.digest

    def summary(self) -> str:
        parts = []
        for outcome in (PUSHED, MOUNTED, THERE):
            blobs = self.outcomes.get(outcome, [])
            if blobs or outcome != MOUNTED:
                count = _blobs(len(blobs)) if outcome == PUSHED else str(len(blobs))
                parts.append(f"{count} {outcome} ({sum(blob.size for blob in blobs):,} bytes)")
        return f"{', '.join(parts)}; manifest {self.manifest_digest}"


def push_image(
    to_push: ImageToPush, registry: Registry, tag: str | None, say: Callable[[str], None], seen: BlobLocations
) -> PushResult:
    """Make and push the image; its manifest goes under `tag`, or by its digest for None."""
    if not registry.connected:  # (an index has connected for all its images)
        registry.pull_scopes = _mount_scopes(registry, seen, to_push.known_digests)
        registry.start_deadline()
        registry.connect()
    with BlobSender(registry, say, seen) as sender:
        image = to_push.make(sender.send)
        for blob in [*image.layers, image.config]:  # (those `make` did not hand on)
            sender.send(blob)
        outcomes = sender.outcomes()
    manifest, reference = image.manifest, tag or image.manifest.digest
    registry.with_retries(
        f"putting the manifest {reference}", lambda: _put_manifest(registry, manifest, reference)
    )
    seen.record(registry.host, registry.repository, [blob.digest for blob, _ in outcomes])
    by_outcome: dict[str, list[Blob]] = {}
    for blob, outcome in outcomes:
        by_outcome.setdefault(outcome, []).append(blob)
    return PushResult(image, by_outcome)


def push_index(
    images: list[ImageToPush], registry: Registry, tag: str, say: Callable[[str], None], seen: BlobLocations
) -> tuple[str, list[OciImage]]:
    """Each image by digest, then an OCI image index naming them per platform under `tag`;
    the index's digest and the images pushed."""
    platforms = [str(image.platform.normalized()) for image in images]
    twice = sorted({platform for platform in platforms if platforms.count(platform) > 1})
    if twice:
        raise UserError(f"two images for the same platform ({', '.join(twice)}); give one each")
    registry.pull_scopes = _mount_scopes(registry, seen, [d for image in images for d in image.known_digests])
    registry.start_deadline()
    registry.connect()
    pushed = []
    for to_push in images:
        result = push_image(to_push, registry, None, say, seen)
        say(f"{to_push.platform}: {result.summary()}")
        pushed.append(result.image)
    index = json_blob(index_json([platform_entry(image) for image in pushed]), INDEX_MEDIA_TYPE)
    registry.with_retries(f"putting the index {tag}", lambda: _put_manifest(registry, index, tag))
    return index.digest, pushed


class BlobSender:
    """Checks, mounts or uploads each blob handed to it on a pool of PARALLEL threads,
    while the caller goes on making the next. Use as a context manager: leaving it by an
    error drops what is queued, stops threads before their next step (a blob made again
    from the store, a request) and waits a little for them: not for a slow upload, which
    dies with the process, but for a blob being made into the scratch directory, which is
    removed next."""

    def __init__(self, registry: Registry, say: Callable[[str], None], seen: BlobLocations) -> None:
        self.registry, self.say, self.seen = registry, say, seen
        self.pool = ThreadPoolExecutor(PARALLEL)
        self.sent: dict[str, tuple[Blob, Future[str]]] = {}
        self.stopping = threading.Event()

    def __enter__(self) -> BlobSender:
        return self

    def __exit__(self, error_type: object, *_: object) -> None:
        if error_type is not None:
            self.stopping.set()
            futures.wait([future for _, future in self.sent.values()], timeout=STOP_WAIT)
        self.pool.shutdown(wait=error_type is None, cancel_futures=True)

    def send(self, blob: Blob) -> None:
        self._raise_first_failure()  # an upload failed: make no more layers
        if blob.digest in self.sent:
            return
        registry = self.registry
        registry.extend_deadline(blob.size)
        sources = self.seen.elsewhere(registry.host, blob.digest, registry.repository)
        if not set(sources) <= set(registry.pull_scopes):  # found only now the blob is made:
            # the next token (a refused mount asks for one) reads these too
            registry.pull_scopes = sorted({*registry.pull_scopes, *sources})
        future = self.pool.submit(_push_blob, registry, blob, sources, self.say, self.stopping)
        self.sent[blob.digest] = (blob, future)

    def outcomes(self) -> list[tuple[Blob, str]]:
        """Each blob with its outcome, in the order handed on, once all are in."""
        return [(blob, future.result()) for blob, future in self.sent.values()]

    def _raise_first_failure(self) -> None:
        for _, future in self.sent.values():
            if future.done() and future.exception() is not None:
                future.result()


def _mount_scopes(registry: Registry, seen: BlobLocations, digests: list[str]) -> list[str]:
    """The other repositories of this registry the known blobs were seen in (the token must
    read them to mount from them)."""
    return sorted(
        {repo for digest in digests for repo in seen.elsewhere(registry.host, digest, registry.repository)}
    )


def _push_blob(
    registry: Registry, blob: Blob, sources: list[str], say: Callable[[str], None], stopping: threading.Event
) -> str:
    name = f"{blob.digest[:19]} ({blob.size:,} bytes)"
    _go_on(stopping)
    if registry.with_retries(f"checking {name}", lambda: has_blob(registry, blob)):
        say(f"already there {name}")
        return THERE
    for source in sources:
        if registry.with_retries(f"mounting {name}", lambda: _mount(registry, blob, source)):  # noqa: B023
            say(f"mounted from {source} {name}")
            return MOUNTED
    _go_on(stopping)
    upload_blob(registry, blob, name)
    say(f"pushed {name}")
    return PUSHED


def _go_on(stopping: threading.Event) -> None:
    if stopping.is_set():  # the push failed elsewhere; its error is the one reported
        raise UserError("stopped: the push failed")


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
