#!/usr/bin/env python3
"""Added packages, many of them: what each strategy re-sends above the floor.

usage: bench/additions.py [SCENARIO_DIR...] [--layers 12,20,40,99] [--events 40]

A scenario set has one added package; this makes dozens from each set's base.json
without new graphs. For a path P whose users (P and everything that needs it) hold at
most 10 % of the bytes, the old image is the base without P's users and what only they
needed, and the new image is the whole base: as if P and what uses it had just been
added. Up to --events of them per set, spread evenly over the paths by name. Per
strategy and budget: the mean share of the new image re-sent above the floor, to a
registry and to a daemon (measures as `layered-image diff`), and how many additions cost
more than 10 points above the floor. Default: ../shared/data/reuse, else tests/data/reuse.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

import networkx as nx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from reuse import HERE, measure

from layered_image.graph import build_graph, read_graph_file
from layered_image.layering import STRATEGIES

MAX_USERS_SHARE = 0.10


def without_users_of(graph: nx.DiGraph, path: str) -> set[str]:
    """The closure of the roots that do not use `path`: the image before `path` came."""
    before = graph.subgraph(set(graph) - nx.ancestors(graph, path) - {path})
    roots = [p for p in before if graph.in_degree(p) == 0]
    return set(roots).union(*(nx.descendants(before, root) for root in roots))


Entries = list[dict[str, Any]]


def addition_events(entries: Entries, graph: nx.DiGraph, most: int) -> list[Entries]:
    """Old images (as graph entries), one per path whose users are small enough."""
    total = sum(e["narSize"] for e in entries)
    size = {e["path"]: e["narSize"] for e in entries}
    olds = []
    for entry in sorted(entries, key=lambda e: e["path"][44:]):  # by name, not hash
        keep = without_users_of(graph, entry["path"])
        if keep and total - sum(size[p] for p in keep) <= MAX_USERS_SHARE * total:
            kept = [e for e in entries if e["path"] in keep]
            olds.append([dict(e, references=[r for r in e["references"] if r in keep]) for e in kept])
    return olds[:: max(1, -(-len(olds) // most))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directories", nargs="*", type=Path)
    parser.add_argument("--layers", default="12,20,40,99")
    parser.add_argument("--events", type=int, default=40, help="additions per set at most")
    args = parser.parse_args()
    shared = HERE.parent / "shared" / "data" / "reuse"
    directories = args.directories or [shared if shared.exists() else HERE / "tests" / "data" / "reuse"]
    budgets = [int(n) for n in args.layers.split(",")]
    over: dict[tuple[int, str], list[tuple[float, float]]] = {}
    for directory in directories:
        entries = read_graph_file(directory / "base.json")
        full = build_graph(entries)
        olds = [build_graph(old) for old in addition_events(entries, full.nx, args.events)]
        print(f"{directory}: {len(olds)} additions", file=sys.stderr)
        for layers in budgets:
            for strategy in sorted(STRATEGIES):
                for old in olds:
                    registry, daemon, floor = measure(old, [("add", full)], strategy, layers)["add"]
                    over.setdefault((layers, strategy), []).append((registry - floor, daemon - floor))
    print("| layers | strategy | additions | registry above floor | daemon above floor | daemon >10 points |")
    print("|---|---|---|---|---|---|")
    for (layers, strategy), costs in over.items():
        registry = statistics.mean(c[0] for c in costs)
        daemon = statistics.mean(c[1] for c in costs)
        dear = sum(c[1] > 0.10 for c in costs)
        print(f"| {layers} | {strategy} | {len(costs)} | {registry:.1%} | {daemon:.1%} | {dear} |")


if __name__ == "__main__":
    main()
