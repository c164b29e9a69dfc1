"""`stable`: stable paths at the bottom, volatile ones on top, layers cut where bytes are.

Made for re-sending little after a change. When a store path X changes (a new version),
Nix gives X and everything that depends on X new paths. A path P therefore changes
whenever anything in its closure changes; if each path is as likely as any other to be
updated, P changes with a chance proportional to the size of its closure (in paths). A
Docker daemon keeps a layer only when every layer below it is unchanged too, so the
expected bytes re-sent for an order of paths is, summed over the paths, bytes(P) times
the number of updates that change P or anything below it: the closures of everything
at or below P, united.

The order is built bottom up, greedily (Smith's rule for that sum): next comes the path
that adds the fewest new updates to that union per byte it holds. Libraries everything
uses but that rarely change (in this measure) go low, big stable packages next, small
and volatile leaves on top; a path whose closure is already covered costs nothing and
follows at once. Ties go by name, not hash, so unrelated changes keep the order.

Then the order is cut into at most N layers: a path of at least T bytes is a layer of
its own and smaller neighbours are batched until they reach T. The budget goes where the
bytes are, and batches of small paths change together rarely (a registry re-sends a
layer when any of its paths changed). T is the smallest rung of a fixed ladder (four
rungs an octave) that fits N, not the smallest number: a package added or removed then
moves T, and with it every batch boundary, less often (on the shared add scenario the
daemon re-send fell from 23 % to 1 %). Less often is not seldom: at 99 layers the count
at adjacent rungs differs by a few layers, so additions still move T on several sets;
small paths sit high in this order, which limits the damage.

Last, inside each run of batches between two lone paths, the same number of batches is
cut again where the expected re-send is least (dynamic programming over the run): a
batch costs its bytes times the updates that change it (a registry's view) plus the
updates that change it or anything below it (a daemon's). Bytes alone put a library
with users next to paths it does not touch; this keeps those apart where it pays. The
lone paths and the count per run stay as the ladder set them, so the stability holds.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterator

from layered_image.graph import ClosureGraph
from layered_image.layering.popularity import name_key


def layer(graph: ClosureGraph, max_layers: int, exclude: frozenset[str]) -> list[list[str]]:
    closures, users = _closures(graph)
    order = stable_order(graph, closures, users)
    sizes = [graph.nar_size[i] for i in order]
    ordered_closures = [closures[i] for i in order]
    layers = recut(cut(sizes, max_layers), sizes, ordered_closures)
    return [[graph.paths[order[k]] for k in span if graph.paths[order[k]] not in exclude] for span in layers]


def stable_order(graph: ClosureGraph, closures: list[int], users: list[int]) -> list[int]:
    """Path indices, bottom first, by the greedy rule above."""
    size = [max(n, 1) for n in graph.nar_size]
    new_updates = [bits.bit_count() for bits in closures]  # not yet in the union below
    rank = {i: r for r, i in enumerate(sorted(range(len(graph)), key=lambda i: name_key(graph.paths[i])))}
    heap = [(new_updates[i] / size[i], rank[i], i) for i in range(len(graph))]
    heapq.heapify(heap)
    placed = [False] * len(graph)
    covered = 0
    order = []
    while heap:
        key, _, i = heapq.heappop(heap)
        if placed[i] or key != new_updates[i] / size[i]:
            continue  # placed already, or a stale entry: a fresher one is in the heap
        placed[i] = True
        order.append(i)
        touched = set()
        for e in set_bits(closures[i] & ~covered):  # these updates now hit something below
            for u in set_bits(users[e]):
                if not placed[u]:
                    new_updates[u] -= 1
                    touched.add(u)
        for u in touched:
            heapq.heappush(heap, (new_updates[u] / size[u], rank[u], u))
        covered |= closures[i]
    return order


def cut(sizes: list[int], max_layers: int) -> list[range]:
    """Contiguous spans of the order: at least T bytes alone, smaller ones batched to T."""
    return _batches(sizes, rung(_lowest_rung(sizes, max_layers)))


def _batches(sizes: list[int], threshold: int) -> list[range]:
    result, start, batched = [], 0, 0
    for k, size in enumerate(sizes):
        if size >= threshold:
            if start < k:
                result.append(range(start, k))
            result.append(range(k, k + 1))
            start, batched = k + 1, 0
            continue
        batched += size
        if batched >= threshold:
            result.append(range(start, k + 1))
            start, batched = k + 1, 0
    if start < len(sizes):
        result.append(range(start, len(sizes)))
    return result


def _lowest_rung(sizes: list[int], max_spans: int) -> int:
    """The lowest rung whose batches number at most `max_spans`: fewest bytes per batch."""
    low, high = 0, _rung_above(sum(sizes))
    while low < high:
        middle = (low + high) // 2
        if len(_batches(sizes, rung(middle))) <= max_spans:
            high = middle
        else:
            low = middle + 1
    return low


# Boundaries a run's re-cut chooses among: every path in a run of up to this many, else
# ladder batches of the run as fine as this allows. Bounds the work at O(n² · batches).
_CANDIDATES = 192


def recut(spans: list[range], sizes: list[int], closures: list[int]) -> list[range]:
    """Each run of batches (spans of two or more paths) cut again into as many batches,
    where the expected re-send is least; lone paths stay as they are."""
    below, union = [], 0
    for bits in closures:
        union |= bits
        below.append(union.bit_count())  # updates that change this position or one below
    result: list[range] = []
    run: list[range] = []
    for span in [*spans, range(0)]:
        if len(span) > 1:
            run.append(span)
            continue
        if run:
            result += _least_resend(range(run[0].start, run[-1].stop), len(run), sizes, closures, below)
            run = []
        if span:
            result.append(span)
    return result


def _least_resend(
    items: range, batches: int, sizes: list[int], closures: list[int], below: list[int]
) -> list[range]:
    if batches == 1:
        return [items]
    run_sizes = sizes[items.start : items.stop]
    units = [
        range(items.start + u.start, items.start + u.stop)
        for u in _batches(run_sizes, rung(_lowest_rung(run_sizes, _CANDIDATES)))
    ]
    if len(units) <= batches:
        return units  # a batch each: splitting never costs more
    unit_bytes = [sum(sizes[k] for k in unit) for unit in units]
    unit_closures = []
    for unit in units:
        bits = 0
        for k in unit:
            bits |= closures[k]
        unit_closures.append(bits)
    unreachable = (float("inf"), 0)
    # best[j][m]: (least cost of the first j units in m batches, where the last batch starts)
    best = [[(0, 0)] + [unreachable] * batches]
    for j in range(1, len(units) + 1):
        above = below[units[j - 1].stop - 1]
        row = [unreachable] * (batches + 1)
        union, nbytes = 0, 0
        for start in range(j - 1, -1, -1):
            union |= unit_closures[start]
            nbytes += unit_bytes[start]
            cost = nbytes * (union.bit_count() + above)
            extended = [(previous + cost, start) for previous, _ in best[start][:-1]]
            row[1:] = map(min, row[1:], extended)
        best.append(row)
    result, j = [], len(units)
    for m in range(batches, 0, -1):
        start = best[j][m][1]
        result.append(range(units[start].start, units[j - 1].stop))
        j = start
    return result[::-1]


_QUARTER_OCTAVE = (16, 19, 23, 27)  # 2 ** (k / 4) in sixteenths: whole numbers, the same everywhere


def rung(k: int) -> int:
    """The k-th threshold of the ladder: about 2 ** (k / 4) bytes."""
    return max(1, (_QUARTER_OCTAVE[k % 4] << (k // 4)) >> 4)


def _rung_above(total: int) -> int:
    k = 0
    while rung(k) <= total:
        k += 4
    return k


def _closures(graph: ClosureGraph) -> tuple[list[int], list[int]]:
    """Per path, as bitsets over indices: its closure (itself included) and its users
    (the paths whose closure holds it, itself included)."""
    closures = [0] * len(graph)
    for i in reversed(graph.order):  # references first
        bits = 1 << i
        for r in graph.references[i]:
            bits |= closures[r]
        closures[i] = bits
    users = [0] * len(graph)
    for i in graph.order:  # referrers first
        bits = 1 << i
        for p in graph.referrers[i]:
            bits |= users[p]
        users[i] = bits
    return closures, users


def set_bits(bits: int) -> Iterator[int]:
    if bits.bit_count() <= 32:
        while bits:
            low = bits & -bits
            yield low.bit_length() - 1
            bits ^= low
        return
    digits = format(bits, "b")[::-1]  # dense: scanning text is fast in C
    position = digits.find("1")
    while position >= 0:
        yield position
        position = digits.find("1", position + 1)


def explain(graph: ClosureGraph, layers: list[list[str]]) -> list[str]:
    """For each layer: how many updates (of one path each) would change it or a layer below."""
    closures, _ = _closures(graph)
    union = 0
    reasons = []
    for paths in layers:
        own = 0
        for path in paths:
            own |= closures[graph.index[path]]
        union |= own
        reasons.append(
            f"changed by {own.bit_count()} of {len(graph)} updates, {union.bit_count()} with those below"
        )
    return reasons
