"""End to end: a busybox image streamed into real `docker load`, run with `docker run`,
and the same archive read by skopeo and podman."""

import json
import shutil
import subprocess
import sys

import pytest
from conftest import make_conf, need, podman_load, run_cli


@pytest.fixture(scope="module")
def busybox_image(tmp_path_factory, busybox_path) -> tuple[str, str]:
    """(archive path, tag) of an image whose Cmd runs the store's busybox."""
    tmp = tmp_path_factory.mktemp("image")
    config = {
        "Cmd": [
            f"{busybox_path}/bin/sh",
            "-c",
            "echo hello from $GREETING; pwd; ls -ln " + busybox_path + "/bin",
        ],
        "Env": ["GREETING=layered-image", f"PATH={busybox_path}/bin"],
        "WorkingDir": "/tmp",
        "Labels": {"org.example.test": "yes"},
    }
    owner = {"uid": "1000", "gid": "100", "uname": "user", "gname": "users"}
    tag = "layered-image-test/busybox:e2e"
    conf = make_conf(
        tmp, [[busybox_path]], config=config, created="2024-05-06T07:08:09Z", repo_tag=tag, **owner
    )
    archive = tmp / "image.tar"
    result = run_cli("stream", str(conf), "-q", "-o", str(archive))
    assert result.returncode == 0, result.stderr.decode()
    return str(archive), tag


def docker(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=False, **kwargs)


def test_docker_loads_and_runs_the_image(docker_host, busybox_image):
    archive, tag = busybox_image
    with open(archive, "rb") as stdin:
        loaded = docker("load", stdin=stdin)
    assert loaded.returncode == 0, loaded.stderr
    assert tag in loaded.stdout
    inspect = json.loads(docker("inspect", tag).stdout)[0]
    assert inspect["Created"] == "2024-05-06T07:08:09Z"
    assert inspect["Architecture"] == "amd64" and inspect["Os"] == "linux"
    assert inspect["Config"]["WorkingDir"] == "/tmp"
    assert "GREETING=layered-image" in inspect["Config"]["Env"]
    assert inspect["Config"]["Labels"] == {"org.example.test": "yes"}
    run = docker("run", "--rm", "--network", "none", tag)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0] == "hello from layered-image"
    assert lines[1] == "/tmp"
    busybox_line = next(line for line in lines if line.rstrip().endswith(" busybox"))
    assert " 1000 " in busybox_line and " 100 " in busybox_line  # uid/gid from the conf
    docker("rmi", tag)


def test_streaming_straight_into_docker_load(docker_host, busybox_image, tmp_path, busybox_path):
    config = {"Cmd": [f"{busybox_path}/bin/busybox", "true"]}
    conf = make_conf(tmp_path, [[busybox_path]], repo_tag="layered-image-test/piped:1", config=config)
    stream = subprocess.Popen(
        [sys.executable, "-m", "layered_image", "stream", str(conf), "-q"], stdout=subprocess.PIPE
    )
    loaded = docker("load", stdin=stream.stdout)
    assert stream.wait() == 0 and loaded.returncode == 0, loaded.stderr
    assert docker("run", "--rm", "--network", "none", "layered-image-test/piped:1").returncode == 0
    docker("rmi", "layered-image-test/piped:1")


def test_skopeo_reads_the_archive(busybox_image):
    need(shutil.which("skopeo") is not None, "skopeo (apt-get install skopeo)")
    archive, _ = busybox_image
    result = subprocess.run(
        ["skopeo", "inspect", f"docker-archive:{archive}"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["Architecture"] == "amd64" and len(info["Layers"]) == 1
    assert "GREETING=layered-image" in info["Env"]


def test_podman_loads_the_archive(busybox_image):
    archive, tag = busybox_image
    images = podman_load(archive)
    assert f"localhost/{tag}" in images or tag in images


def test_a_docker_saved_image_is_a_base(docker_host, busybox_image, busybox_path, tmp_path):
    archive, tag = busybox_image
    with open(archive, "rb") as stdin:
        assert docker("load", stdin=stdin).returncode == 0
    saved = tmp_path / "saved.tar"
    assert docker("save", tag, "-o", str(saved)).returncode == 0
    conf = make_conf(tmp_path, [], from_image=str(saved), repo_tag="layered-image-test/on-saved:1",
                     config={"Env": ["GREETING=derived"]})  # fmt: skip
    result = run_cli("stream", str(conf), "-q", "-o", str(tmp_path / "derived.tar"))
    assert result.returncode == 0, result.stderr.decode()
    loaded = docker("load", "-i", str(tmp_path / "derived.tar"))
    assert loaded.returncode == 0, loaded.stderr
    run = docker("run", "--rm", "--network", "none", "layered-image-test/on-saved:1")
    assert run.stdout.splitlines()[0] == "hello from derived"  # Cmd and WorkingDir inherited, Env merged
    docker("rmi", "layered-image-test/on-saved:1", tag)
