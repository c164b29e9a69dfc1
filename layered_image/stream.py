"""The image commands (`stream`, `push`, `index`, `from-paths`) and the Nix stream scripts:
flags in, a request to the engine (engine.py) out."""

from __future__ import annotations

import argparse
import os
import sys

from layered_image import strict_json
from layered_image.conf import load_conf, parse_conf
from layered_image.engine import (
    PushRequest,
    WriteRequest,
    push_image,
    push_index,
    refuse_terminal_output,
    write_image,
)
from layered_image.errors import UserError, reporting_errors
from layered_image.options import OneLineParser, add_output_arguments, add_push_arguments


def write_request(args: argparse.Namespace) -> WriteRequest:
    return WriteRequest(args.output, args.format, args.compression or "none", args.quiet)


def push_request(args: argparse.Namespace) -> PushRequest:
    return PushRequest(args.destination, args.tls_verify, args.creds, args.authfile, args.compression,
                       args.digestfile, args.quiet, args.sbom)  # fmt: skip


def push_command(args: argparse.Namespace) -> int:
    push_image(load_conf(args.conf, None), push_request(args))
    return 0


def index_command(args: argparse.Namespace) -> int:
    push_index([load_conf(path, None) for path in args.confs], push_request(args))
    return 0


def stream_command(args: argparse.Namespace) -> int:
    write_image(load_conf(args.conf, args.tag), write_request(args))
    return 0


def from_paths_command(args: argparse.Namespace) -> int:
    """An image of existing store paths, without writing any Nix."""
    from layered_image.config import load_json_file
    from layered_image.graph import build_graph
    from layered_image.layering import compute_layers
    from layered_image.nix import closure_graph

    refuse_terminal_output(args.output)  # before nix, which may take a while
    for path in args.paths:
        check_in_store(path, args.store_dir)
    graph = build_graph(closure_graph(args.paths), args.store_dir)
    layers = compute_layers(graph, args.strategy, args.max_layers, pipeline=args.pipeline)
    name = os.path.basename(args.paths[0]).partition("-")[2].lower() or "image"
    raw = {
        "config": load_json_file(args.config, "config") if args.config else None,
        "store_dir": args.store_dir,
        "store_layers": layers,
        "repo_tag": args.tag or f"{name}:latest",
    }
    write_image(parse_conf(raw, None, "from-paths"), write_request(args))
    return 0


def stream_script_main(conf_text: str, argv: list[str]) -> int:
    """What a Nix-built stream script runs: the conf is embedded in the script.
    `./result [flags]` streams; `./result push docker://...` pushes."""
    pushing = argv[:1] == ["push"]
    parser = OneLineParser(
        prog=f"{os.path.basename(sys.argv[0])}{' push' if pushing else ''}",
        description="Push this image to a registry." if pushing else
        "Stream this image (a docker-archive unless --format); `push docker://...` pushes it.",
    )  # fmt: skip
    (add_push_arguments if pushing else add_output_arguments)(parser)
    args = parser.parse_args(argv[1:] if pushing else argv)

    def job() -> int:
        conf = parse_conf(strict_json.loads(conf_text), None if pushing else args.tag, "stream script")
        if pushing:
            push_image(conf, push_request(args))
        else:
            write_image(conf, write_request(args))
        return 0

    return reporting_errors(os.path.basename(sys.argv[0]), job)


def check_in_store(path: str, store_dir: str) -> None:
    """A path in the store (or a link into it, like ./result); else nix would look for a flake."""
    store, real = os.path.realpath(store_dir), os.path.realpath(path)
    if real == store or os.path.commonpath([store, real]) != store:
        raise UserError(f"{path} is not a store path (not in {store_dir}); give one, e.g. ./result")
