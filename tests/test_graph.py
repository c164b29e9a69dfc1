import base64
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import DATA, run_cli

from layered_image.graph import GraphError, build_graph, entries_of, load_graph

A, B, C = (f"/nix/store/{c * 32}-{n}" for c, n in (("a", "app"), ("b", "lib"), ("c", "libc")))


def entry(path: str, *refs: str, size: int = 100) -> dict:
    return {
        "path": path,
        "references": [path, *refs],
        "narSize": size,
        "narHash": "sha256:x",
        "closureSize": 0,
    }


def test_loads_sizes_and_drops_self_references():
    graph = build_graph([entry(A, B, size=5), entry(B, C), entry(C)])
    assert graph.size_of(A) == 5
    assert set(graph.nx.edges) == {(A, B), (B, C)}
    assert graph.roots() == [A]
    assert graph.nx.nodes[A]["nar_size"] == 5


def test_structured_attrs_object_with_key():
    data = {"closure": [entry(A)], "name": "x"}
    assert entries_of(data, "closure", "f") == [entry(A)]
    assert entries_of(data, None, "f") == [entry(A)]  # the only list is taken


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ([entry(A, B)], "references /nix/store/bbb"),
        ([{"path": A, "references": []}], "missing field 'narSize'"),
        ([{"references": [], "narSize": 1}], "missing field 'path'"),
        ([entry("/usr/lib/foo")], "not a path directly under the store directory"),
        ([entry(A + "/bin/x")], "not a path directly under the store directory"),
        ([entry(A, B), entry(B, A)], "reference cycle"),
        ([entry(A), entry(A)], "listed twice"),
        ([entry(A, size=-1)], "narSize"),
        ([{"path": A, "references": "x", "narSize": 1}], "'references' must be a list"),
        (["just a string"], "expected an object"),
    ],
)
def test_malformed_graphs_are_refused_with_the_problem_named(entries, message):
    with pytest.raises(GraphError, match=message.replace("(", r"\(")):
        build_graph(entries)


@pytest.mark.parametrize(
    "content",
    ["not json", "[", json.dumps({"a": 1}), json.dumps([{"path": A, "references": [], "narSize": "1"}]), "7"],
)
def test_cli_refuses_bad_graph_files_with_one_line(tmp_path: Path, content: str):
    graph = tmp_path / "graph.json"
    graph.write_text(content)
    result = run_cli("layers", str(graph))
    assert result.returncode == 1
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and "error" in lines[0], lines
    assert b"Traceback" not in result.stderr


def test_missing_file_is_one_line():
    result = run_cli("layers", "/nonexistent/graph.json")
    assert result.returncode == 1
    assert result.stderr.decode().count("\n") == 1


def test_the_real_fixture_graphs_load():
    assert len(load_graph(DATA / "gnome-kde.json")) == 1832


def test_nix_path_info_output_is_a_graph_in_either_form():
    listed = [entry(A, B), entry(B)]  # Nix before 2.19
    keyed = {e["path"]: {k: v for k, v in e.items() if k != "path"} for e in listed}  # 2.19 and later
    assert build_graph(entries_of(listed, None, "f")).paths == build_graph(entries_of(keyed, None, "f")).paths
    assert build_graph(entries_of(keyed, None, "f")).size_of(B) == 100
    del keyed[B]["references"]  # left out when empty by Nix 2.19-2.22
    assert build_graph(entries_of(keyed, None, "f")).size_of(B) == 100


@pytest.mark.parametrize("answer", [{A: None}, [{"path": A, "valid": False}]])
def test_a_path_nix_path_info_does_not_have_is_named(answer):
    with pytest.raises(GraphError, match=f"{A} is not a valid store path here; build or fetch it first"):
        entries_of(answer, None, "f")


def test_diff_reads_what_nix_path_info_prints(tmp_path, busybox_path):
    """`layered-image diff <(nix path-info --json -r OLD) <(nix path-info --json -r NEW)`."""
    added = tmp_path / "another"
    shutil.copytree(Path(busybox_path), added, symlinks=True)
    another = subprocess.run(["nix-store", "--add", str(added)], capture_output=True, text=True, check=True)
    graphs = []
    for number, paths in enumerate([[busybox_path], [busybox_path, another.stdout.strip()]]):
        info = subprocess.run(["nix", "--extra-experimental-features", "nix-command", "path-info", "--json",
                               "--recursive", *paths], capture_output=True, check=True)  # fmt: skip
        graphs.append(tmp_path / f"{number}.json")
        graphs[-1].write_bytes(info.stdout)
    result = run_cli("diff", *map(str, graphs))
    assert result.returncode == 0, result.stderr
    measures = json.loads(result.stdout)
    assert measures["floor_bytes"] == measures["registry_new_bytes"] == measures["total_bytes"] // 2


def as_nix_2_33(entries: list[dict], version: int) -> dict:
    """Nix 2.8's path-info entries in the forms Nix 2.33 prints with --json-format 1 / 2
    (its release notes: format 1 gains a top-level storeDir; format 2 nests base names under
    info, beside version and storeDir, with narHash as {algorithm, format: base16, hash})."""
    if version == 1:
        return {"storeDir": "/nix/store"} | {
            e["path"]: {k: v for k, v in e.items() if k != "path"} for e in entries
        }
    info = {}
    for entry in entries:
        algorithm, _, digest = entry["narHash"].partition("-")
        info[entry["path"].rpartition("/")[2]] = entry | {
            "narHash": {"algorithm": algorithm, "format": "base16", "hash": base64.b64decode(digest).hex()},
            "references": [ref.rpartition("/")[2] for ref in entry["references"]],
        }
    return {"version": 2, "storeDir": "/nix/store", "info": info}


@pytest.mark.parametrize("version", [1, 2])
def test_nix_2_33_path_info_formats_read_as_the_same_graph(tmp_path, busybox_path, version):
    printed = subprocess.run(["nix", "--extra-experimental-features", "nix-command", "path-info", "--json",
                              "--recursive", busybox_path], capture_output=True, check=True)  # fmt: skip
    entries = json.loads(printed.stdout)
    entries = list(entries) if isinstance(entries, list) else [{"path": p, **e} for p, e in entries.items()]
    assert entries[0]["narHash"].startswith("sha256-")  # Nix 2.8 prints SRI hashes
    (tmp_path / "old.json").write_text(json.dumps(entries))
    (tmp_path / "new.json").write_text(json.dumps(as_nix_2_33(entries, version)))
    old, new = (load_graph(tmp_path / name) for name in ("old.json", "new.json"))
    assert (new.paths, new.nar_size, new.nar_hash, new.references) == (
        old.paths, old.nar_size, old.nar_hash, old.references)  # fmt: skip
