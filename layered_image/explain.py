"""`layered-image explain` and `layered-image diff`: what a strategy made of a graph, and
what an update would re-send (measures in resend.py)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from layered_image.graph import ClosureGraph, load_graph
from layered_image.layering import EXPLAIN, PIPELINE, compute_layers
from layered_image.resend import resend


def explain_command(args: argparse.Namespace) -> int:
    graph = load_graph(args.graph, key=args.key, store_dir=args.store_dir)
    layers = compute_layers(graph, args.strategy, args.max_layers, pipeline=args.pipeline)
    reasons = EXPLAIN[_layering(args)](graph, layers, args.max_layers)
    rows = [
        {"layer": number, "bytes": sum(graph.size_of(p) for p in paths), "reason": reason, "paths": paths}
        for number, (paths, reason) in enumerate(zip(layers, reasons, strict=True), start=1)
    ]
    if args.json:
        _print_json({"strategy": _layering(args), "layers": rows})
        return 0
    total = sum(row["bytes"] for row in rows) or 1
    print(f"{'layer':>5} {'paths':>5} {'bytes':>10} {'share':>6}  why together / first paths")
    for row in rows:
        names = ", ".join(_name(p) for p in row["paths"][:3]) + (" ..." if len(row["paths"]) > 3 else "")
        share = row["bytes"] / total
        size = _human(row["bytes"])
        print(f"{row['layer']:>5} {len(row['paths']):>5} {size:>10} {share:>6.1%}  {row['reason']}: {names}")
    print(f"{_layering(args)}: {len(rows)} layers, {len(graph)} paths, {_human(total)}")
    return 0


def _layering(args: argparse.Namespace) -> str:
    return PIPELINE if args.pipeline is not None else args.strategy


def diff_command(args: argparse.Namespace) -> int:
    old = load_graph(args.old, key=args.key, store_dir=args.store_dir)
    new = load_graph(args.new, key=args.key, store_dir=args.store_dir)
    measured = resend(
        compute_layers(old, args.strategy, args.max_layers, pipeline=args.pipeline),
        compute_layers(new, args.strategy, args.max_layers, pipeline=args.pipeline),
        _sizes(new),
        set(old.paths),
    )
    if not args.human:
        _print_json(measured.as_json() | {"strategy": _layering(args), "max_layers": args.max_layers})
        return 0
    print(f"{'layer':>5} {'paths':>5} {'bytes':>10}  registry  daemon")
    for number, layer in enumerate(measured.layers, start=1):
        print(f"{number:>5} {layer.paths:>5} {_human(layer.bytes):>10}  {_state(layer.in_registry):>8}"
              f"  {_state(layer.in_daemon):>6}")  # fmt: skip
    total = measured.total_bytes or 1
    for label, value in (("registry re-send", measured.registry_new_bytes),
                         ("daemon re-send", measured.daemon_new_bytes),
                         ("floor (new paths)", measured.floor_bytes)):  # fmt: skip
        print(f"{label:>18}: {_human(value):>10}  {value / total:6.1%} of {_human(measured.total_bytes)}")
    return 0


def _sizes(graph: ClosureGraph) -> dict[str, int]:
    return dict(zip(graph.paths, graph.nar_size, strict=True))


def _state(present: bool) -> str:
    return "kept" if present else "SENT"


def _name(path: str) -> str:
    return path.rpartition("/")[2].partition("-")[2] or path


def _human(size: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000  # type: ignore[assignment]
    raise AssertionError


def _print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=1)
    sys.stdout.write("\n")
