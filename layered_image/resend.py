"""How much of an image goes over the wire again after a change, for two layerings.

- registry: a layer is already there when a layer of the old image held exactly the same
  store paths (same content, same digest).
- daemon: as Docker's layer store sees it, a layer is there only when it and every layer
  below it are the same as in the old image, in order.
- floor: the bytes of store paths the new image has and the old one lacks; no layering
  can send less.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Layers = list[list[str]]


@dataclass
class LayerReuse:
    paths: int
    bytes: int
    in_registry: bool
    in_daemon: bool


@dataclass
class Resend:
    total_bytes: int
    registry_new_bytes: int
    daemon_new_bytes: int
    floor_bytes: int
    layers: list[LayerReuse] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {
            "total_bytes": self.total_bytes,
            "registry_new_bytes": self.registry_new_bytes,
            "daemon_new_bytes": self.daemon_new_bytes,
            "floor_bytes": self.floor_bytes,
            "layers": [vars(layer) for layer in self.layers],
        }


def resend(old_layers: Layers, new_layers: Layers, new_sizes: dict[str, int], old_paths: set[str]) -> Resend:
    old_sets = {frozenset(layer) for layer in old_layers}
    old_chain = [frozenset(layer) for layer in old_layers]
    total = sum(new_sizes.values())
    floor = sum(size for path, size in new_sizes.items() if path not in old_paths)
    result = Resend(total, 0, 0, floor)
    intact = True
    for depth, layer in enumerate(new_layers):
        paths = frozenset(layer)
        size = sum(new_sizes[path] for path in layer)
        in_registry = paths in old_sets
        intact = intact and depth < len(old_chain) and old_chain[depth] == paths
        result.layers.append(LayerReuse(len(layer), size, in_registry, intact))
        result.registry_new_bytes += 0 if in_registry else size
        result.daemon_new_bytes += 0 if intact else size
    return result
