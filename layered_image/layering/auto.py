"""nixpkgs' auto-layer (its current default), giving the same layer sets.

Repeatedly the largest remaining path by narSize becomes a "primary". Each path is
keyed by the set of primaries it belongs with: a primary by itself; a dependency D
of primary L joins L unless something that uses D does not use L, in which case D
keeps the primaries common to all its users. One layer per distinct key; we stop
before the number of layers would exceed the limit. Layers are ordered by the
narSize of their closure, so a layer comes after the layers it depends on.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from layered_image.graph import ClosureGraph

if TYPE_CHECKING:
    import networkx as nx

Key = frozenset[str]


def layer(closure: ClosureGraph, max_layers: int, exclude: frozenset[str]) -> list[list[str]]:
    graph = closure.nx
    split = split_by_primaries(graph, max_layers)
    groups: dict[Key, list[str]] = {}
    for path, key in split.items():
        groups.setdefault(key, []).append(path)
    ordered = sorted(groups.values(), key=lambda paths: _closure_order(graph, paths))
    return [sorted((p for p in paths if p not in exclude), key=path_key) for paths in ordered]


def split_by_primaries(graph: nx.DiGraph, max_layers: int) -> dict[str, Key]:
    """Map every path to its key, the set of primaries it belongs with."""
    split: dict[str, Key] = dict.fromkeys(graph, frozenset())
    # Largest last so pop() takes it; equal sizes: the greatest path first, as nixpkgs
    # does for its input (sorted by path) with a stable sort.
    candidates = sorted(graph, key=lambda p: (graph.nodes[p]["nar_size"], p))
    while candidates:
        primary = candidates.pop()
        proposed = _with_primary(graph, split, primary)
        if len(set(proposed.values())) > max_layers:
            break
        split = proposed
    return split


def _with_primary(graph: nx.DiGraph, split: dict[str, Key], primary: str) -> dict[str, Key]:
    proposed = dict(split)
    proposed[primary] = frozenset((primary,))
    import networkx

    deps = networkx.descendants(graph, primary)
    users = networkx.ancestors(graph, primary)
    for dep in deps:
        key = proposed[dep] - users
        if not key & deps:
            key |= {primary}
        proposed[dep] = key
    return proposed


def path_key(path: str) -> tuple[str, str]:
    """Sort by name, then by hash part."""
    head, _, name = path.partition("-")
    return name, head


def _closure_order(graph: nx.DiGraph, paths: list[str]) -> tuple[int, list[str]]:
    import networkx

    closure = set(paths)
    for path in paths:
        closure |= networkx.descendants(graph, path)
    return sum(graph.nodes[p]["nar_size"] for p in closure), sorted(paths)
