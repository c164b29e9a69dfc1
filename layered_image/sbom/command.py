"""`layered-image sbom CONF`: the SBOM of the image CONF describes.

The closure graph (NAR hashes, references) is not in the conf: `--graph` names one
(exportReferencesGraph JSON, a derivation's .attrs.json with --key closure, or `nix
path-info --json --recursive` output); without it, nix is asked about the conf's store
paths. Inside the Nix build of `passthru.sbom` (--in-nix-build), the graph and the
contents' `meta` come from the derivation's attributes, and both formats are written.
"""

from __future__ import annotations

import argparse
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from layered_image import strict_json
from layered_image.conf import StreamConf, load_conf
from layered_image.errors import UserError
from layered_image.files import write_file
from layered_image.graph import ClosureGraph, build_graph, load_graph
from layered_image.sbom.contents import ImageContents, PackageMeta, gather, image_layers, meta_by_path
from layered_image.sbom.cyclonedx import cyclonedx_document
from layered_image.sbom.spdx import spdx_document

FORMATS = {"cyclonedx": cyclonedx_document, "spdx": spdx_document}


def sbom_command(args: argparse.Namespace) -> int:
    if args.in_nix_build:
        return nix_build_sbom(args.conf)
    conf = load_conf(args.conf, None)
    graph = load_graph(args.graph, args.key, conf.store_dir) if args.graph else nix_graph(conf)
    text = render(FORMATS[args.format](image_contents(conf, graph)))
    if args.output:
        write_output(Path(args.output), text)
    else:
        sys.stdout.write(text)
    return 0


def image_contents(
    conf: StreamConf, graph: ClosureGraph, meta: dict[str, PackageMeta] | None = None
) -> ImageContents:
    with ExitStack() as resources:
        layers, held_by_base = image_layers(conf, resources)
    return gather(conf, graph, layers, held_by_base, meta)


def nix_graph(conf: StreamConf) -> ClosureGraph:
    """The closure of the conf's store paths, as the store knows it."""
    from layered_image.nix import closure_graph

    paths = sorted({path for layer in conf.store_layers for path in layer})
    return build_graph(closure_graph(paths) if paths else [], conf.store_dir)


def render(document: dict[str, Any]) -> str:
    """Keys in the order built, one space of indent: the same bytes for the same image."""
    return strict_json.dumps(document, indent=1, ensure_ascii=False) + "\n"


def write_output(path: Path, text: str) -> None:
    try:
        write_file(path, text.encode())
    except OSError as err:
        raise UserError(f"cannot write {path}: {err.strerror or err}") from None


def nix_build_sbom(conf_file: str) -> int:
    """`passthru.sbom`: $out/cyclonedx.json and $out/spdx.json, from the image's conf, the
    closure (exportReferencesGraph) and the contents' meta in the derivation's attributes."""
    from layered_image.nix_build import read_attrs

    attrs = read_attrs()
    conf = load_conf(conf_file, None)
    graph = build_graph(attrs.get("closure") or [], conf.store_dir)
    contents = image_contents(conf, graph, meta_by_path(attrs.get("contentsMeta")))
    out = Path(attrs["outputs"]["out"])
    out.mkdir()
    for name, make in FORMATS.items():
        write_output(out / f"{name}.json", render(make(contents)))
    print(f"{conf.repo_tag}: SBOM of {len(contents.store_paths)} store paths", file=sys.stderr)
    return 0


def sbom_for_push(conf: StreamConf) -> bytes:
    """`push --sbom`: the CycloneDX document, made before anything is sent (nix must answer)."""
    return render(cyclonedx_document(image_contents(conf, nix_graph(conf)))).encode()
