#!/usr/bin/env python3
"""Layering speed and memory: `layered-image layers` on closure graphs, every strategy and
two nixpkgs layeringPipelines (popularity: popularity_contest + limit_layers 99; split: a
subcomponent_out of one path, the rest by popularity, as public flakes write them).

usage: bench/layering.py [GRAPH.json ...] [--synthetic N]

Each figure is the whole command as a user runs it (start-up, JSON, graph, strategy,
output), best of 3, with the peak RSS; next to it the baseline measured in the same
run: a Python process that only parses the same JSON, the least any tool reading the
graph pays. Without GRAPH arguments it uses ../shared/data/graphs/*.json or tests/data.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent


def timed(command: list[str]) -> tuple[float, int]:
    """Best wall time of 3 runs and the peak RSS in MB."""
    best, peak = float("inf"), 0
    for _ in range(3):
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        _, status, usage = os.wait4(process.pid, 0)
        best = min(best, time.perf_counter() - start)
        peak = max(peak, usage.ru_maxrss // 1024)
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit(f"failed: {' '.join(command)}")
    return best, peak


def synthetic_graph(count: int, seed: int = 1) -> list[dict]:
    """A Nix-like closure: a few very popular bottom paths, layers of libraries, many leaves."""
    rng = random.Random(seed)
    paths = [f"/nix/store/{rng.getrandbits(160):032x}"[:43] + f"-pkg{i}-1.0" for i in range(count)]
    entries = []
    for i, path in enumerate(paths):
        deps = set()
        if i + 1 < count:
            for _ in range(rng.randint(0, 8)):
                deps.add(paths[min(count - 1, i + 1 + int(rng.paretovariate(1.2)) * (count - i) // 50)])
        entries.append({"path": path, "references": sorted(deps | {path}), "narSize": rng.randint(1, 10**8),
                        "narHash": "sha256:0", "closureSize": 0})  # fmt: skip
    return entries


def pipeline_arguments(strategy: str, some_path: str) -> list[str]:
    if not strategy.startswith("pipeline:"):
        return ["--strategy", strategy]
    by_popularity = [["popularity_contest"], ["limit_layers", 99]]
    pipeline = {
        "pipeline:popularity": by_popularity,
        "pipeline:split": [["subcomponent_out", [some_path]], ["over", "rest", ["pipe", by_popularity]]],
    }[strategy]
    file = Path(tempfile.mkdtemp()) / "pipeline.json"
    file.write_text(json.dumps(pipeline))
    return ["--pipeline", str(file)]


def default_graphs() -> list[Path]:
    shared = HERE.parent / "shared" / "data" / "graphs"
    folder = shared if shared.is_dir() else HERE / "tests" / "data"
    return sorted(p for p in folder.glob("*.json") if "." not in p.stem)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("graphs", nargs="*", type=Path)
    parser.add_argument("--synthetic", type=int, metavar="N", help="also a generated N-path graph")
    args = parser.parse_args()
    graphs = args.graphs or default_graphs()
    if args.synthetic:
        file = Path(tempfile.mkdtemp()) / f"synthetic-{args.synthetic}.json"
        file.write_text(json.dumps(synthetic_graph(args.synthetic)))
        graphs.append(file)
    strategies = ("popularity", "auto", "stable", "pipeline:popularity", "pipeline:split")
    print(f"{'graph':<28} {'paths':>6} {'json.load (floor)':>18}" + "".join(f"{s:>20}" for s in strategies))
    for graph in graphs:
        entries = json.loads(graph.read_text())
        paths = len(entries)
        floor, _ = timed([sys.executable, "-c", f"import json; json.load(open({str(graph)!r}))"])
        cells = []
        for strategy in strategies:
            command = [sys.executable, "-m", "layered_image", "layers", str(graph)]
            command += pipeline_arguments(strategy, entries[len(entries) // 2]["path"])
            seconds, rss = timed(command)
            cells.append(f"{seconds:6.2f} s {rss:4d} MB")
        print(f"{graph.name:<28} {paths:>6} {floor:16.2f} s" + "".join(f"{cell:>20}" for cell in cells))
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"(peak RSS of any child: {usage.ru_maxrss // 1024} MB)")


if __name__ == "__main__":
    main()
