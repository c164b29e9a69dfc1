"""What real clients make of our images (issue 22, "Real clients"): Docker with zstd layers
(on fresh layers it cannot have cached), OCI schema rules for the config, containerd's
names, skopeo and umoci on a shared oci-dir, indexes pushed to a registry, FIFOs and
devices in the customisation layer."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import uuid
from pathlib import Path

import pytest
from conftest import make_conf, need, run_cli
from fresh_images import docker, docker_reads_zstd, fresh_busybox, fresh_name

from layered_image.archive.tar import CHARACTER_DEVICE, Member, header
from layered_image.archive.tree_layer import write_tree_layer
from layered_image.errors import UserError


@pytest.fixture
def conf(tmp_path: Path, fake_store: Path) -> Path:
    paths = sorted(str(p) for p in fake_store.iterdir())
    return make_conf(tmp_path, [[paths[0]], paths[1:]], store_dir=str(fake_store))


def members(archive: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]


def stream(conf: Path, *args: str) -> bytes:
    result = run_cli("stream", str(conf), "-q", *args)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout


def with_conf(conf: Path, **changes: object) -> Path:
    changed = conf.with_name(f"conf-{uuid.uuid4().hex[:8]}.json")
    changed.write_text(json.dumps(json.loads(conf.read_text()) | changes))
    return changed


# zstd and Docker


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_docker_pulls_a_pushed_image_with_fresh_layers(tmp_path, docker_host, registry, compression):
    """Pushed and pulled under a fresh name with a layer no daemon holds: zstd only from
    Docker 23.0 on (20.10 fetches the layer, then cannot unpack it)."""
    busybox = fresh_busybox(tmp_path)
    config = {"Cmd": [f"{busybox}/bin/sh", "-c", "echo pulled"]}
    image = f"{registry.host}/{fresh_name()}:1"
    conf = make_conf(tmp_path, [[busybox]], config=config)
    push = ["push", str(conf), f"docker://{image}", "--tls-verify=false", "--compression", compression]
    pushed = run_cli(*push)
    assert pushed.returncode == 0, pushed.stderr.decode()
    try:
        pull = docker("pull", image)
        if compression == "zstd" and not docker_reads_zstd():
            assert pull.returncode == 1 and "archive/tar: invalid tar header" in pull.stderr
            return
        assert pull.returncode == 0, pull.stderr
        assert docker("run", "--rm", "--network", "none", image).stdout == "pulled\n"
    finally:
        docker("rmi", image)


# the image config


@pytest.mark.parametrize("fmt", ["docker-archive", "oci-archive"])
def test_no_config_is_an_empty_object_not_null(tmp_path, conf, fmt):
    """OCI's config schema has `config` as an object (null is refused); Docker and nixpkgs
    write {} for an image with no config."""
    files = members(stream(with_conf(conf, config=None), "--format", fmt))
    if fmt == "docker-archive":
        config_name = json.loads(files["manifest.json"])[0]["Config"]
    else:
        [entry] = json.loads(files["index.json"])["manifests"]
        manifest = json.loads(files[f"blobs/sha256/{entry['digest'][7:]}"])
        config_name = f"blobs/sha256/{manifest['config']['digest'][7:]}"
    assert json.loads(files[config_name])["config"] == {}


# names in index.json


@pytest.mark.parametrize(
    ("repo_tag", "containerd_name"),
    [
        ("bb:v1", "docker.io/library/bb:v1"),
        ("ociconf/bb:v1", "docker.io/ociconf/bb:v1"),
        ("docker.io/ociconf/bb:v1", "docker.io/ociconf/bb:v1"),
        ("index.docker.io/bb:v1", "docker.io/library/bb:v1"),
        ("localhost/bb:v1", "localhost/bb:v1"),
        ("registry.example:5000/team/bb:v1", "registry.example:5000/team/bb:v1"),
    ],
)
def test_the_containerd_name_is_written_in_full_as_docker_save_does(conf, repo_tag, containerd_name):
    """Docker 25's `docker save`: io.containerd.image.name the full name, ref.name the tag,
    manifest.json's RepoTags the short (familiar) name."""
    files = members(stream(conf, "--format", "oci-archive", "-t", repo_tag))
    [entry] = json.loads(files["index.json"])["manifests"]
    assert entry["annotations"] == {
        "io.containerd.image.name": containerd_name,
        "org.opencontainers.image.ref.name": "v1",
    }
    assert json.loads(files["manifest.json"])[0]["RepoTags"] == [repo_tag]


def test_ctr_import_registers_the_full_name(tmp_path, conf, docker_host):
    archive = tmp_path / "image.tar"
    stream(conf, "--format", "oci-archive", "-t", "ociconf/bb:v1", "-o", str(archive))
    need(shutil.which("ctr") is not None, "ctr (containerd)")
    docker_dir = Path(os.environ["DOCKER_HOST"].removeprefix("unix://")).parent
    containerd = docker_dir / "exec/containerd/containerd.sock"
    namespace = ["ctr", "-a", str(containerd), "-n", f"li-test-{uuid.uuid4().hex[:8]}"]
    try:
        imported = subprocess.run([*namespace, "images", "import", "--no-unpack", str(archive)],
                                  capture_output=True, text=True)  # fmt: skip
        assert imported.returncode == 0, imported.stderr
        listed = subprocess.run([*namespace, "images", "ls", "-q"], capture_output=True, text=True)
        assert listed.stdout.split() == ["docker.io/ociconf/bb:v1"]
    finally:  # the images, then (once garbage-collected) the namespace
        listed = subprocess.run([*namespace, "images", "ls", "-q"], capture_output=True, text=True)
        subprocess.run([*namespace, "images", "rm", "--sync", *listed.stdout.split()], capture_output=True)
        subprocess.run([*namespace[:3], "namespaces", "rm", namespace[4]], capture_output=True)


def test_a_base_image_is_found_by_its_short_name(tmp_path, conf, fake_store):
    """The full name in index.json still answers to the name the user gave."""
    base = tmp_path / "base.tar"
    stream(conf, "--format", "oci-archive", "-t", "base:7", "-o", str(base))
    on_base = make_conf(tmp_path, [], store_dir=str(fake_store), from_image=str(base),
                        from_image_tag="base:7")  # fmt: skip
    assert len(json.loads(members(stream(on_base))["manifest.json"])[0]["Layers"]) == 2


# one tag, two names in an oci-dir


def oci_dir(conf: Path, layout: Path, repo_tag: str) -> None:
    result = run_cli("stream", str(conf), "-q", "--format", "oci-dir", "-o", str(layout), "-t", repo_tag)
    assert result.returncode == 0, result.stderr.decode()


def skopeo_digest(layout: Path, tag: str) -> str:
    need(shutil.which("skopeo") is not None, "skopeo")
    inspect = subprocess.run(["skopeo", "inspect", f"oci:{layout}:{tag}"], capture_output=True, text=True)
    assert inspect.returncode == 0, inspect.stderr
    return json.loads(inspect.stdout)["Digest"]


def test_the_same_tag_under_another_name_moves_the_tag_to_the_newer_image(tmp_path, conf):
    """As skopeo does (containers/image's oci layout): one entry per ref.name, the older
    image kept, untagged, under its containerd name (so its blobs stay referenced)."""
    layout = tmp_path / "layout"
    oci_dir(conf, layout, "first/app:1")
    oci_dir(with_conf(conf, config={"Cmd": ["/bin/other"]}), layout, "second/app:1")
    entries = json.loads((layout / "index.json").read_text())["manifests"]
    assert [entry["annotations"] for entry in entries] == [
        {"io.containerd.image.name": "docker.io/first/app:1"},
        {"io.containerd.image.name": "docker.io/second/app:1", "org.opencontainers.image.ref.name": "1"},
    ]
    assert skopeo_digest(layout, "1") == entries[1]["digest"]
    oci_dir(conf, layout, "first/app:1")  # the first again: takes the tag back, one entry each
    entries = json.loads((layout / "index.json").read_text())["manifests"]
    assert [entry["annotations"].get("org.opencontainers.image.ref.name") for entry in entries] == [None, "1"]
    assert skopeo_digest(layout, "1") == entries[1]["digest"] != entries[0]["digest"]


def test_an_entry_written_before_names_were_normalised_is_replaced(tmp_path, conf):
    layout = tmp_path / "layout"
    oci_dir(conf, layout, "app:1")
    index = json.loads((layout / "index.json").read_text())
    index["manifests"][0]["annotations"]["io.containerd.image.name"] = "app:1"  # as written before
    (layout / "index.json").write_text(json.dumps(index))
    oci_dir(with_conf(conf, config={"Cmd": ["/bin/other"]}), layout, "app:1")
    entries = json.loads((layout / "index.json").read_text())["manifests"]
    names = [entry["annotations"]["io.containerd.image.name"] for entry in entries]
    assert names == ["docker.io/library/app:1"]


# a pushed index


def test_a_pushed_index_names_its_images_by_platform_only(tmp_path, conf, registry):
    """ref.name and io.containerd.image.name name images in a layout, not in a registry's index."""
    arm64 = with_conf(conf, architecture="arm64")
    target = f"docker://{registry.host}/test/multi:1"
    result = run_cli("index", str(conf), str(arm64), "--push", target, "--tls-verify=false")
    assert result.returncode == 0, result.stderr.decode()
    need(shutil.which("skopeo") is not None, "skopeo")
    raw = subprocess.run(["skopeo", "inspect", "--raw", "--tls-verify=false", target],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    entries = json.loads(raw)["manifests"]
    assert [sorted(entry) for entry in entries] == [["digest", "mediaType", "platform", "size"]] * 2
    assert [entry["platform"]["architecture"] for entry in entries] == ["amd64", "arm64"]


# FIFOs and devices in the customisation layer


def tree_layer_members(target: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(target) as tar:
        return {member.name: member for member in tar}


def test_a_fifo_in_the_tree_is_a_fifo_member(tmp_path):
    root = tmp_path / "root"
    (root / "run").mkdir(parents=True)
    os.mkfifo(root / "run" / "pipe", 0o640)
    write_tree_layer(root, tmp_path / "layer.tar", 1)
    pipe = tree_layer_members(tmp_path / "layer.tar")["run/pipe"]
    assert pipe.isfifo() and pipe.mode == 0o640 and pipe.size == 0 and pipe.mtime == 1


def test_the_fifo_header_is_the_one_tarfile_writes(tmp_path):
    """Byte-stable as the rest of our tar: the same header as CPython's tarfile (PAX)."""
    root = tmp_path / "root"
    root.mkdir()
    os.mkfifo(root / "pipe", 0o644)
    write_tree_layer(root, tmp_path / "layer.tar", 1)
    info = tarfile.TarInfo("pipe")
    info.type, info.mode, info.mtime = tarfile.FIFOTYPE, 0o644, 1
    info.uid, info.gid = os.stat(root / "pipe").st_uid, os.stat(root / "pipe").st_gid
    expected = info.tobuf(tarfile.PAX_FORMAT)
    assert (tmp_path / "layer.tar").read_bytes()[: len(expected)] == expected


@pytest.mark.parametrize("name", [b"dev/null", b"dev/" + b"long-" * 30])
def test_a_device_header_is_the_one_tarfile_writes(name):
    member = Member(name, CHARACTER_DEVICE, 0o666, 0, b"", 1, 0, 0, b"", b"", 1, 3)
    info = tarfile.TarInfo(name.decode())
    info.type, info.mode, info.mtime, info.devmajor, info.devminor = tarfile.CHRTYPE, 0o666, 1, 1, 3
    info.uname = info.gname = ""
    assert header(member) == info.tobuf(tarfile.PAX_FORMAT)


def test_devices_made_under_fakeroot_are_device_members(tmp_path):
    """fakeroot's mknod makes an empty file and reports a device (with its numbers) to
    stat: the layer, written under the same fakeroot as in the Nix build, holds the device."""
    need(shutil.which("fakeroot") is not None, "fakeroot (apt-get install fakeroot)")
    root = tmp_path / "root"
    (root / "dev").mkdir(parents=True)
    script = (
        "import os, stat, sys; from pathlib import Path;"
        "from layered_image.archive.tree_layer import write_tree_layer; os.umask(0);"
        "os.mknod(sys.argv[1] + '/dev/null', stat.S_IFCHR | 0o666, os.makedev(1, 3));"
        "os.mknod(sys.argv[1] + '/dev/loop0', stat.S_IFBLK | 0o660, os.makedev(7, 0));"
        "os.chown(sys.argv[1] + '/dev/loop0', 0, 6);"
        "write_tree_layer(Path(sys.argv[1]), Path(sys.argv[2]), 1)"
    )
    made = subprocess.run(["fakeroot", sys.executable, "-c", script, str(root), str(tmp_path / "layer.tar")],
                          capture_output=True, text=True)  # fmt: skip
    assert made.returncode == 0, made.stderr
    members = tree_layer_members(tmp_path / "layer.tar")
    null, loop = members["dev/null"], members["dev/loop0"]
    assert null.ischr() and (null.devmajor, null.devminor, null.mode) == (1, 3, 0o666)
    assert loop.isblk() and (loop.devmajor, loop.devminor, loop.mode, loop.gid) == (7, 0, 0o660, 6)


def test_a_socket_in_the_tree_is_refused_naming_it(tmp_path):
    """tar has no socket member (GNU tar skips them): refused, naming the file."""
    root = tmp_path / "root"
    root.mkdir()
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(root / "sock"))
        with pytest.raises(UserError, match=r"sock is a socket"):
            write_tree_layer(root, tmp_path / "layer.tar", 1)
