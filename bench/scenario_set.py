#!/usr/bin/env python3
"""Make a layer-reuse scenario set from Debian's package graph, with the bumps chosen by
a fixed rule rather than by hand (hand-picked bumps flatter whichever model picked them).

usage: bench/scenario_set.py [--random N | --shared-style] OUT_DIR ADDED_PACKAGE ROOT_PACKAGE...

Writes OUT_DIR/base.json (the closure of the roots, by ../shared/tools/debian_graph.py),
then one bump-NAME.json for each of: libc6; the three biggest paths that are not roots;
the two paths with the most direct dependents (besides libc6 and gcc-12-base); the first
root. With --random N, instead N paths drawn at random (seed 1: the same set every
time), as the uniform-update model behind `stable` assumes. With --shared-style, the
kinds of package ../shared/data/reuse bumps: libc6, zlib1g and libssl3 (those present),
the first root, the language runtime in the closure, and the first (by name) library
the first root uses directly that is not one of those. And add-ADDED_PACKAGE.json:
the roots plus one more package. Feed OUT_DIR to bench/reuse.py. Needs Debian's package
lists (apt-get update); takes minutes (one graph per try).
"""

from __future__ import annotations

import argparse
import functools
import json
import random
import subprocess
import sys
from pathlib import Path

GRAPH_TOOL = Path(__file__).resolve().parent.parent.parent / "shared" / "tools" / "debian_graph.py"
ALWAYS_LOW = ("libc6", "gcc-12-base")  # in every closure: bumped once, not counted as popular


@functools.cache
def closure_graph(roots: tuple[str, ...], bump: str | None = None) -> list[dict]:
    extra = ["--bump", bump] if bump else []
    run = subprocess.run([sys.executable, str(GRAPH_TOOL), *roots, *extra], capture_output=True, check=True)
    return json.loads(run.stdout)


def package_name(path: str, roots: tuple[str, ...]) -> str:
    """Store names are NAME-VERSION and both may hold dashes: the shortest prefix whose
    bump gives this path a new hash is the package's name."""
    parts = path.split("/")[-1].split("-")[1:]
    for end in range(1, len(parts)):
        candidate = "-".join(parts[:end])
        if path not in {entry["path"] for entry in closure_graph(roots, candidate)}:
            return candidate
    raise SystemExit(f"cannot tell the package name of {path}")


def chosen_bumps(base: list[dict], roots: tuple[str, ...]) -> list[str]:
    dependents = {entry["path"]: 0 for entry in base}
    for entry in base:
        for reference in entry["references"]:
            if reference != entry["path"]:
                dependents[reference] += 1
    not_roots = [entry for entry in base if dependents[entry["path"]]]
    by_size = sorted(not_roots, key=lambda entry: (-entry["narSize"], entry["path"]))
    biggest = [package_name(entry["path"], roots) for entry in by_size[:3]]
    popular = []
    for path in sorted(dependents, key=lambda p: (-dependents[p], p)):
        name = package_name(path, roots)
        if name not in ALWAYS_LOW and name not in biggest and len(popular) < 2:
            popular.append(name)
    return list(dict.fromkeys(["libc6", *biggest, *popular, roots[0]]))


def random_bumps(base: list[dict], roots: tuple[str, ...], count: int) -> list[str]:
    drawn = random.Random(1).sample(sorted(entry["path"] for entry in base), count)
    return list(dict.fromkeys(package_name(path, roots) for path in drawn))


SHARED_CORE = ("libc6", "zlib1g", "libssl3")  # what ../shared/data/reuse bumps in every closure
RUNTIMES = ("python3.11", "ruby3.1", "php8.2-common", "perl-base", "libnode108", "openjdk-17-jre-headless")


def shared_style_bumps(base: list[dict], roots: tuple[str, ...]) -> list[str]:
    names = [entry["path"].split("/")[-1].split("-", 1)[1] for entry in base]

    def present(package: str) -> bool:
        return any(name.startswith(package + "-") for name in names)

    entries = zip(base, names, strict=True)
    first_root = next(entry for entry, name in entries if name.startswith(roots[0] + "-"))
    bumps = [package for package in SHARED_CORE if present(package)] + [roots[0]]
    bumps += [runtime for runtime in RUNTIMES if present(runtime)][:1]
    references = first_root["references"]
    by_name = sorted((reference.split("/")[-1].split("-", 1)[1], reference) for reference in references)
    for name, reference in by_name:
        if reference != first_root["path"] and name.startswith("lib"):
            library = package_name(reference, roots)
            if library not in (*ALWAYS_LOW, *bumps, "libgcc-s1", "libstdc++6"):
                return [*bumps, library]
    return bumps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--random", type=int, metavar="N", help="bump N paths drawn at random")
    mode.add_argument("--shared-style", action="store_true", help="bump what ../shared/data/reuse bumps")
    parser.add_argument("out", type=Path)
    parser.add_argument("added")
    parser.add_argument("roots", nargs="+")
    args = parser.parse_args()
    roots = tuple(args.roots)
    args.out.mkdir(parents=True, exist_ok=True)
    base = closure_graph(roots)
    (args.out / "base.json").write_text(json.dumps(base))
    if args.random:
        bumps = random_bumps(base, roots, args.random)
    else:
        bumps = shared_style_bumps(base, roots) if args.shared_style else chosen_bumps(base, roots)
    for name in bumps:
        (args.out / f"bump-{name}.json").write_text(json.dumps(closure_graph(roots, name)))
    (args.out / f"add-{args.added}.json").write_text(json.dumps(closure_graph((*roots, args.added))))
    print(f"{args.out}: {len(base)} paths; bumped {', '.join(bumps)}; added {args.added}")


if __name__ == "__main__":
    main()
