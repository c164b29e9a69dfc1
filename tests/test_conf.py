"""The conf is one checked model (conf_schema.json): a typo, a missing key or a wrong type
is one line naming the key; a conf nixpkgs made (no version) still streams."""

from __future__ import annotations

import json

import pytest
from conftest import make_conf, run_cli


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"store_layer": []}, "conf.store_layer: unknown key (did you mean 'store_layers'?)"),
        ({"Repo_Tag": "x:1"}, "conf.Repo_Tag: unknown key (did you mean 'repo_tag'?)"),
        ({"store_layers": "/nix/store/x"}, "conf.store_layers: must be a list of layers"),
        ({"uid": [0]}, "conf.uid: must be integer or string, not a list"),
        ({"version": 2}, "conf.version: this layered-image reads conf version 1"),
        ({"os": "windows"}, "conf.os: images are for linux"),
    ],
)
def test_a_bad_conf_is_one_line_naming_the_key(tmp_path, change, message):
    conf = make_conf(tmp_path, [])
    data = json.loads(conf.read_text()) | change
    if "store_layer" in change:  # the typo instead of the key
        del data["store_layers"]
    conf.write_text(json.dumps(data))
    result = run_cli("stream", str(conf), "-q", "-o", str(tmp_path / "out.tar"))
    error = result.stderr.decode()
    assert result.returncode == 1 and error.count("\n") == 1 and message in error, error
    assert not (tmp_path / "out.tar").exists()


def test_a_missing_store_layers_is_named(tmp_path):
    conf = tmp_path / "conf.json"
    conf.write_text(json.dumps({"repo_tag": "x:1"}))
    result = run_cli("stream", str(conf), "-q", "-o", str(tmp_path / "out.tar"))
    assert result.returncode == 1 and "conf.store_layers: missing (required)" in result.stderr.decode()


def test_nixpkgs_confs_and_versioned_ones_stream(tmp_path, fake_store):
    """nixpkgs' conf.json (no version, uid as a string, os) and ours (version 1)."""
    paths = sorted(str(p) for p in fake_store.iterdir())
    for version in ({}, {"version": 1}):
        conf = make_conf(tmp_path, [paths], store_dir=str(fake_store), os="linux", **version)
        result = run_cli("stream", str(conf), "-q", "-o", str(tmp_path / "out.tar"))
        assert result.returncode == 0, result.stderr
