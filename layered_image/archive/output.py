"""Where an archive's bytes go: a file descriptor, written in large pieces, counted.

`-o FILE` writes to a temporary name in FILE's directory and renames it at the end, so
FILE is either the complete archive or untouched.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from layered_image.progress import Progress

FLUSH_AT = 1 << 20


class Output:
    def __init__(self, fd: int, progress: Progress) -> None:
        self.fd = fd
        self.progress = progress
        self.pending = bytearray()
        self.offset = 0

    def write(self, data: bytes | memoryview) -> None:
        self.offset += len(data)
        if len(data) >= FLUSH_AT:
            self.flush()
            self._write_all(data)
            return
        self.pending += data
        if len(self.pending) >= FLUSH_AT:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self._write_all(self.pending)
            self.pending.clear()

    def _write_all(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self.fd, view)
            view = view[written:]
        self.progress.advance(len(data))


@contextlib.contextmanager
def output_file(target: str | None) -> Iterator[int]:
    """A descriptor for stdout, or for a temporary file renamed to `target` on success."""
    if target is None:
        yield 1
        return
    path = Path(target)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent or ".")
    try:
        yield fd
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.chmod(temporary, 0o644)
        os.replace(temporary, path)
    finally:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
