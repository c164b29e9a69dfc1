"""nixpkgs' `layeringPipeline`: the step language of its flatten_references_graph, run here.

A pipeline is a list of steps, each `[name, *arguments]`, applied in turn to the closure
graph; the result, flattened, is the list of layers. Steps and what they take:

  popularity_contest                 graph -> one single-path graph per path, most popular first
  limit_layers N                     graphs -> the first N-1, then the rest merged into one
  split_every N                      graph -> graphs of N paths each, in graph order
  subcomponent_out PATHS             graph -> {main: PATHS and what they reference, rest}
  subcomponent_in PATHS              graph -> {main: PATHS and what references them, rest}
  split_paths SPECS                  graph -> {main, common, rest} (see split_paths below);
                                     a spec is a path or {"children_of": PATH or [PATHS]}
  remove_paths PATH|PATHS            graph -> graph without them
  over KEY STEP                      {..} -> the same, with STEP applied to the value at KEY
  map STEP                           graphs -> STEP applied to each
  pipe [STEPS]                       anything -> STEPS applied in turn
  reverse                            graphs -> in reverse order
  flatten                            nested results -> one list of graphs

The result must be what nixpkgs gives for the same graph and pipeline, path for path and
in the same order, so the graph is kept as nixpkgs' igraph keeps it: vertices in an order
(the graph's paths sorted by NAR size, stably), and every derived graph keeps that
relative order. A pipeline is checked whole before it runs: an unknown step, a wrong
argument, a path the closure does not hold, or a step given the wrong kind of input is
refused in one line naming the step. A path the closure holds but an earlier step moved
elsewhere is skipped, as nixpkgs skips it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from layered_image.errors import UserError
from layered_image.graph import ClosureGraph
from layered_image.layering.popularity import popularity

FAKE_ROOT = -1  # split_paths' temporary root above all roots


class PipelineError(UserError):
    pass


@dataclass(frozen=True)
class Graph:
    """A subgraph as igraph holds it: vertices (indices into the closure) in order, and the
    edges among them (a vertex's successors; split_paths deletes some)."""

    vertices: tuple[int, ...]
    successors: dict[int, frozenset[int]]

    def induced(self, keep: set[int] | frozenset[int]) -> Graph:
        vertices = tuple(v for v in self.vertices if v in keep)
        return Graph(vertices, {v: self.successors[v] & keep for v in vertices})

    def without(self, drop: set[int] | frozenset[int]) -> Graph:
        return self.induced(frozenset(self.vertices) - drop)

    def reachable(self, starts: Iterable[int], forward: bool = True) -> set[int]:
        edges = self.successors if forward else self.predecessors()
        seen: set[int] = set()
        todo = [v for v in starts if v in edges]
        while todo:
            v = todo.pop()
            if v not in seen:
                seen.add(v)
                todo.extend(edges[v] - seen)
        return seen

    def predecessors(self) -> dict[int, frozenset[int]]:
        result: dict[int, set[int]] = {v: set() for v in self.vertices}
        for v, targets in self.successors.items():
            for target in targets:
                result[target].add(v)
        return {v: frozenset(users) for v, users in result.items()}


# What flows between steps: a graph, a dict of graphs (main/common/rest), or a list of results.
Data = Graph | dict[str, "Data"] | list["Data"]
Step = Callable[[Data], Data]


@dataclass(frozen=True)
class Closure:
    """The closure graph the pipeline runs on: paths by index, and by name."""

    graph: ClosureGraph
    index: dict[str, int]

    def indices(self, paths: Iterable[str], within: Graph) -> list[int]:
        present = set(within.vertices)
        return [self.index[p] for p in paths if self.index.get(p) in present]


def run_pipeline(
    graph: ClosureGraph, pipeline: Any, exclude: frozenset[str] = frozenset()
) -> list[list[str]]:
    """The layers nixpkgs' flatten_references_graph makes of `graph` with `pipeline`,
    `exclude` left out first (with every reference to them), as nixpkgs does."""
    kept = [i for i, path in enumerate(graph.paths) if path not in exclude]
    closure = Closure(graph, {graph.paths[i]: i for i in kept})
    step = compile_pipeline(pipeline, closure)
    # nixpkgs sorts the graph's entries by NAR size (a stable sort) before making its vertices
    vertices = tuple(sorted(kept, key=lambda i: graph.nar_size[i]))
    keep = frozenset(vertices)
    start = Graph(vertices, {v: frozenset(graph.references[v]) & keep for v in vertices})
    result = step(start)
    return [[graph.paths[v] for v in layer.vertices] for layer in _flatten_result(result) if layer.vertices]


def load_pipeline(file: str | Path) -> Any:
    """A pipeline in a JSON file (nixpkgs' format: the list of steps), or `-` for stdin."""
    from layered_image.config import load_json_file

    return load_json_file(file, "pipeline")


# -- checking and compiling ------------------------------------------------------------------


def compile_pipeline(pipeline: Any, closure: Closure, where: str = "pipeline") -> Step:
    if not isinstance(pipeline, list):
        raise PipelineError(f'{where}: a pipeline is a list of steps such as ["popularity_contest"]')
    steps = [_compile_step(step, closure, f"{where} step {n}") for n, step in enumerate(pipeline, start=1)]

    def run(data: Data) -> Data:
        for step in steps:
            data = step(data)
        return data

    return run


def _compile_step(step: Any, closure: Closure, where: str) -> Step:
    if not isinstance(step, list) or not step or not isinstance(step[0], str):
        raise PipelineError(f"{where}: a step is a list [NAME, ARGUMENTS...], got {json.dumps(step)[:80]}")
    name, *args = step
    if name not in STEPS:
        raise PipelineError(f"{where}: unknown step {name!r}; steps are: {', '.join(sorted(STEPS))}")
    arity, make = STEPS[name]
    where = f"{where} ({name})"
    if len(args) != arity:
        raise PipelineError(f"{where}: takes {arity} argument(s), got {len(args)}")
    return make(args, closure, where)


def _count(value: Any, where: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise PipelineError(f"{where}: expects a whole number of at least 1, got {json.dumps(value)}")
    return value


def _paths(value: Any, closure: Closure, where: str, one_allowed: bool = False) -> list[str]:
    if one_allowed and isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        raise PipelineError(f"{where}: expects a list of store paths, got {json.dumps(value)[:80]}")
    for path in value:
        _known(path, closure, where)
    return value


def _known(path: str, closure: Closure, where: str) -> None:
    if path not in closure.index:
        raise PipelineError(f"{where}: {path} is not in the closure graph")


def _expect(data: Data, kind: type, where: str) -> None:
    if not isinstance(data, kind):
        wanted = {
            Graph: "a graph",
            dict: "the result of a split (main/common/rest)",
            list: "a list of graphs",
        }
        raise PipelineError(f"{where}: expects {wanted[kind]}, got {_describe(data)}")


def _describe(data: Data) -> str:
    if isinstance(data, Graph):
        return "a graph"
    if isinstance(data, dict):
        return f"a split ({'/'.join(data) or 'empty'}); apply steps to its parts with over"
    return "a list (use map to apply a step to each, or flatten)"


# -- the steps ---------------------------------------------------------------------------


def _popularity_contest(args: list[Any], closure: Closure, where: str) -> Step:
    def run(data: Data) -> Data:
        _expect(data, Graph, where)
        assert isinstance(data, Graph)
        return [Graph((v,), {v: frozenset()}) for v in _by_popularity(data, closure)]

    return run


def _by_popularity(graph: Graph, closure: Closure) -> list[int]:
    """Most popular first, ties by name: nixpkgs' contest, within this graph."""
    from layered_image.layering.popularity import name_key

    local = {v: n for n, v in enumerate(graph.vertices)}
    sub = ClosureGraph(
        paths=[closure.graph.paths[v] for v in graph.vertices],
        nar_size=[closure.graph.nar_size[v] for v in graph.vertices],
        nar_hash=["" for _ in graph.vertices],
        references=[sorted(local[r] for r in graph.successors[v]) for v in graph.vertices],
    )
    scores = popularity(sub)
    ranked = sorted(range(len(sub)), key=lambda n: (-scores[sub.paths[n]], name_key(sub.paths[n])))
    return [graph.vertices[n] for n in ranked]


def _limit_layers(args: list[Any], closure: Closure, where: str) -> Step:
    limit = _count(args[0], where)

    def run(data: Data) -> Data:
        _expect(data, list, where)
        assert isinstance(data, list)
        graphs = [_as_graph(item, where) for item in data]
        if len(graphs) < limit:
            return graphs
        return [*graphs[: limit - 1], _union(graphs[limit - 1 :])]

    return run


def _union(graphs: list[Graph]) -> Graph:
    """igraph's disjoint union: the vertices one after the other, no edges between them."""
    vertices = tuple(v for graph in graphs for v in graph.vertices)
    successors: dict[int, frozenset[int]] = {}
    for graph in graphs:
        successors.update(graph.successors)
    return Graph(vertices, successors)


def _split_every(args: list[Any], closure: Closure, where: str) -> Step:
    size = _count(args[0], where)

    def run(data: Data) -> Data:
        _expect(data, Graph, where)
        assert isinstance(data, Graph)
        chunks = [data.vertices[i : i + size] for i in range(0, len(data.vertices), size)]
        return [data.induced(frozenset(chunk)) for chunk in chunks]

    return run


def _subcomponent(forward: bool) -> Callable[[list[Any], Closure, str], Step]:
    def make(args: list[Any], closure: Closure, where: str) -> Step:
        paths = _paths(args[0], closure, where)

        def run(data: Data) -> Data:
            _expect(data, Graph, where)
            assert isinstance(data, Graph)
            main = data.reachable(closure.indices(paths, data), forward)
            return {"main": data.induced(main), "rest": data.without(main)}

        return run

    return make


def _remove_paths(args: list[Any], closure: Closure, where: str) -> Step:
    paths = _paths(args[0], closure, where, one_allowed=True)

    def run(data: Data) -> Data:
        _expect(data, Graph, where)
        assert isinstance(data, Graph)
        return data.without(set(closure.indices(paths, data)))

    return run


def _split_paths(args: list[Any], closure: Closure, where: str) -> Step:
    specs = args[0]
    if not isinstance(specs, list):
        raise PipelineError(
            f'{where}: expects a list of paths or {{"children_of": ...}}, got {json.dumps(specs)[:80]}'
        )
    for spec in specs:
        if isinstance(spec, dict):
            if set(spec) != {"children_of"}:
                raise PipelineError(
                    f"{where}: a split spec object has one key, children_of; got {json.dumps(spec)[:80]}"
                )
            _paths(spec["children_of"], closure, where, one_allowed=True)
        elif isinstance(spec, str):
            _known(spec, closure, where)
        else:
            raise PipelineError(
                f'{where}: a split spec is a path or {{"children_of": ...}}, got {json.dumps(spec)[:80]}'
            )

    def run(data: Data) -> Data:
        _expect(data, Graph, where)
        assert isinstance(data, Graph)
        return split_paths(data, _split_targets(specs, data, closure))

    return run


def _split_targets(specs: list[Any], graph: Graph, closure: Closure) -> set[int]:
    targets: set[int] = set()
    for spec in specs:
        if isinstance(spec, dict):
            children = spec["children_of"]
            for parent in closure.indices([children] if isinstance(children, str) else children, graph):
                targets |= graph.successors[parent]
        else:
            targets.update(closure.indices([spec], graph))
    return targets


def split_paths(graph: Graph, targets: set[int]) -> dict[str, Data]:
    """nixpkgs' split: `main` = the targets and what only they reach, `common` = what they
    and the rest both reach, `rest` = the others; edges into the targets are cut first,
    and a root is put above the graph's roots when it has several."""
    if not targets:
        return {"rest": graph}
    users = graph.predecessors()
    roots = [v for v in graph.vertices if not users[v]]
    if len(roots) == 1:
        root, rooted = roots[0], graph
    else:
        root = FAKE_ROOT
        rooted = Graph((*graph.vertices, FAKE_ROOT), graph.successors | {FAKE_ROOT: frozenset(roots)})
    if root in targets:
        return {"main": graph}
    split_off = rooted.reachable(targets)
    cut = Graph(rooted.vertices, {v: targets_of - targets for v, targets_of in rooted.successors.items()})
    rest_with_common = cut.reachable([root])
    common = split_off & rest_with_common
    parts = {
        "main": cut.induced(split_off - common),
        "common": cut.induced(common),
        "rest": cut.induced(rest_with_common - common - {FAKE_ROOT}),
    }
    return {key: part for key, part in parts.items() if part.vertices}


def _over(args: list[Any], closure: Closure, where: str) -> Step:
    key, inner = args
    if not isinstance(key, str):
        raise PipelineError(
            f"{where}: the first argument is a key (main, common, rest), got {json.dumps(key)}"
        )
    step = _compile_step(inner, closure, f"{where} {key}")

    def run(data: Data) -> Data:
        _expect(data, dict, where)
        assert isinstance(data, dict)
        if key not in data:
            raise PipelineError(
                f"{where}: the split has no {key!r} part (it has: {', '.join(data) or 'none'})"
            )
        return data | {key: step(data[key])}

    return run


def _map(args: list[Any], closure: Closure, where: str) -> Step:
    step = _compile_step(args[0], closure, f"{where} each")

    def run(data: Data) -> Data:
        _expect(data, list, where)
        assert isinstance(data, list)
        return [step(item) for item in data]

    return run


def _pipe(args: list[Any], closure: Closure, where: str) -> Step:
    return compile_pipeline(args[0], closure, where)


def _reverse(args: list[Any], closure: Closure, where: str) -> Step:
    def run(data: Data) -> Data:
        _expect(data, list, where)
        assert isinstance(data, list)
        return data[::-1]

    return run


def _flatten(args: list[Any], closure: Closure, where: str) -> Step:
    def run(data: Data) -> Data:
        return list(_flatten_result(data, where))

    return run


def _flatten_result(data: Data, where: str = "pipeline result") -> list[Graph]:
    if isinstance(data, Graph):
        return [data]
    items = data.values() if isinstance(data, dict) else data
    return [graph for item in items for graph in _flatten_result(item, where)]


def _as_graph(item: Data, where: str) -> Graph:
    if not isinstance(item, Graph):
        raise PipelineError(f"{where}: expects a list of graphs, got a list holding {_describe(item)}")
    return item


STEPS: dict[str, tuple[int, Callable[[list[Any], Closure, str], Step]]] = {
    "popularity_contest": (0, _popularity_contest),
    "limit_layers": (1, _limit_layers),
    "split_every": (1, _split_every),
    "subcomponent_out": (1, _subcomponent(forward=True)),
    "subcomponent_in": (1, _subcomponent(forward=False)),
    "split_paths": (1, _split_paths),
    "remove_paths": (1, _remove_paths),
    "over": (2, _over),
    "map": (1, _map),
    "pipe": (1, _pipe),
    "reverse": (0, _reverse),
    "flatten": (0, _flatten),
}
