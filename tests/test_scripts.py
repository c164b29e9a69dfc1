"""The scripts a newcomer runs first. The README's first command, scripts/example.sh, as a
user runs it: from a copy of the repository, with no NIX_CONFIG of the tests', it builds
the example image, loads it into Docker and runs it (offline, against the stand-in for
nixpkgs, and says so). The package installer the scripts share, as a non-root user."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from conftest import need

REPO = Path(__file__).resolve().parent.parent


def copy_of_the_repository(destination: Path) -> Path:
    """The files git tracks, as a clone has them (the working tree's, changes included)."""
    listing = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True)
    for name in listing.stdout.decode().split("\0"):
        if name and (REPO / name).exists():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, destination / name, follow_symlinks=False)
    return destination


def test_example_script_builds_loads_and_runs_the_example_image(tmp_path, docker_host):
    need(shutil.which("nix") is not None, "nix")
    need(os.geteuid() == 0, "root (single-user Nix)")
    repo = copy_of_the_repository(tmp_path / "layered-image")
    env = {name: value for name, value in os.environ.items() if name != "NIX_CONFIG"}
    result = subprocess.run(
        [repo / "scripts" / "example.sh"], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Loaded image: layered-image-example/busybox:latest" in result.stdout
    assert result.stdout.rstrip().endswith("hello from layered-image")
    if "cannot fetch the pinned nixpkgs" in result.stderr:
        assert "building against tests/nixpkgs-shim instead" in result.stderr
    assert (repo / "result").is_symlink()


def test_installer_names_missing_packages_to_a_user_who_cannot_install_them():
    need(os.geteuid() == 0 and shutil.which("setpriv") is not None, "root, to run as nobody")
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    # pytest's tmp_path is root's alone, and so is a clone under /root: copy the script out
    with tempfile.TemporaryDirectory() as readable_by_all:
        Path(readable_by_all).chmod(0o755)
        installer = shutil.copy(REPO / "scripts" / "install-debian-packages.sh", readable_by_all)
        listing = Path(readable_by_all) / "packages"
        listing.write_text("# a comment\ncoreutils  no-such-package-here # another\n")
        listing.chmod(0o644)
        result = subprocess.run(
            [*nobody, installer, listing],
            capture_output=True,
            text=True,
            check=False,
        )
    assert result.returncode == 1
    assert result.stderr == (
        "missing Debian packages; as root: apt-get install --no-install-recommends no-such-package-here\n"
    )


def test_installer_stops_on_a_list_it_cannot_read(tmp_path):
    result = subprocess.run(
        [REPO / "scripts" / "install-debian-packages.sh", tmp_path / "no-such-list"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0 and "no-such-list" in result.stderr
