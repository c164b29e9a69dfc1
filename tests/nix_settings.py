"""The Nix settings the Nix tests build with: Nix's sandbox on (as users' Nix has it),
or off (Debian's default), chosen by LAYERED_IMAGE_NIX_SANDBOX (1, the default, or 0).

Sandboxed, a build sees only its inputs' store paths and these binds: /bin/sh (as NixOS
gives), the host's loader and shared libraries and Python's standard library (the
stand-in's programs are copies of the host's, which nixpkgs' would find in the store),
and the host's /usr at /host/usr, from which only tests/nixpkgs-shim copies."""

from __future__ import annotations

import os

SANDBOX = os.environ.get("LAYERED_IMAGE_NIX_SANDBOX", "1") != "0"

SANDBOX_PATHS = [
    "/bin/sh=/bin/busybox",
    "/host/usr=/usr",
    "/lib64",
    "/lib/x86_64-linux-gnu=/usr/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/nix",  # Debian's nix finds its libraries there
    "/usr/lib/python3.11",  # the stand-in copies Debian 12's python3.11
]


def nix_config(sandbox: bool = SANDBOX) -> str:
    """NIX_CONFIG for the tests. Root builds single-user (no nixbld group: without Debian's
    nix-setup-systemd, a Recommends CI does not install, there is no nix.conf at all)."""
    lines = ["experimental-features = nix-command flakes", "substituters =", "build-users-group ="]
    if sandbox:  # no fallback: a sandbox that cannot start must fail the test, not be skipped
        lines += [
            "sandbox = true",
            "sandbox-fallback = false",
            "extra-sandbox-paths = " + " ".join(SANDBOX_PATHS),
        ]
    else:
        lines += ["sandbox = false"]
    return "\n".join(lines)
