"""Base images (`from_image`): a docker-archive tarball whose layers go below ours.

Everything is checked before the first byte of the new image is written: the
manifest, that every Config/Layers name is a plain member of the archive, that the
layer count matches rootfs.diff_ids and each layer hashes to its diff_id, and that
the base config is a valid config for the same platform. A compressed archive is
unpacked to a temporary file first, so memory stays bounded whatever its size.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

from layered_image import strict_json
from layered_image.archive.held_paths import HeldPaths, split_held
from layered_image.archive.layer_source import Chunks, LayerSource
from layered_image.config import validate_config
from layered_image.errors import UserError, first_few
from layered_image.names import full_repo_tag, repo_tag_problem
from layered_image.platform import Platform

GZIP_MAGIC = b"\x1f\x8b"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
IMAGE_MANIFESTS = (
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
MAX_JSON = 16 << 20  # manifest.json and configs are small; refuse anything absurd


class BaseImageError(UserError):
    pass


@dataclass
class BaseImage:
    config: dict[str, Any]  # the whole image config (architecture, config, history, ...)
    layers: list[LayerSource]
    members: list[list[tarfile.TarInfo]]  # each layer's entries, listed as it was checked

    def without_paths_it_holds(self, store_layers: list[list[str]], store_dir: str) -> HeldPaths:
        """The store layers less the store paths this base already holds as the store has
        them (they are in the image already: nixpkgs stores them again, we do not)."""
        return split_held(store_layers, store_dir, self.members)  # listed when checked: no second read


def held_by_base_note(paths: list[str]) -> str:
    shown = first_few(paths)
    return f"{len(paths)} store path(s) already in the base image, not stored again: {shown}"


class _Chunks(io.RawIOBase):
    """A file-like view of a stream of byte chunks, for tarfile's stream mode."""

    def __init__(self, chunks: Chunks) -> None:
        self.chunks = iter(chunks)
        self.rest = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self.rest:
            self.rest = next(self.chunks, None)  # type: ignore[arg-type]
            if self.rest is None:
                self.rest = b""
                return 0
        count = min(len(buffer), len(self.rest))
        buffer[:count] = self.rest[:count]
        self.rest = self.rest[count:]
        return count


def open_base_image(path: Path, tag: str | None, resources: ExitStack) -> BaseImage:
    """Check the archive at `path` and return its config and layers (kept open in `resources`)."""
    where = f"from_image {path}"
    archive = resources.enter_context(_open_archive(path, where))
    members = _index_members(archive, where)
    if "manifest.json" not in members and "index.json" in members:
        manifest = _docker_manifest_of_oci_layout(archive, members, where)
    else:
        manifest = _read_json(archive, members, "manifest.json", where)
    entry = _choose_image(manifest, tag, where)
    config = _read_json(archive, members, _member_name(entry.get("Config"), where), where)
    layer_names = entry.get("Layers")
    if not isinstance(config, dict) or not isinstance(layer_names, list):
        raise BaseImageError(f"{where}: the manifest's Config/Layers are not an image config and a list")
    diff_ids = config.get("rootfs", {}).get("diff_ids") if isinstance(config.get("rootfs"), dict) else None
    if not isinstance(diff_ids, list) or len(diff_ids) != len(layer_names):
        raise BaseImageError(f"{where}: {len(layer_names)} layers but rootfs.diff_ids does not list as many")
    config["config"] = image_settings(config.get("config"))
    problems = validate_config(config["config"])
    if problems:
        raise BaseImageError(f"{where}: its config is invalid: {problems[0]}")
    checked = [
        _checked_layer(
            archive, _plain_member(members, _member_name(name, where), where), diff_id, number, where
        )
        for number, (name, diff_id) in enumerate(zip(layer_names, diff_ids, strict=True), start=1)
    ]
    return BaseImage(config=config, layers=[layer for layer, _ in checked], members=[m for _, m in checked])


def _open_archive(path: Path, where: str) -> tarfile.TarFile:
    try:
        file = open(path, "rb")  # noqa: SIM115 - handed to the ExitStack through the TarFile
    except (OSError, ValueError) as err:  # ValueError: a NUL or a lone surrogate in the name
        raise BaseImageError(f"cannot read {where}: {getattr(err, 'strerror', None) or err}") from None
    magic = file.read(4)
    file.seek(0)
    if magic.startswith(GZIP_MAGIC) or magic == ZSTD_MAGIC:
        file = _decompressed_copy(file, magic, where)
    try:
        return tarfile.open(fileobj=file, mode="r:")
    except tarfile.TarError as err:
        file.close()
        raise BaseImageError(f"{where}: not a tar archive ({err})") from None


def _decompressed_copy(file: IO[bytes], magic: bytes, where: str) -> IO[bytes]:
    copy = tempfile.TemporaryFile()  # noqa: SIM115 - returned open, closed by the ExitStack
    try:
        with file, _decompressor(file, magic) as stream:
            shutil.copyfileobj(stream, copy, 1 << 20)
    except (OSError, EOFError, zlib.error, ValueError) as err:
        copy.close()
        raise BaseImageError(f"{where}: corrupt compressed archive ({err})") from None
    copy.seek(0)
    return copy


def _decompressor(file: IO[bytes], magic: bytes) -> IO[bytes]:
    if magic.startswith(GZIP_MAGIC):
        return gzip.GzipFile(fileobj=file)
    try:
        import zstandard
    except ImportError:
        raise BaseImageError("zstd-compressed base images need the zstandard package") from None
    return zstandard.ZstdDecompressor().stream_reader(file)


def _index_members(archive: tarfile.TarFile, where: str) -> dict[str, tarfile.TarInfo]:
    members: dict[str, tarfile.TarInfo] = {}
    try:
        for member in archive:
            name = PurePosixPath(member.name)
            if name.is_absolute() or ".." in name.parts:
                raise BaseImageError(f"{where}: member {member.name!r} escapes the archive")
            key = str(name)
            if key in members:
                raise BaseImageError(f"{where}: member {key!r} appears twice")
            members[key] = member
    except (tarfile.TarError, EOFError, OSError) as err:
        raise BaseImageError(f"{where}: corrupt tar archive ({err})") from None
    return members


def _member_name(name: Any, where: str) -> str:
    if not isinstance(name, str) or not name:
        raise BaseImageError(f"{where}: manifest names a member {name!r}")
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts:
        raise BaseImageError(f"{where}: manifest names {name!r}, outside the archive")
    return str(path)


def _plain_member(members: dict[str, tarfile.TarInfo], name: str, where: str) -> tarfile.TarInfo:
    member = members.get(name)
    if member is None:
        raise BaseImageError(f"{where}: no member {name!r} in the archive")
    if not member.isfile():
        raise BaseImageError(f"{where}: {name!r} is not a regular file (links are not followed)")
    return member


def _read_json(archive: tarfile.TarFile, members: dict[str, tarfile.TarInfo], name: str, where: str) -> Any:
    member = _plain_member(members, name, where)
    if member.size > MAX_JSON:
        raise BaseImageError(f"{where}: {name} is {member.size} bytes, more than a JSON file here may be")
    data = archive.extractfile(member).read()  # type: ignore[union-attr]
    try:
        return strict_json.loads(data)
    except (ValueError, RecursionError) as err:
        raise BaseImageError(f"{where}: {name} is not valid JSON ({err})") from None


def _docker_manifest_of_oci_layout(
    archive: tarfile.TarFile, members: dict[str, tarfile.TarInfo], where: str
) -> list[dict[str, Any]]:
    """An OCI archive (skopeo's oci-archive:) read as the docker manifest.json it lacks:
    one entry per image manifest in index.json, named by its ref.name annotations."""
    index = _read_json(archive, members, "index.json", where)
    entries = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(entries, list) or not entries:
        raise BaseImageError(f"{where}: index.json lists no manifests")
    images = []
    for descriptor in entries:
        kind = descriptor.get("mediaType") if isinstance(descriptor, dict) else descriptor
        if kind not in IMAGE_MANIFESTS:
            raise BaseImageError(
                f"{where}: index.json names a {kind!r}, not an image manifest (a multi-platform"
                " index?); copy one platform out with skopeo first"
            )
        manifest = _read_json(archive, members, _blob_name(descriptor, where), where)
        layers = manifest.get("layers") if isinstance(manifest, dict) else None
        if not isinstance(layers, list) or not isinstance(manifest.get("config"), dict):
            raise BaseImageError(f"{where}: manifest {descriptor.get('digest')} has no config and layers")
        names = descriptor.get("annotations") if isinstance(descriptor.get("annotations"), dict) else {}
        keys = ("io.containerd.image.name", "org.opencontainers.image.ref.name")
        tags = [names[key] for key in keys if isinstance(names.get(key), str)]
        images.append({"Config": _blob_name(manifest["config"], where), "RepoTags": tags,
                       "Layers": [_blob_name(layer, where) for layer in layers]})  # fmt: skip
    return images


def _blob_name(descriptor: Any, where: str) -> str:
    digest = descriptor.get("digest") if isinstance(descriptor, dict) else None
    if not isinstance(digest, str) or not digest.startswith("sha256:") or "/" in digest:
        raise BaseImageError(f"{where}: a descriptor without a sha256 digest: {descriptor!r:.100}")
    return f"blobs/sha256/{digest.removeprefix('sha256:')}"


def _choose_image(manifest: Any, tag: str | None, where: str) -> dict[str, Any]:
    if not isinstance(manifest, list) or not manifest or not all(isinstance(e, dict) for e in manifest):
        raise BaseImageError(f"{where}: manifest.json is not a list of images")
    if len(manifest) == 1 and tag is None:
        return manifest[0]
    tags = [t for entry in manifest for t in (entry.get("RepoTags") or []) if isinstance(t, str)]
    for entry in manifest:
        if tag is not None and _names_image(entry.get("RepoTags"), tag):
            return entry
    wanted = f"no image tagged {tag!r}" if tag else f"{len(manifest)} images"
    raise BaseImageError(
        f"{where}: {wanted}; name one of: {', '.join(tags) or '(untagged)'}"
        " (Nix: fromImageName and fromImageTag; a conf: from_image_tag)"
    )


def _names_image(repo_tags: Any, tag: str) -> bool:
    """`tag` is one of `repo_tags`, written as given or in full (bb:1 is docker.io/library/bb:1,
    as an OCI index names it)."""
    if not isinstance(repo_tags, list):
        return False
    if tag in repo_tags:
        return True
    full = _full(tag)
    return full is not None and any(isinstance(t, str) and _full(t) == full for t in repo_tags)


def _full(repo_tag: str) -> str | None:
    return full_repo_tag(repo_tag) if repo_tag_problem(repo_tag) is None else None


def _checked_layer(
    archive: tarfile.TarFile, member: tarfile.TarInfo, diff_id: Any, number: int, where: str
) -> tuple[LayerSource, list[tarfile.TarInfo]]:
    """The layer, hashed against its diff_id and listed (its entries) in the same one read."""
    reader = _HashingReader(_layer_bytes(archive, member, where))
    try:
        with tarfile.open(fileobj=reader, mode="r|") as tar:
            entries = list(tar)
    except (tarfile.TarError, EOFError) as err:
        raise BaseImageError(f"{where}: layer {number} is not a tar archive ({err})") from None
    reader.drain()  # what follows the tar's end: padding, still part of the layer's digest
    if diff_id != f"sha256:{reader.digest.hexdigest()}":
        raise BaseImageError(
            f"{where}: layer {number} ({member.name}) does not hash to its diff_id {diff_id}"
        )

    def chunks() -> Chunks:
        return _layer_bytes(archive, member, where)

    size, hexdigest = reader.size, reader.digest.hexdigest()
    return LayerSource(lambda: size, chunks, f"base image layer {number}", "from_image", hexdigest), entries


class _HashingReader(_Chunks):
    """Chunks as a file, hashed and counted as they are read."""

    def __init__(self, chunks: Chunks) -> None:
        super().__init__(chunks)
        self.digest, self.size = hashlib.sha256(), 0

    def readinto(self, buffer: Any) -> int:
        count = super().readinto(buffer)
        self.digest.update(memoryview(buffer)[:count])
        self.size += count
        return count

    def drain(self) -> None:
        block = bytearray(1 << 20)
        while self.readinto(block):
            pass


def _layer_bytes(archive: tarfile.TarFile, member: tarfile.TarInfo, where: str) -> Iterator[bytes]:
    assert archive.fileobj is not None
    raw = io.BufferedReader(_MemberReader(archive.fileobj.fileno(), member.offset_data, member.size), 1 << 20)
    magic = raw.read(4)
    raw.seek(0)
    stream: IO[bytes] = raw
    if magic.startswith(GZIP_MAGIC) or magic == ZSTD_MAGIC:
        stream = _decompressor(raw, magic)
    try:
        while block := stream.read(1 << 20):
            yield block
    except (OSError, EOFError, zlib.error) as err:
        raise BaseImageError(f"{where}: layer {member.name} is corrupt ({err})") from None


class _MemberReader(io.RawIOBase):
    """An archive member's bytes, read with pread at its offset: a push makes layers in
    several threads, and the archive's one file object (extractfile's) would be seeked and
    read by all of them at once."""

    def __init__(self, fd: int, offset: int, size: int) -> None:
        self.fd, self.offset, self.size, self.position = fd, offset, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, position: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence]
        self.position = max(0, min(base + position, self.size))
        return self.position

    def readinto(self, buffer: Any) -> int:
        count = min(len(buffer), self.size - self.position)
        data = os.pread(self.fd, count, self.offset + self.position) if count > 0 else b""
        buffer[: len(data)] = data
        self.position += len(data)
        return len(data)


# Keys of Docker's container config that its image configs carry (docker build, docker
# import, docker commit write them) and that say nothing about the image: Docker's own
# reader ignores them when it starts a container from the image.
CONTAINER_ONLY_KEYS = frozenset({
    "Hostname", "Domainname", "AttachStdin", "AttachStdout", "AttachStderr", "Tty", "OpenStdin",
    "StdinOnce", "Image", "NetworkDisabled", "MacAddress", "StopTimeout",
})  # fmt: skip


def image_settings(config: Any) -> Any:
    """A base's `config` as Docker reads it: container-only keys dropped, and a null value
    (Docker writes `"OnBuild": null`, `"Entrypoint": null`, ...) the same as an absent key.
    What is left is checked like the user's own config."""
    if not isinstance(config, dict):
        return config
    return {
        key: value for key, value in config.items() if value is not None and key not in CONTAINER_ONLY_KEYS
    }


def check_platform(config: dict[str, Any], platform: Platform, where: str) -> None:
    """The base must run where the new image runs: the same OS, architecture and variant
    (a missing variant read as containerd reads it: arm is v7, arm64 v8)."""
    base = Platform.of_config(config)
    if not platform.runs(base):
        raise BaseImageError(
            f"{where} is for {base}, the new image for {platform};"
            " pick a base image for this platform or build for the base's"
        )


def inherit_config(base: dict[str, Any] | None, new: dict[str, Any] | None) -> dict[str, Any] | None:
    """Docker's rule: Env merged by name (ours win), every other key ours if set, else the base's."""
    if not base:
        return new
    merged = dict(base)
    for key, value in (new or {}).items():
        if key == "Env":
            merged["Env"] = _merge_env(base.get("Env") or [], value or [])
        else:
            merged[key] = value
    return merged


def _merge_env(base: list[str], new: list[str]) -> list[str]:
    names = {entry.split("=", 1)[0]: entry for entry in new}
    merged = [names.pop(entry.split("=", 1)[0], entry) for entry in base]
    return merged + [entry for entry in new if entry.split("=", 1)[0] in names]
