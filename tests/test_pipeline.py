"""layeringPipeline against nixpkgs' own flatten_references_graph: every case in
tests/data/pipelines (made by running nixpkgs' code, see its README) gives the same
layers in the same order here, or, where nixpkgs fails or silently does something odd,
a one-line refusal naming the step."""

from __future__ import annotations

import gzip
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli

from layered_image.errors import UserError
from layered_image.graph import ClosureGraph, build_graph, read_graph_file
from layered_image.layering.pipeline import run_pipeline

DATA = Path(__file__).parent / "data"
CASES = sorted((DATA / "pipelines").glob("*.json"))

# Where nixpkgs fails or gives something no user wants, and what happens here instead.
REFUSED_HERE = {  # nixpkgs' answer -> our one-line error
    "edge-split_every-negative": "expects a whole number of at least 1",  # nixpkgs: the image disappears
    "edge-split_paths-string-not-list": "expects a list of paths",  # nixpkgs: looks up each character
    "edge-subcomponent_out-string-not-list": "expects a list of store paths",
    "edge-limit_layers-true": "expects a whole number of at least 1",  # nixpkgs: true is 1
    "edge-limit_layers-on-dict": "expects a list of graphs",  # nixpkgs: a layer of the words main, rest
}
# nixpkgs' split adds a vertex "__root__" above the roots: a path of that name is lost there
KEEPS_EVERY_PATH_HERE = {"edge-graph-contains-__root__"}
ONE_LAYER_HERE = "'Graph' object is not iterable"  # a pipeline ending on a graph: here its one layer


@cache
def graph_file(name: str) -> tuple[ClosureGraph, tuple[str, ...]]:
    file = DATA / name
    entries = (
        json.loads(gzip.decompress(file.with_suffix(".json.gz").read_bytes())) if not file.exists() else None
    )
    entries = entries if entries is not None else read_graph_file(file)
    return build_graph(entries), tuple(entry["path"] for entry in entries)


def as_store_path(name: str) -> str:
    """nixpkgs' unit tests name vertices A, B, Root1: give them a store directory."""
    return name if name.startswith("/") else f"/nix/store/{name}"


def rename(value: Any, names: set[str]) -> Any:
    if isinstance(value, list):
        return [rename(item, names) for item in value]
    if isinstance(value, dict):
        return {key: rename(item, names) for key, item in value.items()}
    if isinstance(value, str) and (value in names or re.fullmatch(r"[A-Z][A-Za-z0-9_]*", value)):
        return as_store_path(value)
    return value


def load_case(file: Path) -> tuple[ClosureGraph | Exception, Any, frozenset[str], dict[str, Any]]:
    case = json.loads(file.read_text())
    pipeline, exclude = case["pipeline"], case.get("exclude_paths") or []
    if isinstance(case["graph"], str):
        graph, paths = graph_file(case["graph"])
        if "layers_by_index" in case:
            case["layers"] = [[paths[i] for i in layer] for layer in case["layers_by_index"]]
        return graph, pipeline, frozenset(exclude), case
    names = {entry.get("path") for entry in case["graph"]}
    entries = rename(case["graph"], names)
    for entry in entries:
        entry["path"] = as_store_path(entry["path"])
        entry["references"] = [as_store_path(r) for r in entry.get("references", [])]
    if "layers" in case:
        case["layers"] = rename(case["layers"], names)
    try:
        graph: ClosureGraph | Exception = build_graph(entries)
    except UserError as err:
        graph = err
    return graph, rename(pipeline, names), frozenset(rename(exclude, names)), case


def without_unknown_paths(pipeline: Any, known: set[str]) -> Any:
    if isinstance(pipeline, list):
        return [without_unknown_paths(item, known) for item in pipeline if not unknown_path(item, known)]
    if isinstance(pipeline, dict):
        return {key: without_unknown_paths(item, known) for key, item in pipeline.items()}
    return pipeline


def unknown_path(item: Any, known: set[str]) -> bool:
    return isinstance(item, str) and (item.startswith("/") or item == "__root__") and item not in known


@pytest.mark.parametrize("file", CASES, ids=[file.stem for file in CASES])
def test_the_same_layers_as_nixpkgs(file):
    graph, pipeline, exclude, case = load_case(file)
    if isinstance(graph, Exception):  # a broken graph: duplicates, a missing field, or a cycle
        assert "\n" not in str(graph)  # (Nix closures have none; nixpkgs layers one anyway)
        assert "error" in case or "reference cycle" in str(graph), case
        return
    if not case["seeds_agree"]:  # nixpkgs' order depends on Python's hash seed: no answer to match
        return
    try:
        layers = run_pipeline(graph, pipeline, exclude)
    except UserError as err:
        message = str(err)
        assert "\n" not in message and message.startswith("pipeline step"), message
        if file.stem in REFUSED_HERE:
            assert REFUSED_HERE[file.stem] in message
        elif "layers" in case:  # nixpkgs skips paths the graph lacks; here a named path must exist
            assert "is not in the closure graph" in message
            # and without them, the same layers as nixpkgs gave by skipping them
            assert (
                run_pipeline(graph, without_unknown_paths(pipeline, set(graph.paths)), exclude)
                == case["layers"]
            )
        return
    if file.stem in KEEPS_EVERY_PATH_HERE:
        assert sorted(path for layer in layers for path in layer) == sorted(graph.paths)
    elif "layers" in case:
        assert layers == case["layers"]
    else:
        assert case["error"].endswith(ONE_LAYER_HERE) and len(layers) <= 1, (case["error"], layers)


def test_every_step_kind_is_covered():
    steps: set[str] = set()

    def collect(pipeline: Any) -> None:
        if isinstance(pipeline, list) and pipeline and isinstance(pipeline[0], str):
            steps.add(pipeline[0])
        if isinstance(pipeline, list):
            for item in pipeline:
                collect(item)

    for file in CASES:
        case = json.loads(file.read_text())
        if "layers" in case or "layers_by_index" in case:
            collect(case["pipeline"])
    expected = {"popularity_contest", "limit_layers", "split_every", "subcomponent_out", "subcomponent_in",
                "split_paths", "remove_paths", "over", "map", "pipe", "reverse", "flatten"}  # fmt: skip
    assert expected <= steps


def test_the_command_line_prints_nixpkgs_layers(tmp_path):
    case = json.loads((DATA / "pipelines" / "gnome-kde-production-style.json").read_text())
    _, paths = graph_file("gnome-kde.json")
    pipeline = tmp_path / "pipeline.json"
    pipeline.write_text(json.dumps(case["pipeline"]))
    result = run_cli("layers", str(DATA / "gnome-kde.json"), "--pipeline", str(pipeline))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [[paths[i] for i in layer] for layer in case["layers_by_index"]]
    for command in (
        ["explain", str(DATA / "gnome-kde.json")],
        ["diff", str(DATA / "scipy.json"), str(DATA / "scipy.json")],
    ):
        used = run_cli(*command, "--pipeline", str(pipeline) if command[0] == "explain" else "-",
                       input=b'[["popularity_contest"], ["limit_layers", 5]]')  # fmt: skip
        assert used.returncode == 0, used.stderr


@pytest.mark.parametrize(
    ("pipeline", "message"),
    [
        ('[["popularity_contes"]]', "pipeline step 1: unknown step 'popularity_contes'"),
        ('[["limit_layers"]]', "pipeline step 1 (limit_layers): takes 1 argument(s), got 0"),
        ('[["popularity_contest"], ["limit_layers", 0]]', "step 2 (limit_layers): expects a whole number"),
        (
            '[["split_paths", ["/nix/store/00000000000000000000000000000000-x"]]]',
            "is not in the closure graph",
        ),
        (
            '[["subcomponent_out", []], ["popularity_contest"]]',
            "step 2 (popularity_contest): expects a graph",
        ),
        ('[["subcomponent_out", []], ["over", "common", ["flatten"]]]', "the split has no 'common' part"),
        ('{"pipeline": []}', "a pipeline is a list of steps"),
        ("[[", "pipeline is not valid JSON"),
    ],
)
def test_a_bad_pipeline_is_refused_in_one_line_naming_the_step(tmp_path, pipeline, message):
    file = tmp_path / "pipeline.json"
    file.write_text(pipeline)
    result = run_cli("layers", str(DATA / "scipy.json"), "--pipeline", str(file))
    error = result.stderr.decode()
    assert result.returncode == 1 and error.count("\n") == 1 and message in error, error
    assert result.stdout == b""
