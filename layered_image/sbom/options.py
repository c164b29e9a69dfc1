"""The `sbom` command's arguments: here, apart, so that building the parser imports nothing heavy."""

from __future__ import annotations

import argparse

FORMAT_NAMES = ("cyclonedx", "spdx")


def add_sbom_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("conf", metavar="CONF", help="conf.json, as for stream; - for stdin")
    parser.add_argument(
        "--format", choices=FORMAT_NAMES, default="cyclonedx", help="CycloneDX 1.6 (default) or SPDX 2.3"
    )
    parser.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    parser.add_argument(
        "--graph",
        metavar="GRAPH",
        help="the closure graph (exportReferencesGraph or `nix path-info --json -r` JSON); default: ask nix",
    )
    parser.add_argument(
        "--key", help="the key holding the graph when GRAPH is an object (.attrs.json: closure)"
    )
    parser.add_argument("--in-nix-build", action="store_true", help=argparse.SUPPRESS)
