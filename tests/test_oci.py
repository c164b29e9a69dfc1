"""The OCI formats and layer compression: deterministic, self-consistent, and taken by
skopeo, podman and docker."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest
import zstandard
from conftest import make_conf, podman_load, run_cli
from fresh_images import docker, docker_reads_zstd, fresh_busybox, fresh_name

from layered_image.archive.compression import LAYER_MEDIA_TYPES

DECOMPRESS = {
    "none": bytes,
    "gzip": gzip.decompress,
    "zstd": lambda data: zstandard.ZstdDecompressor().decompressobj().decompress(data),
}


def oci_archive(conf: Path, compression: str, *extra: str) -> bytes:
    result = run_cli(
        "stream", str(conf), "-q", "--format", "oci-archive", "--compression", compression, *extra
    )
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout


def members(archive: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]


def blob(files: dict[str, bytes], digest: str) -> bytes:
    data = files[f"blobs/sha256/{digest.removeprefix('sha256:')}"]
    assert hashlib.sha256(data).hexdigest() == digest.removeprefix("sha256:")
    return data


@pytest.fixture
def conf(tmp_path: Path, fake_store: Path) -> Path:
    paths = sorted(str(p) for p in fake_store.iterdir())
    return make_conf(tmp_path, [[paths[0]], paths[1:]], store_dir=str(fake_store), repo_tag="oci-test:1")


@pytest.mark.parametrize("compression", ["none", "gzip", "zstd"])
def test_oci_archive_is_a_consistent_deterministic_layout(conf, compression):
    archive = oci_archive(conf, compression)
    assert oci_archive(conf, compression) == archive
    files = members(archive)
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    [entry] = json.loads(files["index.json"])["manifests"]
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == "1"
    assert entry["annotations"]["io.containerd.image.name"] == "docker.io/library/oci-test:1"
    manifest = json.loads(blob(files, entry["digest"]))
    config = json.loads(blob(files, manifest["config"]["digest"]))
    layers = manifest["layers"]
    assert [layer["mediaType"] for layer in layers] == [LAYER_MEDIA_TYPES[compression]] * 2
    for layer, diff_id in zip(layers, config["rootfs"]["diff_ids"], strict=True):
        packed = blob(files, layer["digest"])
        assert layer["size"] == len(packed)
        assert "sha256:" + hashlib.sha256(DECOMPRESS[compression](packed)).hexdigest() == diff_id
    [docker_manifest] = json.loads(files["manifest.json"])
    assert docker_manifest["RepoTags"] == ["oci-test:1"]
    assert docker_manifest["Config"] == "blobs/sha256/" + manifest["config"]["digest"][7:]


def test_layers_are_the_docker_archive_layers(conf):
    """Uncompressed, the OCI layers are byte for byte the docker-archive's."""
    docker = members(run_cli("stream", str(conf), "-q").stdout)
    files = members(oci_archive(conf, "none"))
    layers = [data for name, data in docker.items() if name.endswith("/layer.tar")]
    assert all(f"blobs/sha256/{hashlib.sha256(data).hexdigest()}" in files for data in layers)


def test_gzip_header_has_no_name_and_no_time(conf):
    files = members(oci_archive(conf, "gzip"))
    layers = [data for data in files.values() if data[:2] == b"\x1f\x8b"]
    assert layers and all(data[3] == 0 and data[4:8] == b"\0\0\0\0" for data in layers)  # FLG, MTIME


def test_oci_dir_holds_several_images_and_skopeo_reads_them(tmp_path, conf):
    layout = tmp_path / "layout"
    for tag in ("oci-test:1", "oci-test:2"):
        result = run_cli("stream", str(conf), "-q", "--format", "oci-dir", "-o", str(layout), "-t", tag)
        assert result.returncode == 0, result.stderr.decode()
    index = json.loads((layout / "index.json").read_text())
    assert [m["annotations"]["io.containerd.image.name"] for m in index["manifests"]] == [
        "docker.io/library/oci-test:1",
        "docker.io/library/oci-test:2",
    ]
    assert not [p for p in layout.iterdir() if p.name.startswith(".")]  # no scratch left behind
    inspect = subprocess.run(["skopeo", "inspect", f"oci:{layout}:2"], capture_output=True, text=True)
    assert inspect.returncode == 0, inspect.stderr
    assert len(json.loads(inspect.stdout)["Layers"]) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--compression", "gzip"], "docker-archive layers are uncompressed"),
        (["--format", "oci-dir"], "needs -o DIRECTORY"),
        (["--format", "oci-dir", "-o", "/etc"], "neither empty nor an OCI layout"),
    ],
)
def test_format_mistakes_are_one_line(conf, args, message):
    result = run_cli("stream", str(conf), "-q", *args)
    assert result.returncode == 1 and result.stdout == b""
    assert result.stderr.decode().count("\n") == 1 and message in result.stderr.decode()


@pytest.fixture(scope="module")
def busybox_oci(tmp_path_factory, busybox_path) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("oci")
    config = {"Cmd": [f"{busybox_path}/bin/sh", "-c", "echo hello from oci"]}
    conf = make_conf(tmp, [[busybox_path]], config=config, repo_tag="layered-image-test/oci:1")
    archives = {}
    for compression in ("none", "gzip", "zstd"):
        archives[compression] = tmp / f"{compression}.tar"
        oci_archive(conf, compression, "-o", str(archives[compression]))
    return archives


@pytest.mark.parametrize("compression", ["none", "gzip", "zstd"])
def test_docker_loads_and_runs_the_oci_archive(tmp_path, docker_host, compression):
    """A fresh layer under a fresh name: a layer the daemon already held would be skipped
    unread. zstd layers only from Docker 23.0 on."""
    busybox = fresh_busybox(tmp_path)
    tag = f"{fresh_name()}:1"
    config = {"Cmd": [f"{busybox}/bin/sh", "-c", "echo hello from oci"]}
    archive = tmp_path / "image.tar"
    conf = make_conf(tmp_path, [[busybox]], config=config, repo_tag=tag)
    oci_archive(conf, compression, "-o", str(archive))
    try:
        load = docker("load", "-i", str(archive))
        if compression == "zstd" and not docker_reads_zstd():
            assert load.returncode == 1 and "archive/tar: invalid tar header" in load.stderr
            return
        assert load.returncode == 0, load.stderr
        run = docker("run", "--rm", "--network", "none", tag)
        assert run.stdout == "hello from oci\n", run.stderr
    finally:
        docker("rmi", tag)


@pytest.mark.parametrize("compression", ["none", "gzip", "zstd"])
def test_podman_loads_the_oci_archive(busybox_oci, compression):
    """Under the full name index.json gives (as for Docker 25's `docker save`), not localhost/."""
    assert "docker.io/layered-image-test/oci:1" in podman_load(busybox_oci[compression])


def test_skopeo_copies_the_oci_archive_back_with_the_same_diff_ids(tmp_path, busybox_oci):
    source = f"oci-archive:{busybox_oci['gzip']}"
    config = json.loads(subprocess.run(["skopeo", "inspect", "--config", source], capture_output=True,
                                       text=True, check=True).stdout)  # fmt: skip
    subprocess.run(["skopeo", "copy", "-q", source, f"docker-archive:{tmp_path}/back.tar:x:1"], check=True)
    with tarfile.open(tmp_path / "back.tar") as tar:
        manifest = json.load(tar.extractfile("manifest.json"))[0]  # type: ignore[arg-type]
        digests = [hashlib.sha256(tar.extractfile(n).read()).hexdigest() for n in manifest["Layers"]]  # type: ignore[union-attr]
    assert ["sha256:" + d for d in digests] == config["rootfs"]["diff_ids"]


@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_an_oci_archive_without_manifest_json_is_a_base_image(tmp_path, fake_store, compression):
    """As skopeo writes oci-archive: only the OCI layout; the tag comes from index.json."""
    paths = sorted(str(p) for p in fake_store.iterdir())
    base_conf = make_conf(tmp_path, [[paths[0]]], store_dir=str(fake_store), config={"Env": ["FROM=base"]},
                          repo_tag="base:7")  # fmt: skip
    files = members(oci_archive(base_conf, compression))
    base = tmp_path / "base-oci.tar"
    with tarfile.open(base, "w") as tar:
        for name, data in files.items():
            if name != "manifest.json":
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    conf = make_conf(tmp_path, [paths[1:]], store_dir=str(fake_store), from_image=str(base),
                     from_image_tag="base:7")  # fmt: skip
    image = members(run_cli("stream", str(conf), "-q").stdout)
    [entry] = json.loads(image["manifest.json"])
    config = json.loads(image[entry["Config"]])
    assert len(entry["Layers"]) == 2 and config["config"]["Env"] == ["FROM=base"]
