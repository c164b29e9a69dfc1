import contextlib
import gzip
import hashlib
import io
import itertools
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

import pytest
import zstandard
from conftest import make_conf, run_cli

from layered_image.archive.output import FileSpan, Output
from layered_image.archive.store_layer import Owner, StoreChangedError, plan_store_layer, stream_store_layer
from layered_image.progress import Progress


def layers_of(fake_store: Path) -> list[list[str]]:
    paths = sorted(str(p) for p in fake_store.iterdir())
    return [[paths[0]], paths[1:]]


def stream(conf: Path, *args: str, **kwargs) -> bytes:
    result = run_cli("stream", str(conf), "-q", *args, **kwargs)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout


def read_image(data: bytes) -> tuple[dict, dict, list[bytes]]:
    with tarfile.open(fileobj=io.BytesIO(data)) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))[0]
        config = json.load(outer.extractfile(manifest["Config"]))
        layers = [outer.extractfile(name).read() for name in manifest["Layers"]]
    return manifest, config, layers


def nixpkgs_style_layer(paths: list[str], store_dir: str) -> bytes:
    """A layer as nixpkgs' stream script builds it with tarfile: the oracle for our writer."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for directory in itertools.accumulate(store_dir.strip("/").split("/"), lambda a, b: f"{a}/{b}"):
            info = tarfile.TarInfo("/" + directory)
            info.type, info.mode, info.mtime, info.uname, info.gname = (
                tarfile.DIRTYPE,
                0o755,
                1,
                "root",
                "root",
            )
            tar.addfile(info)
        for path in map(pathlib.Path, paths):
            files = [path] if path.is_symlink() else itertools.chain([path], path.rglob("*"))
            for name in sorted(files):
                info = tar.gettarinfo(name)
                info.name = "/" + info.name
                if info.islnk():
                    info.type, info.linkname, info.size = tarfile.REGTYPE, "", name.stat().st_size
                info.mtime, info.uid, info.gid, info.uname, info.gname = 1, 0, 0, "root", "root"
                if info.isfile():
                    with open(name, "rb") as file:
                        tar.addfile(info, file)
                else:
                    tar.addfile(info)
    return out.getvalue()


def test_image_holds_the_store_paths_as_nixpkgs_lays_them_out(tmp_path, fake_store):
    layers = layers_of(fake_store)
    manifest, config, blobs = read_image(stream(make_conf(tmp_path, layers, store_dir=str(fake_store))))
    assert manifest["RepoTags"] == ["test-image:latest"]
    assert len(blobs) == 2
    for blob, paths, diff_id in zip(blobs, layers, config["rootfs"]["diff_ids"], strict=True):
        assert blob == nixpkgs_style_layer(paths, str(fake_store))
        assert diff_id == "sha256:" + hashlib.sha256(blob).hexdigest()
    with tarfile.open(fileobj=io.BytesIO(blobs[1]), encoding="utf-8", errors="surrogateescape") as tar:
        by_name = {m.name: m for m in tar.getmembers()}
    lib = f"{fake_store}/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-lib-2.0"
    assert by_name[f"{lib}/libx-hardlink.so"].isfile()  # a hard link becomes a regular file
    assert by_name[f"{lib}/libx-hardlink.so"].size == 300_000
    assert by_name[f"{lib}/link"].issym()
    assert all(m.mtime == 1 and m.uname == "root" for m in by_name.values())
    assert config["history"][1]["comment"] == "store paths: " + " ".join(layers[1])
    assert config["created"] == "1970-01-01T00:00:01Z" and config["os"] == "linux"


@pytest.fixture
def bulky_store(tmp_path: Path) -> Path:
    """Many small files (more 1 MiB batches than the reader keeps buffers for) and a big
    file spanning several mapped windows and ending mid-step."""
    store = tmp_path / "bulky"
    small = store / "dddddddddddddddddddddddddddddddd-many-1.0"
    small.mkdir(parents=True)
    for number in range(160):
        (small / f"part-{number:03}").write_bytes(os.urandom(150_000 + number))
    big = store / "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-big-1.0"
    big.write_bytes(os.urandom((20 << 20) + 12345))
    return store


def test_many_small_files_and_a_big_file_through_a_pipe(tmp_path, bulky_store):
    layers = [[str(p)] for p in sorted(bulky_store.iterdir())]
    _, config, blobs = read_image(stream(make_conf(tmp_path, layers, store_dir=str(bulky_store))))
    for blob, paths, diff_id in zip(blobs, layers, config["rootfs"]["diff_ids"], strict=True):
        assert blob == nixpkgs_style_layer(paths, str(bulky_store))
        assert diff_id == "sha256:" + hashlib.sha256(blob).hexdigest()


def test_a_consumer_keeping_every_chunk_gets_the_right_bytes(bulky_store):
    """Batch buffers are reused; one still held by its consumer must not be overwritten."""
    many = next(bulky_store.glob("*-many-*"))
    plan = plan_store_layer([str(many)], str(bulky_store), Owner())
    kept = list(stream_store_layer(plan))
    assert len(kept) > 20
    assert b"".join(bytes(chunk) for chunk in kept) == nixpkgs_style_layer([str(many)], str(bulky_store))


def test_output_is_byte_identical_across_runs_umask_tz_locale_and_disk_metadata(tmp_path, fake_store):
    conf = make_conf(tmp_path, layers_of(fake_store), store_dir=str(fake_store))
    first = stream(conf)
    for path in fake_store.rglob("*"):
        if not path.is_symlink():
            os.utime(path, (12345, 12345))
    env = os.environ | {"TZ": "Asia/Kathmandu", "LC_ALL": "C", "LANG": "C"}
    second = stream(conf, env=env, preexec_fn=lambda: os.umask(0o077))
    assert first == second


def test_an_optimised_store_gives_the_same_image(tmp_path, fake_store):
    conf = make_conf(tmp_path, layers_of(fake_store), store_dir=str(fake_store))
    first = stream(conf)
    lib = fake_store / "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-lib-2.0"
    copy = lib / "libx-hardlink.so"
    data = copy.read_bytes()
    copy.unlink()
    copy.write_bytes(data)  # no longer a hard link
    copy.chmod(0o444)
    assert stream(conf) == first


@pytest.mark.parametrize("change", ["grow", "vanish", "into-directory"])
def test_a_store_file_that_changes_after_planning_stops_the_stream(fake_store, change):
    path = fake_store / "cccccccccccccccccccccccccccccccc-file"
    plan = plan_store_layer([str(path)], str(fake_store), Owner())
    path.chmod(0o644)
    path.unlink()
    if change == "grow":
        path.write_text("a store path that is a file, and more")
    elif change == "into-directory":
        path.mkdir()
    with pytest.raises(StoreChangedError, match=str(path)):
        b"".join(stream_store_layer(plan))


def write_plan(plan, target: Path) -> None:
    """A planned layer through the real writer (thread, hashing, checks) into a file."""
    with open(target, "wb") as file, Output(file.fileno(), Progress(None, quiet=True)) as out:
        for chunk in stream_store_layer(plan):
            out.write(chunk)
        out.finish()


@pytest.mark.parametrize("change", ["shrink", "grow", "vanish", "into-directory", "into-symlink"])
def test_a_big_store_file_that_changes_after_planning_stops_the_stream(tmp_path, fake_store, change):
    path = fake_store / "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-lib-2.0" / "libx.so"  # big: handed over open
    plan = plan_store_layer([str(path.parent)], str(fake_store), Owner())
    data = path.read_bytes()
    path.unlink()
    if change in ("shrink", "grow"):
        path.write_bytes(data[:-1] if change == "shrink" else data + b"!")
    elif change == "into-directory":
        path.mkdir()
    elif change == "into-symlink":
        path.symlink_to("/etc/hostname")
    with pytest.raises(StoreChangedError, match=str(path)):
        write_plan(plan, tmp_path / "layer.tar")


@pytest.mark.parametrize("hashing", [False, True], ids=["copied", "hashed"])
@pytest.mark.parametrize("to_pipe", [False, True], ids=["to-file", "to-pipe"])
def test_a_big_store_file_that_shrinks_while_read_stops_the_stream(tmp_path, fake_store, hashing, to_pipe):
    """Whichever way its bytes go (hashed through a mapping, spliced, read and written)."""
    path = fake_store / "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-lib-2.0" / "libx.so"
    fd = os.open(path, os.O_RDONLY)
    span = FileSpan(fd, path.stat().st_size + 4096, str(path))  # as if cut after it was opened
    with contextlib.ExitStack() as stack:
        if to_pipe:
            reader, target = os.pipe()
            drain = threading.Thread(target=lambda: all(iter(lambda: os.read(reader, 1 << 16), b"")))
            drain.start()
            stack.callback(os.close, reader)
            stack.callback(drain.join)
            stack.callback(os.close, target)
        else:
            target = stack.enter_context(open(tmp_path / "out", "wb")).fileno()
        stack.enter_context(pytest.raises(StoreChangedError, match=f"{path} shrank"))
        out = stack.enter_context(Output(target, Progress(None, quiet=True)))
        if hashing:
            out.start_hash()
        out.write(span)
        out.finish()


def test_a_big_store_file_read_in_pieces_gives_its_bytes_and_stops_where_it_shrank(fake_store):
    """The way compressed layers read a file: pieces of one buffer, copied as they come."""
    path = fake_store / "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-lib-2.0" / "libx.so"
    size = path.stat().st_size
    whole = FileSpan(os.open(path, os.O_RDONLY), size, str(path))
    assert b"".join(bytes(piece) for piece in whole.blocks(size=4096)) == path.read_bytes()
    cut = FileSpan(os.open(path, os.O_RDONLY), size + 1, str(path))  # as if cut after it was opened
    with pytest.raises(StoreChangedError, match=f"{path} shrank"):
        for _ in cut.blocks(size=4096):
            pass
    with pytest.raises(OSError):  # closed all the same
        os.fstat(cut.fd)


def test_reader_going_away_is_one_line_and_non_zero(tmp_path, fake_store):
    big = fake_store / "dddddddddddddddddddddddddddddddd-big"
    big.write_bytes(os.urandom(6 << 20))
    conf = make_conf(tmp_path, [[str(big)]], store_dir=str(fake_store))
    command = f"{sys.executable} -m layered_image stream {conf} | head -c 1000 > /dev/null"
    result = subprocess.run(["bash", "-o", "pipefail", "-c", command], capture_output=True, check=False)
    assert result.returncode != 0
    lines = result.stderr.decode().splitlines()
    assert "Traceback" not in result.stderr.decode()
    assert [line for line in lines if "error" in line] == [lines[-1]]
    assert "broken pipe" in lines[-1]


def test_output_file_is_written_whole_or_not_at_all(tmp_path, fake_store):
    target = tmp_path / "image.tar"
    conf = make_conf(tmp_path, layers_of(fake_store), store_dir=str(fake_store))
    assert run_cli("stream", str(conf), "-q", "-o", str(target)).returncode == 0
    good = target.read_bytes()
    bad = make_conf(tmp_path, [[str(fake_store / "missing-path")]], store_dir=str(fake_store))
    result = run_cli("stream", str(bad), "-q", "-o", str(target))
    assert result.returncode == 1 and b"Traceback" not in result.stderr
    assert target.read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".image")) == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"config": {"Cmd": "sh"}}, "config.Cmd"),
        ({"repo_tag": "Bad Tag"}, "repo_tag"),
        ({"created": "yesterday"}, "created"),
        ({"architecture": "x86_64"}, "did you mean amd64"),
        ({"store_layers": "x"}, "store_layers"),
        ({"store_layers": [["/etc/passwd"]]}, "is not a path in"),
        ({"uid": "root"}, "uid"),
    ],
)
def test_bad_confs_are_refused_before_any_output(tmp_path, change, message):
    conf = make_conf(tmp_path, change.pop("store_layers", []), **change)
    result = run_cli("stream", str(conf))
    assert result.returncode == 1
    assert result.stdout == b""
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and message in lines[0], lines


def test_created_now_and_tag_override(tmp_path, fake_store):
    conf = make_conf(tmp_path, layers_of(fake_store), store_dir=str(fake_store), created="now", mtime="now")
    manifest, config, blobs = read_image(stream(conf, "-t", "other/name:v2"))
    assert manifest["RepoTags"] == ["other/name:v2"]
    assert config["created"] > "2026"
    with tarfile.open(fileobj=io.BytesIO(blobs[0])) as tar:
        assert tar.getmembers()[0].mtime > 1_700_000_000


def test_customisation_layer_is_appended_and_checked(tmp_path, fake_store):
    custom = tmp_path / "custom"
    (custom / "root" / "etc").mkdir(parents=True)
    (custom / "root" / "etc" / "hello").write_text("hi")
    subprocess.run(["tar", "-C", custom / "root", "-cf", custom / "layer.tar", "."], check=True)
    digest = hashlib.sha256((custom / "layer.tar").read_bytes()).hexdigest()
    (custom / "checksum").write_text(digest)
    conf = make_conf(
        tmp_path, layers_of(fake_store), store_dir=str(fake_store), customisation_layer=str(custom)
    )
    _, config, blobs = read_image(stream(conf))
    assert config["rootfs"]["diff_ids"][-1] == f"sha256:{digest}"
    assert blobs[-1] == (custom / "layer.tar").read_bytes()
    (custom / "checksum").write_text("0" * 64)
    result = run_cli("stream", str(conf), "-q", "-o", str(tmp_path / "x.tar"))
    assert result.returncode == 1 and b"checksum" in result.stderr
    assert not (tmp_path / "x.tar").exists()


@pytest.mark.parametrize("compress", [None, "gzip", "zstd"])
def test_from_image_layers_go_below_and_config_is_inherited(tmp_path, fake_store, compress):
    paths = sorted(str(p) for p in fake_store.iterdir())
    base_config = {"Env": ["PATH=/base/bin", "KEEP=1"], "Cmd": ["/base"], "WorkingDir": "/base", "User": "1"}
    base_conf = make_conf(tmp_path, [[paths[0]]], store_dir=str(fake_store), config=base_config)
    base = tmp_path / "base.tar"
    data = stream(base_conf)
    compressors = {None: bytes, "gzip": gzip.compress, "zstd": zstandard.compress}
    base.write_bytes(compressors[compress](data))
    _, base_image, base_blobs = read_image(data)
    conf = make_conf(
        tmp_path,
        [paths[1:]],
        store_dir=str(fake_store),
        from_image=str(base),
        config={"Env": ["PATH=/new/bin", "NEW=2"], "Entrypoint": ["/new"]},
    )
    _, config, blobs = read_image(stream(conf))
    assert blobs[0] == base_blobs[0]
    assert config["rootfs"]["diff_ids"][0] == base_image["rootfs"]["diff_ids"][0]
    assert len(config["history"]) == 2
    assert config["config"] == {
        "Env": ["PATH=/new/bin", "KEEP=1", "NEW=2"],
        "Cmd": ["/base"],
        "WorkingDir": "/base",
        "User": "1",
        "Entrypoint": ["/new"],
    }


def test_corrupt_base_image_is_refused_before_output(tmp_path, fake_store):
    paths = sorted(str(p) for p in fake_store.iterdir())
    data = bytearray(stream(make_conf(tmp_path, [[paths[0]]], store_dir=str(fake_store))))
    data[3000] ^= 0xFF  # inside the first layer's contents
    base = tmp_path / "base.tar"
    base.write_bytes(bytes(data))
    conf = make_conf(tmp_path, [paths[1:]], store_dir=str(fake_store), from_image=str(base))
    result = run_cli("stream", str(conf))
    assert result.returncode == 1 and result.stdout == b""
    assert b"does not hash to its diff_id" in result.stderr


def test_progress_lines_when_not_a_terminal(tmp_path, fake_store):
    conf = make_conf(tmp_path, layers_of(fake_store), store_dir=str(fake_store))
    result = run_cli("stream", str(conf), "-o", str(tmp_path / "x.tar"))
    text = result.stderr.decode()
    assert "layer 1/2" in text and "layer 2/2" in text and "wrote" in text
    assert shutil.which("tar") and result.returncode == 0


def other_pythons() -> list[str]:
    found = []
    for version in ("3.12", "3.13"):
        candidates = [shutil.which(f"python{version}")]
        candidates += sorted(str(p) for p in Path.home().glob(f".pyenv/versions/{version}.*/bin/python"))
        usable = [c for c in candidates if c and _has_dependencies(c)]
        if usable:
            found.append(usable[-1])
    return found


def _has_dependencies(python: str) -> bool:
    check = [python, "-c", "import networkx, jsonschema"]
    return subprocess.run(check, capture_output=True, check=False).returncode == 0


def test_same_bytes_under_every_python_version(tmp_path, fake_store):
    pythons = other_pythons()
    if not pythons:
        pytest.skip("no Python 3.12/3.13 with networkx and jsonschema on this machine")
    conf = make_conf(tmp_path, layers_of(fake_store), store_dir=str(fake_store))
    expected = stream(conf)
    source = str(Path(__file__).parent.parent)
    environments = [{}, {"TZ": "Pacific/Chatham", "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0"}]
    for python, environment in itertools.product(pythons, environments):
        result = subprocess.run(
            [python, "-m", "layered_image", "stream", str(conf), "-q"],
            capture_output=True,
            check=False,
            env=os.environ | {"PYTHONPATH": source} | environment,
            preexec_fn=lambda: os.umask(0o077),
        )
        assert result.returncode == 0, result.stderr.decode()
        assert result.stdout == expected, (python, environment)


@pytest.mark.parametrize(("signal_number", "status"), [(2, 130), (15, 143)])
def test_interrupt_and_terminate_stop_cleanly(tmp_path, fake_store, signal_number, status):
    big = fake_store / "dddddddddddddddddddddddddddddddd-big"
    big.write_bytes(os.urandom(8 << 20))
    conf = make_conf(tmp_path, [[str(big)]], store_dir=str(fake_store))
    # Nobody reads the pipe: the stream blocks once it is full, then gets the signal. (Run as
    # a shell's background job, the suite has SIGINT ignored, and Python keeps it so: a
    # user's Ctrl-C reaches a foreground process, which this one stands for.)
    process = subprocess.Popen(
        [sys.executable, "-m", "layered_image", "stream", str(conf), "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    time.sleep(2)
    process.send_signal(signal_number)
    _, stderr = process.communicate(timeout=20)
    assert process.returncode == status
    assert b"Traceback" not in stderr and stderr.decode().count("\n") == 1


@pytest.mark.parametrize(
    ("target", "message"), [("missing-dir/image.tar", "there is no directory"), ("/dev/full", "No space")]
)
def test_unwritable_output_is_one_line(tmp_path, fake_store, target, message):
    """A path that cannot be opened is said before any progress (so without -q); a full
    disk only once the bytes go."""
    conf = make_conf(tmp_path, layers_of(fake_store), store_dir=str(fake_store))
    quiet = ["-q"] if target == "/dev/full" else []
    result = run_cli(
        "stream", str(conf), *quiet, "-o", str(tmp_path / target) if target[0] != "/" else target
    )
    assert result.returncode == 1 and b"Traceback" not in result.stderr
    assert result.stderr.decode().count("\n") == 1 and message in result.stderr.decode()


def docker25_layout(classic: bytes) -> bytes:
    """The same image as Docker 25+ saves it: an OCI layout (blobs/sha256, index.json,
    oci-layout) plus a manifest.json whose paths point into blobs/."""
    manifest, config, layers = read_image(classic)
    config_bytes = json.dumps(config).encode()
    blobs = {hashlib.sha256(b).hexdigest(): b for b in [config_bytes, *layers]}
    names = [f"blobs/sha256/{hashlib.sha256(b).hexdigest()}" for b in layers]
    docker_manifest = [{"Config": f"blobs/sha256/{hashlib.sha256(config_bytes).hexdigest()}",
                        "RepoTags": manifest["RepoTags"], "Layers": names}]  # fmt: skip
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        files = {
            "oci-layout": b'{"imageLayoutVersion":"1.0.0"}',
            "index.json": b'{"schemaVersion":2,"manifests":[]}',
        }
        files |= {f"blobs/sha256/{digest}": blob for digest, blob in blobs.items()}
        files["manifest.json"] = json.dumps(docker_manifest).encode()
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_from_image_in_docker_25_layout(tmp_path, fake_store):
    paths = sorted(str(p) for p in fake_store.iterdir())
    base_conf = make_conf(tmp_path, [[paths[0]]], store_dir=str(fake_store), config={"Env": ["A=1"]})
    base = tmp_path / "base.tar"
    base.write_bytes(docker25_layout(stream(base_conf)))
    conf = make_conf(tmp_path, [paths[1:]], store_dir=str(fake_store), from_image=str(base))
    _, config, blobs = read_image(stream(conf))
    assert len(blobs) == 2 and config["config"]["Env"] == ["A=1"]


def test_multi_image_base_needs_a_tag(tmp_path, fake_store):
    paths = sorted(str(p) for p in fake_store.iterdir())
    images = [
        stream(make_conf(tmp_path, [[paths[0]]], store_dir=str(fake_store), repo_tag=tag))
        for tag in ("one:1", "two:2")
    ]
    base = tmp_path / "multi.tar"
    manifest = []
    with tarfile.open(base, "w") as tar:

        def add(name: str, data: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))

        for index, data in enumerate(images):
            entry, config, layers = read_image(data)
            names = [f"image{index}/{n}.tar" for n in range(len(layers))]
            for name, blob in zip(names, layers, strict=True):
                add(name, blob)
            add(f"image{index}.json", json.dumps(config).encode())
            manifest.append({"Config": f"image{index}.json", "RepoTags": entry["RepoTags"], "Layers": names})
        add("manifest.json", json.dumps(manifest).encode())
    conf = make_conf(tmp_path, [paths[1:]], store_dir=str(fake_store), from_image=str(base))
    result = run_cli("stream", str(conf), "-q")
    assert result.returncode == 1 and b"name one of: one:1, two:2" in result.stderr
    conf = make_conf(
        tmp_path, [paths[1:]], store_dir=str(fake_store), from_image=str(base), from_image_tag="two:2"
    )
    assert run_cli("stream", str(conf), "-q", "-o", str(tmp_path / "x.tar")).returncode == 0


def test_store_paths_already_in_the_base_are_not_stored_again(tmp_path, fake_store):
    paths = sorted(str(p) for p in fake_store.iterdir())
    base = tmp_path / "base.tar"
    base.write_bytes(stream(make_conf(tmp_path, [[paths[0]]], store_dir=str(fake_store))))
    conf = make_conf(tmp_path, [[paths[0]], paths[1:]], store_dir=str(fake_store), from_image=str(base))
    _, _, blobs = read_image(stream(conf))
    assert len(blobs) == 2  # the base layer, then only the paths the base lacks
    with tarfile.open(fileobj=io.BytesIO(blobs[1])) as tar:
        names = tar.getnames()
    assert not any(name.startswith(paths[0]) for name in names)
    assert any(name.startswith(paths[1]) for name in names)


def test_an_error_found_while_planning_is_one_line(tmp_path, fake_store):
    """Planning runs in a second process: its errors still reach the user as one line."""
    layers = layers_of(fake_store)
    odd = fake_store / "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-odd"
    odd.mkdir()
    os.mkfifo(odd / "pipe")
    conf = make_conf(tmp_path, [*layers, [str(odd)]], store_dir=str(fake_store))
    result = run_cli("stream", str(conf), "-q", "-o", str(tmp_path / "out.tar"))
    error = result.stderr.decode()
    assert result.returncode == 1 and error.count("\n") == 1, error
    assert f"{odd}/pipe: not a file, directory or symlink" in error
    assert not (tmp_path / "out.tar").exists()
