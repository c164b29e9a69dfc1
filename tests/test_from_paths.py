"""`layered-image from-paths`: an image of existing store paths, with nix via subprocess."""

import json
import os
import shutil
import subprocess
import sys
import tarfile

from conftest import run_cli


def test_image_of_a_store_path_runs(tmp_path, busybox_path, docker_host):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"Cmd": [f"{busybox_path}/bin/busybox", "echo", "from-paths works"]}))
    stream = subprocess.Popen(
        [sys.executable, "-m", "layered_image", "from-paths", busybox_path, "--config", str(config),
         "-t", "li-test/from-paths:1", "-q"],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    loaded = subprocess.run(["docker", "load"], stdin=stream.stdout, capture_output=True, text=True)
    assert stream.wait() == 0 and loaded.returncode == 0, loaded.stderr
    run = subprocess.run(["docker", "run", "--rm", "--network", "none", "li-test/from-paths:1"],
                         capture_output=True, text=True)  # fmt: skip
    assert run.stdout.strip() == "from-paths works"


def test_a_path_nix_does_not_know_is_one_line(busybox_path):
    result = run_cli("from-paths", "/nix/store/00000000000000000000000000000000-missing")
    assert result.returncode == 1 and result.stdout == b""
    assert result.stderr.decode().count("\n") == 1 and b"nix path-info failed" in result.stderr


def test_missing_nix_is_one_line_saying_how_to_get_it(busybox_path, tmp_path):
    result = run_cli("from-paths", busybox_path, env=os.environ | {"PATH": str(tmp_path)})
    assert result.returncode == 1
    assert result.stderr.decode().strip().endswith("(Debian: apt-get install nix-bin)")


NIX_2_33 = """#!%(python)s
# Stands in for Nix 2.33 (not installable here): path-info --json wants --json-format, and
# format 1 has a top-level storeDir. Everything else is the real nix.
import json, subprocess, sys
args = sys.argv[1:]
if "path-info" in args and "--json" in args:
    if "--json-format" not in args:
        sys.exit("error: --json without --json-format is no longer supported")
    at = args.index("--json-format")
    del args[at:at + 2]
    printed = json.loads(subprocess.run(["%(nix)s", *args], capture_output=True, check=True).stdout)
    print(json.dumps({"storeDir": "/nix/store"} | {e.pop("path"): e for e in printed}))
else:
    sys.exit(subprocess.run(["%(nix)s", *args]).returncode)
"""


def test_from_paths_asks_a_newer_nix_for_the_path_info_format_it_reads(tmp_path, busybox_path):
    fake = tmp_path / "bin" / "nix"
    fake.parent.mkdir()
    fake.write_text(NIX_2_33 % {"python": sys.executable, "nix": shutil.which("nix")})
    fake.chmod(0o755)
    env = os.environ | {"PATH": f"{fake.parent}:{os.environ['PATH']}"}
    result = run_cli(
        "from-paths", busybox_path, "-t", "li-test/nix233:1", "-q", "-o", str(tmp_path / "i.tar"), env=env
    )
    assert result.returncode == 0, result.stderr
    with tarfile.open(tmp_path / "i.tar") as image:
        manifest = json.load(image.extractfile("manifest.json"))
    assert (
        manifest[0]["RepoTags"] == ["li-test/nix233:1"] and len(manifest[0]["Layers"]) == 1
    )  # busybox alone
