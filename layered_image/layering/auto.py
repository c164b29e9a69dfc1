"""nixpkgs' auto-layer (its current default), giving the same layer sets.

Repeatedly the largest remaining path by narSize becomes a "primary". Each path is
keyed by the set of primaries it belongs with: a primary by itself; a dependency D
of primary L joins L unless something that uses D does not use L, in which case D
keeps the primaries common to all its users. One layer per distinct key; we stop
before the number of layers would exceed the limit. Layers are ordered by the
narSize of their closure, so a layer comes after the layers it depends on.
"""

from __future__ import annotations

from collections import Counter
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
    layers = Counter(split.values())  # paths per distinct key: one layer per key
    # Largest last so pop() takes it; equal sizes: the greatest path first, as nixpkgs
    # does for its input (sorted by path) with a stable sort.
    candidates = sorted(graph, key=lambda p: (graph.nodes[p]["nar_size"], p))
    while candidates:
        changes = _with_primary(graph, split, candidates.pop())
        proposed = layers.copy()
        for path, key in changes.items():
            proposed[split[path]] -= 1
            proposed[key] += 1
        if sum(1 for count in proposed.values() if count) > max_layers:
            break
        split.update(changes)
        layers = +proposed  # drops keys no path has any more
    return split


def _with_primary(graph: nx.DiGraph, split: dict[str, Key], primary: str) -> dict[str, Key]:
    """The keys that change when `primary` becomes a primary."""
    import networkx

    changes = {primary: frozenset((primary,))}
    deps = networkx.descendants(graph, primary)
    users = networkx.ancestors(graph, primary)
    for dep in deps:
        key = split[dep] - users
        if not key & deps:
            key |= {primary}
        changes[dep] = key
    return changes


def path_key(path: str) -> tuple[str, str]:
    """Sort by name, then by hash part."""
    head, _, name = path.partition("-")
    return name, head


def _closure_order(graph: nx.DiGraph, paths: list[str]) -> tuple[int, list[str]]:
    """The layer's closure size (one traversal from all its paths at once), then its names."""
    closure = set(paths)
    todo = list(paths)
    while todo:
        for dep in graph.successors(todo.pop()):
            if dep not in closure:
                closure.add(dep)
                todo.append(dep)
    return sum(graph.nodes[p]["nar_size"] for p in closure), sorted(paths)


def explain(closure: ClosureGraph, layers: list[list[str]], max_layers: int) -> list[str]:
    split = split_by_primaries(closure.nx, max_layers)
    reasons = []
    for paths in layers:
        key = split[paths[0]] if paths else frozenset()
        names = ", ".join(sorted(p.partition("-")[2] for p in key)) or "none"
        reasons.append(f"primary {names}" if len(key) == 1 and paths[0] in key else f"shared by {names}")
    return reasons
