"""The engine, without the command line: a conf and a typed request in, an image out.

    from layered_image.conf import load_conf
    from layered_image.engine import PushRequest, WriteRequest, push_image, write_image

    conf = load_conf("result-conf")                      # what `nix build .#image.conf` made
    write_image(conf, WriteRequest(output="image.tar"))   # docker-archive; returns the image ID
    write_image(conf, WriteRequest(output="oci", format="oci-dir", compression="zstd"))
    digest = push_image(conf, PushRequest("docker://registry.example/team/app:1", creds="u:p"))

Every bad input raises UserError (one line saying what to do); nothing here parses
arguments or exits. The command line (stream.py, cli.py) only turns flags into requests.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gc
import json
import os
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from layered_image.archive.base_image import (
    check_platform,
    held_by_base_note,
    inherit_config,
    open_base_image,
)
from layered_image.archive.docker_archive import write_docker_archive
from layered_image.archive.held_paths import differing_note
from layered_image.archive.image import ImageMeta
from layered_image.archive.layer_source import LayerSource, customisation_layer
from layered_image.archive.oci import (
    OciImage,
    build_oci_image,
    oci_dir_scratch,
    write_oci_archive,
    write_oci_dir,
)
from layered_image.archive.output import OpenOutput, Output, output_file
from layered_image.archive.planner import Planner
from layered_image.conf import StreamConf, rfc3339
from layered_image.errors import UserError, silence_stdout
from layered_image.files import write_file
from layered_image.progress import Progress

if TYPE_CHECKING:  # the registry client (http, ssl) is imported only by push and index
    from layered_image.archive.blobs import Blob
    from layered_image.registry.blob_locations import BlobLocations
    from layered_image.registry.client import Registry
    from layered_image.registry.push import ImageToPush
    from layered_image.registry.reference import Reference


@dataclass(frozen=True)
class WriteRequest:
    """Where and how to write an image."""

    output: str | None = None  # a file (a directory for oci-dir); None: standard output
    format: str = "docker-archive"  # or oci-archive, oci-dir
    compression: str = "none"  # gzip, zstd: OCI formats only
    quiet: bool = True  # False: progress and notes on stderr


@dataclass(frozen=True)
class PushRequest:
    """Where and how to push an image (skopeo's names)."""

    destination: str  # docker://HOST[:PORT]/REPO:TAG
    tls_verify: bool = True  # False also allows plain HTTP
    creds: str | None = None  # USER:PASSWORD; else --authfile, else the usual auth files
    authfile: str | None = None
    compression: str = "gzip"  # or zstd
    digestfile: str | None = None  # where to write the digest the tag names, after the push
    quiet: bool = True
    sbom: bool = False  # attach the image's CycloneDX SBOM as an OCI referrer (sbom/referrer.py)


def write_image(conf: StreamConf, request: WriteRequest) -> str:
    """Write the image of `conf`; return its ID (the config's digest)."""
    if request.format == "docker-archive" and request.compression != "none":
        raise UserError(
            "docker-archive layers are uncompressed; use --format oci-archive or oci-dir to compress"
        )
    if request.format == "oci-dir" and not request.output:
        raise UserError("--format oci-dir needs -o DIRECTORY")
    refuse_terminal_output(request.output)
    with ExitStack() as resources:
        # the output first: a path that cannot be written is the one thing said
        target = None if request.format == "oci-dir" else _opened_output(request.output, resources)
        progress = Progress(None, quiet=request.quiet)
        layers, meta = plan_image(conf, resources, sizes_first=progress.bar)
        if progress.bar:  # an ETA needs the total: plan every layer before the first byte
            progress.total = sum(layer.size for layer in layers)
        if not request.quiet:
            print(f"{conf.repo_tag}: {len(layers)} layers", file=sys.stderr)
            if meta.held_by_base:
                print(held_by_base_note(list(meta.held_by_base)), file=sys.stderr)
        with _collector_paused():
            digest = _write(layers, meta, request, progress, target)
        progress.finish()
        if not request.quiet:
            print(f"image {digest} {conf.repo_tag}", file=sys.stderr)
    return digest


def push_image(conf: StreamConf, request: PushRequest) -> str:
    """Push the image of `conf` (laid out as compressed blobs, reading only what must be
    sent); return the manifest's digest."""
    from layered_image.registry.push import push_image as push

    target, registry, say = _registry(request)
    conf = dataclasses.replace(conf, repo_tag=f"{target.repository}:{target.tag}")
    sbom = _sbom_document(conf) if request.sbom else None  # before anything is sent
    with _blob_locations(say) as seen, ExitStack() as resources, _push_scratch() as scratch:
        result = push(
            _image_to_push(conf, request.compression, scratch, resources, say),
            registry,
            target.tag,
            say,
            seen,
        )
        if sbom is not None:
            from layered_image.sbom.referrer import attach_sbom

            attach_sbom(registry, result.image.manifest, sbom, say)
    say(f"{target}: {result.summary()}")
    _write_digest(request.digestfile, result.manifest_digest)
    return result.manifest_digest


def _sbom_document(conf: StreamConf) -> bytes:
    from layered_image.sbom.command import sbom_for_push

    return sbom_for_push(conf)


def push_index(confs: list[StreamConf], request: PushRequest) -> str:
    """One image per conf (per platform), pushed under one OCI image index; its digest."""
    from layered_image.registry.push import push_index as push

    target, registry, say = _registry(request)
    confs = [dataclasses.replace(conf, repo_tag=f"{target.repository}:{target.tag}") for conf in confs]
    sboms = [_sbom_document(conf) for conf in confs] if request.sbom else []  # before anything is sent
    with _blob_locations(say) as seen, ExitStack() as resources, _push_scratch() as scratch:
        images = []
        for number, conf in enumerate(confs):
            (scratch / str(number)).mkdir()
            images.append(_image_to_push(conf, request.compression, scratch / str(number), resources, say))
        digest, pushed = push(images, registry, target.tag, say, seen)
        if sboms:
            from layered_image.sbom.referrer import attach_sbom

            for image, sbom in zip(pushed, sboms, strict=True):  # each platform's image its own
                attach_sbom(registry, image.manifest, sbom, say)
    say(f"{target}: index {digest} of {', '.join(str(image.platform) for image in images)}")
    _write_digest(request.digestfile, digest)
    return digest


def refuse_terminal_output(output: str | None) -> None:
    """An image written onto a terminal garbles it and helps no one (`docker save` refuses too)."""
    if output is None and os.isatty(1):
        raise UserError(
            "cowardly refusing to write the image to a terminal; use -o FILE or redirect it (| docker load)"
        )


def _write_digest(path: str | None, digest: str) -> None:
    if path is None:
        return
    try:
        write_file(Path(path), digest.encode())
    except OSError as err:
        raise UserError(f"pushed, but cannot write the digest to {path}: {err.strerror or err}") from None


@contextlib.contextmanager
def _push_scratch() -> Iterator[Path]:
    # (a failed push's thread may still be making a blob here as it is removed: the error
    # reported must stay the push's own)
    with tempfile.TemporaryDirectory(prefix="layered-image-push-", ignore_cleanup_errors=True) as scratch:
        yield Path(scratch)


@contextlib.contextmanager
def _blob_locations(say: Callable[[str], None]) -> Iterator[BlobLocations]:
    """Where this user's pushes saw blobs (for mounts); saved after a push that worked."""
    from layered_image.registry.blob_locations import BlobLocations

    seen = BlobLocations.load()
    yield seen
    if problem := seen.save():
        say(f"note: could not remember the pushed blobs for later mounts ({problem})")


def _image_to_push(
    conf: StreamConf, compression: str, scratch: Path, resources: ExitStack, say: Callable[[str], None]
) -> ImageToPush:
    """The image, planned, to be made as blobs while a push sends them; a layer the digest
    cache knows is not read unless it must be sent."""
    from layered_image.archive.digest_cache import DigestCache
    from layered_image.registry.push import ImageToPush

    layers, meta = plan_image(conf, resources)
    cache = DigestCache()
    known = [digests.blob_digest for layer in layers if (digests := cache.known(layer, compression))]

    def make(send: Callable[[Blob], None]) -> OciImage:
        image = build_oci_image(layers, meta, compression, scratch, Progress(None, quiet=True), cache, send)
        for note in cache.notes[:1]:
            say(note)
        return image

    return ImageToPush(make, meta.platform, known)  # (sizes unasked: a known layer is not even planned)


SAYING = threading.Lock()


def _registry(request: PushRequest) -> tuple[Reference, Registry, Callable[[str], None]]:
    from layered_image.registry.client import Registry
    from layered_image.registry.credentials import find_credentials
    from layered_image.registry.reference import parse_reference

    target = parse_reference(request.destination)
    credentials = find_credentials(target.host, request.creds, request.authfile)

    def say(line: str) -> None:
        if not request.quiet:
            with SAYING:  # upload threads say things too: whole lines, one at a time
                sys.stderr.write(line + "\n")
                sys.stderr.flush()

    return target, Registry(target.host, target.repository, credentials, request.tls_verify, log=say), say


def _opened_output(output: str | None, resources: ExitStack) -> OpenOutput:
    with _output_errors(output):
        return resources.enter_context(output_file(output))


def _write(
    layers: list[LayerSource],
    meta: ImageMeta,
    request: WriteRequest,
    progress: Progress,
    target: OpenOutput | None,
) -> str:
    """Write the image as `request` says (into `target`, opened, unless an oci-dir); return
    the image's ID (its config digest)."""
    fmt, compression = request.format, request.compression
    with _output_errors(request.output):
        if target is None:
            directory = Path(request.output or ".")
            with oci_dir_scratch(directory) as scratch:
                image = build_oci_image(layers, meta, compression, scratch, progress)
                write_oci_dir(image, directory)
            return image.config.digest
        if fmt == "oci-archive":
            with tempfile.TemporaryDirectory(prefix=".layered-image-", dir=target.directory) as scratch:
                image = build_oci_image(layers, meta, compression, Path(scratch), progress)
                with Output(target.fd, Progress(None, quiet=True)) as out:
                    write_oci_archive(out, image, meta.mtime)
            return image.config.digest
        with Output(target.fd, progress) as out:
            return "sha256:" + write_docker_archive(out, layers, meta)


@contextlib.contextmanager
def _output_errors(output: str | None) -> Iterator[None]:
    """Writing the image failed: one line that says where and why."""
    try:
        yield
    except BrokenPipeError:
        silence_stdout()
        raise UserError("the reader of the image stream went away before the end (broken pipe)") from None
    except OSError as err:  # disk full, a directory that is not there, ...
        folder = Path(output).parent if output else None
        if isinstance(err, FileNotFoundError) and folder is not None and not folder.exists():
            raise UserError(f"cannot write the image to {output}: there is no directory {folder}") from None
        where = f" {err.filename}" if err.filename else ""
        raise UserError(f"cannot write the image{where}: {err.strerror}") from None


def plan_image(
    conf: StreamConf, resources: ExitStack, sizes_first: bool = False
) -> tuple[list[LayerSource], ImageMeta]:
    """The image's layers, ready to write; `sizes_first` when every size is wanted up front."""
    layers: list[LayerSource] = []
    config = conf.config
    store_layers = conf.store_layers
    base_history = None
    held_by_base: list[str] = []
    if conf.from_image:
        base = open_base_image(conf.from_image, conf.from_image_tag, resources)
        check_platform(base.config, conf.platform, f"from_image {conf.from_image}")
        layers += base.layers
        config = inherit_config(base.config.get("config"), config)
        base_history = list(base.config.get("history") or [])
        found = base.without_paths_it_holds(store_layers, conf.store_dir)
        store_layers, held_by_base = found.kept, found.held
        if found.differing:  # not a note: the base may have planted them (see held_paths.py)
            print(differing_note(found.differing, f"from_image {conf.from_image}"), file=sys.stderr)
    base_layers = len(layers)
    layers += store_layer_sources(conf, store_layers, resources, sizes_first)
    if conf.customisation_layer:
        layers.append(customisation_layer(conf.customisation_layer))
    meta = ImageMeta(
        repo_tag=conf.repo_tag,
        platform=conf.platform,
        created=rfc3339(conf.created),
        mtime=conf.owner.mtime,
        config=config,
        base_history=base_history,
        base_layers=base_layers,
        held_by_base=tuple(held_by_base),
    )
    return layers, meta


def store_layer_sources(
    conf: StreamConf, layers: list[list[str]], resources: ExitStack, sizes_first: bool
) -> list[LayerSource]:
    """Planned in a second process (planner.py), in order, as the layers are written."""
    for paths in layers:  # a missing path is an error before the first byte, not in the middle
        for path in paths:
            if not os.path.lexists(path):
                raise UserError(f"store path {path} does not exist; build or fetch it first")
    if not layers:
        return []
    planner = resources.enter_context(Planner(layers, conf.store_dir, conf.owner, sizes_first))
    return [
        LayerSource(
            measure=functools.partial(planner.size, number),
            chunks=functools.partial(planner.chunks, number),
            comment="store paths: " + " ".join(paths),
            identity=store_layer_identity(paths, conf),
        )
        for number, paths in enumerate(layers)
    ]


def store_layer_identity(paths: list[str], conf: StreamConf) -> str:
    """Store paths never change: the paths and what every member gets fix a layer's bytes."""
    owner = conf.owner
    return json.dumps(
        {
            "store": paths,
            "store_dir": conf.store_dir,
            "owner": [owner.mtime, owner.uid, owner.gid, owner.uname, owner.gname],
        }
    )


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Streaming makes and drops a few objects per file, none in cycles: the cyclic garbage
    collector would only keep re-walking what lives (a tenth of the main thread's time)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
