"""Where an archive's bytes go: a file descriptor, written in large pieces, counted.

`-o FILE` writes a new file in FILE's directory and renames it over FILE at the end
(files.py), so FILE is either the complete archive or untouched; a FIFO or device the
user or root owns, and the process's own descriptors (/dev/stdout), are written directly.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import mmap
import os
import queue
import re
import stat
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from layered_image.archive.tar import REGULAR, Member, header, padding
from layered_image.errors import StoreChangedError, UserError
from layered_image.files import replaced_file
from layered_image.progress import Progress

FLUSH_AT = 1 << 20
MAP_WINDOW = 8 << 20  # of a big file, mapped at once to be hashed without a copy
DIRECT_AT = 256 << 10  # bytes this large are sent as they are, not copied into a buffer
OWN_DESCRIPTOR = re.compile(r"/(?:dev|proc/self)/fd/([0-9]+)")  # as bash takes them in redirections


class FileSpan:
    """A whole store file, handed over open: the hashing thread reads it through a mapping
    and the writing thread moves it to the pipe with splice(2): no copy goes through Python."""

    def __init__(self, fd: int, size: int, name: str) -> None:
        self.fd, self.size, self.name = fd, size, name

    def __len__(self) -> int:
        return self.size

    def pieces(self, buffer: memoryview) -> Iterator[memoryview]:
        """The file's bytes, read into `buffer` a piece at a time (a piece is good until
        the next one is read), checked against the planned size."""
        done = 0
        while done < self.size:
            got = os.preadv(self.fd, [buffer[: min(len(buffer), self.size - done)]], done)
            if not got:
                raise StoreChangedError(f"{self.name} shrank while the image was streamed")
            done += got
            yield buffer[:got]

    def blocks(self, size: int = FLUSH_AT) -> Iterator[memoryview]:
        """`pieces` through a buffer of its own; closes the file at the end."""
        try:
            yield from self.pieces(memoryview(bytearray(max(1, min(size, self.size)))))
        finally:
            os.close(self.fd)


class Output:
    """Buffers small writes into 1 MiB pieces that one thread hashes and the next writes.

    Hashing and writing release the GIL, so they overlap with each other (a piece goes
    out while the next is hashed) and with reading the store in the main thread. At most
    QUEUED pieces wait before each thread, which bounds memory.
    Use as a context manager: leaving it waits for (or, after an error, discards) the rest.
    """

    QUEUED = 8

    def __init__(self, fd: int, progress: Progress) -> None:
        self.fd = fd
        self.progress = progress
        self.progress_at_start = progress.done
        self.pending = bytearray()
        self.offset = 0
        self.hasher: Any = None
        self.error: BaseException | None = None
        self.queue: queue.Queue[tuple[bytes, Any] | None] = queue.Queue(self.QUEUED)
        self.hashed: queue.Queue[bytes | FileSpan | None] = queue.Queue(self.QUEUED)
        self.buffer = bytearray(FLUSH_AT)  # the writer thread's, for reading FileSpans
        self.splice = _widen_pipe(fd) and hasattr(os, "splice")
        self.hasher_thread = _thread(self._hash_stage, "layered-image-hash")
        self.writer_thread = _thread(self._write_stage, "layered-image-write")
        self.hasher_thread.start()
        self.writer_thread.start()

    def __enter__(self) -> Output:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is not None:  # failing: the writer may be stuck on a reader that left; let
            self.error = self.error or BrokenPipeError()  # it drop the rest, do not wait for it
            with contextlib.suppress(queue.Full):
                self.queue.put_nowait(None)
            return
        self.queue.put(None)
        self.hasher_thread.join()
        self.writer_thread.join()

    def write(self, data: bytes | memoryview | FileSpan) -> None:
        self.offset += len(data)
        if isinstance(data, FileSpan) or (len(data) >= DIRECT_AT and not isinstance(data, bytearray)):
            self.flush()
            self._send(data)
            return
        self.pending += data
        if len(self.pending) >= FLUSH_AT:
            self.flush()

    def label(self, text: str) -> None:
        """Progress says `text` once what is written from here on goes out, not before."""
        self.progress.step(text, at=self.progress_at_start + self.offset)

    def write_file(self, name: str, size: int, chunks: Iterable[bytes], mtime: int) -> None:
        """A read-only regular member of the archive holding `chunks` (`size` bytes in all)."""
        self.write(header(Member(name=name.encode(), kind=REGULAR, mode=0o444, size=size, mtime=mtime)))
        for chunk in chunks:
            self.write(chunk)
        self.write(padding(size))

    def flush(self) -> None:
        if self.pending:
            self._send(bytes(self.pending))
            self.pending.clear()

    def start_hash(self) -> None:
        """Hash everything written from now on (a layer's bytes, for its diff_id)."""
        self.flush()
        self.hasher = hashlib.sha256()

    def end_hash(self) -> str:
        self.flush()
        hasher, self.hasher = self.hasher, None
        self.queue.join()
        self._raise_error()
        return hasher.hexdigest()

    def finish(self) -> None:
        """Everything written and on its way out; raise what went wrong on the way."""
        self.flush()
        self.queue.join()
        self.hashed.join()
        self._raise_error()

    def _send(self, data: bytes | FileSpan) -> None:
        if self.error is not None and isinstance(data, FileSpan):
            os.close(data.fd)
        self._raise_error()
        self.queue.put((data, self.hasher))

    def _raise_error(self) -> None:
        if self.error is not None:
            raise self.error

    def _hash_stage(self) -> None:
        """Hash each piece (a FileSpan through a mapping), then pass it on to be written."""
        while (item := self.queue.get()) is not None:
            data, hasher = item
            try:
                if self.error is None and hasher is not None:
                    if isinstance(data, FileSpan):
                        _hash_mapped(data, hasher)
                    else:
                        hasher.update(data)
            except BaseException as err:
                self.error = err
            self.hashed.put(data)
            self.queue.task_done()
        self.hashed.put(None)
        self.queue.task_done()

    def _write_stage(self) -> None:
        while (data := self.hashed.get()) is not None:
            try:
                if self.error is None and isinstance(data, FileSpan):
                    self._copy_file(data)
                elif self.error is None:
                    self._write_all(data)
            except BaseException as err:  # handed to the main thread, raised there
                self.error = err
            finally:
                if isinstance(data, FileSpan):
                    os.close(data.fd)
                self.hashed.task_done()
        self.hashed.task_done()

    def _copy_file(self, span: FileSpan) -> None:
        if self.splice:  # the pages move to the pipe without a copy
            self._splice_all(span, 0, span.size)
            return
        for piece in span.pieces(memoryview(self.buffer)):
            self._write_all(piece)

    def _splice_all(self, span: FileSpan, offset: int, count: int) -> None:
        """Move file pages into the pipe without copying them through user space."""
        self.progress.advance(count)
        while count:
            moved = os.splice(span.fd, self.fd, count, offset_src=offset)
            if not moved:
                raise StoreChangedError(f"{span.name} shrank while the image was streamed")
            offset += moved
            count -= moved

    def _write_all(self, data: bytes | memoryview) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self.fd, view)
            view = view[written:]
        self.progress.advance(len(data))


def _thread(target: Callable[[], None], name: str) -> threading.Thread:
    """A daemon: after an error nobody waits for it (it may be stuck on a reader that left)."""
    return threading.Thread(target=target, name=name, daemon=True)


def _hash_mapped(span: FileSpan, hasher: Any) -> None:
    """Hash a store file straight from the page cache, a window at a time."""
    for offset in range(0, span.size, MAP_WINDOW):
        length = min(MAP_WINDOW, span.size - offset)
        try:
            window = mmap.mmap(span.fd, length, prot=mmap.PROT_READ, offset=offset)
        except ValueError:  # mmap length is greater than file size: it shrank
            raise StoreChangedError(f"{span.name} shrank while the image was streamed") from None
        with window, memoryview(window) as view:
            hasher.update(view)


def _widen_pipe(fd: int) -> bool:
    """For a pipe: make it 1 MiB instead of 64 KiB (far fewer wake-ups of us and the
    reader) and say it is one."""
    if not stat.S_ISFIFO(os.fstat(fd).st_mode):
        return False
    with contextlib.suppress(OSError, AttributeError):
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, FLUSH_AT)
    return True


@dataclass(frozen=True)
class OpenOutput:
    fd: int
    directory: Path | None  # where the new file is made (scratch beside it is on its disk), if one is


@contextlib.contextmanager
def output_file(target: str | None) -> Iterator[OpenOutput]:
    """Where `-o TARGET` writes: stdout without it; one of this process's descriptors for
    /dev/stdout and /dev/fd/N (as a shell takes them); a FIFO or character device the user
    or root owns (/dev/null, a named pipe) as it is; otherwise a new file renamed to TARGET
    on success, never a file or link already there (see files.py)."""
    if target is None:
        yield OpenOutput(1, None)
        return
    if not target:
        raise UserError("-o was given an empty name; give the path of a file")
    if (number := _own_descriptor(target)) is not None:
        yield OpenOutput(number, None)
        return
    if (fd := _open_stream_device(target)) is not None:
        try:
            yield OpenOutput(fd, None)
        finally:
            os.close(fd)
        return
    path = Path(target)
    with replaced_file(path) as fd:
        yield OpenOutput(fd, path.absolute().parent)


def _own_descriptor(target: str) -> int | None:
    """The descriptor /dev/stdout or /dev/fd/N names: the caller's, not a file to replace."""
    if target == "/dev/stdout":
        number = 1
    elif match := OWN_DESCRIPTOR.fullmatch(target):
        number = int(match[1])
    else:
        return None
    try:
        os.fstat(number)
    except OSError:
        raise UserError(f"cannot write {target}: descriptor {number} is not open") from None
    return number


def _open_stream_device(target: str) -> int | None:
    """TARGET itself (not through a link), when it is a FIFO or character device the user or
    root owns: written to as it is. None when a new file is to replace what is there."""
    try:
        seen = os.lstat(target)
    except OSError:  # missing, or unreachable: making the new file will say which
        return None
    kind = _kind(seen.st_mode)
    if kind in ("file", "symbolic link"):
        return None
    if kind not in ("FIFO", "character device"):
        raise UserError(f"cannot write {target}: it is a {kind}; give the path of a file")
    if seen.st_uid not in (os.getuid(), 0):  # planted by another user
        raise UserError(f"cannot write {target}: it is another user's {kind}; give the path of a file")
    fd = os.open(target, os.O_WRONLY | os.O_NOFOLLOW | os.O_NOCTTY | os.O_CLOEXEC)
    opened = os.fstat(fd)
    if (opened.st_dev, opened.st_ino) != (seen.st_dev, seen.st_ino):  # replaced meanwhile
        os.close(fd)
        raise UserError(f"cannot write {target}: it changed while it was opened; try again")
    return fd


def _kind(mode: int) -> str:
    kinds = [
        (stat.S_ISREG, "file"),
        (stat.S_ISLNK, "symbolic link"),
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISDIR, "directory"),
    ]
    return next((name for test, name in kinds if test(mode)), "socket")
