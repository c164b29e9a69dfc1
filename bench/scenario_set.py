#!/usr/bin/env python3
"""Make a layer-reuse scenario set from Debian's package graph, with the bumps chosen by
a fixed rule rather than by hand (hand-picked bumps flatter whichever model picked them).

usage: bench/scenario_set.py [--random N] OUT_DIR ADDED_PACKAGE ROOT_PACKAGE...

Writes OUT_DIR/base.json (the closure of the roots, by ../shared/tools/debian_graph.py),
then one bump-NAME.json for each of: libc6; the three biggest paths that are not roots;
the two paths with the most direct dependents (besides libc6 and gcc-12-base); the first
root. With --random N, instead N paths drawn at random (seed 1: the same set every
time), as the uniform-update model behind `stable` assumes. And add-ADDED_PACKAGE.json:
the roots plus one more package. Feed OUT_DIR to bench/reuse.py. Needs Debian's package
lists (apt-get update); takes several minutes (one graph per try).
"""

from __future__ import annotations

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


def main() -> None:
    arguments = sys.argv[1:]
    count = int(arguments[1]) if arguments[:1] == ["--random"] else 0
    arguments = arguments[2:] if count else arguments
    if len(arguments) < 3:
        sys.exit(__doc__.strip().splitlines()[2])
    out, added, roots = Path(arguments[0]), arguments[1], tuple(arguments[2:])
    out.mkdir(parents=True, exist_ok=True)
    base = closure_graph(roots)
    (out / "base.json").write_text(json.dumps(base))
    bumps = random_bumps(base, roots, count) if count else chosen_bumps(base, roots)
    for name in bumps:
        (out / f"bump-{name}.json").write_text(json.dumps(closure_graph(roots, name)))
    (out / f"add-{added}.json").write_text(json.dumps(closure_graph((*roots, added))))
    print(f"{out}: {len(base)} paths; bumped {', '.join(bumps)}; added {added}")


if __name__ == "__main__":
    main()
