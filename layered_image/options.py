"""Command-line flags that several commands and the Nix stream scripts share.

Kept apart from the commands themselves so that building the parser imports nothing
heavy: `layered-image layers` should not pay for the archive writers' imports.
"""

from __future__ import annotations

import argparse
import difflib
import re
from typing import NoReturn

from layered_image.archive.compression import COMPRESSIONS

FORMATS = ("docker-archive", "oci-archive", "oci-dir")


class OneLineParser(argparse.ArgumentParser):
    """A mistake on the command line is one line, with the near miss for a bad choice and
    where to look, and exit 1, like every other bad input (argparse prints the usage block
    and exits 2)."""

    def error(self, message: str) -> NoReturn:
        choice = re.search(r"invalid choice: '?([^' ]*)'? \(choose from (.*)\)$", message)
        if choice:
            offered = [name.strip().strip("'") for name in choice[2].split(",")]
            near = difflib.get_close_matches(choice[1], offered, n=1)
            if near:
                message = message.replace(" (choose from", f"; did you mean {near[0]!r}? (choose from", 1)
        self.exit(1, f"{self.prog}: error: {message}; see {self.prog} --help\n")

    def parse_args(self, args=None, namespace=None):  # type: ignore[no-untyped-def,override]
        """Leftover arguments are the chosen command's mistake, named by it."""
        parsed, extra = self.parse_known_args(args, namespace)
        if extra:
            command = getattr(parsed, "command", None)
            commands = getattr(self, "commands", {})
            (commands.get(command) or self).error(f"unrecognized arguments: {' '.join(extra)}")
        return parsed


def add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags `stream`, `from-paths` and Nix stream scripts share."""
    parser.add_argument("-o", "--output", metavar="FILE", help="write to FILE (a directory for oci-dir)")
    parser.add_argument("-t", "--tag", metavar="NAME:TAG", help="tag the image NAME:TAG instead")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress on stderr")
    parser.add_argument("--format", default="docker-archive", choices=FORMATS, help="default docker-archive")
    parser.add_argument(
        "--compression", choices=COMPRESSIONS, help="layer compression for the OCI formats (default none)"
    )


def add_push_arguments(parser: argparse.ArgumentParser, destination: bool = True) -> None:
    """The flags `push`, `index` and `./result push` share (skopeo's names)."""
    if destination:
        parser.add_argument("destination", metavar="docker://HOST[:PORT]/REPO:TAG")
    parser.add_argument(
        "--tls-verify", type=_boolean, default=True, metavar="true|false",
        help="check the registry's TLS certificate; false also allows plain HTTP",
    )  # fmt: skip
    parser.add_argument("--creds", metavar="USER:PASSWORD", help="registry credentials")
    parser.add_argument("--authfile", metavar="FILE", help="auth.json (default: podman's, then docker's)")
    parser.add_argument("--compression", choices=("gzip", "zstd"), default="gzip", help="default gzip")
    parser.add_argument(
        "--digestfile", metavar="FILE",
        help="after the push, write the digest of what the tag names (manifest or index) to FILE",
    )  # fmt: skip
    parser.add_argument(
        "--sbom", action="store_true",
        help="attach each image's CycloneDX SBOM as an OCI referrer (asks nix for the closure)",
    )  # fmt: skip
    parser.add_argument("-q", "--quiet", action="store_true", help="only errors on stderr")


def _boolean(text: str) -> bool:
    if text.lower() not in ("true", "false"):
        raise argparse.ArgumentTypeError("true or false")
    return text.lower() == "true"
