"""The `layered-image` command line: one subcommand per job, errors as one line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from layered_image.errors import UserError, exit_promptly, reporting_errors
from layered_image.options import OneLineParser


def cmd_layers(args: argparse.Namespace) -> int:
    from layered_image.graph import load_graph
    from layered_image.layering import compute_layers

    graph = load_graph(args.graph, key=args.key, store_dir=args.store_dir)
    if missing := [path for path in args.exclude if path not in graph.index]:
        raise UserError(f"--exclude {missing[0]}: not in the closure graph (a typo, or another store path?)")
    layers = compute_layers(graph, args.strategy, args.max_layers, args.exclude, args.pipeline)
    json.dump(layers, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from layered_image.explain import explain_command

    return explain_command(args)


def cmd_diff(args: argparse.Namespace) -> int:
    from layered_image.explain import diff_command

    return diff_command(args)


def cmd_validate_config(args: argparse.Namespace) -> int:
    from layered_image.config import load_json_file, validate_config

    config = load_json_file(args.file, "config")
    if isinstance(config, dict) and "store_layers" in config:
        raise UserError(
            f'{args.file} is an image conf, not an image config: give its "config" alone'
            " (stream, push and index check a whole conf as they load it)"
        )
    problems = validate_config(config)
    for line in problems:
        print(line, file=sys.stderr)
    if problems:
        print(f"{args.file}: {len(problems)} problem(s) in config", file=sys.stderr)
        return 1
    return 0


def cmd_stream(args: argparse.Namespace) -> int:
    from layered_image.stream import stream_command

    return stream_command(args)


def cmd_push(args: argparse.Namespace) -> int:
    from layered_image.stream import push_command

    return push_command(args)


def cmd_index(args: argparse.Namespace) -> int:
    from layered_image.stream import index_command

    return index_command(args)


def cmd_from_paths(args: argparse.Namespace) -> int:
    from layered_image.stream import from_paths_command

    return from_paths_command(args)


def cmd_sbom(args: argparse.Namespace) -> int:
    from layered_image.sbom.command import sbom_command

    return sbom_command(args)


# run by the Nix functions' derivations, not typed: left out of --help and of the choices it offers
INTERNAL_COMMANDS = {
    "build": "make the stream script from .attrs.json",
    "write-attr": "write one attribute as JSON to $out",
    "write-launcher": "write $out/bin/layered-image",
    "write-push-launcher": "write $out/bin/push-NAME",
    "write-image": "stream the image into $out, compressed",
    "customise": "make the customisation layer",
}


def cmd_build(args: argparse.Namespace) -> int:
    from layered_image import nix_build

    commands = {
        "build": nix_build.build_command,
        "write-attr": nix_build.write_attr_command,
        "write-launcher": nix_build.write_launcher_command,
        "write-push-launcher": nix_build.write_push_launcher_command,
        "write-image": nix_build.write_image_command,
        "customise": nix_build.customise_command,
    }
    return commands[args.command](args)


class Parser(OneLineParser):
    """Offers only the public commands when a command name is mistyped."""

    def _check_value(self, action: argparse.Action, value: object) -> None:
        if isinstance(action, argparse._SubParsersAction) and value not in action.choices:
            public = ", ".join(repr(name) for name in action.choices if name not in INTERNAL_COMMANDS)
            raise argparse.ArgumentError(action, f"invalid choice: {value!r} (choose from {public})")
        super()._check_value(action, value)


def add_max_layers(command: argparse.ArgumentParser, meaning: str) -> None:
    """N counts store layers in every command (the layers that hold the closure's paths)."""
    from layered_image.layering import DEFAULT_MAX_STORE_LAYERS

    command.add_argument(
        "--max-layers", type=int, default=DEFAULT_MAX_STORE_LAYERS, metavar="N",
        help=f"at most N store layers (default {DEFAULT_MAX_STORE_LAYERS}){meaning}",
    )  # fmt: skip


# what N = 99 store layers makes of the image, by command
WITH_TOP_LAYER = ": a Nix-built image adds its customisation layer on top, making nixpkgs' maxLayers = 100"
WITHOUT_OTHER_LAYERS = ": this image has no other layers"


def add_layering_choice(command: argparse.ArgumentParser) -> None:
    """--strategy NAME or --pipeline FILE (nixpkgs' layeringPipeline), not both."""
    from layered_image.layering import DEFAULT_STRATEGY, STRATEGIES

    others = ", ".join(name for name in sorted(STRATEGIES) if name != DEFAULT_STRATEGY)
    choice = command.add_mutually_exclusive_group()
    choice.add_argument(
        "--strategy", default=DEFAULT_STRATEGY, choices=sorted(STRATEGIES), metavar="NAME",
        help=f"how to lay out the layers: {DEFAULT_STRATEGY} (default), {others} (see the README)",
    )  # fmt: skip
    choice.add_argument(
        "--pipeline",
        metavar="PIPELINE",
        help="a nixpkgs layeringPipeline: a JSON file of steps, or - for stdin (--max-layers then unused)",
    )


def build_parser() -> argparse.ArgumentParser:
    from layered_image import __version__
    from layered_image.options import add_output_arguments, add_push_arguments

    parser = Parser(prog="layered-image", description="Layered Docker/OCI images from Nix closures.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parser.commands = sub.choices  # type: ignore[attr-defined]  # (for leftover arguments)

    layers = sub.add_parser("layers", help="print the layers a strategy makes of a closure graph")
    layers.add_argument(
        "graph", metavar="GRAPH", help="exportReferencesGraph JSON (or .attrs.json); - for stdin"
    )
    layers.add_argument("--key", help="the key holding the graph when GRAPH is an object")
    add_max_layers(layers, WITH_TOP_LAYER)
    add_layering_choice(layers)
    layers.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="PATH",
        help="leave out PATH, a path of GRAPH (repeatable)",
    )
    layers.add_argument("--store-dir", default="/nix/store", help="the Nix store (default /nix/store)")
    layers.set_defaults(run=cmd_layers)

    def layering_options(command: argparse.ArgumentParser) -> None:
        command.add_argument("--key", help="the key holding the graph when a graph file is an object")
        add_max_layers(command, WITH_TOP_LAYER)
        add_layering_choice(command)
        command.add_argument("--store-dir", default="/nix/store", help="the Nix store (default /nix/store)")

    explain = sub.add_parser("explain", help="show each layer a strategy makes: paths, bytes, why together")
    explain.add_argument("graph", metavar="GRAPH", help="as for layers; - for stdin")
    layering_options(explain)
    explain.add_argument("--json", action="store_true", help="JSON instead of a table")
    explain.set_defaults(run=cmd_explain)

    diff = sub.add_parser("diff", help="what an update re-sends to a registry and to a daemon")
    diff.add_argument("old", metavar="OLD_GRAPH", help="as for layers; one of the two may be - for stdin")
    diff.add_argument("new", metavar="NEW_GRAPH")
    layering_options(diff)
    diff.add_argument("--human", action="store_true", help="a table instead of JSON")
    diff.set_defaults(run=cmd_diff)

    validate = sub.add_parser("validate-config", help="check an image config (Docker Image Spec v1.3)")
    validate.add_argument("file", metavar="FILE", help="JSON file holding the `config` object; - for stdin")
    validate.set_defaults(run=cmd_validate_config)

    stream = sub.add_parser("stream", help="write the docker-archive of a conf to stdout or a file")
    stream.add_argument(
        "conf", metavar="CONF", help="conf.json (a superset of nixpkgs' stream conf); - for stdin"
    )
    add_output_arguments(stream)
    stream.set_defaults(run=cmd_stream)

    push = sub.add_parser("push", help="push the image of a conf to a registry (no daemon needed)")
    push.add_argument("conf", metavar="CONF", help="conf.json, as for stream; - for stdin")
    add_push_arguments(push)
    push.set_defaults(run=cmd_push)

    index = sub.add_parser("index", help="push one image per architecture under one OCI image index")
    index.add_argument("confs", nargs="+", metavar="CONF", help="one conf per architecture")
    index.add_argument("--push", dest="destination", required=True, metavar="docker://HOST[:PORT]/REPO:TAG")
    add_push_arguments(index, destination=False)
    index.set_defaults(run=cmd_index)

    from_paths = sub.add_parser("from-paths", help="stream an image of existing store paths (uses nix)")
    from_paths.add_argument("paths", nargs="+", metavar="STOREPATH")
    from_paths.add_argument("--config", metavar="FILE", help="JSON file with the image config; - for stdin")
    add_max_layers(from_paths, WITHOUT_OTHER_LAYERS)
    add_layering_choice(from_paths)
    from_paths.add_argument("--store-dir", default="/nix/store", help="the Nix store (default /nix/store)")
    add_output_arguments(from_paths)
    from_paths.set_defaults(run=cmd_from_paths)

    from layered_image.sbom.options import add_sbom_arguments

    sbom = sub.add_parser("sbom", help="write the image's SBOM: CycloneDX 1.6 or SPDX 2.3 JSON")
    add_sbom_arguments(sbom)
    sbom.set_defaults(run=cmd_sbom)

    # no help=: Python before 3.14 shows help=SUPPRESS as "==SUPPRESS==" in the list
    for name, does in INTERNAL_COMMANDS.items():
        internal = sub.add_parser(name, description=f"(inside Nix builds, not typed) {does}")
        if name == "write-attr":
            internal.add_argument("name")
        internal.set_defaults(run=cmd_build)
    return parser


def run() -> NoReturn:
    """The `layered-image` console script."""
    exit_promptly(main())


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run

    def job() -> int:
        if getattr(args, "pipeline", None) is not None:  # read here, so that a bad file is one line
            from layered_image.layering.pipeline import load_pipeline

            args.pipeline = load_pipeline(args.pipeline)
        code = run(args)
        sys.stdout.flush()  # here, so that a reader gone or a full disk is reported as one line
        return code

    return reporting_errors(f"layered-image {args.command}", job)
