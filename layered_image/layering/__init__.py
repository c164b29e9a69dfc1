"""Layering strategies: a closure graph in, a list of layers (lists of store paths) out.

Every strategy is a function `(graph, max_layers, exclude) -> layers`, bottom layer
first, at most `max_layers` layers, every non-excluded path in exactly one layer.
Register new ones in STRATEGIES; the command line and the Nix functions take names from it.
A nixpkgs `layeringPipeline` (pipeline.py) is the other way to say how to layer: given one,
it decides alone, and `max_layers` is not used (nixpkgs ignores maxLayers then too).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from layered_image.errors import UserError
from layered_image.graph import ClosureGraph
from layered_image.layering import auto, popularity, stable
from layered_image.layering.pipeline import run_pipeline

Layers = list[list[str]]
Strategy = Callable[[ClosureGraph, int, frozenset[str]], Layers]

STRATEGIES: dict[str, Strategy] = {
    "popularity": popularity.layer,
    "auto": auto.layer,
    "stable": stable.layer,
}
DEFAULT_STRATEGY = "stable"
DEFAULT_MAX_STORE_LAYERS = 99  # nixpkgs' maxLayers = 100, less the customisation layer on top
PIPELINE = "pipeline"  # how explain and diff name a layering made by a pipeline
EXPLAIN: dict[str, Callable[[ClosureGraph, Layers, int], list[str]]] = {
    PIPELINE: lambda graph, layers, _: ["made by the pipeline"] * len(layers),
    "popularity": lambda graph, layers, _: popularity.explain(graph, layers),
    "auto": auto.explain,
    "stable": lambda graph, layers, _: stable.explain(graph, layers),
}


def compute_layers(
    graph: ClosureGraph,
    strategy: str = DEFAULT_STRATEGY,
    max_layers: int = DEFAULT_MAX_STORE_LAYERS,
    exclude: Collection[str] = (),
    pipeline: Any = None,
) -> Layers:
    if pipeline is not None:
        return run_pipeline(graph, pipeline, frozenset(exclude))  # exactly nixpkgs' layers
    if strategy not in STRATEGIES:
        raise UserError(f"unknown layering strategy {strategy!r}; choose one of: {', '.join(STRATEGIES)}")
    if max_layers < 1:
        raise UserError(f"--max-layers must be at least 1, got {max_layers}")
    layers = STRATEGIES[strategy](graph, max_layers, frozenset(exclude))
    return [layer for layer in layers if layer]
