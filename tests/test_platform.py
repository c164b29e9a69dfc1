"""The platform (os, architecture, variant) from the conf to the image config and the OCI
index, and against a base image's."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
from conftest import make_conf, run_cli

from layered_image.platform import Platform


def stream(tmp_path: Path, name: str, **conf: object) -> tuple[int, str, Path]:
    folder = tmp_path / name
    folder.mkdir()
    out = folder / "image.tar"
    result = run_cli("stream", str(make_conf(folder, [], **conf)), "-q", "-o", str(out))
    return result.returncode, result.stderr.decode(), out


def config_of(archive: Path) -> dict:
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
        return json.load(tar.extractfile(manifest[0]["Config"]))


def test_the_variant_reaches_the_config_and_the_oci_index(tmp_path):
    code, error, out = stream(tmp_path, "v6", architecture="arm", variant="v6")
    assert code == 0, error
    config = config_of(out)
    assert (config["os"], config["architecture"], config["variant"]) == ("linux", "arm", "v6")
    oci = tmp_path / "oci.tar"
    conf = make_conf(tmp_path, [], architecture="arm", variant="v6")
    assert run_cli("stream", str(conf), "-q", "--format", "oci-archive", "-o", str(oci)).returncode == 0
    with tarfile.open(oci) as tar:
        index = json.load(tar.extractfile("index.json"))
    assert index["manifests"][0]["platform"] == {"architecture": "arm", "os": "linux", "variant": "v6"}


def test_no_variant_is_written_when_none_is_given(tmp_path):
    code, error, out = stream(tmp_path, "amd64")
    assert code == 0, error
    assert "variant" not in config_of(out)


@pytest.mark.parametrize(
    ("base", "new", "ok"),
    [
        ({"variant": "v7"}, {"variant": "v7"}, True),
        ({}, {"variant": "v7"}, True),  # arm without a variant is v7, as containerd reads it
        ({"variant": "v7"}, {"variant": "v6"}, False),
        ({"variant": "v6"}, {}, False),
    ],
)
def test_a_base_image_must_be_for_the_same_variant(tmp_path, base, new, ok):
    code, error, base_image = stream(tmp_path, "base", architecture="arm", **base)
    assert code == 0, error
    code, error, _ = stream(tmp_path, "new", architecture="arm", from_image=str(base_image), **new)
    assert (code == 0) is ok, error
    if not ok:
        wanted = f"linux/arm/{new.get('variant')}" if new else "linux/arm"
        assert f"is for linux/arm/{base['variant']}, the new image for {wanted}" in error
        assert error.count("\n") == 1


def test_a_bad_variant_is_refused_in_one_line(tmp_path):
    code, error, _ = stream(tmp_path, "bad", architecture="arm64", variant="v7")
    assert code == 1 and error.count("\n") == 1
    assert "variant: 'v7' is not a variant of arm64" in error


def test_platform_names_and_defaults():
    assert str(Platform("arm", "v6")) == "linux/arm/v6"
    assert Platform("arm64").runs(Platform("arm64", "v8"))
    assert not Platform("arm", "v6").runs(Platform("arm", "v7"))
    assert Platform("amd64").descriptor() == {"architecture": "amd64", "os": "linux"}
