"""Every output file this program writes is written here, one way, as `docker save -o` does.

A file at PATH is never opened for writing. Instead:

- a new file is made in PATH's directory under a unique name, with O_CREAT|O_EXCL|O_NOFOLLOW:
  nothing that already exists there (a link somebody planted, a device, a file) is opened;
- its mode is 0o666 (0o777 for executables) less the umask, as open(2) gives it (docker and
  skopeo honour the umask too);
- its bytes are fsynced, then it is renamed over PATH (a link at PATH is replaced, never
  followed) and the directory is fsynced: PATH is the old file or the whole new one, also
  after a crash;
- on any failure (an error, Ctrl-C, SIGTERM: the command line turns them into exceptions)
  the new file is removed.

Directories inside an output (an OCI layout's blobs/sha256) are opened without following
links, and files are named relative to them, so a link planted in place of one is refused.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

FILE_MODE = 0o666  # less the umask, by open(2)
EXECUTABLE_MODE = 0o777
NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
ATTEMPTS = 100  # unique names that happened to exist already, before giving up


class LinkInTheWay(OSError):
    """A directory or file this program would have to follow a link to reach."""


class Directory:
    """A directory held open: files in it are named relative to it, not through its path."""

    def __init__(self, fd: int, path: Path) -> None:
        self.fd, self.path = fd, path

    @classmethod
    def open(cls, path: Path) -> Directory:
        """The directory a user named (links in the name the user gave are followed)."""
        return cls(os.open(path, DIRECTORY), path)

    def __enter__(self) -> Directory:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        os.close(self.fd)

    def subdirectory(self, name: str) -> Directory:
        """`name` in this directory, made if missing; a link there is refused (LinkInTheWay)."""
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, EXECUTABLE_MODE, dir_fd=self.fd)
        try:
            return Directory(os.open(name, DIRECTORY | os.O_NOFOLLOW, dir_fd=self.fd), self.path / name)
        except OSError as err:
            raise self._refusal(name, err) from None

    def holds_regular_file(self, name: str) -> bool:
        try:
            return stat.S_ISREG(os.stat(name, dir_fd=self.fd, follow_symlinks=False).st_mode)
        except FileNotFoundError:
            return False

    def read_file(self, name: str) -> bytes | None:
        """The bytes of file `name`, None when there is none; a link there is refused."""
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=self.fd)
        except FileNotFoundError:
            return None
        except OSError as err:
            raise self._refusal(name, err) from None
        with os.fdopen(fd, "rb") as file:
            return file.read()

    @contextlib.contextmanager
    def replaced_file(self, name: str, executable: bool = False) -> Iterator[int]:
        """A descriptor for a new file that replaces `name` once the block ends without error."""
        temporary, fd = self._new_file(name, EXECUTABLE_MODE if executable else FILE_MODE)
        try:
            yield fd
            os.fsync(fd)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary, dir_fd=self.fd)
            raise
        os.close(fd)
        self._rename_into_place(temporary, name)

    def write_file(self, name: str, data: bytes, executable: bool = False) -> None:
        with self.replaced_file(name, executable) as fd:
            _write_all(fd, data)

    def move_in(self, source: Path, name: str) -> None:
        """A finished file of ours (a spooled blob) renamed to `name` (replacing, never following,
        a link there), synced first."""
        fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(source, name, dst_dir_fd=self.fd)
        self._sync()

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """This directory, locked against other writers of this program (flock(2) on the
        directory itself: no lock file to plant a link at or to leave behind)."""
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)

    def _new_file(self, name: str, mode: int) -> tuple[str, int]:
        for _ in range(ATTEMPTS):
            temporary = f".{name[:200]}.{secrets.token_hex(8)}.partial"
            try:
                return temporary, os.open(temporary, NEW_FILE, mode, dir_fd=self.fd)
            except FileExistsError:
                continue
            except OSError as err:  # named after the output, not the temporary file
                raise OSError(err.errno, err.strerror, str(self.path / name)) from None
        raise OSError(errno.EEXIST, "no unused temporary name", str(self.path / name))

    def _rename_into_place(self, temporary: str, name: str) -> None:
        try:
            os.replace(temporary, name, src_dir_fd=self.fd, dst_dir_fd=self.fd)
        except OSError as err:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temporary, dir_fd=self.fd)
            raise OSError(err.errno, err.strerror, str(self.path / name)) from None
        self._sync()

    def _sync(self) -> None:
        """Make the rename durable; a filesystem that cannot sync directories says EINVAL."""
        try:
            os.fsync(self.fd)
        except OSError as err:
            if err.errno != errno.EINVAL:
                raise

    def _refusal(self, name: str, err: OSError) -> OSError:
        try:
            is_link = stat.S_ISLNK(os.stat(name, dir_fd=self.fd, follow_symlinks=False).st_mode)
        except OSError:
            is_link = False
        if is_link:
            return LinkInTheWay(errno.ELOOP, "is a symbolic link", str(self.path / name))
        return OSError(err.errno, err.strerror, str(self.path / name))


@contextlib.contextmanager
def replaced_file(path: Path, executable: bool = False) -> Iterator[int]:
    """A descriptor for a new file in `path`'s directory, renamed to `path` on success."""
    try:
        directory = Directory.open(path.parent)
    except OSError as err:  # named after the output, the file the user asked for
        raise OSError(err.errno, err.strerror, str(path)) from None
    with directory, directory.replaced_file(path.name, executable) as fd:
        yield fd


def write_file(path: Path, data: bytes, executable: bool = False) -> None:
    """`data` as the file `path`, written as the module docstring says."""
    with replaced_file(path, executable) as fd:
        _write_all(fd, data)


def new_file(directory: Path, suffix: str) -> tuple[int, Path]:
    """A new file under a unique name in `directory` (one of ours: a scratch directory), with
    the umask's mode; mkstemp would make it 0600 whatever the umask."""
    for _ in range(ATTEMPTS):
        path = directory / f"{secrets.token_hex(8)}{suffix}"
        with contextlib.suppress(FileExistsError):
            return os.open(path, NEW_FILE, FILE_MODE), path
    raise OSError(errno.EEXIST, "no unused temporary name", str(directory))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
