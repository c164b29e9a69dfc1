"""A push sends each layer while the next is made (registry/push.py): the first layer is
in the registry before the second has been read, a failure making a layer leaves no
manifest, and a failed upload stops the making of further layers."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from layered_image.archive.blobs import Blob
from layered_image.archive.image import ImageMeta
from layered_image.archive.layer_source import LayerSource
from layered_image.archive.oci import MANIFEST_MEDIA_TYPE, OciImage, build_oci_image
from layered_image.errors import UserError
from layered_image.platform import Platform
from layered_image.progress import Progress
from layered_image.registry.blob_locations import BlobLocations
from layered_image.registry.client import Registry
from layered_image.registry.push import ImageToPush, push_image

LAYER = 1 << 20


def meta() -> ImageMeta:
    return ImageMeta(
        repo_tag="overlap/image:1", platform=Platform("amd64", None), created="1970-01-01T00:00:01Z",
        mtime=1, config=None, base_history=None, base_layers=0, held_by_base=(),
    )  # fmt: skip


def layer(name: str, chunks: Callable[[], Iterator[bytes]]) -> LayerSource:
    return LayerSource(measure=lambda: LAYER, chunks=chunks, comment=name)


def random_bytes() -> Iterator[bytes]:
    yield os.urandom(LAYER)  # incompressible: the blob is about as large as the layer


def blobs_stored(tmp_path: Path) -> list[Path]:
    """The blob files the registry keeps (distribution's filesystem driver)."""
    return list((tmp_path / "registry" / "data").glob("docker/registry/v2/blobs/sha256/*/*/data"))


def pushing(tmp_path: Path, layers: list[LayerSource]) -> ImageToPush:
    scratch = tmp_path / "scratch"
    scratch.mkdir(exist_ok=True)

    def make(send: Callable[[Blob], None]) -> OciImage:
        return build_oci_image(layers, meta(), "gzip", scratch, Progress(None, quiet=True), None, send)

    return ImageToPush(make, Platform("amd64", None), [])


def manifest_status(target: Registry) -> int:
    """HEAD of tag 1 (distribution answers 404 for an OCI manifest to a client not accepting it)."""
    return target.request("HEAD", target.url("manifests/1"), b"", {"Accept": MANIFEST_MEDIA_TYPE}).status


def client(registry) -> Registry:
    return Registry(registry.host, "overlap/image", tls_verify=False, retry_pause=0.05)


def test_a_layer_goes_up_while_the_next_is_made(tmp_path, registry):
    first_in_registry: list[bool] = []

    def second_layer() -> Iterator[bytes]:
        # Made only once the first is in the registry: a push that sends nothing before
        # every layer is made would find it missing here (after waiting up to 30 s for it).
        start = time.monotonic()
        while not blobs_stored(tmp_path) and time.monotonic() - start < 30:
            time.sleep(0.05)
        first_in_registry.append(bool(blobs_stored(tmp_path)))
        yield from random_bytes()

    target = client(registry)
    result = push_image(
        pushing(tmp_path, [layer("first", random_bytes), layer("second", second_layer)]),
        target, "1", lambda line: None, BlobLocations.load(),
    )  # fmt: skip
    assert first_in_registry == [True], "the first layer was not sent before the second was made"
    assert [blob.digest for blob in result.outcomes["pushed"][:2]] == [b.digest for b in result.image.layers]
    assert manifest_status(target) == 200


def test_a_layer_that_cannot_be_made_leaves_no_manifest(tmp_path, registry):

    def changed_under_us() -> Iterator[bytes]:
        yield b"x" * 100  # fewer bytes than planned: the store changed

    target = client(registry)
    with pytest.raises(UserError, match="planned"):
        push_image(
            pushing(tmp_path, [layer("first", random_bytes), layer("second", changed_under_us)]),
            target, "1", lambda line: None, BlobLocations.load(),
        )  # fmt: skip
    assert manifest_status(target) == 404


def test_a_failed_upload_stops_the_making_of_layers(tmp_path, servers, own_cache):

    def refusing_uploads(method: str, path: str, headers: dict[str, str], body: bytes):
        if path == "/v2/":
            return 200, {}, b"{}"
        if method == "HEAD":
            return 404, {}, b""
        return 403, {"Content-Type": "application/json"}, b'{"errors":[{"code":"DENIED","message":"no"}]}'

    server = servers("127.0.0.1", refusing_uploads)
    made: list[str] = []

    def slow_layer(name: str) -> Callable[[], Iterator[bytes]]:
        def chunks() -> Iterator[bytes]:
            made.append(name)
            time.sleep(0.2)
            yield from random_bytes()

        return chunks

    layers = [layer(f"layer {n}", slow_layer(f"layer {n}")) for n in range(40)]
    target = Registry(server.host, "overlap/image", tls_verify=False, retry_pause=0.05)
    with pytest.raises(UserError, match=r"403|denied|refused"):
        push_image(pushing(tmp_path, layers), target, "1", lambda line: None, BlobLocations.load())
    assert len(made) < 20, f"{len(made)} layers made after the first upload was refused"
    assert not any(seen.method == "PUT" and "/manifests/" in seen.path for seen in servers.log)
