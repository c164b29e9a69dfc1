"""A POSIX (pax) tar writer of our own: byte-stable whatever the Python version.

The headers are laid out exactly as CPython's tarfile writes them in PAX_FORMAT
(3.11-3.13 agree), so a store layer comes out byte-identical to the one nixpkgs'
stream script makes and an image shares its layers with images nixpkgs built. A
ustar header alone when everything fits; otherwise a pax extended header first,
carrying the long or non-ASCII path/linkpath/uname/gname and any number that
does not fit its octal field (a file of 8 GiB or more, a negative mtime). Names are
bytes: a name that is not UTF-8 is written raw, flagged with hdrcharset=BINARY.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

BLOCK = 512
RECORD = 20 * BLOCK  # tarfile pads the whole archive to a multiple of this
REGULAR, SYMLINK, DIRECTORY = b"0", b"2", b"5"
CHARACTER_DEVICE, BLOCK_DEVICE, FIFO = b"3", b"4", b"6"  # only in customisation layers
DEVICES = (CHARACTER_DEVICE, BLOCK_DEVICE)
PAX_HEADER = b"x"
MAGIC = b"ustar\x0000"


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ is 3x slower, and
class Member:  # streaming makes one per file
    """One tar member's metadata; `name` ends in "/" for a directory."""

    name: bytes
    kind: bytes = REGULAR
    mode: int = 0o644
    size: int = 0
    linkname: bytes = b""
    mtime: int = 0
    uid: int = 0
    gid: int = 0
    uname: bytes = b""
    gname: bytes = b""
    devmajor: int = 0  # of a device
    devminor: int = 0


def header(member: Member) -> bytes:
    """The header block(s) for `member`: a pax extended header when needed, then ustar."""
    head = owner_fields(member.mtime, member.uid, member.gid, member.uname, member.gname).header(member)
    if member.kind in DEVICES:
        return _with_device_numbers(head, member.devmajor, member.devminor)
    return head


def _with_device_numbers(head: bytes, major: int, minor: int) -> bytes:
    """The ustar block (the last) with a device's numbers, which tarfile writes for devices
    only (NULs for every other member), and its checksum redone."""
    ustar = bytearray(head[-BLOCK:])
    ustar[329:345] = _octal(major, 8) + _octal(minor, 8)
    ustar[148:156] = b" " * 8
    ustar[148:156] = b"%06o\0 " % sum(ustar)
    return head[:-BLOCK] + bytes(ustar)


def member_size(member: Member) -> int:
    """Bytes `member` takes in the archive: header(s) plus data padded to whole blocks."""
    return owner_fields(member.mtime, member.uid, member.gid, member.uname, member.gname).size(member)


_MAX_SIZE = 8**11


class OwnerFields:
    """The header fields every member of a layer shares (mtime and owner), laid out once:
    building headers is most of the CPU time of streaming many small files."""

    def __init__(self, mtime: int, uid: int, gid: int, uname: bytes, gname: bytes) -> None:
        self.records = _pax_records(Member(name=b"", mtime=mtime, uid=uid, gid=gid, uname=uname, gname=gname))
        self.ids = _octal(0 if "uid" in self.records else uid, 8) + _octal(
            0 if "gid" in self.records else gid, 8
        )
        self.mtime = _octal(0 if "mtime" in self.records else mtime, 12)
        self.tail = MAGIC + _text(uname, 32) + _text(gname, 32) + b"\0" * (8 + 8 + 155 + 12)
        self.fixed_sum = sum(self.ids) + sum(self.mtime) + sum(self.tail) + 8 * ord(" ")

    def size(self, member: Member) -> int:
        """Bytes `member` (with these fields) takes: header(s), data, padding."""
        taken = BLOCK + member.size + (-member.size % BLOCK)
        shape = self._shape(member)
        if shape is _USTAR:
            return taken
        if shape is _LONG_PATH:
            body = _path_record_length(len(member.name))
        else:
            body = len(_pax_body(_pax_records(member)))
        return taken + BLOCK + body + (-body % BLOCK)

    def header(self, member: Member) -> bytes:
        shape = self._shape(member)
        if shape is _USTAR:
            return self._ustar(member.name, member.kind, member.mode, member.size, member.linkname)
        if shape is _LONG_PATH:  # the usual store file: one pax record
            body = _pax_record(b"path", member.name)
            ustar = self._ustar(member.name[:100], member.kind, member.mode, member.size, member.linkname)
            return b"".join((_pax_ustar(len(body)), body, padding(len(body)), ustar))
        records = _pax_records(member)
        size = 0 if "size" in records else member.size
        ustar = self._ustar(
            _text(member.name, 100), member.kind, member.mode, size, _text(member.linkname, 100)
        )
        return _pax_header(records) + ustar

    def _shape(self, member: Member) -> str:
        """_USTAR when a ustar header holds it all, _LONG_PATH when only the name is too long
        (one pax record), else _GENERAL; both run once per file, so kept lean."""
        name, linkname = member.name, member.linkname
        if self.records or member.size >= _MAX_SIZE or len(linkname) > 100:
            return _GENERAL
        if not (name.isascii() and linkname.isascii()):
            return _GENERAL
        return _USTAR if len(name) <= 100 else _LONG_PATH

    def _ustar(self, name: bytes, kind: bytes, mode: int, size: int, linkname: bytes) -> bytes:
        """A ustar block; `name` and `linkname` are ASCII and at most 100 bytes (NULs
        after them change neither the block nor its checksum)."""
        mode_field, mode_sum = _mode_field(mode & 0o7777)
        size_field = b"%011o\0" % size
        checksum = self.fixed_sum + sum(name) + sum(linkname) + mode_sum + sum(size_field) + kind[0]
        return b"".join(
            (
                name.ljust(100, b"\0"),
                mode_field,
                self.ids,
                size_field,
                self.mtime,
                b"%06o\0 " % checksum,
                kind,
                linkname.ljust(100, b"\0"),
                self.tail,
            )
        )


_USTAR, _LONG_PATH, _GENERAL = "ustar", "long path", "general"


@lru_cache(maxsize=4096)
def _mode_field(mode: int) -> tuple[bytes, int]:
    field = _octal(mode, 8)
    return field, sum(field)


@lru_cache(maxsize=64)
def owner_fields(mtime: int, uid: int, gid: int, uname: bytes, gname: bytes) -> OwnerFields:
    """The shared fields laid out once; a store layer asks for them once, not per member."""
    return OwnerFields(mtime, uid, gid, uname, gname)


def padding(size: int) -> bytes:
    """NULs that fill a member's data up to the next block."""
    return _ZEROS[: -size % BLOCK]


def end_of_archive(offset: int) -> bytes:
    """Two zero blocks, then zeros up to a whole record, for an archive `offset` bytes long."""
    end = offset + 2 * BLOCK
    return b"\0" * (2 * BLOCK + (-end % RECORD))


_ZEROS = b"\0" * BLOCK


def _pax_records(member: Member) -> dict[str, bytes]:
    """What does not fit the ustar header, as tarfile decides it."""
    records: dict[str, bytes] = {}
    for keyword, value, width in (
        ("path", member.name, 100),
        ("linkpath", member.linkname, 100),
        ("uname", member.uname, 32),
        ("gname", member.gname, 32),
    ):
        if value.isascii():
            if len(value) > width:
                records[keyword] = value
        elif not value.decode("utf-8", "surrogateescape").isascii():
            records[keyword] = value
    for keyword, number, width in (
        ("uid", member.uid, 8),
        ("gid", member.gid, 8),
        ("size", member.size, 12),
        ("mtime", member.mtime, 12),
    ):
        if not 0 <= number < 8 ** (width - 1):
            records[keyword] = str(number).encode()
    return records


def _text(value: bytes, width: int) -> bytes:
    """An ASCII field: other characters become "?" (one per character), cut to width."""
    if not value.isascii():
        value = value.decode("utf-8", "surrogateescape").encode("ascii", "replace")
    return value[:width].ljust(width, b"\0")


@lru_cache(maxsize=4096)
def _octal(number: int, width: int) -> bytes:
    return b"%0*o\0" % (width - 1, number)


def _pax_header(records: dict[str, bytes]) -> bytes:
    body = _pax_body(records)
    return _pax_ustar(len(body)) + body + padding(len(body))


def _pax_body(records: dict[str, bytes]) -> bytes:
    body = b"".join(_pax_record(keyword.encode(), value) for keyword, value in records.items())
    if any(not _is_utf8(value) for value in records.values()):
        body = b"21 hdrcharset=BINARY\n" + body
    return body


@lru_cache(maxsize=1024)
def _pax_ustar(size: int) -> bytes:
    return owner_fields(0, 0, 0, b"", b"")._ustar(b"././@PaxHeader", PAX_HEADER, 0, size, b"")


def _pax_record(keyword: bytes, value: bytes) -> bytes:
    """`LEN keyword=value\\n`, where LEN counts the whole record including its own digits."""
    length = len(keyword) + len(value) + 3
    total = length + len(str(length))
    if len(str(total)) != len(str(length)):
        total = length + len(str(total))
    return b"%d %s=%s\n" % (total, keyword, value)


@lru_cache(maxsize=1024)
def _path_record_length(name_length: int) -> int:
    """len(_pax_record(b"path", name)) for any name of this length, without building it."""
    return len(_pax_record(b"path", b"\0" * name_length))


def _is_utf8(value: bytes) -> bool:
    try:
        value.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False
