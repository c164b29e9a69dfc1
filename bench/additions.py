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

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from reuse import HERE, measure

from layered_image.graph import build_graph, read_graph_file
from layered_image.layering import STRATEGIES

MAX_USERS_SHARE = 0.10


def without_users_of(entries: list[dict[str, Any]], path: str) -> list[dict[str, Any]]:
    """The closure of the roots that do not use `path`: the image before `path` came."""
    referrers: dict[str, list[str]] = {e["path"]: [] for e in entries}
    for entry in entries:
        for reference in entry["references"]:
            if reference != entry["path"]:
                referrers[reference].append(entry["path"])
    users = _reachable([path], referrers.__getitem__)
    by_path = {e["path"]: e for e in entries}
    roots = [p for p, refs in referrers.items() if not refs and p not in users]
    keep = _reachable(roots, lambda p: [r for r in by_path[p]["references"] if r not in users])
    kept = [e for e in entries if e["path"] in keep]
    return [dict(e, references=[r for r in e["references"] if r in keep]) for e in kept]


def _reachable(starts: list[str], successors: Any) -> set[str]:
    seen: set[str] = set()
    stack = list(starts)
    while stack:
        path = stack.pop()
        if path not in seen:
            seen.add(path)
            stack += successors(path)
    return seen


def addition_events(entries: list[dict[str, Any]], most: int) -> list[list[dict[str, Any]]]:
    """Old images (as graph entries), one per path whose users are small enough."""
    total = sum(e["narSize"] for e in entries)
    size = {e["path"]: e["narSize"] for e in entries}
    olds = []
    for entry in sorted(entries, key=lambda e: e["path"][44:]):  # by name, not hash
        old = without_users_of(entries, entry["path"])
        if old and total - sum(size[e["path"]] for e in old) <= MAX_USERS_SHARE * total:
            olds.append(old)
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
        olds = [build_graph(old) for old in addition_events(entries, args.events)]
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
