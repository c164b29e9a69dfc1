import json
import os
import subprocess
import sys

import pytest
from conftest import DATA, examples, run_cli
from hypothesis import given, settings
from hypothesis import strategies as st

from layered_image.graph import build_graph, load_graph
from layered_image.layering import STRATEGIES, compute_layers
from layered_image.layering.popularity import order, popularity


@pytest.mark.parametrize("name", ["scipy", "gnome-kde"])
def test_popularity_gives_nixpkgs_order(name):
    expected = (DATA / f"{name}.popularity.txt").read_text().split()
    assert order(load_graph(DATA / f"{name}.json")) == expected


@pytest.mark.parametrize(("name", "limit"), [("scipy", 20), ("gnome-kde", 99)])
def test_auto_gives_nixpkgs_layer_sets(name, limit):
    expected = json.loads((DATA / f"{name}.auto-{limit}.json").read_text())
    layers = compute_layers(load_graph(DATA / f"{name}.json"), "auto", limit)
    assert sorted(map(sorted, layers)) == sorted(map(sorted, expected))


def test_popularity_of_the_documented_example():
    # nixpkgs' example graph: A -> B, G; B -> C, E; C -> D, E; D -> F; E -> F.
    names = {n: f"/nix/store/{n.lower() * 32}-{n}" for n in "ABCDEFG"}
    refs = {"A": "BG", "B": "CE", "C": "DE", "D": "F", "E": "F", "F": "", "G": ""}
    graph = build_graph(
        [{"path": names[n], "references": [names[r] for r in rs], "narSize": 1} for n, rs in refs.items()]
    )
    scores = {path.rsplit("-", 1)[1]: score for path, score in popularity(graph).items()}
    assert scores == {"A": 1, "B": 2, "C": 3, "D": 4, "E": 5, "F": 9, "G": 2}


def test_popularity_numbers_stay_exact_when_huge():
    # A ladder where every rung references both paths of the next: 2**n root paths.
    paths = [[f"/nix/store/{i:032d}-{side}{i}" for side in "lr"] for i in range(80)]
    entries = []
    for i, rung in enumerate(paths):
        below = paths[i + 1] if i + 1 < len(paths) else []
        entries += [{"path": p, "references": below, "narSize": 1} for p in rung]
    scores = popularity(build_graph(entries))
    assert scores[paths[-1][0]] > 2**79  # beyond float precision, and exact:
    assert scores[paths[-1][0]] == scores[paths[-1][1]]


def test_exclude_removes_paths_without_changing_the_order():
    graph = load_graph(DATA / "scipy.json")
    full = [p for layer in compute_layers(graph, "popularity", 1000) for p in layer]
    dropped = full[3]
    layers = compute_layers(graph, "popularity", 1000, exclude=[dropped])
    assert [p for layer in layers for p in layer] == [p for p in full if p != dropped]


@st.composite
def closure_graphs(draw):
    count = draw(st.integers(1, 25))
    paths = [f"/nix/store/{i:032d}-p{draw(st.integers(0, 3))}" for i in range(count)]
    entries = []
    for i, path in enumerate(paths):
        refs = draw(st.lists(st.sampled_from(paths[i + 1 :]), unique=True)) if i + 1 < count else []
        entries.append({"path": path, "references": [path, *refs], "narSize": draw(st.integers(0, 10**6))})
    return entries


@settings(max_examples=examples(150), deadline=None)
@given(closure_graphs(), st.one_of(st.integers(1, 12), st.just(99)), st.sampled_from(sorted(STRATEGIES)))
def test_layering_invariants(entries, limit, strategy):
    graph = build_graph(entries)
    layers = compute_layers(graph, strategy, limit)
    flat = [p for layer in layers for p in layer]
    assert sorted(flat) == sorted(e["path"] for e in entries)  # each path in exactly one layer
    assert len(layers) <= limit
    assert compute_layers(build_graph(entries), strategy, limit) == layers  # deterministic
    if strategy in ("popularity", "stable"):
        position = {p: i for i, layer in enumerate(layers) for p in layer}
        for user, dep in graph.nx.edges:
            assert position[dep] <= position[user]  # dependencies never above their users


def test_layers_cli_prints_json_layers():
    result = run_cli("layers", str(DATA / "scipy.json"), "--max-layers", "10", "--strategy", "popularity")
    assert result.returncode == 0, result.stderr
    layers = json.loads(result.stdout)
    assert len(layers) == 10
    expected = (DATA / "scipy.popularity.txt").read_text().split()
    assert [p for layer in layers for p in layer] == expected


def test_layers_cli_with_key_and_exclude(tmp_path):
    graph = json.loads((DATA / "scipy.json").read_text())
    (tmp_path / "attrs.json").write_text(json.dumps({"closure": graph, "other": 1}))
    excluded = graph[0]["path"]
    result = run_cli(
        "layers",
        str(tmp_path / "attrs.json"),
        "--key",
        "closure",
        "--strategy",
        "auto",
        "--exclude",
        excluded,
    )
    assert result.returncode == 0, result.stderr
    flat = [p for layer in json.loads(result.stdout) for p in layer]
    assert excluded not in flat and len(flat) == len(graph) - 1


def test_unknown_strategy_and_bad_limit_are_one_line():
    for args in (["--strategy", "nope"], ["--max-layers", "0"]):
        result = run_cli("layers", str(DATA / "scipy.json"), *args)
        assert result.returncode != 0
        assert b"Traceback" not in result.stderr


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_an_output_that_cannot_be_written_is_one_line():
    with open("/dev/full", "w") as full:
        result = subprocess.run(
            [sys.executable, "-m", "layered_image", "layers", str(DATA / "gnome-kde.json")],
            stdout=full, stderr=subprocess.PIPE, check=False,
        )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.decode() == "layered-image layers: error: No space left on device\n"
