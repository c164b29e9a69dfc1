"""The layer digest cache: a push of layers seen before reads no store file and compresses
nothing (only the registry is asked); a layer that must be sent is made again and must
match its record, or the push stops before any manifest and the record is forgotten."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import make_conf
from registry_fixtures import start_registry

from layered_image.archive import blobs
from layered_image.archive.planner import Planner
from layered_image.cli import main


@pytest.fixture(autouse=True)
def own_caches(own_cache: Path) -> Path:
    return own_cache / "layer-digests"


@pytest.fixture
def registries(tmp_path: Path):
    started = [start_registry(tmp_path / f"registry-{n}") for n in range(2)]
    yield started
    for registry in started:
        registry.stop()


@pytest.fixture
def conf(tmp_path: Path, fake_store: Path) -> Path:
    paths = sorted(str(p) for p in fake_store.iterdir())
    return make_conf(tmp_path, [[paths[0]], paths[1:]], store_dir=str(fake_store))


def push(conf: Path, host: str) -> int:
    return main(["push", str(conf), f"docker://{host}/test/image:1", "--tls-verify=false"])


def test_pushing_again_reads_no_store_file(conf, registries, own_caches, monkeypatch, capsys):
    assert push(conf, registries[0].host) == 0
    assert len(list(own_caches.glob("*.json"))) == 2  # one record per store layer

    def never(*args: object) -> None:
        raise AssertionError("a layer was read")

    monkeypatch.setattr(blobs, "spool_layer", never)
    monkeypatch.setattr(Planner, "size", never)
    monkeypatch.setattr(Planner, "chunks", never)
    capsys.readouterr()
    assert push(conf, registries[0].host) == 0
    assert "0 blobs pushed (0 bytes), 3 already there" in capsys.readouterr().err


def test_a_blob_to_send_is_made_again_and_must_match_its_record(
    conf, registries, own_caches, fake_store, capsys
):
    first, second = registries
    assert push(conf, first.host) == 0
    changed = fake_store / "cccccccccccccccccccccccccccccccc-file"  # Nix never does this; a test can
    changed.chmod(0o644)
    changed.write_text("changed in place")
    capsys.readouterr()
    assert push(conf, second.host) == 1  # the second registry lacks the blob: it is made, and differs
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert "no longer makes the blob recorded for it" in error and "push again" in error
    assert second.requests("PUT", "/manifests/") == 0  # nothing half-published
    assert push(conf, second.host) == 0  # the record was forgotten: made and recorded anew


def test_a_broken_record_is_no_record(conf, registries, own_caches, capsys):
    assert push(conf, registries[0].host) == 0
    for record in own_caches.glob("*.json"):
        record.write_text(json.dumps({"diff_id": "x", "size": -1}))
    assert push(conf, registries[1].host) == 0
    assert "3 blobs pushed" in capsys.readouterr().err


def test_layers_known_from_the_cache_are_made_by_several_upload_threads_at_once(tmp_path, registries, capsys):
    """A fresh registry after a push elsewhere: every layer is known but must be made, by
    the upload threads in parallel, each asking the one planning process for its layer."""
    store = tmp_path / "many"
    layers = []
    for number in range(8):
        path = store / (f"{number}" * 32 + f"-part-{number}")
        path.mkdir(parents=True)
        for file in range(50):
            (path / f"f{file}").write_bytes(os.urandom(2000))
        layers.append([str(path)])
    conf = make_conf(tmp_path, layers, store_dir=str(store))
    assert push(conf, registries[0].host) == 0
    capsys.readouterr()
    assert push(conf, registries[1].host) == 0
    assert "9 blobs pushed" in capsys.readouterr().err  # 8 layers and the config
