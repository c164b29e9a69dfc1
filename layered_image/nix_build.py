"""`layered-image build`: the builder of the Nix functions' derivation.

Reads the derivation's structured attributes (`.attrs.json`: the arguments of
streamLayeredImage and the closure from exportReferencesGraph), checks them, computes
the layers, and writes `$out`: the stream script, an executable that streams the image
with the store's Python, this package and the conf it embeds. Every store path the conf
names appears in the script's text, so Nix's reference scanning keeps them alive.
"""

from __future__ import annotations

import argparse
import gzip
import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
from contextlib import ExitStack, closing
from pathlib import Path
from typing import Any

from layered_image import strict_json
from layered_image.archive.base_image import held_by_base_note, open_base_image
from layered_image.archive.held_paths import differing_note
from layered_image.archive.layer_source import sha256_file
from layered_image.archive.tree_layer import write_tree_layer
from layered_image.conf import CONF_VERSION, now, parse_conf, parse_time
from layered_image.config import validate_config, validate_timestamp
from layered_image.errors import UserError
from layered_image.files import replaced_file, write_file
from layered_image.graph import build_graph
from layered_image.layering import compute_layers
from layered_image.layering.pipeline import load_pipeline
from layered_image.platform import validate_platform

DOCKER_MAX_LAYERS = 125


def build_command(args: argparse.Namespace) -> int:
    attrs = read_attrs()
    problems = check_arguments(attrs)
    if problems:
        for line in problems:
            print(line, file=sys.stderr)
        raise UserError(f"image {attrs.get('imageName')}: {len(problems)} problem(s) in its arguments")
    out = Path(attrs["outputs"]["out"])
    conf = image_conf(attrs, out)
    parse_conf(conf, source=f"image {conf['repo_tag']!r}")  # what every run would refuse fails the build
    write_executable(out, stream_script(attrs["python"], attrs["source"], conf))
    if "conf" in attrs["outputs"]:  # passthru.conf: the conf, for `layered-image stream` or inspection
        write_file(Path(attrs["outputs"]["conf"]), strict_json.dumps(conf, indent=1).encode())
    print(f"{conf['repo_tag']}: {len(conf['store_layers'])} store layers", file=sys.stderr)
    if attrs.get("debug"):
        for number, paths in enumerate(conf["store_layers"], start=1):
            print(f"layer {number}: {' '.join(paths)}", file=sys.stderr)
    return 0


def attrs_file() -> str:
    """Where Nix put `.attrs.json`. Nix before 2.9 (NixOS/nix#6736) sets NIX_ATTRS_JSON_FILE
    to the host's path of the build directory, which a sandboxed build does not see; the
    file is then in NIX_BUILD_TOP, the build directory as the sandbox shows it."""
    named = os.environ.get("NIX_ATTRS_JSON_FILE")
    if named and os.path.exists(named):
        return named
    return os.path.join(os.environ.get("NIX_BUILD_TOP", "."), ".attrs.json")


def read_attrs() -> dict[str, Any]:
    file = attrs_file()
    try:
        with open(file) as handle:
            return strict_json.loads(handle.read())
    except (OSError, ValueError) as err:
        raise UserError(
            f"cannot read the derivation's attributes ({file}): {err}; run inside a Nix build"
        ) from None


def check_arguments(attrs: dict[str, Any]) -> list[str]:
    problems = validate_config(attrs.get("config") or None)
    architecture = attrs.get("architecture") or "amd64"
    problems += validate_platform(architecture, attrs.get("variant"))
    problems += validate_timestamp("created", attrs.get("created"))
    problems += validate_timestamp("mtime", attrs.get("mtime"))
    max_layers = attrs.get("maxLayers")
    if not isinstance(max_layers, int) or not 2 <= max_layers <= DOCKER_MAX_LAYERS:
        problems.append(
            f"maxLayers: {max_layers!r} is out of range; it counts every layer, the customisation layer"
            f" included, so it must be at least 2, and Docker refuses images of more than {DOCKER_MAX_LAYERS}"
        )
    return problems


def image_conf(attrs: dict[str, Any], out: Path) -> dict[str, Any]:
    store_dir = os.path.dirname(attrs["configFile"])
    with ExitStack() as resources:
        base = None
        if attrs.get("fromImage"):  # fromImageNameTag: which image of an archive holding several
            base = open_base_image(Path(attrs["fromImage"]), attrs.get("fromImageNameTag"), resources)
        base_layers = len(base.layers) if base else 0
        store_layers = image_store_layers(attrs, base_layers)
        if base_layers + len(store_layers) + 1 > DOCKER_MAX_LAYERS:  # a pipeline has no budget
            raise UserError(
                f"{len(store_layers)} store layers, {base_layers} base layers and the customisation layer"
                f" are more than Docker's {DOCKER_MAX_LAYERS}; end layeringPipeline with limit_layers"
            )
        if base:  # nixpkgs' layers would hold these again; name them in the build log
            found = base.without_paths_it_holds(store_layers, store_dir)
            if found.held:
                print(held_by_base_note(found.held), file=sys.stderr)
            if found.differing:
                print(differing_note(found.differing, f"fromImage {attrs['fromImage']}"), file=sys.stderr)
    tag = attrs.get("imageTag") or out.name[:32]
    return {
        "version": CONF_VERSION,
        "config": attrs.get("config") or None,
        "architecture": attrs.get("architecture") or "amd64",
        "variant": attrs.get("variant") or None,
        "store_dir": store_dir,
        "from_image": attrs.get("fromImage"),
        "from_image_tag": attrs.get("fromImageNameTag"),
        "store_layers": store_layers,
        "customisation_layer": attrs["customisation"],
        "repo_tag": f"{attrs['imageName']}:{tag}",
        "created": attrs.get("created"),
        "mtime": attrs.get("mtime"),
        "uid": attrs.get("uid", 0),
        "gid": attrs.get("gid", 0),
        "uname": attrs.get("uname", "root"),
        "gname": attrs.get("gname", "root"),
    }


def image_store_layers(attrs: dict[str, Any], base_layers: int) -> list[list[str]]:
    if not attrs.get("includeStorePaths", True):
        return []
    graph = build_graph(attrs["closure"])
    helpers = [attrs["configFile"], attrs["customisation"]]  # in the closure, not in the image
    pipeline = attrs.get("layeringPipeline")
    if pipeline is not None:  # as nixpkgs: the pipeline alone decides, maxLayers unused
        pipeline = load_pipeline(pipeline) if isinstance(pipeline, str) else pipeline
        return compute_layers(graph, exclude=helpers, pipeline=pipeline)
    budget = attrs["maxLayers"] - 1 - base_layers  # 1: the customisation layer
    if budget < 1:
        raise UserError(
            f"maxLayers {attrs['maxLayers']} leaves no room for store layers above fromImage's layers;"
            " raise maxLayers or flatten the base image"
        )
    return compute_layers(graph, attrs.get("layering", "popularity"), budget, helpers)


def contents_links(contents: list[str]) -> dict[str, str]:
    """`contents` merged into `/` as symlinkJoin would: directories become directories,
    everything else a symlink to the store; the first path to claim a name keeps it."""
    links: dict[str, str] = {}
    directories: set[str] = set()
    for content in contents:
        for root, dirs, files in os.walk(content):
            relative = os.path.relpath(root, content)
            base = "" if relative == "." else "/" + relative
            for name in sorted(dirs):
                path = os.path.join(root, name)
                if os.path.islink(path):
                    links.setdefault(f"{base}/{name}", path)
                else:
                    directories.add(f"{base}/{name}")
            dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(root, d))]
            for name in sorted(files):
                links.setdefault(f"{base}/{name}", os.path.join(root, name))
    return {path: target for path, target in sorted(links.items()) if path not in directories}


def stream_script(python: str, source: str, conf: dict[str, Any]) -> str:
    """The executable `$out`: `./result | docker load`, or `./result -o image.tar`."""
    return f"""#!{python}/bin/python3
# Streams the docker-archive of the image CONF describes to stdout. Made by layered-image.
# (No value of the user's is written here but inside CONF's quoted JSON.)
# usage: {{this script}} [-o FILE] [-t NAME:TAG] [-q]
import sys

sys.path.insert(0, {source!r})
from layered_image.errors import exit_promptly
from layered_image.stream import stream_script_main

CONF = {strict_json.dumps(conf, indent=1)!r}
exit_promptly(stream_script_main(CONF, sys.argv[1:]))
"""


def write_attr_command(args: argparse.Namespace) -> int:
    """`$out` = the JSON of one structured attribute (the image config's store file)."""
    attrs = read_attrs()
    text = strict_json.dumps(attrs.get(args.name), sort_keys=True)
    write_file(Path(attrs["outputs"]["out"]), text.encode())
    return 0


def write_launcher_command(args: argparse.Namespace) -> int:
    """`$out/bin/layered-image`: the command line, for `packages.default`."""
    attrs = read_attrs()
    launcher = Path(attrs["outputs"]["out"]) / "bin" / "layered-image"
    launcher.parent.mkdir(parents=True)
    write_executable(
        launcher,
        f"#!{attrs['python']}/bin/python3\nimport sys\n\nsys.path.insert(0, {attrs['source']!r})\n"
        "from layered_image.cli import run\n\nrun()\n",  # run: exits without waiting for upload threads
    )
    return 0


def write_push_launcher_command(args: argparse.Namespace) -> int:
    """`$out/bin/push-NAME`: `nix run .#image.push -- docker://...` runs `./result push`."""
    attrs = read_attrs()
    launcher = Path(attrs["outputs"]["out"]) / "bin" / attrs["program"]
    launcher.parent.mkdir(parents=True)
    write_executable(launcher, f'#!{attrs["shell"]}\nexec {shlex.quote(attrs["streamScript"])} push "$@"\n')
    return 0


def write_executable(path: Path, text: str) -> None:
    """Mode 0777 less the umask; Nix then makes it 0555 in the store."""
    write_file(path, text.encode(), executable=True)


def write_image_command(args: argparse.Namespace) -> int:
    """buildLayeredImage: run the stream script into `$out`, compressed as asked."""
    attrs = read_attrs()
    out = Path(attrs["outputs"]["out"])
    compressor = attrs.get("compressor")
    if compressor not in ("gz", "zstd", "none"):
        raise UserError(f'compressor: {compressor!r} is not one of "gz", "zstd", "none"')
    plain = Path("image.tar").absolute()
    subprocess.run([attrs["streamScript"], "-q", "-o", str(plain)], check=True)
    if compressor == "none":
        shutil.move(plain, out)
    elif compressor == "gz":  # no file name, no mtime: the same bytes every time
        with (
            open(plain, "rb") as source,
            replaced_file(out) as fd,
            os.fdopen(fd, "wb", closefd=False) as target,
            gzip.GzipFile(filename="", mode="wb", compresslevel=6, fileobj=target, mtime=0) as packed,
        ):
            shutil.copyfileobj(source, packed, 1 << 20)
    else:
        zstd = [f"{attrs['zstd']}/bin/zstd", "-q", "-T1", "-3", "-c", str(plain)]
        with replaced_file(out) as fd:
            subprocess.run(zstd, stdout=fd, check=True)
    return 0


def customise_command(args: argparse.Namespace) -> int:
    """The customisation layer (runs under fakeroot): `contents` linked into a root,
    extraCommands run in it, fakeRootCommands too (inside it with enableFakechroot),
    then the tree as `$out/layer.tar` with the owners fakeroot recorded, and its checksum."""
    attrs = read_attrs()
    if problems := validate_timestamp("mtime", attrs.get("mtime")):
        raise UserError(problems[0])
    out = Path(attrs["outputs"]["out"])
    out.mkdir()
    root = Path("root").absolute()
    root.mkdir()
    link_contents(root, contents_links(attrs.get("contentPaths") or []))
    scratch = Path("tmp").absolute()  # TMPDIR, outside the image root
    scratch.mkdir()
    # fakeroot works through LD_PRELOAD and FAKEROOTKEY: keep the environment, set PATH
    env = os.environ | {
        "PATH": attrs["path"],
        "HOME": "/homeless-shelter",
        "out": str(out),
        "TMPDIR": str(scratch),
    }
    mtime = int((now() if attrs.get("mtime") == "now" else parse_time(attrs["mtime"])).timestamp())
    if attrs.get("includeNixDB"):  # before the commands, as nixpkgs does: they may use the database
        register_paths(attrs, root, outside_fakeroot(env), mtime)
    for commands, chroot in ((attrs.get("extraCommands"), False), (attrs.get("fakeRootCommands"), True)):
        if commands:
            run_commands(attrs, commands, root, env, chroot and attrs.get("enableFakechroot", False))
    write_tree_layer(root, out / "layer.tar", mtime)
    write_file(out / "checksum", sha256_file(out / "layer.tar").encode())
    return 0


def link_contents(root: Path, links: dict[str, str]) -> None:
    for path, target in links.items():
        place = root / path.lstrip("/")
        place.parent.mkdir(parents=True, exist_ok=True)
        place.symlink_to(target)


def outside_fakeroot(env: dict[str, str]) -> dict[str, str]:
    """The environment without fakeroot's preload: what runs with it is not root (files it
    makes are the build user's, which fakeroot then shows as root's) and needs no faking."""
    return {name: value for name, value in env.items() if name not in ("LD_PRELOAD", "FAKEROOTKEY")}


def run_commands(attrs: dict[str, Any], commands: str, root: Path, env: dict[str, str], chroot: bool) -> None:
    shell = [attrs["shell"], "-e", "-c", commands]
    if chroot:
        # The image root as /, with the store, /dev, /proc, /sys and TMPDIR bound into it (as
        # nixpkgs does); proot makes the mount points up, so none of them lands in the layer.
        # A sandbox has no /sys.
        binds = ["/dev", "/proc", "/sys", attrs.get("storeDir") or "/nix/store", env["TMPDIR"]]
        present = [f"--bind={path}" for path in binds if os.path.exists(path)]
        shell = [attrs["proot"], "-r", str(root), *present, "-w", "/", *shell]
    result = subprocess.run(shell, cwd=root, env=env, check=False)
    if result.returncode != 0:
        raise UserError(f"the image's commands failed with status {result.returncode} (see above)")


def register_paths(attrs: dict[str, Any], root: Path, env: dict[str, str], mtime: int) -> None:
    """includeNixDB: a Nix database in the image registering the contents' closure, and
    GC roots for the contents, so that nix inside the container knows its store. nix-store
    runs outside fakeroot (as root it would give the store directory to the build group,
    mode 1775), and the registration times are the image's mtime: the same bytes every build."""
    registration = "".join(
        f"{e['path']}\n{e['narHash']}\n{e['narSize']}\n\n{len(e['references'])}\n"
        + "".join(f"{ref}\n" for ref in e["references"])
        for e in attrs["dbClosure"]
    )
    store = env | {"NIX_REMOTE": f"local?root={root}", "USER": "nobody", "NIX_CONFIG": "build-users-group ="}
    loaded = subprocess.run(
        [f"{attrs['nix']}/bin/nix-store", "--load-db"], input=registration.encode(), env=store, check=False
    )
    if loaded.returncode != 0:
        raise UserError(f"nix-store --load-db failed with status {loaded.returncode} (see above)")
    with closing(sqlite3.connect(root / "nix" / "var" / "nix" / "db" / "db.sqlite")) as database, database:
        database.execute("UPDATE ValidPaths SET registrationTime = ?", (mtime,))
    roots = root / "nix" / "var" / "nix" / "gcroots" / "docker"
    roots.mkdir(parents=True, exist_ok=True)
    for path in attrs.get("contentPaths") or []:
        (roots / os.path.basename(path)).symlink_to(path)
