"""Outputs (issue 21): never written through a link somebody else planted, created with the
umask's mode, never left half-written at their path, and concurrent oci-dir writers keep
every tag. Each planted link points to a file or FIFO of known content that must stay so."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import make_conf, need, run_cli

from layered_image import nix_build

ARCHIVE_FORMATS = ["docker-archive", "oci-archive"]
UMASKS = [0o027, 0o002]


@pytest.fixture
def conf(tmp_path: Path, fake_store: Path) -> Path:
    paths = sorted(str(p) for p in fake_store.iterdir())
    return make_conf(tmp_path, [[paths[0]], paths[1:]], store_dir=str(fake_store), repo_tag="safety:1")


@pytest.fixture(autouse=True)
def blob_cache(own_cache: Path) -> Path:
    """The push's cache of blob locations, under this test's directory."""
    return own_cache / "blob-locations.json"


def with_umask(mask: int) -> Callable[[], None]:
    return lambda: os.umask(mask) and None


def plant_link(at: Path, victims: Path) -> Path:
    """A link at `at` to a new file of known content (what another user would plant)."""
    victims.mkdir(exist_ok=True)
    victim = victims / at.name.lstrip(".")
    victim.write_bytes(b"precious: " + victim.name.encode())
    at.parent.mkdir(parents=True, exist_ok=True)
    at.symlink_to(victim)
    return victim


def unchanged(victim: Path) -> bool:
    return victim.read_bytes() == b"precious: " + victim.name.encode()


def is_regular_file(path: Path) -> bool:
    return stat.S_ISREG(os.lstat(path).st_mode)


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def one_line_error(result: subprocess.CompletedProcess) -> str:
    stderr = result.stderr.decode()
    assert result.returncode == 1 and "Traceback" not in stderr, stderr
    assert stderr.count("\n") == 1, stderr
    return stderr


def oci_dir(conf: Path, layout: Path, tag: str, **kwargs) -> subprocess.CompletedProcess:
    return run_cli("stream", str(conf), "-q", "--format", "oci-dir", "-o", str(layout), "-t", tag, **kwargs)


def index_names(layout: Path) -> list[str]:
    index = json.loads((layout / "index.json").read_text())
    return [m["annotations"]["io.containerd.image.name"] for m in index["manifests"]]


def skopeo_inspect(layout: Path, tag: str) -> dict:
    need(shutil.which("skopeo") is not None, "skopeo")
    result = subprocess.run(["skopeo", "inspect", f"oci:{layout}:{tag}"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


# -o FILE


@pytest.mark.parametrize("fmt", ARCHIVE_FORMATS)
def test_stream_output_replaces_a_planted_link_and_never_writes_through_it(tmp_path, conf, fmt):
    """The link stands for one to a block device: a FIFO shows whether anything went through."""
    device = tmp_path / "device"
    os.mkfifo(device)
    reader = os.open(device, os.O_RDONLY | os.O_NONBLOCK)  # so that writing to it would not block
    target = tmp_path / "image.tar"
    target.symlink_to(device)
    try:
        result = run_cli("stream", str(conf), "-q", "--format", fmt, "-o", str(target), timeout=60)
        went_through = os.read(reader, 1 << 20)
    except subprocess.TimeoutExpired:
        pytest.fail("the stream blocked writing into the FIFO the planted link names")
    finally:
        os.close(reader)
    assert went_through == b"", "the image was written through the planted link"
    assert result.returncode == 0, result.stderr.decode()
    assert is_regular_file(target)
    with tarfile.open(target) as archive:
        assert "manifest.json" in archive.getnames()


@pytest.mark.parametrize("fmt", ARCHIVE_FORMATS)
@pytest.mark.parametrize("umask", UMASKS, ids=oct)
def test_stream_output_file_honours_the_umask(tmp_path, conf, fmt, umask):
    target = tmp_path / "image.tar"
    result = run_cli(
        "stream", str(conf), "-q", "--format", fmt, "-o", str(target), preexec_fn=with_umask(umask)
    )
    assert result.returncode == 0, result.stderr.decode()
    assert oct(mode(target)) == oct(0o666 & ~umask)


def test_output_to_one_of_the_processs_own_descriptors_goes_to_that_descriptor(tmp_path, conf):
    """`-o /dev/fd/N` (and /dev/stdout) is the descriptor the caller opened, as in a shell."""
    target = tmp_path / "image.tar"
    with open(target, "wb") as handle:
        result = run_cli(
            "stream", str(conf), "-q", "-o", f"/dev/fd/{handle.fileno()}", pass_fds=[handle.fileno()]
        )
    assert result.returncode == 0, result.stderr.decode()
    with tarfile.open(target) as archive:
        assert "manifest.json" in archive.getnames()


def test_a_failed_stream_leaves_the_old_output_and_no_temporary_file(tmp_path, conf, fake_store):
    """The customisation layer's checksum is found wrong after its bytes went out."""
    custom = tmp_path / "custom"
    (custom / "root").mkdir(parents=True)
    (custom / "root" / "hello").write_text("hi")
    subprocess.run(["tar", "-C", custom / "root", "-cf", custom / "layer.tar", "."], check=True)
    (custom / "checksum").write_text("0" * 64)
    paths = sorted(str(p) for p in fake_store.iterdir())
    bad = make_conf(tmp_path, [paths], store_dir=str(fake_store), customisation_layer=str(custom))
    out = tmp_path / "out"
    out.mkdir()
    for fmt in ARCHIVE_FORMATS:
        target = out / f"{fmt}.tar"
        target.write_bytes(b"the previous image")
        result = run_cli("stream", str(bad), "-q", "--format", fmt, "-o", str(target))
        assert "checksum" in one_line_error(result)
        assert target.read_bytes() == b"the previous image"
    assert sorted(p.name for p in out.iterdir()) == ["docker-archive.tar", "oci-archive.tar"]


# --format oci-dir


def oci_dir_names(conf: Path, tmp_path: Path) -> list[str]:
    """Every file an oci-dir of `conf` holds, found by writing one elsewhere."""
    reference = tmp_path / "reference"
    assert oci_dir(conf, reference, "safety:1").returncode == 0
    return sorted(str(p.relative_to(reference)) for p in reference.rglob("*") if p.is_file())


def test_oci_dir_never_writes_through_links_at_its_files_or_former_temporary_names(tmp_path, conf):
    names = oci_dir_names(conf, tmp_path)
    layout, victims = tmp_path / "layout", tmp_path / "victims"
    planted = {}
    for name in names:
        if name == "index.json":
            continue  # a link there is refused (next test)
        at = layout / name
        planted[at] = plant_link(at, victims)
        temporary = at.with_name(f".{at.name}.partial")  # the fixed names the writer once used
        planted[temporary] = plant_link(temporary, victims)
    planted[layout / ".index.json.partial"] = plant_link(layout / ".index.json.partial", victims)
    result = oci_dir(conf, layout, "safety:1")
    assert result.returncode == 0, result.stderr.decode()
    assert [str(victim) for victim in planted.values() if not unchanged(victim)] == []
    for name in names:
        assert is_regular_file(layout / name), name
        if name.startswith("blobs/"):
            assert hashlib.sha256((layout / name).read_bytes()).hexdigest() == Path(name).name
    assert len(skopeo_inspect(layout, "1")["Layers"]) == 2


@pytest.mark.parametrize("where", ["index.json", "blobs", "blobs/sha256"])
def test_oci_dir_refuses_a_link_in_place_of_its_index_or_blob_directories(tmp_path, conf, where):
    layout, victims = tmp_path / "layout", tmp_path / "victims"
    layout.mkdir()
    if where == "index.json":
        victim = victims / "index.json"
        victims.mkdir()
        victim.write_text('{"schemaVersion":2,"manifests":[]}')
        (layout / "index.json").symlink_to(victim)
        before = victim.read_bytes()
    else:
        victim = victims / "elsewhere"
        victim.mkdir(parents=True)
        (layout / where).parent.mkdir(parents=True, exist_ok=True)
        (layout / where).symlink_to(victim)
    result = oci_dir(conf, layout, "safety:1")
    message = one_line_error(result)
    assert where in message and "link" in message
    if where == "index.json":
        assert victim.read_bytes() == before
    else:
        assert list(victim.iterdir()) == []


@pytest.mark.parametrize("umask", UMASKS, ids=oct)
def test_oci_dir_files_and_directories_honour_the_umask(tmp_path, conf, umask):
    layout = tmp_path / "layout"
    result = oci_dir(conf, layout, "safety:1", preexec_fn=with_umask(umask))
    assert result.returncode == 0, result.stderr.decode()
    modes = {str(p.relative_to(layout)): oct(mode(p)) for p in [layout, *layout.rglob("*")]}
    expected = {name: oct((0o777 if (layout / name).is_dir() else 0o666) & ~umask) for name in modes}
    assert modes == expected


def start_oci_dir_writer(conf: Path, layout: Path, tag: str) -> subprocess.Popen:
    command = ["stream", str(conf), "-q", "--format", "oci-dir", "-o", str(layout), "-t", tag]
    return subprocess.Popen([sys.executable, "-m", "layered_image", *command], stderr=subprocess.PIPE)


def test_concurrent_oci_dir_writers_keep_every_tag(tmp_path, conf):
    for round_ in range(10):
        layout = tmp_path / f"layout-{round_}"
        tags = [f"safety:{round_}a", f"safety:{round_}b"]
        writers = [start_oci_dir_writer(conf, layout, tag) for tag in tags]
        for writer in writers:
            _, stderr = writer.communicate(timeout=120)
            assert writer.returncode == 0, stderr.decode()
        assert sorted(index_names(layout)) == [f"docker.io/library/{tag}" for tag in tags], f"round {round_}"
        for tag in tags:
            assert len(skopeo_inspect(layout, tag.partition(":")[2])["Layers"]) == 2


def test_a_failed_oci_dir_write_leaves_the_layout_as_it_was(tmp_path, conf, fake_store):
    layout = tmp_path / "layout"
    assert oci_dir(conf, layout, "safety:1").returncode == 0
    before = {str(p): p.read_bytes() for p in layout.rglob("*") if p.is_file()}
    custom = tmp_path / "custom"
    custom.mkdir()
    subprocess.run(["tar", "-C", tmp_path, "-cf", custom / "layer.tar", "conf.json"], check=True)
    (custom / "checksum").write_text("0" * 64)
    paths = sorted(str(p) for p in fake_store.iterdir())
    bad = make_conf(tmp_path / "custom", [paths], store_dir=str(fake_store), customisation_layer=str(custom))
    assert "checksum" in one_line_error(oci_dir(bad, layout, "safety:2"))
    assert {str(p): p.read_bytes() for p in layout.rglob("*") if p.is_file()} == before
    assert [p.name for p in layout.iterdir() if p.name.startswith(".")] == []


# push: --digestfile and the cache of blob locations


def push(conf: Path, host: str, *extra: str, **kwargs) -> subprocess.CompletedProcess:
    return run_cli(
        "push", str(conf), f"docker://{host}/safety/image:1", "--tls-verify=false", *extra, **kwargs
    )


@pytest.mark.parametrize("umask", UMASKS, ids=oct)
def test_digestfile_replaces_a_planted_link_and_honours_the_umask(tmp_path, conf, registry, umask):
    digestfile = tmp_path / "out" / "digest"
    victim = plant_link(digestfile, tmp_path / "victims")
    result = push(conf, registry.host, "--digestfile", str(digestfile), preexec_fn=with_umask(umask))
    assert result.returncode == 0, result.stderr.decode()
    assert unchanged(victim)
    assert is_regular_file(digestfile) and digestfile.read_text().startswith("sha256:")
    assert oct(mode(digestfile)) == oct(0o666 & ~umask)


@pytest.mark.parametrize("umask", UMASKS, ids=oct)
def test_blob_location_cache_replaces_a_planted_link_and_honours_the_umask(
    tmp_path, conf, registry, blob_cache, umask
):
    victim = plant_link(blob_cache, tmp_path / "victims")
    result = push(conf, registry.host, preexec_fn=with_umask(umask))
    assert result.returncode == 0, result.stderr.decode()
    assert unchanged(victim)
    assert is_regular_file(blob_cache) and json.loads(blob_cache.read_text())
    assert oct(mode(blob_cache)) == oct(0o666 & ~umask)


# inside Nix builds: $out


def test_nix_build_executables_replace_a_planted_link_and_honour_the_umask(tmp_path):
    target = tmp_path / "out"
    victim = plant_link(target, tmp_path / "victims")
    previous = os.umask(0o027)
    try:
        nix_build.write_executable(target, "#!/bin/sh\n")
    finally:
        os.umask(previous)
    assert unchanged(victim)
    assert is_regular_file(target) and target.read_text() == "#!/bin/sh\n"
    assert oct(mode(target)) == oct(0o750)


def test_nix_build_customisation_layer_is_a_new_file(tmp_path):
    from layered_image.archive.tree_layer import write_tree_layer

    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "hello").write_text("hi")
    target = tmp_path / "layer.tar"
    victim = plant_link(target, tmp_path / "victims")
    write_tree_layer(root, target, 1)
    assert unchanged(victim)
    assert is_regular_file(target)
    with tarfile.open(fileobj=io.BytesIO(target.read_bytes())) as layer:
        assert "etc/hello" in layer.getnames()


# the one helper every output goes through


@pytest.mark.parametrize("failure", [RuntimeError, KeyboardInterrupt])
def test_a_write_that_fails_leaves_the_target_as_it_was_and_no_temporary_file(tmp_path, failure):
    from layered_image.files import replaced_file

    target = tmp_path / "output"
    target.write_bytes(b"the previous output")
    with pytest.raises(failure), replaced_file(target) as fd:
        os.write(fd, b"half of the new")
        raise failure()
    assert target.read_bytes() == b"the previous output"
    assert [p.name for p in tmp_path.iterdir()] == ["output"]
