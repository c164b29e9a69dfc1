"""A push's threads against each other (found by a hostile review of sending each layer
while the next is made): layers the digest cache knows are made again in upload threads
while the main thread makes new ones; a push that fails while threads are busy."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest
from conftest import make_conf, run_cli
from registry_fixtures import start_registry


@pytest.fixture
def registries(tmp_path: Path, own_cache: Path):
    """Two empty registries: what the first holds, the second lacks (cached layers are made again)."""
    started = [start_registry(tmp_path / f"registry-{n}") for n in range(2)]
    yield started
    for registry in started:
        registry.stop()


def push(conf: Path, registry, tmp_path: Path) -> tuple[int, str]:
    env = dict(os.environ, TMPDIR=str(tmp_path / "tmp"))  # XDG_CACHE_HOME: own_cache's
    (tmp_path / "tmp").mkdir(exist_ok=True)
    result = run_cli(
        "push", str(conf), f"docker://{registry.host}/race/image:1", "--tls-verify=false", env=env
    )
    return result.returncode, result.stderr.decode()


def layer_tar(size: int) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("data.bin")
        info.size = size
        tar.addfile(info, io.BytesIO(os.urandom(size)))
    return out.getvalue()


def base_archive(path: Path, layers: list[bytes]) -> Path:
    """A docker-archive base image of these layers."""
    diff_ids = ["sha256:" + hashlib.sha256(layer).hexdigest() for layer in layers]
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }
    names = [f"{diff_id[7:]}/layer.tar" for diff_id in diff_ids]
    manifest = [{"Config": "config.json", "RepoTags": ["base:1"], "Layers": names}]
    files = [*zip(names, layers, strict=True), ("config.json", json.dumps(config).encode()),
             ("manifest.json", json.dumps(manifest).encode())]  # fmt: skip
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in files:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.mark.parametrize("attempt", range(3))
def test_base_layers_made_in_several_threads_at_once_read_right(tmp_path, fake_store, registries, attempt):
    """All of one archive's layers made again at once (the second registry lacks them), each
    thread reading its own layer: one shared file position would mix their bytes."""
    base = base_archive(tmp_path / "base.tar", [layer_tar(4 << 20) for _ in range(8)])
    paths = sorted(str(p) for p in fake_store.iterdir())
    conf = make_conf(tmp_path, [paths], store_dir=str(fake_store), from_image=str(base))
    for registry in registries:
        code, error = push(conf, registry, tmp_path)
        assert code == 0, error.splitlines()[-1]


@pytest.mark.parametrize("attempt", range(4))
def test_a_push_failing_while_threads_make_layers_says_its_own_error_last(tmp_path, registries, attempt):
    """40 known layers made again in upload threads while the main thread finds the
    customisation layer does not match its checksum: that is the last line, every line
    before it whole, and no scratch is left."""
    store = tmp_path / "store"
    paths = []
    for n in range(40):
        path = store / (f"{n:02d}".ljust(32, "x") + f"-small-{n}")
        path.mkdir(parents=True)
        for k in range(10):
            (path / f"f{k}").write_bytes(os.urandom(4000))
        paths.append(str(path))
    conf = make_conf(tmp_path, [[path] for path in paths], store_dir=str(store))
    assert push(conf, registries[0], tmp_path)[0] == 0
    custom = tmp_path / "custom"
    custom.mkdir()
    (custom / "layer.tar").write_bytes(os.urandom(20 << 20))
    (custom / "checksum").write_text("0" * 64)
    conf = make_conf(
        tmp_path, [[path] for path in paths], store_dir=str(store), customisation_layer=str(custom)
    )
    code, error = push(conf, registries[1], tmp_path)
    lines = error.splitlines()
    assert code == 1 and "does not match its recorded checksum" in lines[-1], lines[-1]
    assert all(line.startswith(("pushed sha256:", "already there sha256:")) for line in lines[:-1]), error
    assert all(line.count("sha256:") == 1 for line in lines[:-1]), error
    assert not list((tmp_path / "tmp").iterdir())
