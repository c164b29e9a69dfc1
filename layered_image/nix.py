"""Nix through subprocess: the closure of existing store paths.

Every failure is one line naming the nix command and what it said; a missing `nix`
binary says how to get one.
"""

from __future__ import annotations

import subprocess
from typing import Any

from layered_image import strict_json
from layered_image.errors import UserError
from layered_image.graph import entries_of

FEATURES = ["--extra-experimental-features", "nix-command flakes"]


class NixError(UserError):
    """A nix command failed; `stderr` is all it said."""

    def __init__(self, message: str, stderr: str) -> None:
        super().__init__(message)
        self.stderr = stderr


def run_nix(*args: str) -> str:
    command = ["nix", *FEATURES, *args]
    try:
        result = subprocess.run(command, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise UserError("nix is not installed or not on PATH (Debian: apt-get install nix-bin)") from None
    if result.returncode != 0:
        said = [line for line in result.stderr.splitlines() if line.strip() and "warning:" not in line]
        summary = said[-1].strip() if said else f"exit {result.returncode}"
        raise NixError(f"nix {args[0]} failed: {summary}", result.stderr)
    return result.stdout


def closure_graph(paths: list[str]) -> list[dict[str, Any]]:
    """exportReferencesGraph-style entries for the closure of `paths` (`nix path-info`)."""
    try:  # Nix 2.33 deprecates --json without --json-format; older Nix (and Lix) refuse the flag
        text = run_nix("path-info", "--json", "--json-format", "1", "--recursive", *paths)
    except NixError as err:
        if "--json-format" not in err.stderr:
            raise
        text = run_nix("path-info", "--json", "--recursive", *paths)
    answer = strict_json.loads(text)
    return entries_of(answer, None, "nix path-info")
