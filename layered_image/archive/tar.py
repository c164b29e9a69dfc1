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

BLOCK = 512
RECORD = 20 * BLOCK  # tarfile pads the whole archive to a multiple of this
REGULAR, SYMLINK, DIRECTORY = b"0", b"2", b"5"
PAX_HEADER = b"x"
MAGIC = b"ustar\x0000"
# Field name, width; the pax keyword for strings that do not fit or are not ASCII.
STRING_FIELDS = (("name", "path", 100), ("linkname", "linkpath", 100), ("uname", "uname", 32),
                 ("gname", "gname", 32))  # fmt: skip
NUMBER_FIELDS = (("uid", 8), ("gid", 8), ("size", 12), ("mtime", 12))


@dataclass(frozen=True, slots=True)
class Member:
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


def header(member: Member) -> bytes:
    """The header block(s) for `member`: a pax extended header when needed, then ustar."""
    fields = {
        "name": member.name,
        "linkname": member.linkname,
        "uname": member.uname,
        "gname": member.gname,
        "uid": member.uid,
        "gid": member.gid,
        "size": member.size,
        "mtime": member.mtime,
    }
    pax: dict[str, bytes] = {}
    for field, keyword, width in STRING_FIELDS:
        text = fields[field].decode("utf-8", "surrogateescape")
        if not text.isascii() or len(text) > width:
            pax[keyword] = fields[field]
    for field, width in NUMBER_FIELDS:
        if not 0 <= fields[field] < 8 ** (width - 1):
            pax[field] = str(fields[field]).encode()
            fields[field] = 0
    prefix = _pax_header(pax) if pax else b""
    return prefix + _ustar(fields, member.kind, member.mode)


def padding(size: int) -> bytes:
    """NULs that fill a member's data up to the next block."""
    return b"\0" * (-size % BLOCK)


def member_size(member: Member) -> int:
    """Bytes `member` takes in the archive: header(s) plus data padded to whole blocks."""
    return len(header(member)) + member.size + (-member.size % BLOCK)


def end_of_archive(offset: int) -> bytes:
    """Two zero blocks, then zeros up to a whole record, for an archive `offset` bytes long."""
    end = offset + 2 * BLOCK
    return b"\0" * (2 * BLOCK + (-end % RECORD))


def _ustar(fields: dict, kind: bytes, mode: int) -> bytes:
    block = b"".join(
        (
            _text(fields["name"], 100),
            _octal(mode & 0o7777, 8),
            _octal(fields["uid"], 8),
            _octal(fields["gid"], 8),
            _octal(fields["size"], 12),
            _octal(fields["mtime"], 12),
            b" " * 8,  # checksum, computed over the block with these spaces
            kind,
            _text(fields["linkname"], 100),
            MAGIC,
            _text(fields["uname"], 32),
            _text(fields["gname"], 32),
            b"\0" * 8,  # devmajor: empty, as for every non-device member
            b"\0" * 8,  # devminor
            b"\0" * 155,  # prefix: unused, long names go to pax
        )
    ).ljust(BLOCK, b"\0")
    checksum = b"%06o\0" % (256 + sum(block[:148]) + sum(block[156:]))
    return block[:148] + checksum + block[155:]


def _text(value: bytes, width: int) -> bytes:
    """An ASCII field: other characters become "?" (one per character), cut to width."""
    ascii_text = value.decode("utf-8", "surrogateescape").encode("ascii", "replace")
    return ascii_text[:width].ljust(width, b"\0")


def _octal(number: int, width: int) -> bytes:
    return b"%0*o\0" % (width - 1, number)


def _pax_header(records: dict[str, bytes]) -> bytes:
    body = b""
    if any(not _is_utf8(value) for value in records.values()):
        body += b"21 hdrcharset=BINARY\n"
    for keyword, value in records.items():
        body += _pax_record(keyword.encode(), value)
    pax_fields = {"name": b"././@PaxHeader", "linkname": b"", "uname": b"", "gname": b""}
    pax_fields |= {"uid": 0, "gid": 0, "size": len(body), "mtime": 0}
    return _ustar(pax_fields, PAX_HEADER, 0) + body + padding(len(body))


def _pax_record(keyword: bytes, value: bytes) -> bytes:
    """`LEN keyword=value\\n`, where LEN counts the whole record including its own digits."""
    length = len(keyword) + len(value) + 3
    total = length + len(str(length))
    if len(str(total)) != len(str(length)):
        total = length + len(str(total))
    return b"%d %s=%s\n" % (total, keyword, value)


def _is_utf8(value: bytes) -> bool:
    try:
        value.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False
