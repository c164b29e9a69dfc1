"""Sending one blob to a registry: a small one in a single PUT (a failure starts it over);
a large one in PATCH chunks, where a failure resumes from the bytes the registry says it
holds instead of sending the blob again from its first byte. (Docker's distribution
registry can tell only while our session state is current: after a chunk whose answer
was lost, its state is stale, and that upload starts over.)"""

from __future__ import annotations

from layered_image.archive.blobs import Blob
from layered_image.errors import UserError
from layered_image.registry.client import Registry

CHUNK = 16 << 20  # blobs larger than this go up in PATCHes of this size
SEND_LIMIT = 4  # times a blob's size that may be sent for it, all tries and restarts together


class SendBudget:
    """What one blob may cost: behind a lossy proxy, tries and restarts of an upload would
    otherwise send it again and again (each restart has its own tries)."""

    def __init__(self, blob: Blob, name: str) -> None:
        self.left, self.name, self.size = SEND_LIMIT * max(blob.size, 1), name, blob.size

    def spend(self, count: int) -> None:
        if count > self.left:
            raise UserError(
                f"gave up uploading {self.name}: {SEND_LIMIT} times its size sent without the registry"
                " keeping it; the connection to the registry keeps failing"
            )
        self.left -= count


def upload_blob(registry: Registry, blob: Blob, name: str) -> None:
    budget = SendBudget(blob, name)
    if blob.size <= CHUNK:
        registry.with_retries(f"uploading {name}", lambda: _upload_whole(registry, blob, budget))
        return
    upload = ChunkedUpload(registry, blob, budget)
    registry.with_retries(f"starting the upload of {name}", upload.start)
    finished = False
    while not finished:
        while upload.offset < blob.size:
            registry.with_retries(f"uploading {name} from byte {upload.offset:,}", upload.send_chunk)
        finished = bool(registry.with_retries(f"finishing the upload of {name}", upload.finish))


def has_blob(registry: Registry, blob: Blob) -> bool:
    answer = registry.request("HEAD", registry.url(f"blobs/{blob.digest}"))
    if answer.status not in (200, 404):
        registry.refused(answer, f"checking blob {blob.digest}")
    return answer.status == 200


class ChunkedUpload:
    """One upload session. After a failed request the registry may hold more or fewer
    bytes than we know of (the chunk may have arrived, or part of it), so the next step
    first asks it where it is (GET on the session: its Range)."""

    def __init__(self, registry: Registry, blob: Blob, budget: SendBudget) -> None:
        self.registry, self.blob, self.budget = registry, blob, budget
        self.location, self.offset = "", 0
        self.unsure = False  # a request failed since the registry last told us its offset

    def start(self) -> None:
        self.location, self.offset, self.unsure = _start(self.registry, self.blob), 0, False

    def send_chunk(self) -> None:
        if self.unsure:
            self._catch_up()
        chunk = self.blob.read_range(self.offset, CHUNK)
        headers = {"Content-Type": "application/octet-stream",
                   "Content-Range": f"{self.offset}-{self.offset + len(chunk) - 1}"}  # fmt: skip
        self.unsure = True
        self.budget.spend(len(chunk))
        answer = self.registry.request("PATCH", self.location, chunk, headers)
        self.registry.expect(answer, 202, f"uploading {self.blob.digest}")
        self.location = self.registry.location(answer)
        self.offset, self.unsure = self.offset + len(chunk), False

    def finish(self) -> bool:
        """True when the blob is in; False when the session was lost and must be sent again."""
        if self.unsure:
            if has_blob(self.registry, self.blob):  # the last try got there after all
                return True
            self._catch_up()
            if self.offset < self.blob.size:
                return False
        self.unsure = True
        _finish(self.registry, self.blob, self.location, b"")
        return True

    def _catch_up(self) -> None:
        answer = self.registry.request("GET", self.location)
        if answer.status == 404:  # expired, or (distribution) our session state is stale
            name = self.blob.digest[:19]
            self.registry.log(f"the registry cannot resume the upload of {name}; starting over")
            self.start()
            return
        self.registry.expect(answer, 204, f"the state of the upload of {self.blob.digest}")
        last = answer.header("Range").rpartition("-")[2]  # "0-LAST"; "0-0" also for nothing yet
        self.offset = min(int(last) + 1, self.blob.size) if last.isdigit() and int(last) > 0 else 0
        self.location, self.unsure = self.registry.location(answer), False


def _upload_whole(registry: Registry, blob: Blob, budget: SendBudget) -> None:
    location = _start(registry, blob)
    budget.spend(blob.size)
    _finish(registry, blob, location, blob.read_range(0, blob.size))


def _start(registry: Registry, blob: Blob) -> str:
    answer = registry.request("POST", registry.url("blobs/uploads/"))
    registry.expect(answer, 202, f"starting the upload of {blob.digest}")
    return registry.location(answer)


def _finish(registry: Registry, blob: Blob, location: str, body: bytes) -> None:
    separator = "&" if "?" in location else "?"
    headers = {"Content-Type": "application/octet-stream"}
    answer = registry.request("PUT", f"{location}{separator}digest={blob.digest}", body, headers)
    registry.expect(answer, 201, f"finishing the upload of {blob.digest}")
