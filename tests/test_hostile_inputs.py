"""Hostile values in confs, configs, names and base images (issue 21, item 6): each is
refused with one line naming it, exit 1, or handled so that the image is still what the
conf asks for; never a traceback, never an image Docker refuses after the whole stream."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest
from conftest import make_conf, run_cli
from test_hostile_base_images import Parts, base_parts  # noqa: F401 - a fixture used here

from layered_image.archive.image import canonical_json
from layered_image.conf import parse_conf
from layered_image.errors import UserError
from layered_image.registry.reference import parse_reference


def assert_one_line_error(result: subprocess.CompletedProcess, *expected: str) -> None:
    error = result.stderr.decode(errors="replace")
    assert result.returncode == 1, error
    assert error.count("\n") == 1 and "Traceback" not in error, error
    for text in expected:
        assert text in error, error


def store_paths(fake_store: Path) -> list[str]:
    return sorted(str(p) for p in fake_store.iterdir())


def stream_conf(
    tmp_path: Path, fake_store: Path, *flags: str, **overrides: Any
) -> subprocess.CompletedProcess:
    conf = make_conf(tmp_path, [store_paths(fake_store)[:1]], store_dir=str(fake_store), **overrides)
    return run_cli("stream", str(conf), "-q", "-o", str(tmp_path / "out.tar"), *flags)


# a. owner ids: Docker reads 2^32-1 as "no owner" (root); tar takes any decimal number


@pytest.mark.parametrize("key", ["uid", "gid"])
def test_the_largest_owner_id_is_taken_and_one_more_is_refused(tmp_path, fake_store, key):
    assert stream_conf(tmp_path, fake_store, **{key: 2**32 - 2}).returncode == 0
    assert_one_line_error(stream_conf(tmp_path, fake_store, **{key: 2**32 - 1}), key, "4294967295")


@pytest.mark.parametrize("key", ["uid", "gid"])
@pytest.mark.parametrize("value", [2**32, 10**30, "4294967295", "1_000", " 1", "\u0663", "+1"])
def test_an_owner_id_out_of_range_or_not_plain_digits_is_refused(tmp_path, fake_store, key, value):
    assert_one_line_error(stream_conf(tmp_path, fake_store, **{key: value}), key)


# b. NaN and Infinity: not JSON; Python reads and writes them unless told not to


def test_nan_in_a_base_images_history_is_refused_naming_it(tmp_path, fake_store, base_parts):  # noqa: F811
    parts = base_parts[0]
    parts.config["history"][0]["comment"] = float("nan")
    base = tmp_path / "base.tar"
    base.write_bytes(parts.build())
    result = stream_conf(tmp_path, fake_store, from_image=str(base))
    assert_one_line_error(result, f"from_image {base}", "history[0].comment", "NaN")


def test_infinity_in_a_base_images_manifest_is_refused_naming_it(tmp_path, fake_store, base_parts):  # noqa: F811
    parts = base_parts[0]
    parts.manifest[0]["Extra"] = float("inf")
    base = tmp_path / "base.tar"
    base.write_bytes(parts.build())
    result = stream_conf(tmp_path, fake_store, from_image=str(base))
    assert_one_line_error(result, "manifest.json", "[0].Extra", "Infinity")


def test_a_number_too_big_for_a_float_in_a_base_config_is_refused(tmp_path, fake_store, base_parts):  # noqa: F811
    parts = base_parts[0]
    parts.config["history"][0]["comment"] = "HUGE"
    members = [
        (name, data.replace(b'"HUGE"', b"1e400") if name == parts.config_name else data)
        for name, data in parts.members()  # type: ignore[misc]
    ]
    base = tmp_path / "base.tar"
    base.write_bytes(parts.build(members))
    result = stream_conf(tmp_path, fake_store, from_image=str(base))
    assert_one_line_error(result, "history[0].comment", "1e400")


def test_nan_anywhere_in_a_conf_is_refused_naming_it(tmp_path, fake_store):
    assert_one_line_error(stream_conf(tmp_path, fake_store, unused=[1, float("nan")]), "unused[1]", "NaN")


def test_nan_is_never_written():
    with pytest.raises(ValueError):
        canonical_json({"history": [{"comment": float("nan")}]})


# c. names and tags as Docker's reference grammar takes them (docker load checks them last)

REFUSED_NAMES = {
    "name of 256 characters as Docker reads it (docker.io/library/...)": "a" * 238 + ":t",
    "two components, 256 as Docker reads it": "x/" + "a" * 244 + ":t",
    "with a registry, 256 characters": "h.com/" + "a" * 250 + ":t",
    "non-ASCII tag": "a:t\u00e9",
    "non-ASCII digit tag": "a:\u0663",
    "host starting with -": "-x.com/a:t",
    "host ending with -": "x-.com/a:t",
    "upper case without a dot: not a host, so an upper-case path": "Foo/a:t",
}
TAKEN_NAMES = ["a" * 237 + ":t", "x/" + "a" * 243 + ":t", "h.com/" + "a" * 249 + ":t", "Host.com:5000/a:t"]


@pytest.mark.parametrize("case", list(REFUSED_NAMES))
def test_a_name_or_tag_docker_would_refuse_is_refused_in_a_conf_and_with_t(tmp_path, fake_store, case):
    name = REFUSED_NAMES[case]
    assert_one_line_error(stream_conf(tmp_path, fake_store, repo_tag=name), "repo_tag", "NAME:TAG")
    assert_one_line_error(stream_conf(tmp_path, fake_store, f"--tag={name}"), "NAME:TAG")
    with pytest.raises(UserError, match="NAME:TAG"):  # what `layered-image build` runs
        parse_conf({"repo_tag": name, "store_layers": []})


@pytest.mark.parametrize(
    "reference",
    [
        "docker://h.com/" + "a" * 250 + ":t",
        "docker://" + "a" * 246 + ":t",  # docker.io/library/ + 246 characters
        "docker://-x.com/a:t",
        "docker://x y.com/a:t",
        "docker://h\u00e9.com/a:t",
    ],
)
def test_a_push_reference_docker_would_refuse_is_refused(reference):
    with pytest.raises(UserError, match="bad repository name"):
        parse_reference(reference)


def test_every_boundary_name_taken_is_one_docker_loads(tmp_path, fake_store, docker_host):
    for name in TAKEN_NAMES:
        assert stream_conf(tmp_path, fake_store, repo_tag=name).returncode == 0
        loaded = subprocess.run(["docker", "load", "-i", str(tmp_path / "out.tar")], capture_output=True)
        assert loaded.returncode == 0, loaded.stderr
        subprocess.run(["docker", "rmi", name], capture_output=True, check=False)
    assert parse_reference("docker://h.com/" + "a" * 249 + ":t").repository == "a" * 249


# d. config patterns: `$` in Python's re matches before a final newline

REFUSED_CONFIGS = [
    ({"StopSignal": "SIGTERM\n"}, "config.StopSignal"),
    ({"StopSignal": "9\n"}, "config.StopSignal"),
    ({"ExposedPorts": {"80/tcp\n": {}}}, 'config.ExposedPorts["80/tcp\\n"]'),
    ({"ExposedPorts": {"80\n": {}}}, 'config.ExposedPorts["80\\n"]'),
    ({"WorkingDir": "/x\n"}, "config.WorkingDir"),
    ({"WorkingDir": "/x\u0000y"}, "config.WorkingDir"),
    ({"WorkingDir": "/x\ty"}, "config.WorkingDir"),
    ({"User": "root\n"}, "config.User"),
    ({"User": "1000\u0000"}, "config.User"),
    ({"Env": ["PA\nTH=/bin"]}, "config.Env[0]"),
    ({"Env": ["A=x\u0000y"]}, "config.Env[0]"),
    ({"Cmd": ["/bin/sh", "a\u0000b"]}, "config.Cmd[1]"),
    ({"Entrypoint": ["/init\u0000"]}, "config.Entrypoint[0]"),
]


@pytest.mark.parametrize(("config", "field"), REFUSED_CONFIGS)
def test_validate_config_refuses_a_trailing_newline_or_control_character(tmp_path, config, field):
    file = tmp_path / "config.json"
    file.write_text(json.dumps(config))
    result = run_cli("validate-config", str(file))
    error = result.stderr.decode()
    assert result.returncode == 1 and field in error and "Traceback" not in error, error


def test_newlines_where_they_make_sense_stay_allowed(tmp_path):
    file = tmp_path / "config.json"
    config = {
        "Env": ["CERT=line 1\nline 2\n"],
        "Cmd": ["/bin/sh", "-c", "echo a\necho b\n"],
        "WorkingDir": "/",
    }
    file.write_text(json.dumps(config | {"StopSignal": "SIGRTMIN+3\n"}))
    assert run_cli("validate-config", str(file)).returncode == 1  # the signal alone is wrong
    file.write_text(json.dumps(config))
    assert run_cli("validate-config", str(file)).returncode == 0


# e. a base image holding an entry named like one of our store paths


def add_layer(parts: Parts, members: list[tarfile.TarInfo | tuple[str, bytes]]) -> None:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                tar.addfile(member)
            else:
                info = tarfile.TarInfo(member[0])
                info.size = len(member[1])
                tar.addfile(info, io.BytesIO(member[1]))
    name = f"extra{len(parts.layers)}/layer.tar"
    parts.layers[name] = out.getvalue()
    parts.entry["Layers"].append(name)
    parts.config["rootfs"]["diff_ids"].append("sha256:" + hashlib.sha256(out.getvalue()).hexdigest())


def entry(name: str, kind: bytes = tarfile.DIRTYPE, target: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name.lstrip("/"))
    info.type, info.linkname, info.mode = kind, target, 0o555
    return info


def planted(kind: str, path: str) -> list[tarfile.TarInfo | tuple[str, bytes]]:
    """A base layer holding `path` as something else than the store's."""
    if kind == "a file":
        return [(path.lstrip("/"), b"planted")]
    if kind == "a symlink":
        return [entry(path, tarfile.SYMTYPE, "/etc")]
    if kind == "a directory with other files":
        return [entry(path), (path.lstrip("/") + "/libx.so", b"planted")]
    if kind == "the same directory and one file more":  # a file added to a real copy
        return [entry(path), (path.lstrip("/") + "/evil", b"planted")]
    raise AssertionError(kind)


def our_layer_names(archive: Path, base_layers: int) -> set[str]:
    """Every member name in the layers above the base's."""
    names = set()
    with tarfile.open(archive) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))[0]  # type: ignore[arg-type]
        for layer in manifest["Layers"][base_layers:]:
            with tarfile.open(fileobj=outer.extractfile(layer)) as inner:
                names |= {"/" + name.lstrip("/") for name in inner.getnames()}
    return names


@pytest.mark.parametrize(
    "kind", ["a file", "a symlink", "a directory with other files", "the same directory and one file more"]
)
def test_a_store_path_the_base_holds_differently_is_stored_again_with_a_warning(
    tmp_path,
    fake_store,
    base_parts,  # noqa: F811
    kind,
):
    parts = base_parts[0]  # the base holds the first store path (app) as the store has it
    app, lib = store_paths(fake_store)[:2]
    if kind == "the same directory and one file more":
        real = Parts(
            run_cli("stream", str(make_conf(tmp_path, [[lib]], store_dir=str(fake_store))), "-q").stdout
        )
        add_layer(parts, [])
        name = parts.entry["Layers"][-1]
        parts.layers[name] = real.layers[real.entry["Layers"][0]]
        parts.config["rootfs"]["diff_ids"][-1] = "sha256:" + hashlib.sha256(parts.layers[name]).hexdigest()
    add_layer(parts, planted(kind, lib))
    base = tmp_path / "base.tar"
    base.write_bytes(parts.build())
    conf = make_conf(tmp_path, [[app, lib]], store_dir=str(fake_store), from_image=str(base))
    result = run_cli("stream", str(conf), "-o", str(tmp_path / "out.tar"))
    error = result.stderr.decode()
    assert result.returncode == 0, error
    warnings = [line for line in error.splitlines() if "warning" in line]
    assert len(warnings) == 1 and lib in warnings[0] and app not in warnings[0], error
    ours = our_layer_names(tmp_path / "out.tar", len(parts.entry["Layers"]))
    assert lib + "/libx.so" in ours and app not in ours  # lib stored again above; app still held


def test_a_store_path_the_base_holds_as_the_store_has_it_stays_held(tmp_path, fake_store):
    """Hard links, a name that is not UTF-8, long names: the comparison takes them all."""
    lib = store_paths(fake_store)[1]
    base = tmp_path / "base.tar"
    made = run_cli("stream", str(make_conf(tmp_path, [[lib]], store_dir=str(fake_store))), "-q")
    base.write_bytes(made.stdout)
    conf = make_conf(tmp_path, [[lib]], store_dir=str(fake_store), from_image=str(base))
    result = run_cli("stream", str(conf), "-o", str(tmp_path / "out.tar"))
    assert result.returncode == 0 and "warning" not in result.stderr.decode(), result.stderr
    assert f"not stored again: {lib}" in result.stderr.decode()
    assert not any(name.startswith(lib) for name in our_layer_names(tmp_path / "out.tar", 1))


def test_a_base_layer_that_is_not_a_tar_is_one_line(tmp_path, fake_store, base_parts):  # noqa: F811
    parts = base_parts[0]
    name = parts.entry["Layers"][0]
    parts.layers[name] = b"not a tar" * 1000
    parts.config["rootfs"]["diff_ids"][0] = "sha256:" + hashlib.sha256(parts.layers[name]).hexdigest()
    base = tmp_path / "base.tar"
    base.write_bytes(parts.build())
    assert_one_line_error(stream_conf(tmp_path, fake_store, from_image=str(base)), "layer 1 is not a tar")


def test_a_store_path_the_base_deleted_again_is_stored(tmp_path, fake_store, base_parts):  # noqa: F811
    parts = base_parts[0]
    app = store_paths(fake_store)[0]
    add_layer(parts, [(os.path.dirname(app).lstrip("/") + "/.wh." + os.path.basename(app), b"")])
    base = tmp_path / "base.tar"
    base.write_bytes(parts.build())
    conf = make_conf(tmp_path, [[app]], store_dir=str(fake_store), from_image=str(base))
    result = run_cli("stream", str(conf), "-q", "-o", str(tmp_path / "out.tar"))
    assert result.returncode == 0, result.stderr
    assert app + "/bin/app" in our_layer_names(tmp_path / "out.tar", len(parts.entry["Layers"]))


# f. one line, never a traceback

TRACEBACKS = {
    "created before year 1 in UTC": ({"created": "0001-01-01T00:00:00+01:00"}, "created"),
    "created after year 9999 in UTC": ({"created": "9999-12-31T23:59:59-01:00"}, "created"),
    "mtime before year 1 in UTC": ({"mtime": "0001-01-01T00:00:00+01:00"}, "mtime"),
    "uid Infinity": ({"uid": float("inf")}, "uid"),
    "gid -Infinity": ({"gid": float("-inf")}, "gid"),
    "uname a lone surrogate": ({"uname": "\ud800"}, "uname"),
    "gname a lone surrogate": ({"gname": "\udcff"}, "gname"),
    "uname with a newline": ({"uname": "ro\not"}, "uname"),
    "from_image with NUL": ({"from_image": "/tmp/a\u0000b"}, "from_image"),
    "from_image a lone surrogate": ({"from_image": "/tmp/a\ud800"}, "from_image"),
    "config a list": ({"config": []}, "config"),
}


@pytest.mark.parametrize("case", list(TRACEBACKS))
def test_a_hostile_conf_value_is_one_line(tmp_path, fake_store, case):
    overrides, field = TRACEBACKS[case]
    assert_one_line_error(stream_conf(tmp_path, fake_store, **overrides), field)


def test_a_year_before_1000_is_written_with_four_digits(tmp_path, fake_store):
    assert stream_conf(tmp_path, fake_store, created="0999-01-01T00:00:00Z").returncode == 0
    with tarfile.open(tmp_path / "out.tar") as archive:
        manifest = json.load(archive.extractfile("manifest.json"))[0]  # type: ignore[arg-type]
        config = json.load(archive.extractfile(manifest["Config"]))  # type: ignore[arg-type]
    assert config["created"] == "0999-01-01T00:00:00Z"


def test_a_checksum_file_that_is_not_utf8_is_one_line(tmp_path, fake_store):
    layer = tmp_path / "customisation"
    layer.mkdir()
    with tarfile.open(layer / "layer.tar", "w"):
        pass
    (layer / "checksum").write_bytes(b"\xff\xfe" + b"0" * 62)
    result = stream_conf(tmp_path, fake_store, customisation_layer=str(layer))
    assert_one_line_error(result, "checksum")


@pytest.mark.parametrize("mtime", ["yesterday", "0001-01-01T00:00:00+01:00"])
def test_the_customisation_builder_reports_a_bad_mtime_in_one_line(tmp_path, mtime):
    attrs = tmp_path / ".attrs.json"
    attrs.write_text(
        json.dumps({"outputs": {"out": str(tmp_path / "out")}, "path": "/usr/bin", "mtime": mtime})
    )
    env = os.environ | {"NIX_ATTRS_JSON_FILE": str(attrs)}
    assert_one_line_error(run_cli("customise", cwd=tmp_path, env=env), "mtime")
