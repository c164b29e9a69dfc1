"""The popularity contest, exactly as nixpkgs' referencesByPopularity orders paths.

W(u) is the number of distinct paths from any root to u (a root has W = 1), and a
path's popularity is the sum of W over itself and all its ancestors. Paths are
ordered by popularity, highest first, ties by name with the hash moved to the end.
The first N-1 paths get a layer each and the rest share the last one.

nixpkgs gets there by unfolding the graph into a tree of dicts (about 19 s for 14,000
paths); here ancestor sets are Python ints used as bitsets, so the work is
proportional to the number of (ancestor, descendant) pairs. The numbers grow
exponentially with depth and stay exact Python ints.
"""

from __future__ import annotations

from layered_image.graph import ClosureGraph


def layer(graph: ClosureGraph, max_layers: int, exclude: frozenset[str]) -> list[list[str]]:
    ordered = [path for path in order(graph) if path not in exclude]
    head = [[path] for path in ordered[: max_layers - 1]]
    tail = ordered[max_layers - 1 :]
    return head + ([tail] if tail else [])


def order(graph: ClosureGraph) -> list[str]:
    scores = popularity(graph)
    return sorted(scores, key=lambda path: (-scores[path], name_key(path)))


def name_key(path: str) -> str:
    """`/nix/store/HASH-name-1.0` -> `name-1.0-/nix/store/HASH`: sort by name, then hash."""
    head, sep, rest = path.partition("-")
    return rest + sep + head if sep else path


def popularity(graph: ClosureGraph) -> dict[str, int]:
    size = len(graph)
    root_paths = [1] * size  # W
    ancestors = [0] * size  # bitsets over indices, the path itself included
    scores = [0] * size
    referrers = graph.referrers
    for i in graph.order:  # referrers first
        parents = referrers[i]
        bits = 1 << i
        for p in parents:
            bits |= ancestors[p]
        ancestors[i] = bits
        if not parents:
            scores[i] = 1
            continue
        root_paths[i] = sum(root_paths[p] for p in parents)
        # Start from the parent with the largest score (its ancestor set is the largest
        # or not contained in another's) and add what the others bring: usually few bits.
        best = max(parents, key=scores.__getitem__)
        scores[i] = scores[best] + _weighted_bit_sum(bits & ~ancestors[best], root_paths)
    return dict(zip(graph.paths, scores, strict=True))


def _weighted_bit_sum(bits: int, weights: list[int]) -> int:
    """Sum of weights[i] over the set bits i of `bits`."""
    total = 0
    if bits.bit_count() <= 32:
        while bits:
            low = bits & -bits
            total += weights[low.bit_length() - 1]
            bits ^= low
        return total
    digits = format(bits, "b")[::-1]  # dense: scanning text is fast in C
    position = digits.find("1")
    while position >= 0:
        total += weights[position]
        position = digits.find("1", position + 1)
    return total


def explain(graph: ClosureGraph, layers: list[list[str]]) -> list[str]:
    scores = popularity(graph)
    reasons = []
    for paths in layers:
        top = max((scores[p] for p in paths), default=0)
        one = len(paths) == 1
        reasons.append(f"popularity {top}" if one else f"the rest: popularity {top} and below")
    return reasons
