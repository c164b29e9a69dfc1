"""The engine from Python, as the README shows it: typed requests, no flags, UserError."""

from __future__ import annotations

import json
import tarfile

import pytest
from conftest import make_conf

from layered_image.conf import load_conf
from layered_image.engine import WriteRequest, write_image
from layered_image.errors import UserError


def test_write_image_from_python(tmp_path, fake_store):
    paths = sorted(str(p) for p in fake_store.iterdir())
    conf = load_conf(make_conf(tmp_path, [paths], store_dir=str(fake_store)))
    image_id = write_image(conf, WriteRequest(output=str(tmp_path / "image.tar")))
    with tarfile.open(tmp_path / "image.tar") as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
    assert manifest[0]["Config"] == f"{image_id.removeprefix('sha256:')}.json"
    write_image(conf, WriteRequest(output=str(tmp_path / "layout"), format="oci-dir", compression="zstd"))
    assert json.loads((tmp_path / "layout" / "index.json").read_text())["manifests"]


def test_a_bad_request_is_a_user_error(tmp_path, fake_store):
    conf = load_conf(make_conf(tmp_path, [], store_dir=str(fake_store)))
    with pytest.raises(UserError, match="docker-archive layers are uncompressed"):
        write_image(conf, WriteRequest(output=str(tmp_path / "x.tar"), compression="gzip"))
