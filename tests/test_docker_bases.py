"""Base images as Docker itself makes them (`docker import`, the classic builder with ENV,
LABEL, WORKDIR, ONBUILD, USER, CMD, then `docker save`, also of one image under two tags)
and as buildah makes them (its docker format, pushed to a docker-archive), used as
`from_image`: the image loads and runs, keeps the base's layers and inherits its settings
as Docker would. (BuildKit: this machine's docker has no buildx component to run it.)"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
import uuid
from pathlib import Path

import pytest
from conftest import make_conf, need, run_cli


def docker(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=False, **kwargs)


@pytest.fixture(scope="module")
def docker_bases(docker_host, tmp_path_factory) -> dict[str, Path]:
    """Fresh names (so the daemon holds nothing from another run): an imported busybox
    root, and a classic-builder image on top of it; each saved with `docker save`."""
    tmp = tmp_path_factory.mktemp("bases")
    suffix = uuid.uuid4().hex[:8]
    root = io.BytesIO()
    with tarfile.open(fileobj=root, mode="w") as tar:
        tar.add("/bin/busybox", "bin/busybox")
        link = tarfile.TarInfo("bin/sh")
        link.type, link.linkname = tarfile.SYMTYPE, "busybox"
        tar.addfile(link)
    imported = f"li-base/imported-{suffix}:1"
    made = subprocess.run(["docker", "import", "-", imported], input=root.getvalue(), capture_output=True)
    assert made.returncode == 0, made.stderr
    (tmp / "ctx").mkdir()
    (tmp / "ctx" / "Dockerfile").write_text(
        f"FROM {imported}\nENV FROM_BASE=1 SHARED=base PATH=/bin\nLABEL from=base\nWORKDIR /srv\n"
        'ONBUILD RUN echo never\nUSER 0:0\nCMD ["/bin/sh", "-c", "echo $FROM_BASE $SHARED $MINE; pwd"]\n'
    )
    built = f"li-base/classic-{suffix}:1"
    classic = subprocess.run(["docker", "build", "-q", "-t", built, str(tmp / "ctx")], capture_output=True,
                             text=True, env={"DOCKER_BUILDKIT": "0", "PATH": "/usr/bin:/bin",
                                             "DOCKER_HOST": docker_host})  # fmt: skip
    assert classic.returncode == 0, classic.stderr
    second_tag = f"li-base/second-tag-{suffix}:2"
    assert docker("tag", built, second_tag).returncode == 0
    bases = {}
    for name, tags in (("imported", [imported]), ("classic", [built]), ("two-tags", [built, second_tag])):
        bases[name] = tmp / f"{name}.tar"
        assert docker("save", *tags, "-o", str(bases[name])).returncode == 0
    bases["buildah"] = buildah_base(tmp, suffix)
    yield bases
    docker("rmi", built, second_tag, imported)


CLASSIC_SETTINGS = [
    "--env", "FROM_BASE=1", "--env", "SHARED=base", "--env", "PATH=/bin", "--label", "from=base",
    "--workingdir", "/srv", "--onbuild", "RUN echo never", "--user", "0:0",
    "--cmd", '["/bin/sh", "-c", "echo $FROM_BASE $SHARED $MINE; pwd"]',
]  # fmt: skip


def buildah_base(tmp: Path, suffix: str) -> Path:
    """The classic base's settings, made by buildah (docker format), in its own storage."""
    need(shutil.which("buildah") is not None, "buildah (apt-get install buildah)")
    storage = [
        "--root",
        str(tmp / "buildah"),
        "--runroot",
        str(tmp / "buildah-run"),
        "--storage-driver",
        "vfs",
    ]

    def buildah(*args: str) -> str:
        done = subprocess.run(["buildah", *storage, *args], capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    container = buildah("from", "scratch")
    buildah("copy", container, "/bin/busybox", "/bin/busybox")
    buildah("run", "--isolation", "chroot", container, "--", "/bin/busybox", "ln", "-s", "busybox", "/bin/sh")
    buildah("config", *CLASSIC_SETTINGS, container)
    tag = f"li-base/buildah-{suffix}:1"
    buildah("commit", "-q", "--format", "docker", container, tag)
    archive = tmp / "buildah.tar"
    buildah("push", tag, f"docker-archive:{archive}:{tag}")
    return archive


def base_config(archive: Path) -> dict:
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
        return json.load(tar.extractfile(manifest[0]["Config"]))


@pytest.mark.parametrize("kind", ["imported", "classic", "two-tags", "buildah"])
def test_docker_made_bases_work_as_from_image(docker_bases, kind, tmp_path, busybox_path):
    base = docker_bases[kind]
    repo_tag = f"li-test/on-{kind}-{uuid.uuid4().hex[:8]}:1"
    config = {"Env": ["SHARED=mine", "MINE=2"]}
    if kind == "imported":
        config["Cmd"] = ["/bin/sh", "-c", "echo $SHARED $MINE; pwd"]
    conf = make_conf(tmp_path, [[busybox_path]], from_image=str(base), repo_tag=repo_tag, config=config)
    streamed = run_cli("stream", str(conf), "-q", "-o", str(tmp_path / "image.tar"))
    assert streamed.returncode == 0, streamed.stderr.decode()
    assert docker("load", "-i", str(tmp_path / "image.tar")).returncode == 0
    try:
        info = json.loads(docker("inspect", repo_tag).stdout)[0]
        base_layers = base_config(base)["rootfs"]["diff_ids"]
        assert info["RootFS"]["Layers"][: len(base_layers)] == base_layers  # byte for byte
        ran = docker("run", "--rm", "--network", "none", repo_tag)
        assert ran.returncode == 0, ran.stderr
        if kind != "imported":
            assert ran.stdout.splitlines() == ["1 mine 2", "/srv"]
            settings = info["Config"]
            base_env = base_config(base)["config"]["Env"]  # in the order Docker wrote it
            assert settings["Env"] == [e.replace("SHARED=base", "SHARED=mine") for e in base_env] + ["MINE=2"]
            assert {"FROM_BASE=1", "SHARED=base", "PATH=/bin"} <= set(base_env)
            labels = {k: v for k, v in settings["Labels"].items() if k != "io.buildah.version"}
            assert (settings["User"], settings["WorkingDir"], labels) == ("0:0", "/srv", {"from": "base"})
            assert settings["OnBuild"] == ["RUN echo never"]
        else:
            assert ran.stdout.splitlines() == ["mine 2", "/"]
    finally:
        docker("rmi", repo_tag)


def test_a_base_whose_config_is_broken_is_refused_in_one_line(docker_bases, tmp_path, busybox_path):
    broken = tmp_path / "broken.tar"
    with tarfile.open(docker_bases["classic"]) as source, tarfile.open(broken, "w") as target:
        manifest = json.load(source.extractfile("manifest.json"))
        for member in source.getmembers():
            data = source.extractfile(member) if member.isfile() else None
            if member.name == manifest[0]["Config"]:
                config = json.load(data)
                config["config"]["Env"] = "FROM_BASE=1"  # a string, not a list
                payload = json.dumps(config).encode()
                member.size, data = len(payload), io.BytesIO(payload)
            target.addfile(member, data)
    conf = make_conf(tmp_path, [[busybox_path]], from_image=str(broken))
    result = run_cli("stream", str(conf), "-q", "-o", str(tmp_path / "image.tar"))
    error = result.stderr.decode()
    assert result.returncode == 1 and error.count("\n") == 1 and "config.Env" in error, error
    assert not (tmp_path / "image.tar").exists()
