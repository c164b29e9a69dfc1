"""Images a Docker daemon has never seen: fresh names and layers of fresh content.

Docker skips a layer whose diff_id it already holds, whatever the archive or registry
carries, so a test that loads a layer the daemon got from another test checks nothing
about how the layer is stored (a zstd layer "loaded" that way once hid that Docker 20.10
cannot read zstd at all)."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from pathlib import Path

from conftest import need


def fresh_busybox(directory: Path) -> str:
    """A new store path holding bin/busybox, bin/sh and a file of random bytes: its layer
    is one no daemon holds."""
    need(shutil.which("nix-store") is not None, "nix-store (apt-get install nix-bin)")
    need(Path("/bin/busybox").exists(), "/bin/busybox (apt-get install busybox-static)")
    root = directory / f"fresh-busybox-{uuid.uuid4().hex[:12]}"
    (root / "bin").mkdir(parents=True)
    shutil.copy("/bin/busybox", root / "bin" / "busybox")
    (root / "bin" / "sh").symlink_to("busybox")
    (root / "random").write_bytes(os.urandom(4096))
    added = subprocess.run(["nix-store", "--add", str(root)], capture_output=True, text=True, check=True)
    return added.stdout.strip()


def fresh_name(prefix: str = "li-fresh") -> str:
    """A repository name no daemon has an image under."""
    return f"{prefix}/{uuid.uuid4().hex[:12]}"


def docker(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=False, **kwargs)


def docker_reads_zstd() -> bool:
    """zstd layers came with Docker Engine 23.0 (moby#41759): 20.10 neither loads nor pulls them."""
    version = docker("version", "--format", "{{.Server.Version}}").stdout.strip()
    return int(version.split(".")[0]) >= 23
