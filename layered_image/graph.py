"""The closure graph: Nix's exportReferencesGraph JSON, checked and indexed.

Self-references are dropped (Nix records them, but they say nothing about layering);
anything else that would make a cycle is refused, as is any reference to a path with
no entry, a missing field, or a path outside the store directory.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from layered_image import strict_json
from layered_image.errors import UserError

if TYPE_CHECKING:
    import networkx as nx

DEFAULT_STORE_DIR = "/nix/store"
REQUIRED_FIELDS = ("path", "references", "narSize")


class GraphError(UserError):
    pass


def read_graph_file(file: str | Path, key: str | None = None) -> list[dict[str, Any]]:
    """Parse the JSON in `file` (`-`: stdin) and return its list of path entries."""
    name = strict_json.input_name(file)
    try:
        text = strict_json.read_input(file)
    except OSError as err:
        raise GraphError(f"cannot read closure graph {name}: {err.strerror}") from None
    try:
        data = strict_json.loads(text)
    except (ValueError, RecursionError) as err:
        raise GraphError(f"{name}: not JSON ({err}); expected Nix's exportReferencesGraph output") from None
    return entries_of(data, key, source=name)


def entries_of(data: Any, key: str | None, source: str) -> list[dict[str, Any]]:
    """The list of entries in `data`: the data itself, the list under `key`, or the entries
    of `nix path-info --json` output (an object keyed by store path since Nix 2.19)."""
    if isinstance(data, dict) and key is None and "store_layers" in data:
        raise GraphError(
            f"{source} is an image conf, not a closure graph; give exportReferencesGraph's output"
            " or `nix path-info --json --recursive`'s"
        )
    if isinstance(data, dict) and key is None and isinstance(data.get("info"), dict) and "storeDir" in data:
        data = _from_json_format_2(data)  # nix path-info --json --json-format 2 (Nix 2.33)
    if isinstance(data, dict) and key is None and isinstance(data.get("storeDir"), str):
        data = {path: entry for path, entry in data.items() if path != "storeDir"}  # format 1 since Nix 2.33
    if isinstance(data, dict) and key is None and _keyed_by_path(data):
        # Nix 2.19-2.22 may leave out an empty "references"
        data = [{"path": p, "references": [], **(entry or {"valid": False})} for p, entry in data.items()]
    elif isinstance(data, dict):
        if key is None:
            lists = sorted(k for k, v in data.items() if isinstance(v, list))
            if len(lists) != 1:
                raise GraphError(
                    f"{source}: an object, not a list; name the key holding the graph with --key"
                    + (f" (one of: {', '.join(lists)})" if lists else "")
                )
            key = lists[0]
        if key not in data:
            raise GraphError(f"{source}: no key {key!r} (keys: {', '.join(sorted(data)) or 'none'})")
        data = data[key]
    elif key is not None:
        raise GraphError(f"{source}: --key {key} given but the file holds a list, not an object")
    if not isinstance(data, list):
        raise GraphError(f"{source}: expected a list of {{path, references, narSize, ...}} entries")
    # nix path-info lists a path the store lacks as {path, valid: false} (null since 2.19)
    invalid = [entry["path"] for entry in data if isinstance(entry, dict) and entry.get("valid") is False]
    if invalid:
        raise GraphError(f"{source}: {invalid[0]} is not a valid store path here; build or fetch it first")
    return data


def _from_json_format_2(data: dict[str, Any]) -> dict[str, Any]:
    """Nix 2.33's second path-info format as the first: base names made full paths again,
    the structured narHash as the SRI string ({algorithm, format: base16, hash})."""
    store = data["storeDir"].rstrip("/")
    converted: dict[str, Any] = {}
    for name, entry in data["info"].items():
        if isinstance(entry, dict):
            entry = entry | {"references": [f"{store}/{ref}" for ref in entry.get("references") or []]}
            digest = entry.get("narHash")
            if isinstance(digest, dict) and digest.get("format") == "base16":
                entry["narHash"] = (
                    f"{digest.get('algorithm')}-" + base64.b64encode(bytes.fromhex(digest["hash"])).decode()
                )
        converted[f"{store}/{name}"] = entry
    return converted


def _keyed_by_path(data: dict[str, Any]) -> bool:
    return bool(data) and all(path.startswith("/") and isinstance(v, dict | None) for path, v in data.items())


@dataclass
class ClosureGraph:
    """Store paths by index: sizes, references (self-references dropped), topological order.

    Kept as plain lists because that is what the hot loops want: inserting 68,000 edges
    into networkx alone takes 0.36 s on a 14,000-path graph. `nx` gives the same graph
    as a networkx DiGraph (u -> v when u references v), built on first use.
    """

    paths: list[str]
    nar_size: list[int]
    nar_hash: list[str]
    references: list[list[int]]
    order: list[int] = field(default_factory=list)  # referrers before what they reference

    def __post_init__(self) -> None:
        self.index = {path: i for i, path in enumerate(self.paths)}
        if not self.order:
            self.order = self._topological_order()

    def __len__(self) -> int:
        return len(self.paths)

    @cached_property
    def referrers(self) -> list[list[int]]:
        result: list[list[int]] = [[] for _ in self.paths]
        for i, refs in enumerate(self.references):
            for r in refs:
                result[r].append(i)
        return result

    @cached_property
    def nx(self) -> nx.DiGraph:
        import networkx  # slow to import (0.25 s): only when a strategy asks for it

        graph = networkx.DiGraph()
        graph.add_nodes_from(
            (path, {"nar_size": size, "nar_hash": h})
            for path, size, h in zip(self.paths, self.nar_size, self.nar_hash, strict=True)
        )
        graph.add_edges_from(
            (self.paths[i], self.paths[r]) for i, refs in enumerate(self.references) for r in refs
        )
        return graph

    def size_of(self, path: str) -> int:
        return self.nar_size[self.index[path]]

    def roots(self) -> list[str]:
        """Paths no other path references, sorted."""
        return sorted(self.paths[i] for i, users in enumerate(self.referrers) if not users)

    def _topological_order(self) -> list[int]:
        pending = [0] * len(self.paths)
        for refs in self.references:
            for r in refs:
                pending[r] += 1
        ready = [i for i in reversed(range(len(self.paths))) if not pending[i]]
        order = []
        while ready:
            i = ready.pop()
            order.append(i)
            for r in self.references[i]:
                pending[r] -= 1
                if not pending[r]:
                    ready.append(r)
        if len(order) != len(self.paths):
            import networkx

            cycle = [u for u, _ in networkx.find_cycle(self.nx)]
            loop = " -> ".join([*cycle, cycle[0]])
            raise GraphError(f"closure graph has a reference cycle ({loop}); Nix closures are acyclic")
        return order


def build_graph(entries: list[Any], store_dir: str = DEFAULT_STORE_DIR) -> ClosureGraph:
    """Check the entries and index them; raise GraphError naming the first problem."""
    paths = [_checked_entry(entry, i, store_dir) for i, entry in enumerate(entries)]
    index = {path: i for i, path in enumerate(paths)}
    if len(index) != len(paths):
        twice = next(p for p in paths if paths.count(p) > 1)
        raise GraphError(f"closure graph: {twice} is listed twice")
    references = []
    for i, entry in enumerate(entries):
        refs = entry["references"]
        try:
            references.append(sorted({index[ref] for ref in refs} - {i}))
        except KeyError:
            missing = next(ref for ref in refs if ref not in index)
            raise GraphError(
                f"closure graph: {paths[i]} references {missing}, which has no entry;"
                " the graph must be closed under references (nix path-info: add --recursive)"
            ) from None
    return ClosureGraph(
        paths=paths,
        nar_size=[entry["narSize"] for entry in entries],
        nar_hash=[str(entry.get("narHash", "")) for entry in entries],
        references=references,
    )


def load_graph(file: str | Path, key: str | None = None, store_dir: str = DEFAULT_STORE_DIR) -> ClosureGraph:
    return build_graph(read_graph_file(file, key), store_dir)


def _checked_entry(entry: Any, index: int, store_dir: str) -> str:
    where = f"closure graph entry {index}"
    if not isinstance(entry, dict):
        raise GraphError(f"{where}: expected an object, got {type(entry).__name__}")
    for name in REQUIRED_FIELDS:
        if name not in entry:
            raise GraphError(f"{where}: missing field {name!r}")
    path = entry["path"]
    if not isinstance(path, str):
        raise GraphError(f"{where}: 'path' must be a string")
    where = f"closure graph entry {path}"
    if not is_store_path(path, store_dir):
        raise GraphError(f"{where}: not a path directly under the store directory {store_dir}")
    refs = entry["references"]
    if not isinstance(refs, list) or not all(isinstance(r, str) for r in refs):
        raise GraphError(f"{where}: 'references' must be a list of store paths")
    size = entry["narSize"]
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise GraphError(f"{where}: 'narSize' must be a non-negative integer, got {size!r}")
    return path


def is_store_path(path: str, store_dir: str) -> bool:
    prefix = store_dir.rstrip("/") + "/"
    name = path[len(prefix) :]
    return path.startswith(prefix) and name not in ("", ".", "..") and "/" not in name
