#!/usr/bin/env python3
"""Layer reuse: what each layering strategy re-sends after an update, against the floor.

usage: bench/reuse.py [SCENARIO_DIR...] [--plot FILE.png] [--layers 99,20]

A scenario directory holds base.json (a closure graph) and variants of it: bump-*.json
(one package at a new version, it and its dependents with new store paths, as Nix
rebuilds) and add-*.json (a package added). Default: ../shared/data/reuse, else
tests/data/reuse. For every strategy, at each layer budget, the mean over the variants of
the share of the new image's bytes that must be sent again: to a registry (layers whose
exact path set the old image lacks) and to a daemon (layers from the first one that
differs, bottom up). The floor is the bytes of paths that really changed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from layered_image.graph import ClosureGraph, load_graph
from layered_image.layering import STRATEGIES, compute_layers
from layered_image.resend import resend

HERE = Path(__file__).resolve().parent.parent


def scenarios(directory: Path) -> tuple[ClosureGraph, list[tuple[str, ClosureGraph]]]:
    variants = sorted([*directory.glob("bump-*.json"), *directory.glob("add-*.json")])
    return load_graph(directory / "base.json"), [(path.stem, load_graph(path)) for path in variants]


def measure(base: ClosureGraph, variants: list[tuple[str, ClosureGraph]], strategy: str, layers: int) -> dict:
    old = compute_layers(base, strategy, layers)
    rows = {}
    for name, new in variants:
        sizes = dict(zip(new.paths, new.nar_size, strict=True))
        result = resend(old, compute_layers(new, strategy, layers), sizes, set(base.paths))
        total = result.total_bytes
        rows[name] = (
            result.registry_new_bytes / total,
            result.daemon_new_bytes / total,
            result.floor_bytes / total,
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directories", nargs="*", type=Path)
    parser.add_argument("--plot", type=Path, help="write a PNG of re-send per scenario (needs matplotlib)")
    parser.add_argument("--layers", default="99,20")
    args = parser.parse_args()
    shared = HERE.parent / "shared" / "data" / "reuse"
    directories = args.directories or [shared if shared.exists() else HERE / "tests" / "data" / "reuse"]
    budgets = [int(n) for n in args.layers.split(",")]
    results = {}
    for directory in directories:
        base, variants = scenarios(directory)
        print(f"\n{directory} ({len(base)} paths, {len(variants)} variants)")
        print("| layers | strategy | registry re-send | daemon re-send |\n|---|---|---|---|")
        for layers in budgets:
            floor = None
            for strategy in sorted(STRATEGIES):
                rows = measure(base, variants, strategy, layers)
                results[(directory.name, layers, strategy)] = rows
                registry = statistics.mean(r[0] for r in rows.values())
                daemon = statistics.mean(r[1] for r in rows.values())
                floor = statistics.mean(r[2] for r in rows.values())
                print(f"| {layers} | {strategy} | {registry:.1%} | {daemon:.1%} |")
            print(f"| {layers} | floor | {floor:.1%} | {floor:.1%} |")
    if len(directories) > 1:
        print_sets_table(results, [d.name for d in directories], budgets)
    if args.plot:
        plot(results, args.plot)


def print_sets_table(results: dict, names: list[str], budgets: list[int]) -> None:
    """One row per scenario set, then one over every scenario of them: mean registry / daemon re-send."""
    columns = [(layers, strategy) for layers in budgets for strategy in sorted(STRATEGIES)]
    print("\n| set | floor | " + " | ".join(f"{s} {n}" for n, s in columns) + " |")
    print("|---" * (len(columns) + 2) + "|")
    for label, sets in [*((name, [name]) for name in names), ("every scenario", names)]:
        cells = []
        for layers, strategy in columns:
            rows = [row for name in sets for row in results[(name, layers, strategy)].values()]
            registry, daemon = (statistics.mean(r[k] for r in rows) for k in (0, 1))
            cells.append(f"{registry:.1%} / {daemon:.1%}")
        first = columns[0]
        floor = statistics.mean(r[2] for name in sets for r in results[(name, *first)].values())
        print(f"| {label} | {floor:.1%} | " + " | ".join(cells) + " |")


def plot(results: dict, target: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = sorted({(d, n) for d, n, _ in results})
    figure, axes = plt.subplots(len(keys), 2, figsize=(13, 3.2 * len(keys)), squeeze=False)
    for row, (directory, layers) in enumerate(keys):
        strategies = sorted(s for d, n, s in results if (d, n) == (directory, layers))
        names = list(results[(directory, layers, strategies[0])])
        for column, measure_name in enumerate(("registry", "daemon")):
            axis = axes[row][column]
            width = 0.8 / (len(strategies) + 1)
            for k, strategy in enumerate(strategies):
                values = [results[(directory, layers, strategy)][n][column] * 100 for n in names]
                axis.bar([i + k * width for i in range(len(names))], values, width, label=strategy)
            floor = [results[(directory, layers, strategies[0])][n][2] * 100 for n in names]
            axis.bar([i + len(strategies) * width for i in range(len(names))], floor, width, label="floor",
                     color="grey")  # fmt: skip
            axis.set_xticks([i + 0.4 for i in range(len(names))], names, rotation=20, fontsize=7)
            axis.set_ylabel("% of image re-sent")
            axis.set_title(f"{directory}, {layers} layers: {measure_name} re-send", fontsize=9)
            axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(target, dpi=90)
    print(f"\nplot: {target}")


if __name__ == "__main__":
    main()
