"""The Nix functions for real: a flake outside the repo takes this flake (nixpkgs
overridden with tests/nixpkgs-shim), calls lib.x86_64-linux.streamLayeredImage with each
argument in turn, builds with `nix build`, loads with `docker load`, and checks what a
user would look at with `docker inspect` and `docker run`."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import tarfile
from contextlib import closing
from pathlib import Path

import pytest
from conftest import need
from nix_settings import SANDBOX, nix_config

REPO = Path(__file__).resolve().parent.parent
SHIM = REPO / "tests" / "nixpkgs-shim"
WITH_SHIM = ["--override-input", "nixpkgs", f"path:{SHIM}", "--no-write-lock-file"]

# extraCommands: a no-op that tells the two runs apart, so that the run with the sandbox off
# builds its own images rather than finding the sandboxed run's in the store.
BASE = """{ name = "li-test/base"; tag = "v1"; contents = [ pkgs.busybox ];
           config.Cmd = [ "/bin/sh" "-c" "echo ok" ]; extraCommands = ": sandbox %s"; }"""

IMAGES = """
  base = li.streamLayeredImage common;
  configured = li.streamLayeredImage (common // { name = "li-test/configured"; config = {
    Cmd = [ "/bin/sh" "-c" "echo $GREETING; pwd" ]; Env = [ "GREETING=hi" "PATH=/bin" ];
    WorkingDir = "/srv"; Labels."org.example.kind" = "test"; User = "0:0"; }; });
  untagged = li.streamLayeredImage (common // { name = "li-test/untagged"; tag = null; });
  dated = li.streamLayeredImage (common // { name = "li-test/dated"; created = "now";
    mtime = "2001-02-03T04:05:06Z"; uid = 1234; gid = 567; uname = "alice"; gname = "staff";
    config.Cmd = [ "/bin/sh" "-c" "stat -c '%u %g %Y' ${pkgs.busybox}/bin/busybox" ]; });
  arm = li.streamLayeredImage (common // { name = "li-test/arm"; architecture = "arm64"; });
  armV6 = (pkgs.pkgsCross.raspberryPi.callPackage "${layered-image}/nix" { }).streamLayeredImage
    (common // { name = "li-test/arm-v6"; });
  armV7 = li.streamLayeredImage (common // { name = "li-test/arm-v7"; architecture = "arm";
    variant = "v7"; });
  badVariant = li.streamLayeredImage (common // { name = "li-test/bad-variant"; architecture = "arm64";
    variant = "v7"; });
  twoLayers = li.streamLayeredImage (common // { name = "li-test/two"; maxLayers = 2; });
  noStore = li.streamLayeredImage (common // { name = "li-test/nostore"; includeStorePaths = false; });
  auto = li.streamLayeredImage (common // { name = "li-test/auto"; layering = "auto"; });
  extras = li.streamLayeredImage (common // { name = "li-test/extras"; passthru.flavour = "vanilla";
    meta.description = "an image with passthru and meta"; });
  tarGz = li.buildLayeredImage (common // { name = "li-test/targz"; });
  tarZstd = li.buildLayeredImage (common // { name = "li-test/tarzstd"; compressor = "zstd"; });
  tarPlain = li.buildLayeredImage (common // { name = "li-test/tarplain"; compressor = "none"; });
  baseImage = li.buildLayeredImage (common // { name = "li-test/base-image"; config = {
    Env = [ "PATH=/bin" "FROM_BASE=1" "SHARED=base" ];
    Cmd = [ "/bin/sh" "-c" "echo $FROM_BASE $SHARED $MINE" ];
    WorkingDir = "/base"; User = "0"; ExposedPorts."80/tcp" = { }; Labels.from = "base"; }; });
  readmeExample = li.streamLayeredImage { name = "li-test/hello"; tag = "latest";
    contents = [ pkgs.hello ]; config.Cmd = [ "/bin/hello" ]; extraCommands = common.extraCommands; };
  fromSecondOfTwo = li.streamLayeredImage (common // { name = "li-test/from-second";
    fromImage = ./two-images.tar; fromImageName = "li-base/two"; fromImageTag = "2";
    config.Cmd = [ "/bin/sh" "-c" "cat /marker" ]; });
  fromOneOfTwoUnnamed = li.streamLayeredImage (common // { name = "li-test/from-unnamed";
    fromImage = ./two-images.tar; });
  fromNameWithoutTag = li.streamLayeredImage (common // { name = "li-test/from-name-only";
    fromImage = ./two-images.tar; fromImageName = "li-base/two"; });
  onBaseHoldingContents = li.streamLayeredImage (common // { name = "li-test/on-base";
    fromImage = baseImage; });
  derived = li.streamLayeredImage { name = "li-test/derived"; tag = "v1"; fromImage = baseImage;
    contents = [ ]; config = { Env = [ "SHARED=mine" "MINE=2" ]; Labels.own = "yes"; }; };
  extra = li.streamLayeredImage (common // { name = "li-test/extra";
    extraCommands = "mkdir -p etc && echo made-by-extraCommands > etc/greeting && ln -s ${pkgs.zstd} zstd";
    config.Cmd = [ "/bin/sh" "-c" "cat /etc/greeting; ls /nix/store | grep -c zstd-stand-in" ]; });
  fakeRoot = li.streamLayeredImage (common // { name = "li-test/fakeroot";
    fakeRootCommands = "mkdir -p data && touch data/file && chown -R 1234:99 data";
    config.Cmd = [ "/bin/sh" "-c" "stat -c '%u %g' /data /data/file" ]; });
  specialFiles = li.streamLayeredImage (common // { name = "li-test/special-files";
    fakeRootCommands = "mkdir -p run && mkfifo run/pipe && mknod run/null c 1 3";
    config.Cmd = [ "/bin/sh" "-c" "test -p /run/pipe && test -c /run/null && stat -c '%t %T' /run/null" ]; });
  chroot = li.streamLayeredImage (common // { name = "li-test/chroot"; enableFakechroot = true;
    fakeRootCommands = "mkdir -p /at-root && echo hi > /at-root/file && chown 7 /at-root";
    config.Cmd = [ "/bin/sh" "-c" "cat /at-root/file; stat -c %u /at-root" ]; });
  nixDB = li.streamLayeredImage (common // { name = "li-test/nixdb"; includeNixDB = true; });
  pipelineList = li.streamLayeredImage (common // { name = "li-test/pipeline-list";
    contents = [ pkgs.busybox pkgs.zstd ]; maxLayers = 2;  # ignored, as nixpkgs ignores it
    layeringPipeline = [ [ "subcomponent_out" [ pkgs.zstd ] ]
      [ "over" "rest" [ "pipe" [ [ "popularity_contest" ] [ "limit_layers" 1 ] ] ] ] ];
    config.Cmd = [ "/bin/sh" "-c" "ls /nix/store | grep -c -e busybox -e zstd" ]; });
  pipelineFile = li.streamLayeredImage (common // { name = "li-test/pipeline-file";
    contents = [ pkgs.busybox pkgs.zstd ]; layeringPipeline = ./pipeline.json; });
  pipelineTooMany = li.streamLayeredImage (common // { name = "li-test/pipeline-too-many";
    contents = builtins.genList (n: builtins.toFile "file-${toString n}" "${toString n}") 125;
    layeringPipeline = [ [ "popularity_contest" ] ]; });
  pipelineBad = li.streamLayeredImage (common // { name = "li-test/pipeline-bad";
    layeringPipeline = [ [ "popularity_contest" ] [ "limit_layers" 0 ] ]; });
  busybox = pkgs.busybox;
  viaOverlay = (layered-image.overlays.default pkgs pkgs).layeredImage.streamLayeredImage
    (common // { name = "li-test/overlay"; });
  viaCallPackage = (pkgs.callPackage "${layered-image}/nix" { }).streamLayeredImage
    (common // { name = "li-test/callpackage"; debug = true; });
  typo = li.streamLayeredImage (common // { name = "li-test/typo";
    config = { Entrypiont = [ "/bin/sh" ]; }; });
  chainLib = derivation { name = "chain-lib"; system = "x86_64-linux"; builder = "${pkgs.bash}/bin/sh";
    args = [ "-c" "echo lib > $out" ]; };
  chainBig = derivation { name = "chain-big"; system = "x86_64-linux"; builder = "${pkgs.bash}/bin/sh";
    args = [ "-c" ''
      ${pkgs.coreutils}/bin/mkdir $out && echo ${chainLib} > $out/ref
      ${pkgs.coreutils}/bin/head -c 1000000 /dev/zero > $out/data'' ]; };
  chainAaaNotes = derivation { name = "chain-aaa-notes"; system = "x86_64-linux";
    builder = "${pkgs.bash}/bin/sh";
    args = [ "-c" "echo notes > $out" ]; };
  chainApp = derivation { name = "chain-app"; system = "x86_64-linux"; builder = "${pkgs.bash}/bin/sh";
    args = [ "-c" "echo ${chainBig} ${chainLib} ${chainAaaNotes} > $out" ]; };
  layeringDefault = li.streamLayeredImage { name = "li-test/layering"; tag = "v1"; contents = [ chainApp ]; };
  layeringStable = li.streamLayeredImage { name = "li-test/layering"; tag = "v1"; contents = [ chainApp ];
    layering = "stable"; };
  layeringPopularity = li.streamLayeredImage { name = "li-test/layering"; tag = "v1"; contents = [ chainApp ];
    layering = "popularity"; };
  # nixpkgs' runCommand gives the commands the stdenv's tools, not only coreutils
  stdenvTools = li.streamLayeredImage (common // { name = "li-test/stdenv-tools";
    extraCommands = ''
      mkdir -p etc && cd etc
      echo hello world | sed s/world/sed/ > sed && echo grep-ok | grep -o ok > grep
      find .. -maxdepth 1 -name etc > find && echo x | awk '{ print "awk-" $1 }' > awk
      tar -cf t.tar sed && tar -tf t.tar > tar && rm t.tar
      echo gz | gzip | gzip -d > gzip && echo bz | bzip2 | bzip2 -d > bzip2 && echo xz | xz | xz -d > xz
      diff sed sed > diff && echo diff-ok >> diff
    '';
    fakeRootCommands = "echo in-fakeroot | sed s/in-// > etc/fakeroot";
    config.Cmd = [ "/bin/sh" "-c" "cd /etc && cat sed grep find awk tar gzip bzip2 xz diff fakeroot" ]; });
  chrootSystem = li.streamLayeredImage (common // { name = "li-test/chroot-system"; enableFakechroot = true;
    fakeRootCommands = ''
      echo quiet > /dev/null
      grep -q '^Uid:' /proc/self/status
      scratch=$(mktemp) && echo temp > "$scratch" && rm "$scratch"
      mkdir -p /nix/var/made-in-chroot && echo in-the-image > /nix/var/made-in-chroot/file
    '';
    config.Cmd = [ "/bin/sh" "-c" "cat /nix/var/made-in-chroot/file" ]; });
  pathLiteral = li.streamLayeredImage (common // { name = "li-test/path-literal";
    contents = [ pkgs.busybox ./test-dummy ]; config.Cmd = [ "/bin/sh" "-c" "cat /hello.txt" ]; });
  cross = (pkgs.pkgsCross.aarch64-multiplatform.callPackage "${layered-image}/nix" { }).streamLayeredImage
    (common // { name = "li-test/cross"; });
  myApp2 = li.streamLayeredImage (common // { name = "li-test/my-app-2"; });
  tarExtras = li.buildLayeredImage (common // { name = "li-test/tar-extras"; passthru.flavour = "vanilla"; });
  capitals = li.streamLayeredImage (common // { name = "li-test/Capital-Name"; });
  injected = li.streamLayeredImage (common // {
    name = "li-test\\nimport os\\nos.system(\\"touch /tmp/li-injected\\")\\n#/img"; });
  withMeta = li.streamLayeredImage (common // { name = "li-test/with-meta"; contents = [
    (pkgs.busybox // { meta = { license = [ { spdxId = "GPL-2.0-only"; free = true; } { free = false; } ];
      homepage = [ "https://busybox.net" ]; description = "Tiny versions of common UNIX utilities";
      broken = throw "not evaluated"; check = x: x; }; })
    (pkgs.zstd // { meta = { homepage = throw "a meta that throws"; description = 7; }; }) ]; });
  tooFewLayers = li.streamLayeredImage (common // { name = "li-test/few"; maxLayers = 1; });
  tooManyLayers = li.streamLayeredImage (common // { name = "li-test/many"; maxLayers = 126; });
"""

FLAKE = """{
  inputs.nixpkgs.url = "path:%(shim)s";
  inputs.layered-image.url = "git+file://%(repo)s";
  inputs.layered-image.inputs.nixpkgs.follows = "nixpkgs";
  outputs = { self, nixpkgs, layered-image }:
    let
      pkgs = nixpkgs.legacyPackages.x86_64-linux;
      li = layered-image.lib.x86_64-linux;
      common = %(base)s;
    in { packages.x86_64-linux = rec { %(images)s }; };
}
"""


def nix(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = os.environ | {"NIX_CONFIG": nix_config()}
    return subprocess.run(["nix", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False)


@pytest.fixture(scope="module")
def user_flake(tmp_path_factory) -> Path:
    need(shutil.which("nix") is not None, "nix (apt-get install nix-bin)")
    need(Path("/usr/bin/python3").exists(), "Debian's python3 with python3-networkx and python3-jsonschema")
    folder = tmp_path_factory.mktemp("user-flake")
    base = BASE % ("on" if SANDBOX else "off")
    flake = FLAKE % {"shim": SHIM, "repo": REPO, "base": base, "images": IMAGES}
    (folder / "flake.nix").write_text(flake)
    (folder / "test-dummy").mkdir()  # a path literal in contents, as nixpkgs' layered-image-with-path
    (folder / "test-dummy" / "hello.txt").write_text("hello from a path literal\n")
    (folder / "pipeline.json").write_text('[["popularity_contest"], ["reverse"]]')
    return folder


def build(flake: Path, attr: str) -> subprocess.CompletedProcess:
    return nix("build", f".#{attr}", "--no-write-lock-file", "-o", f"result-{attr}", cwd=flake)


def load(flake: Path, attr: str) -> str:
    built = build(flake, attr)
    assert built.returncode == 0, built.stderr
    stream = subprocess.Popen([str(flake / f"result-{attr}"), "-q"], stdout=subprocess.PIPE)
    loaded = subprocess.run(["docker", "load"], stdin=stream.stdout, capture_output=True, text=True)
    assert stream.wait() == 0 and loaded.returncode == 0, loaded.stderr
    return loaded.stdout.split("Loaded image: ")[1].strip()


def inspect(tag: str) -> dict:
    return json.loads(subprocess.run(["docker", "inspect", tag], capture_output=True, check=True).stdout)[0]


def run(tag: str) -> str:
    result = subprocess.run(
        ["docker", "run", "--rm", "--network", "none", tag], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_name_tag_contents_and_config(user_flake, docker_host):
    tag = load(user_flake, "configured")
    assert tag == "li-test/configured:v1"
    info = inspect(tag)
    assert info["Config"]["Env"] == ["GREETING=hi", "PATH=/bin"]
    assert info["Config"]["WorkingDir"] == "/srv"
    assert info["Config"]["Labels"] == {"org.example.kind": "test"}
    assert info["Architecture"] == "amd64" and info["Created"] == "1970-01-01T00:00:01Z"
    assert run(tag).splitlines() == ["hi", "/srv"]  # /bin/sh comes from contents


def test_tag_null_is_derived_and_exposed_as_image_tag(user_flake, docker_host):
    evaluated = nix("eval", "--raw", ".#untagged.imageTag", "--no-write-lock-file", cwd=user_flake)
    assert evaluated.returncode == 0, evaluated.stderr
    assert len(evaluated.stdout) == 32
    assert load(user_flake, "untagged") == f"li-test/untagged:{evaluated.stdout}"


def test_created_mtime_and_owner(user_flake, docker_host):
    tag = load(user_flake, "dated")
    assert inspect(tag)["Created"] > "2026"
    assert run(tag).split() == ["1234", "567", "981173106"]  # 2001-02-03T04:05:06Z


def test_architecture(user_flake, docker_host):
    assert inspect(load(user_flake, "arm"))["Architecture"] == "arm64"


def test_max_layers_counts_the_top_layer(user_flake, docker_host):
    assert len(inspect(load(user_flake, "twoLayers"))["RootFS"]["Layers"]) == 2
    assert len(inspect(load(user_flake, "base"))["RootFS"]["Layers"]) == 2  # busybox + contents


def test_include_store_paths_false_leaves_only_the_top_layer(user_flake, docker_host):
    assert len(inspect(load(user_flake, "noStore"))["RootFS"]["Layers"]) == 1


def test_layering_strategy_auto(user_flake, docker_host):
    assert run(load(user_flake, "auto")).strip() == "ok"


def store_layers(flake: Path, attr: str, tmp_path: Path) -> list[list[str]]:
    built = nix("build", f".#{attr}.conf", "--no-write-lock-file", "-o", str(tmp_path / attr), cwd=flake)
    assert built.returncode == 0, built.stderr
    return json.loads(next(tmp_path.glob(f"{attr}*")).read_text())["store_layers"]


def test_the_default_layering_is_stable(user_flake, tmp_path):
    default = store_layers(user_flake, "layeringDefault", tmp_path)
    names = [[p.partition("-")[2] for p in layer] for layer in default]
    # the big path's closure before the small notes; popularity puts the notes (same
    # popularity, first by name) below the big path
    assert names[:4] == [["chain-lib"], ["chain-big"], ["chain-aaa-notes"], ["chain-app"]]
    assert default == store_layers(user_flake, "layeringStable", tmp_path)
    assert default != store_layers(user_flake, "layeringPopularity", tmp_path)


def test_layering_pipeline_as_a_list_and_as_a_file(user_flake, docker_host, tmp_path):
    layers = store_layers(user_flake, "pipelineList", tmp_path)
    assert [[p.partition("-")[2] for p in layer] for layer in layers] == [
        ["zstd-stand-in"],  # the subcomponent of zstd (a path with no references here)
        ["busybox-static"],  # the rest, in one layer
    ]
    tag = load(user_flake, "pipelineList")
    assert len(inspect(tag)["RootFS"]["Layers"]) == 3  # maxLayers = 2 did not count
    assert run(tag).strip() == "2"
    from_file = store_layers(user_flake, "pipelineFile", tmp_path)  # popularity_contest, reverse
    assert [[p.partition("-")[2] for p in layer] for layer in from_file] == [
        ["zstd-stand-in"],
        ["busybox-static"],
    ]
    too_many = build(user_flake, "pipelineTooMany")
    assert too_many.returncode != 0
    assert (
        "125 store layers, 0 base layers and the customisation layer are more than Docker's 125"
        in too_many.stderr
    )
    bad = build(user_flake, "pipelineBad")
    assert bad.returncode != 0
    assert "pipeline step 2 (limit_layers): expects a whole number of at least 1, got 0" in bad.stderr


def test_passthru_and_meta(user_flake):
    for expression, expected in ((".#extras.flavour", "vanilla"), (".#extras.meta.description", "an image")):
        evaluated = nix("eval", "--raw", expression, "--no-write-lock-file", cwd=user_flake)
        assert evaluated.returncode == 0 and evaluated.stdout.startswith(expected), evaluated.stderr
    evaluated = nix("eval", "--json", ".#extras.isExe", "--no-write-lock-file", cwd=user_flake)
    assert evaluated.stdout.strip() == "true"


def test_a_config_typo_fails_the_build_naming_it(user_flake):
    built = build(user_flake, "typo")
    assert built.returncode != 0
    assert "config.Entrypiont: unknown key (did you mean 'Entrypoint'?)" in built.stderr


@pytest.mark.parametrize(("attr", "value"), [("tooFewLayers", 1), ("tooManyLayers", 126)])
def test_max_layers_out_of_range_fails_with_an_explanation(user_flake, attr, value):
    built = build(user_flake, attr)
    assert built.returncode != 0 and f"maxLayers: {value} is out of range" in built.stderr
    assert "Docker refuses images of more than 125" in built.stderr


def test_passthru_conf_is_the_conf_and_streams_with_the_command_line(user_flake, tmp_path):
    built = nix("build", ".#base.conf", "--no-write-lock-file", "-o", str(tmp_path / "conf"), cwd=user_flake)
    assert built.returncode == 0, built.stderr
    link = next(tmp_path.glob("conf*"))  # nix names the link of a non-default output conf-conf
    conf = json.loads(link.read_text())
    assert conf["repo_tag"] == "li-test/base:v1" and len(conf["store_layers"]) == 1
    command = [
        sys.executable,
        "-m",
        "layered_image",
        "stream",
        str(link),
        "-q",
        "-o",
        str(tmp_path / "i.tar"),
    ]
    streamed = subprocess.run(command, check=False)
    assert streamed.returncode == 0


def test_the_flake_packages_the_command_line(tmp_path):
    need(shutil.which("nix") is not None, "nix (apt-get install nix-bin)")
    built = nix("build", f"git+file://{REPO}#default", *WITH_SHIM, "-o", str(tmp_path / "cli"), cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    version = subprocess.run([tmp_path / "cli" / "bin" / "layered-image", "--version"], capture_output=True)
    assert version.returncode == 0 and version.stdout.startswith(b"layered-image ")
    mistake = subprocess.run([tmp_path / "cli" / "bin" / "layered-image", "strem"], capture_output=True)
    assert mistake.returncode == 1 and b"did you mean 'stream'?" in mistake.stderr
    # exit_promptly (cli.run), as the console script: a failed push does not wait for its upload threads
    assert "cli import run" in (tmp_path / "cli" / "bin" / "layered-image").read_text()


@pytest.mark.parametrize(
    ("attr", "magic"), [("tarGz", b"\x1f\x8b"), ("tarZstd", b"\x28\xb5\x2f\xfd"), ("tarPlain", None)]
)
def test_build_layered_image_with_each_compressor(user_flake, docker_host, attr, magic):
    built = build(user_flake, attr)
    assert built.returncode == 0, built.stderr
    tarball = (user_flake / f"result-{attr}").read_bytes()
    if magic:
        assert tarball.startswith(magic)
    else:
        assert tarball[257:262] == b"ustar"
    if attr == "tarZstd":  # Docker 20.10 (Debian 12) cannot read zstd; 23+ can
        tarball = subprocess.run(["zstd", "-dc"], input=tarball, capture_output=True, check=True).stdout
    loaded = subprocess.run(["docker", "load"], input=tarball, capture_output=True)
    assert loaded.returncode == 0, loaded.stderr
    assert run(loaded.stdout.decode().split("Loaded image: ")[1].strip()).strip() == "ok"


def test_from_image_layers_below_and_config_inherited(user_flake, docker_host):
    tag = load(user_flake, "derived")
    info = inspect(tag)
    base = inspect(load_tarball(user_flake, "baseImage"))
    assert info["RootFS"]["Layers"][: len(base["RootFS"]["Layers"])] == base["RootFS"]["Layers"]
    config = info["Config"]
    assert config["Env"] == ["PATH=/bin", "FROM_BASE=1", "SHARED=mine", "MINE=2"]
    assert config["Cmd"] == ["/bin/sh", "-c", "echo $FROM_BASE $SHARED $MINE"]
    assert config["WorkingDir"] == "/base" and config["User"] == "0"
    assert config["ExposedPorts"] == {"80/tcp": {}}
    assert config["Labels"] == {"own": "yes"}  # Labels is replaced whole, as Docker does
    assert run(tag).strip() == "1 mine 2"


def test_paths_the_base_holds_are_not_stored_again_and_the_build_log_says_so(user_flake, docker_host):
    tag = load(user_flake, "onBaseHoldingContents")
    log = nix("log", ".#onBaseHoldingContents", "--no-write-lock-file", cwd=user_flake)
    assert log.returncode == 0, log.stderr
    busybox = re.search(r"1 store path\(s\) already in the base image, not stored again: (\S+)", log.stdout)
    assert busybox and busybox[1].endswith("-busybox-static"), log.stdout
    base = inspect(load_tarball(user_flake, "baseImage"))["RootFS"]["Layers"]
    assert inspect(tag)["RootFS"]["Layers"][:-1] == base  # no store layer: only the top layer added
    assert run(tag).strip() == "ok"


def test_the_readme_flake_example_runs(user_flake, docker_host):
    """README's first flake: hello in an image, Cmd /bin/hello (the stand-in's hello)."""
    assert run(load(user_flake, "readmeExample")).strip() == "Hello, world!"


@pytest.fixture
def two_images(user_flake: Path, docker_host: str, tmp_path: Path) -> None:
    """A `docker save` of two images (docker import of one marker file each), in the flake."""
    for name, tag in (("one", "1"), ("two", "2")):
        rootfs = tmp_path / name
        (rootfs).mkdir()
        (rootfs / "marker").write_text(f"{name}\n")
        packed = subprocess.run(["tar", "-C", str(rootfs), "-c", "marker"], capture_output=True, check=True)
        subprocess.run(["docker", "import", "-", f"li-base/{name}:{tag}"], input=packed.stdout, check=True,
                       capture_output=True)  # fmt: skip
    archive = user_flake / "two-images.tar"
    subprocess.run(["docker", "save", "-o", str(archive), "li-base/one:1", "li-base/two:2"], check=True)


def test_from_image_name_and_tag_pick_one_image_of_several(user_flake, two_images):
    tag = load(user_flake, "fromSecondOfTwo")
    assert run(tag).strip() == "two"


def test_from_image_of_several_images_unnamed_is_one_line_naming_them(user_flake, two_images):
    built = build(user_flake, "fromOneOfTwoUnnamed")
    assert built.returncode != 0
    log = nix("log", ".#fromOneOfTwoUnnamed", "--no-write-lock-file", cwd=user_flake).stdout
    line = next(line for line in (built.stderr + log).splitlines() if "name one of" in line)
    named = line.partition("name one of: ")[2].partition(" (")[0]  # docker save's order varies
    assert "2 images;" in line and sorted(named.split(", ")) == ["li-base/one:1", "li-base/two:2"], line
    assert "fromImageName" in line


def test_from_image_name_without_tag_is_refused_at_evaluation(user_flake, two_images):
    built = build(user_flake, "fromNameWithoutTag")
    assert built.returncode != 0 and "fromImageName and fromImageTag go together" in built.stderr


def load_tarball(flake: Path, attr: str) -> str:
    assert build(flake, attr).returncode == 0
    loaded = subprocess.run(
        ["docker", "load", "-i", str(flake / f"result-{attr}")], capture_output=True, text=True
    )
    return loaded.stdout.split("Loaded image: ")[1].strip()


def test_extra_commands_make_files_and_their_store_paths_join_the_image(user_flake, docker_host):
    assert run(load(user_flake, "extra")).split() == ["made-by-extraCommands", "1"]


def test_fake_root_commands_set_owners_that_stick(user_flake, docker_host):
    assert run(load(user_flake, "fakeRoot")).split() == ["1234", "99", "1234", "99"]


def test_fifos_and_devices_made_in_fake_root_commands_are_kept(user_flake, docker_host):
    """As nixpkgs keeps them: mkfifo makes a FIFO; mknod under fakeroot a device (an empty
    file on disk that fakeroot reports as the device), both in the layer."""
    assert run(load(user_flake, "specialFiles")).split() == ["1", "3"]


def test_enable_fakechroot_runs_commands_with_the_image_root_as_slash(user_flake, docker_host):
    assert run(load(user_flake, "chroot")).split() == ["hi", "7"]


def test_include_nix_db_registers_the_contents(user_flake, docker_host, tmp_path):
    tag = load(user_flake, "nixDB")
    container = subprocess.run(
        ["docker", "create", tag], capture_output=True, text=True, check=True
    ).stdout.strip()
    (tmp_path / "nix" / "var" / "nix").mkdir(parents=True)
    copy = ["docker", "cp", f"{container}:/nix/var/nix/db", str(tmp_path / "nix" / "var" / "nix")]
    subprocess.run(copy, capture_output=True, check=True)
    subprocess.run(["docker", "rm", container], capture_output=True)
    evaluated = nix("eval", "--raw", ".#busybox.outPath", "--no-write-lock-file", cwd=user_flake)
    assert evaluated.returncode == 0, evaluated.stderr
    busybox = [evaluated.stdout]
    query = nix("path-info", "--json", "--store", f"local?root={tmp_path}", *busybox, cwd=tmp_path)
    assert query.returncode == 0, query.stderr
    info = json.loads(query.stdout)
    assert [entry["path"] for entry in info] == busybox and info[0]["narSize"] > 1_000_000


@pytest.mark.parametrize("attr", ["viaOverlay", "viaCallPackage"])
def test_overlay_and_call_package_forms(user_flake, docker_host, attr):
    assert run(load(user_flake, attr)).strip() == "ok"


def test_nix_flake_check_passes(tmp_path):
    """Every system's outputs evaluate (lib, packages, checks, overlay); this one's checks build."""
    need(shutil.which("nix") is not None, "nix (apt-get install nix-bin)")
    checked = nix("flake", "check", f"git+file://{REPO}", *WITH_SHIM, cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    for system in ("x86_64-linux", "aarch64-linux"):
        evaluated = nix("eval", "--raw", f"git+file://{REPO}#packages.{system}.busybox.system", *WITH_SHIM,
                        cwd=tmp_path)  # fmt: skip
        assert evaluated.stdout == system, evaluated.stderr


def test_the_flake_checks_build_the_examples(tmp_path, docker_host):
    need(shutil.which("nix") is not None, "nix (apt-get install nix-bin)")
    link = tmp_path / "example"
    built = nix(
        "build", f"git+file://{REPO}#checks.x86_64-linux.busybox", *WITH_SHIM, "-o", str(link), cwd=tmp_path
    )
    assert built.returncode == 0, built.stderr
    stream = subprocess.Popen([str(link), "-q"], stdout=subprocess.PIPE)
    loaded = subprocess.run(["docker", "load"], stdin=stream.stdout, capture_output=True, text=True)
    assert stream.wait() == 0 and loaded.returncode == 0, loaded.stderr
    assert run("layered-image-example/busybox:latest").strip() == "hello from layered-image"


def test_the_stream_script_writes_oci_and_pushes(user_flake, docker_host, tmp_path, monkeypatch):
    from registry_fixtures import start_registry

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the push's blob cache, not root's

    assert build(user_flake, "base").returncode == 0
    script = str(user_flake / "result-base")
    archive = tmp_path / "image.oci.tar"
    written = subprocess.run(
        [script, "-q", "--format", "oci-archive", "--compression", "gzip", "-o", str(archive)]
    )
    assert written.returncode == 0
    loaded = subprocess.run(["docker", "load", "-i", str(archive)], capture_output=True, text=True)
    assert loaded.returncode == 0 and "li-test/base:v1" in loaded.stdout, loaded.stderr
    registry = start_registry(tmp_path / "registry")
    try:
        target = f"docker://{registry.host}/li-test/base:v1"
        pushed = nix(
            "run", ".#base.push", "--no-write-lock-file", "--", target, "--tls-verify=false", cwd=user_flake
        )
        assert pushed.returncode == 0, pushed.stderr
        assert "blobs pushed" in pushed.stderr
        assert build(user_flake, "configured").returncode == 0
        other = f"docker://{registry.host}/li-test/base:v2"
        again = subprocess.run([str(user_flake / "result-configured"), "push", other, "--tls-verify=false"],
                               capture_output=True, text=True)  # fmt: skip
        assert again.returncode == 0, again.stderr
        assert again.stderr.count("already there sha256:") == 2  # the store and customisation layers
        assert "1 blob pushed" in again.stderr  # only the new config
        for tag in ("v1", "v2"):
            source = f"docker://{registry.host}/li-test/base:{tag}"
            inspect = subprocess.run(["skopeo", "inspect", "--tls-verify=false", source], capture_output=True)
            assert inspect.returncode == 0
    finally:
        registry.stop()


def test_extra_and_fake_root_commands_have_the_stdenv_tools(user_flake, docker_host):
    expected = ["hello sed", "ok", "../etc", "awk-x", "sed", "gz", "bz", "xz", "diff-ok", "fakeroot"]
    assert run(load(user_flake, "stdenvTools")).splitlines() == expected


def top_layer(flake: Path, attr: str, tmp_path: Path) -> tarfile.TarFile:
    """The top (customisation) layer of `attr`'s image, open as a tar."""
    assert build(flake, attr).returncode == 0
    archive = tmp_path / f"{attr}.tar"
    subprocess.run([str(flake / f"result-{attr}"), "-q", "-o", str(archive)], check=True)
    with tarfile.open(archive) as image:
        manifest = json.load(image.extractfile("manifest.json"))
        layer = image.extractfile(manifest[0]["Layers"][-1]).read()
    return tarfile.open(fileobj=io.BytesIO(layer))


def layer_members(flake: Path, attr: str, tmp_path: Path) -> dict[str, tarfile.TarInfo]:
    with top_layer(flake, attr, tmp_path) as layer:
        return {member.name: member for member in layer}


def test_enable_fakechroot_binds_the_system_and_leaves_it_out_of_the_layer(user_flake, docker_host, tmp_path):
    assert run(load(user_flake, "chrootSystem")).strip() == "in-the-image"
    names = layer_members(user_flake, "chrootSystem", tmp_path)
    assert "nix/var/made-in-chroot/file" in names
    assert not [name for name in names if name.split("/")[0] in ("dev", "proc", "sys", "tmp", "build")]
    assert not [name for name in names if name.startswith("nix/store")]
    assert not Path("/nix/var/made-in-chroot").exists()


def test_a_path_literal_in_contents_is_copied_into_the_store(user_flake, docker_host):
    assert run(load(user_flake, "pathLiteral")).strip() == "hello from a path literal"


def test_include_nix_db_is_root_owned_and_registered_at_the_image_mtime(user_flake, tmp_path):
    with top_layer(user_flake, "nixDB", tmp_path) as layer:
        store = layer.getmember("nix/store")
        assert (store.uid, store.gid, oct(store.mode)) == (0, 0, "0o755")
        database = layer.getmember("nix/var/nix/db/db.sqlite")
        assert (database.uid, database.gid) == (0, 0)
        (tmp_path / "db.sqlite").write_bytes(layer.extractfile(database).read())
    with closing(sqlite3.connect(tmp_path / "db.sqlite")) as db:
        times = {time for (time,) in db.execute("SELECT registrationTime FROM ValidPaths")}
    assert times == {1}  # mtime 1970-01-01T00:00:01Z


def helper_derivations(drv: str) -> list[str]:
    """The customisation layer's and config's derivations under `drv`, and the stream
    script's (with its helpers) under a tarball."""
    listed = subprocess.run(
        ["nix-store", "-q", "--references", drv], capture_output=True, text=True, check=True
    )
    inputs = listed.stdout.split()
    found = [path for path in inputs if path.endswith(("-customisation-layer.drv", "-config.json.drv"))]
    for stream in (path for path in inputs if "-stream-" in path):
        found += [stream, *helper_derivations(stream)]
    return found


@pytest.mark.parametrize(
    "attr",
    ["nixDB", "stdenvTools", "chrootSystem", "chroot", "fakeRoot", "extra", "configured", "auto",
     "pathLiteral", "cross", "derived", "tarGz", "tarZstd"],
)  # fmt: skip
def test_images_and_their_layers_rebuild_bit_for_bit(user_flake, attr):
    """`nix-store --check` builds the image, its customisation layer and its config again
    and fails if any output differs."""
    assert build(user_flake, attr).returncode == 0
    drv = nix("eval", "--raw", f".#{attr}.drvPath", "--no-write-lock-file", cwd=user_flake).stdout
    helpers = helper_derivations(drv)
    assert len(helpers) >= 2, helpers
    for derivation in [drv, *helpers]:
        check = ["nix-store", "--realise", "--check", derivation]
        checked = subprocess.run(
            check, capture_output=True, text=True, env=os.environ | {"NIX_CONFIG": nix_config()}
        )
        assert checked.returncode == 0, checked.stderr


def test_cross_compiling_builds_with_the_build_platforms_tools(user_flake, docker_host):
    system = nix("eval", "--raw", ".#cross.system", "--no-write-lock-file", cwd=user_flake)
    assert system.stdout == "x86_64-linux", system.stderr  # where it builds: the build platform
    assert inspect(load(user_flake, "cross"))["Architecture"] == "arm64"  # what it is for: the host's


def stream_config(flake: Path, attr: str) -> dict:
    built = build(flake, attr)
    assert built.returncode == 0, built.stderr
    streamed = subprocess.run([str(flake / f"result-{attr}"), "-q"], capture_output=True, check=True)
    with tarfile.open(fileobj=io.BytesIO(streamed.stdout)) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
        return json.load(tar.extractfile(manifest[0]["Config"]))


def test_the_variant_is_the_host_platforms_or_the_argument(user_flake):
    v6 = stream_config(user_flake, "armV6")  # a Raspberry Pi (armv6l) host: GOARM 6
    assert (v6["architecture"], v6["variant"]) == ("arm", "v6")
    v7 = stream_config(user_flake, "armV7")
    assert (v7["architecture"], v7["variant"]) == ("arm", "v7")
    assert "variant" not in stream_config(user_flake, "base")
    bad = build(user_flake, "badVariant")
    assert bad.returncode != 0 and "variant: 'v7' is not a variant of arm64" in bad.stderr


def test_nix_run_push_finds_the_program_of_a_name_ending_in_a_number(user_flake):
    helped = nix("run", ".#myApp2.push", "--no-write-lock-file", "--", "--help", cwd=user_flake)
    assert helped.returncode == 0 and "docker://" in helped.stdout, helped.stderr


def test_results_carry_nixpkgs_attributes(user_flake):
    def evaluate(expression: str) -> str:
        evaluated = nix("eval", "--raw", expression, "--no-write-lock-file", cwd=user_flake)
        assert evaluated.returncode == 0, evaluated.stderr
        return evaluated.stdout

    assert evaluate(".#tarExtras.flavour") == "vanilla"  # passthru on the result, as nixpkgs puts it
    assert evaluate(".#tarExtras.imageName") == evaluate(".#base.imageName").replace("base", "tar-extras")
    assert evaluate(".#tarExtras.imageTag") == "v1" == evaluate(".#tarExtras.stream.imageTag")
    assert evaluate(".#tarExtras.stream.outPath").startswith("/nix/store/")
    # makeOverridable's override, with a set or a function of the old arguments
    for attr, change in (("base", '{ tag = "v2"; }'), ("tarExtras", 'old: { tag = old.tag + "-2"; }')):
        apply = f"image: (image.override ({change})).imageTag"
        changed = nix("eval", "--raw", f".#{attr}", "--apply", apply, "--no-write-lock-file", cwd=user_flake)
        assert changed.returncode == 0, changed.stderr
        assert changed.stdout == {"base": "v2", "tarExtras": "v1-2"}[attr]


def test_a_name_with_capitals_is_lower_cased_as_nixpkgs_does(user_flake, docker_host):
    assert load(user_flake, "capitals") == "li-test/capital-name:v1"


def test_a_name_a_run_would_refuse_fails_the_build_and_is_never_code(user_flake):
    built = build(user_flake, "injected")
    assert built.returncode != 0 and "is not NAME:TAG" in built.stderr, built.stderr
    assert not Path("/tmp/li-injected").exists()


def test_every_image_has_an_sbom_with_the_contents_meta(user_flake, tmp_path):
    built = nix(
        "build", ".#withMeta.sbom", "--no-write-lock-file", "-o", str(tmp_path / "sbom"), cwd=user_flake
    )
    assert built.returncode == 0, built.stderr
    sbom = tmp_path / "sbom"
    assert sorted(p.name for p in sbom.iterdir()) == ["cyclonedx.json", "spdx.json"]
    from test_sbom import validate_cyclonedx, validate_spdx

    validate_cyclonedx((sbom / "cyclonedx.json").read_text())
    validate_spdx((sbom / "spdx.json").read_text(), tmp_path)
    document = json.loads((sbom / "cyclonedx.json").read_text())
    busybox = next(c for c in document["components"] if c["name"].startswith("busybox"))
    assert busybox["licenses"] == [{"expression": "GPL-2.0-only"}]
    assert busybox["externalReferences"] == [{"type": "website", "url": "https://busybox.net"}]
    assert busybox["description"] == "Tiny versions of common UNIX utilities"
    zstd = next(c for c in document["components"] if c["name"].startswith("zstd"))
    assert not {"licenses", "externalReferences", "description"} & set(zstd)
    conf = nix(
        "build", ".#withMeta.conf", "--no-write-lock-file", "-o", str(tmp_path / "conf"), cwd=user_flake
    )
    assert conf.returncode == 0, conf.stderr
    layers = json.loads(next(tmp_path.glob("conf*")).read_text())["store_layers"]
    store_paths = {c["bom-ref"] for c in document["components"] if c["bom-ref"].startswith("/nix/store/")}
    assert store_paths == {path for paths in layers for path in paths}
