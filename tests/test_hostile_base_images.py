"""Base images from elsewhere: every hostile or corrupt archive is refused with one line
naming `from_image`, before a single byte of the new image is written."""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import examples, make_conf, run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from layered_image.cli import main


class Parts:
    """A valid base image taken apart, to be put back together with one thing wrong."""

    def __init__(self, archive: bytes) -> None:
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            self.manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
            entry = self.manifest[0]
            self.config_name = entry["Config"]
            self.config = json.load(tar.extractfile(self.config_name))  # type: ignore[arg-type]
            self.layers = {name: tar.extractfile(name).read() for name in entry["Layers"]}  # type: ignore[union-attr]

    def members(self) -> list[tarfile.TarInfo | tuple[str, bytes]]:
        return [
            *self.layers.items(),
            (self.config_name, json.dumps(self.config).encode()),
            ("manifest.json", json.dumps(self.manifest).encode()),
        ]

    def build(self, members: list[tarfile.TarInfo | tuple[str, bytes]] | None = None) -> bytes:
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for member in self.members() if members is None else members:
                if isinstance(member, tarfile.TarInfo):
                    tar.addfile(member)
                    continue
                name, data = member
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
        return out.getvalue()

    @property
    def entry(self) -> dict:
        return self.manifest[0]


def link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def replace_member(parts: Parts, name: str, data: bytes) -> bytes:
    members = [(n, d) if n != name else (n, data) for n, d in parts.members()]  # type: ignore[misc]
    return parts.build(members)


def first_layer(parts: Parts) -> str:
    return parts.entry["Layers"][0]


def flipped_layer(parts: Parts) -> bytes:
    name = first_layer(parts)
    data = bytearray(parts.layers[name])
    data[2000] ^= 0x01
    parts.layers[name] = bytes(data)
    return parts.build()


def with_entry(**changes: object) -> Callable[[Parts], bytes]:
    def build(parts: Parts) -> bytes:
        parts.entry.update(changes)
        return parts.build()

    return build


def with_config(**changes: object) -> Callable[[Parts], bytes]:
    def build(parts: Parts) -> bytes:
        parts.config.update(changes)
        return parts.build()

    return build


def layer_reached_through_symlink(parts: Parts) -> bytes:
    name = first_layer(parts)
    parts.entry["Layers"][0] = f"via/{name}"
    return parts.build([link("via", "."), *parts.members()])


def layer_is_a_link(kind: bytes) -> Callable[[Parts], bytes]:
    def build(parts: Parts) -> bytes:
        name = first_layer(parts)
        members = [m for m in parts.members() if not (isinstance(m, tuple) and m[0] == name)]
        return parts.build([("real.tar", parts.layers[name]), link(name, "real.tar", kind), *members])

    return build


def gzip_truncated(parts: Parts) -> bytes:
    data = gzip.compress(parts.build(), mtime=0)
    return data[: len(data) // 2]


def compressed_layer_truncated(parts: Parts) -> bytes:
    name = first_layer(parts)
    data = gzip.compress(parts.layers[name], mtime=0)
    parts.layers[name] = data[: len(data) - 100]
    return parts.build()


HOSTILE: dict[str, tuple[Callable[[Parts], bytes], str]] = {
    "empty file": (lambda parts: b"", "not a tar archive"),
    "not a tar": (lambda parts: b"hello, world\n" * 100, "not a tar archive"),
    "truncated tar": (lambda parts: parts.build()[:5000], "corrupt tar archive"),
    "gzip garbage": (lambda parts: b"\x1f\x8b\x08\x00" + b"\x07" * 500, "corrupt compressed archive"),
    "gzip truncated": (gzip_truncated, "corrupt compressed archive"),
    "no manifest.json": (lambda parts: parts.build(parts.members()[:-1]), "no member 'manifest.json'"),
    "OCI archive, empty index": (
        lambda parts: parts.build([("oci-layout", b"{}"), ("index.json", b"{}"), *parts.members()[:-1]]),
        "index.json lists no manifests",
    ),
    "OCI archive, a nested index": (
        lambda parts: parts.build(
            [
                (
                    "index.json",
                    json.dumps(
                        {
                            "manifests": [
                                {
                                    "mediaType": "application/vnd.oci.image.index.v1+json",
                                    "digest": "sha256:00",
                                }
                            ]
                        }
                    ).encode(),
                ),
                *parts.members()[:-1],
            ]
        ),
        "not an image manifest",
    ),
    "manifest not JSON": (lambda parts: replace_member(parts, "manifest.json", b"[{"), "not valid JSON"),
    "manifest an object": (
        lambda parts: replace_member(parts, "manifest.json", b"{}"),
        "not a list of images",
    ),
    "manifest nested 100,000 deep": (
        lambda parts: replace_member(parts, "manifest.json", b"[" * 100_000 + b"]" * 100_000),
        "not valid JSON",
    ),
    "manifest of 17 MB": (
        lambda parts: replace_member(parts, "manifest.json", b" " * (17 << 20) + b"[]"),
        "more than a JSON file here may be",
    ),
    "Config names a missing member": (with_entry(Config="nothere.json"), "no member 'nothere.json'"),
    "Config outside the archive": (with_entry(Config="../config.json"), "outside the archive"),
    "Config a number": (with_entry(Config=1e300), "manifest names a member"),
    "Layers absolute": (with_entry(Layers=["/etc/passwd"]), "outside the archive"),
    "Layers not a list": (with_entry(Layers="layer.tar"), "not an image config and a list"),
    "member escaping with ..": (
        lambda parts: parts.build([("../evil", b"x"), *parts.members()]),
        "escapes the archive",
    ),
    "member absolute": (
        lambda parts: parts.build([("/etc/evil", b"x"), *parts.members()]),
        "escapes the archive",
    ),
    "member twice": (
        lambda parts: parts.build([*parts.members(), ("manifest.json", b"[]")]),
        "appears twice",
    ),
    "layer reached through a symlink": (layer_reached_through_symlink, "no member"),
    "layer a symlink": (layer_is_a_link(tarfile.SYMTYPE), "not a regular file"),
    "layer a hard link": (layer_is_a_link(tarfile.LNKTYPE), "not a regular file"),
    "fewer diff_ids than layers": (with_config(rootfs={"type": "layers", "diff_ids": []}), "rootfs.diff_ids"),
    "diff_ids missing": (with_config(rootfs=None), "rootfs.diff_ids"),
    "layer content changed": (flipped_layer, "does not hash to its diff_id"),
    "compressed layer truncated": (compressed_layer_truncated, "is corrupt"),
    "config not JSON": (
        lambda parts: replace_member(parts, parts.config_name, b'{"architecture": '),
        "not valid JSON",
    ),
    "config Cmd a string": (with_config(config={"Cmd": "/bin/sh"}), "config.Cmd"),
    "config with an unknown key": (with_config(config={"Entrypiont": ["/x"]}), "Entrypoint"),
    "other architecture": (with_config(architecture="arm64"), "linux/arm64, the new image for linux/amd64"),
    "other os": (with_config(os="windows"), "windows/amd64"),
}


@pytest.fixture
def base_parts(tmp_path: Path, fake_store: Path) -> tuple[Parts, list[str]]:
    paths = sorted(str(p) for p in fake_store.iterdir())
    conf = make_conf(tmp_path, [[paths[0]]], store_dir=str(fake_store), config={"Env": ["A=1"]})
    result = run_cli("stream", str(conf), "-q")
    assert result.returncode == 0, result.stderr
    return Parts(result.stdout), paths[1:]


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_base_image_is_refused_before_any_output(tmp_path, fake_store, base_parts, case):
    parts, paths = base_parts
    make, expected = HOSTILE[case]
    base = tmp_path / "base.tar"
    base.write_bytes(make(parts))
    conf = make_conf(tmp_path, [paths], store_dir=str(fake_store), from_image=str(base))
    result = run_cli("stream", str(conf), "-q")
    error = result.stderr.decode()
    assert (result.returncode, result.stdout) == (1, b""), error
    assert error.count("\n") == 1 and "Traceback" not in error
    assert f"from_image {base}" in error and expected in error


def test_a_valid_rebuilt_base_is_accepted(tmp_path, fake_store, base_parts):
    """The cases above fail for their one defect, not for how the archive is rebuilt."""
    parts, paths = base_parts
    base = tmp_path / "base.tar"
    base.write_bytes(parts.build())
    conf = make_conf(tmp_path, [paths], store_dir=str(fake_store), from_image=str(base))
    assert run_cli("stream", str(conf), "-q", "-o", str(tmp_path / "out.tar")).returncode == 0


@settings(
    max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_mutated_base_archives_give_an_image_or_one_line(tmp_path, fake_store, base_parts, capsys, data):
    """Flipped bytes and cuts anywhere: a complete image (the damage was in padding), or
    exit 1 with one line and no output file."""
    parts, paths = base_parts
    archive = bytearray(parts.build())
    if data.draw(st.booleans(), label="compress"):
        archive = bytearray(gzip.compress(bytes(archive), mtime=0))
    for offset in data.draw(
        st.lists(st.integers(0, len(archive) - 1), min_size=1, max_size=4), label="flips"
    ):
        archive[offset] ^= data.draw(st.integers(1, 255), label="mask")
    cut = data.draw(st.integers(0, len(archive)), label="cut")
    base = tmp_path / "mutated.tar"
    base.write_bytes(bytes(archive[:cut] if data.draw(st.booleans(), label="truncate") else archive))
    conf = make_conf(tmp_path, [paths], store_dir=str(fake_store), from_image=str(base))
    output = tmp_path / "out.tar"
    output.unlink(missing_ok=True)
    code = main(["stream", str(conf), "-q", "-o", str(output)])
    error = capsys.readouterr().err
    if code == 0:
        with tarfile.open(output) as tar:
            assert "manifest.json" in tar.getnames()
    else:
        assert code == 1 and error.count("\n") == 1 and not output.exists(), error


def test_each_base_layer_is_read_once_to_check_and_list_it_and_once_to_write_it(
    tmp_path, fake_store, base_parts, monkeypatch
):
    from layered_image.archive import base_image
    from layered_image.cli import main

    parts, paths = base_parts
    base = tmp_path / "base.tar"
    base.write_bytes(parts.build())
    reads = []
    real = base_image._layer_bytes
    monkeypatch.setattr(base_image, "_layer_bytes", lambda *args: reads.append(args[1].name) or real(*args))
    conf = make_conf(tmp_path, [paths], store_dir=str(fake_store), from_image=str(base))
    assert main(["stream", str(conf), "-q", "-o", str(tmp_path / "out.tar")]) == 0
    assert len(reads) == 2 * len(set(reads))  # checked (hashed and listed together), then written
