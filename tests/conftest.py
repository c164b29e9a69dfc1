"""Shared fixtures: fixture data, a throw-away store directory, the real Nix store,
Docker, skopeo and podman. Tests needing a service skip when it is missing, unless
LAYERED_IMAGE_REQUIRE_SERVICES=1 (set by .ci/run), where a missing service fails."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

DATA = Path(__file__).parent / "data"
REQUIRE_SERVICES = os.environ.get("LAYERED_IMAGE_REQUIRE_SERVICES") == "1"


def examples(usual: int) -> int:
    """How many inputs a property test tries: `usual` in the suite, more under scripts/fuzz.sh."""
    return int(os.environ.get("LAYERED_IMAGE_EXAMPLES", usual))


def need(condition: bool, what: str) -> None:
    if condition:
        return
    if REQUIRE_SERVICES:
        pytest.fail(f"{what} is required (LAYERED_IMAGE_REQUIRE_SERVICES=1) but missing")
    pytest.skip(f"{what} is not available")


def run_cli(*args: str, **kwargs: Any) -> subprocess.CompletedProcess:
    """The command line as a user runs it: a separate process."""
    return subprocess.run(
        [sys.executable, "-m", "layered_image", *args], capture_output=True, check=False, **kwargs
    )


def make_conf(tmp_path: Path, store_layers: list[list[str]], **overrides: Any) -> Path:
    conf = {
        "config": {"Cmd": ["/bin/sh"]},
        "architecture": "amd64",
        "store_dir": "/nix/store",
        "from_image": None,
        "store_layers": store_layers,
        "customisation_layer": None,
        "repo_tag": "test-image:latest",
        "created": "1970-01-01T00:00:01Z",
        "mtime": "1970-01-01T00:00:01Z",
        "uid": "0",
        "gid": "0",
        "uname": "root",
        "gname": "root",
    } | overrides
    path = tmp_path / "conf.json"
    path.write_text(json.dumps(conf))
    return path


@pytest.fixture
def fake_store(tmp_path: Path) -> Path:
    """A store directory with a few paths: nested dirs, a symlink, a hard link, odd names."""
    store = tmp_path / "store"
    app = store / "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-app-1.0"
    (app / "bin").mkdir(parents=True)
    (app / "bin" / "app").write_text("#!/bin/sh\necho app\n")
    (app / "bin" / "app").chmod(0o555)
    (app / "share" / ("deep-" * 30)).mkdir(parents=True)
    (app / "share" / ("deep-" * 30) / "long-name.txt").write_text("long")
    (app / "share" / "b-file").write_text("b")
    (app / "share" / "a.file").write_text("a")
    lib = store / "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-lib-2.0"
    lib.mkdir(parents=True)
    (lib / "libx.so").write_bytes(os.urandom(300_000))
    os.link(lib / "libx.so", lib / "libx-hardlink.so")
    (lib / "link").symlink_to(app / "bin" / "app")
    (lib / os.fsdecode(b"caf\xc3\xa9-\xff")).write_text("non-utf8 name")
    single = store / "cccccccccccccccccccccccccccccccc-file"
    single.write_text("a store path that is a file")
    for path in store.rglob("*"):
        if not path.is_symlink() and path.is_file() and path.stat().st_mode & 0o200:
            path.chmod(0o444)
    return store


@pytest.fixture(scope="session")
def docker_host() -> str:
    need(shutil.which("docker") is not None, "the docker client")
    ok = subprocess.run(["docker", "version"], capture_output=True, check=False).returncode == 0
    need(ok, "a running Docker engine (DOCKER_HOST)")
    return os.environ.get("DOCKER_HOST", "")


TEST_REPOSITORIES = ("li-test/", "li-base/", "li-fresh/", "layered-image-test/", "layered-image-example/")


@pytest.fixture(autouse=True)
def remove_loaded_images(request: pytest.FixtureRequest) -> Iterator[None]:
    """Leave the user's Docker as the test found it: a test that uses Docker loses the
    test images it tagged (a tag it moved goes back). Per test rather than per session, as
    a session's sweep could remove another run's images from under it on a shared daemon."""
    if "docker_host" not in request.fixturenames:
        yield
        return
    request.getfixturevalue("docker_host")
    before = loaded_test_images()
    yield
    for tag, image in loaded_test_images().items():
        if tag not in before:
            subprocess.run(["docker", "rmi", tag], capture_output=True, check=False)
        elif before[tag] != image:
            subprocess.run(["docker", "tag", before[tag], tag], capture_output=True, check=False)
            subprocess.run(["docker", "rmi", image], capture_output=True, check=False)


def loaded_test_images() -> dict[str, str]:
    """The test images' NAME:TAGs in Docker, with their image IDs."""
    listing = subprocess.run(
        ["docker", "images", "--no-trunc", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}"],
        capture_output=True, text=True, check=False,
    ).stdout  # fmt: skip
    tags = dict(line.split() for line in listing.splitlines() if line.count(" ") == 1)
    return {tag: image for tag, image in tags.items() if tag.startswith(TEST_REPOSITORIES)}


@pytest.fixture(scope="session")
def busybox_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A store path `...-busybox-static` holding bin/busybox and bin/sh, added with nix-store --add."""
    need(shutil.which("nix-store") is not None, "nix-store (apt-get install nix-bin)")
    need(Path("/bin/busybox").exists(), "/bin/busybox (apt-get install busybox-static)")
    root = tmp_path_factory.mktemp("bb") / "busybox-static"
    (root / "bin").mkdir(parents=True)
    shutil.copy("/bin/busybox", root / "bin" / "busybox")
    (root / "bin" / "sh").symlink_to("busybox")
    added = subprocess.run(["nix-store", "--add", str(root)], capture_output=True, text=True, check=True)
    return added.stdout.strip()


def podman_load(archive: str | Path) -> list[str]:
    """`podman load` into a throw-away vfs store (as root); the NAME:TAGs it then lists."""
    need(shutil.which("podman") is not None, "podman (apt-get install podman)")
    scratch = Path(tempfile.mkdtemp(prefix="li-podman-"))  # podman wants a short runroot
    storage = ["--root", str(scratch / "root"), "--runroot", str(scratch / "run"), "--storage-driver", "vfs"]
    try:
        result = subprocess.run(
            ["podman", *storage, "load", "-i", str(archive)], capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr
        listing = ["podman", *storage, "images", "--format", "{{.Repository}}:{{.Tag}}"]
        return subprocess.run(listing, capture_output=True, text=True, check=True).stdout.split()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@pytest.fixture
def own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This test's own XDG_CACHE_HOME: the layer digests and blob locations its pushes
    record are seen by no other test (and are not the user's); the layered-image folder."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "layered-image"


@pytest.fixture
def registry(tmp_path: Path, own_cache: Path) -> Iterator[Any]:
    """Debian's docker-registry on a free 127.0.0.1 port, this test's alone (as are its caches)."""
    from registry_fixtures import start_registry

    running = start_registry(tmp_path / "registry")
    yield running
    running.stop()


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory: pytest.TempPathFactory):
    """A CA and a server TLS context for 127.0.0.1 and 127.0.0.2 (tests/hostile_registry.py)."""
    from hostile_registry import make_test_ca

    return make_test_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture
def trusting_the_test_ca(test_ca, monkeypatch: pytest.MonkeyPatch):
    """TLS verified as usual, against the test CA (as a user's system CAs); the server's context."""
    monkeypatch.setenv("SSL_CERT_FILE", str(test_ca[0]))
    return test_ca[1]


@pytest.fixture
def servers():
    """Start hostile servers (tests/hostile_registry.py) sharing one request log
    (`servers.log`); each stopped after the test."""
    from hostile_registry import HostileServer

    started = []
    log: list = []

    def start(ip: str, route, tls=None):
        server = HostileServer(ip, route, log, tls).start()
        started.append(server)
        return server

    start.log = log  # type: ignore[attr-defined]
    yield start
    for server in started:
        server.stop()
