import io
import subprocess
import tarfile

import pytest

from layered_image.archive.tar import (
    DIRECTORY,
    REGULAR,
    SYMLINK,
    Member,
    end_of_archive,
    header,
    member_size,
    padding,
)

MEMBERS = [
    (Member(b"/nix/", DIRECTORY, 0o755, mtime=1, uname=b"root", gname=b"root"), b""),
    (Member(b"/nix/store/x-short", REGULAR, 0o444, 5, mtime=1), b"hello"),
    (Member(b"/nix/store/" + b"long-" * 40 + b"name", REGULAR, 0o555, 3, mtime=1), b"abc"),
    (Member("/nix/store/été-ünïcode".encode(), REGULAR, 0o444, 1, mtime=1), b"x"),
    (Member(b"/nix/store/raw-\xff\xfe", REGULAR, 0o444, 2, mtime=1), b"yz"),
    (Member(b"/nix/store/link", SYMLINK, 0o777, linkname=b"/nix/store/" + b"t" * 150, mtime=1), b""),
    (Member(b"/nix/store/dir/", DIRECTORY, 0o555, mtime=-1, uid=70000, gid=3, uname=b"u" * 40), b""),
]


def archive(members) -> bytes:
    out = bytearray()
    for member, data in members:
        out += header(member) + data + padding(len(data))
        assert len(out) % 512 == 0
    return bytes(out + end_of_archive(len(out)))


def test_sizes_are_exact_and_archive_is_whole_records():
    data = archive(MEMBERS)
    assert len(data) % 10240 == 0
    assert sum(member_size(m) for m, _ in MEMBERS) + 1024 <= len(data)
    for member, content in MEMBERS:
        assert member_size(member) == len(header(member)) + len(content) + (-len(content) % 512)


def test_python_tarfile_reads_every_member_back():
    with tarfile.open(
        fileobj=io.BytesIO(archive(MEMBERS)), encoding="utf-8", errors="surrogateescape"
    ) as tar:
        read = tar.getmembers()
        assert [m.name.encode("utf-8", "surrogateescape") for m in read] == [
            m.name.rstrip(b"/") for m, _ in MEMBERS
        ]
        for info, (member, content) in zip(read, MEMBERS, strict=True):
            assert info.mode == member.mode and info.size == member.size and info.mtime == member.mtime
            assert info.linkname.encode("utf-8", "surrogateescape") == member.linkname
            assert info.uid == member.uid and info.uname.encode() == member.uname
            if info.isfile():
                assert tar.extractfile(info).read() == content


def test_headers_match_what_tarfile_writes_in_pax_format():
    # So that a store layer is byte-identical to the one nixpkgs' stream script makes.
    for member, _ in MEMBERS:
        info = tarfile.TarInfo(member.name.rstrip(b"/").decode("utf-8", "surrogateescape"))
        info.type, info.mode, info.size, info.mtime = member.kind, member.mode, member.size, member.mtime
        info.linkname = member.linkname.decode("utf-8", "surrogateescape")
        info.uid, info.gid = member.uid, member.gid
        info.uname, info.gname = member.uname.decode(), member.gname.decode()
        assert header(member) == info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def test_gnu_tar_lists_and_extracts(tmp_path):
    (tmp_path / "a.tar").write_bytes(archive(MEMBERS[1:6]))
    listing = subprocess.run(["tar", "-tvf", "a.tar"], cwd=tmp_path, capture_output=True, check=True)
    assert b"long-long-" in listing.stdout and b"-> /nix/store/ttt" in listing.stdout
    (tmp_path / "out").mkdir()
    subprocess.run(["tar", "-xf", "../a.tar"], cwd=tmp_path / "out", capture_output=True, check=True)
    assert (tmp_path / "out/nix/store/x-short").read_bytes() == b"hello"
    assert (tmp_path / "out/nix/store" / ("long-" * 40 + "name")).read_bytes() == b"abc"
    assert (tmp_path / "out/nix/store/été-ünïcode").read_bytes() == b"x"
    assert (tmp_path / "out").joinpath(b"nix/store/raw-\xff\xfe".decode("utf-8", "surrogateescape")).exists()


@pytest.mark.parametrize("size", [8 * 1024**3, 9 * 1024**3 + 7])
def test_files_of_8_gib_and_more_get_a_pax_size(size):
    member = Member(b"/nix/store/huge", REGULAR, 0o444, size, mtime=1)
    head = header(member)
    assert b" size=%d\n" % size in head
    with tarfile.open(fileobj=io.BytesIO(head + b"\0" * 512), mode="r|") as tar:
        assert tar.next().size == size
