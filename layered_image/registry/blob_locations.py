"""Where blobs were last seen: registry host → blob digest → repositories holding it.

A registry keeps one copy of a blob but links it per repository, and a push to a new
repository would send every byte again. With this cache a push asks the registry to
mount a blob it already holds in another repository instead (the distribution API's
cross-repository mount), as docker and skopeo do with their own caches. It is only a
hint: a stale entry costs one request, then the blob is uploaded as usual.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from layered_image.files import write_file

MAX_DIGESTS_PER_HOST = 20_000  # the oldest go first
MAX_REPOSITORIES_PER_BLOB = 3  # the most recent first


def default_path() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "layered-image" / "blob-locations.json"


class BlobLocations:
    def __init__(self, path: Path, seen: dict[str, dict[str, list[str]]]) -> None:
        self.path, self.seen = path, seen

    @classmethod
    def load(cls, path: Path | None = None) -> BlobLocations:
        """The cache at `path`; empty when it is missing or unreadable (it is only a hint)."""
        path = path or default_path()
        try:
            seen = json.loads(path.read_text())
        except (OSError, ValueError):
            seen = {}
        if not _well_formed(seen):
            seen = {}
        return cls(path, seen)

    def elsewhere(self, host: str, digest: str, repository: str) -> list[str]:
        """Other repositories on `host` that held `digest` when last seen."""
        return [repo for repo in self.seen.get(host, {}).get(digest, []) if repo != repository]

    def record(self, host: str, repository: str, digests: list[str]) -> None:
        blobs = self.seen.setdefault(host, {})
        for digest in digests:
            repositories = [repository, *(r for r in blobs.pop(digest, []) if r != repository)]
            blobs[digest] = repositories[:MAX_REPOSITORIES_PER_BLOB]  # re-inserted: now the newest
        for digest in list(blobs)[: max(0, len(blobs) - MAX_DIGESTS_PER_HOST)]:
            del blobs[digest]

    def save(self) -> str | None:
        """Write the cache (whole, or not at all); the reason when it could not be written."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_file(self.path, json.dumps(self.seen, separators=(",", ":")).encode())
        except OSError as err:
            return f"{self.path}: {err.strerror or err}"
        return None


def _well_formed(seen: object) -> bool:
    if not isinstance(seen, dict):
        return False
    return all(isinstance(blobs, dict) and all(map(_strings, blobs.values())) for blobs in seen.values())


def _strings(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)
