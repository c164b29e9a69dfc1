"""`layered-image from-paths`: an image of existing store paths, with nix via subprocess."""

import json
import os
import subprocess
import sys

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
