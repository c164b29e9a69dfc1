"""`stable`: stable paths at the bottom, volatile ones on top, layers cut where bytes are.

Made for re-sending little after a change. When a store path X changes (a new version),
Nix gives X and everything that depends on X new paths. A path P therefore changes
whenever anything in its closure changes; if each path is as likely as any other to be
updated, P changes with a chance proportional to the size of its closure (in paths). A
Docker daemon keeps a layer only when every layer below it is unchanged too, so the
expected bytes re-sent for an order of paths is, summed over the paths, bytes(P) times
the number of updates that change P or anything below it: the closures of everything
at or below P, united.

The order is built bottom up by closure sets (after Sidney's rule for scheduling with
precedence, greedy). Next comes the path whose closure, as far as it is not placed yet,
brings the fewest new updates to that union per byte it holds; that closure is laid out
first, best first by the same rule, and then the path. So dependencies always sit at or
below their users, and a big path comes with the small libraries it alone needs rather
than low down on its own: libraries everything uses but that rarely change go low, small
and volatile leaves on top. Ties go by name, not hash, so unrelated changes keep the
order, and the order below a new path is the old one.

Then the order is cut into at most N layers: a path of at least T bytes is a layer of
its own and smaller neighbours are batched until they reach T. The budget goes where the
bytes are, and batches of small paths change together rarely (a registry re-sends a
layer when any of its paths changed). T is the lowest rung of a fixed ladder (octaves)
that fits N, not the smallest number: a package added or removed then moves T, and with
it every layer boundary, only when the count at that rung passes N; up to an octave's
worth of layers may stay unused. From 64 layers on a spare layer is cheap and that is
all. Below, each layer counts, and a rung that fits every batch moves with the small
paths an added package brings. There T may be lower: the lowest octave rung at which
the paths alone take at most about a third of the layers (and leave one for each run of
smaller paths between them), a count that small paths do not change. The batches then
fill the rest of the budget at the lowest quarter-octave rung, from T / 2 up, that fits
N, so a finer or coarser batching leaves the big layers where they were.

Last, inside each run of batches between two lone paths, the same number of batches is
cut again where the expected re-send is least (dynamic programming over the run): a
batch costs its bytes times the updates that change it (a registry's view) plus the
updates that change it or anything below it (a daemon's). Bytes alone put a library
with users next to paths it does not touch; this keeps those apart where it pays. The
lone paths and the count per run stay as the ladder set them, so the stability holds.
"""

from __future__ import annotations

import heapq
import itertools
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
    """Path indices, bottom first, by closure sets (see the module's docstring)."""
    size = [max(n, 1) for n in graph.nar_size]
    rank = [0] * len(graph)
    for position, i in enumerate(sorted(range(len(graph)), key=lambda i: name_key(graph.paths[i]))):
        rank[i] = position
    new_updates = [bits.bit_count() for bits in closures]  # not yet in the union below
    unplaced_bytes = [summed(size, bits) for bits in closures]  # of the closure
    unplaced = (1 << len(graph)) - 1
    covered = 0
    order: list[int] = []
    changed: set[int] = set()

    def key(i: int) -> tuple[float, int]:
        return new_updates[i] / unplaced_bytes[i], rank[i]

    def place(j: int) -> None:
        nonlocal unplaced, covered
        unplaced &= ~(1 << j)
        order.append(j)
        fresh = closures[j] & ~covered  # these updates now hit something below
        covered |= closures[j]
        users_left = list(set_bits(users[j] & unplaced))
        for u in users_left:
            unplaced_bytes[u] -= size[j]
        changed.update(users_left)
        for e in set_bits(fresh):  # mostly j alone: its closure was laid out before it
            hit = users_left if e == j else list(set_bits(users[e] & unplaced))
            for u in hit:
                new_updates[u] -= 1
            changed.update(hit)

    def lay_out(path: int) -> None:
        """The path's unplaced closure, best first by the same rule, then the path."""
        stack = [path]
        while stack:
            deps = closures[stack[-1]] & unplaced & ~(1 << stack[-1])
            if deps:
                stack.append(min(set_bits(deps), key=key))
            else:
                place(stack.pop())

    # The heap holds, per unplaced path, an entry no worse than its key (queued: its ratio).
    # A key that got better is queued again; one that got worse only when its entry comes
    # up, so the first entry that comes up with its true key is the best of all.
    heap = [(*key(i), i) for i in range(len(graph))]
    heapq.heapify(heap)
    queued = [ratio for ratio, _, _ in sorted(heap, key=lambda entry: entry[2])]
    while heap:
        for u in changed:  # once per closure laid out, not once per change: far fewer entries
            if unplaced >> u & 1 and (ratio := key(u)[0]) < queued[u]:
                heapq.heappush(heap, (ratio, rank[u], u))
                queued[u] = ratio
        changed.clear()
        ratio, _, i = heapq.heappop(heap)
        if not unplaced >> i & 1 or ratio != queued[i]:
            continue  # placed, or superseded by a better entry
        if (now := key(i)[0]) == ratio:
            lay_out(i)
        else:  # worse since queued
            heapq.heappush(heap, (now, rank[i], i))
            queued[i] = now
    return order


def cut(sizes: list[int], max_layers: int) -> list[range]:
    """Contiguous spans of the order: paths of at least T bytes alone, the others batched
    until they reach T' (from 64 layers on T' = T; below, see the module's docstring)."""
    lone = _lowest_rung(sizes, max_layers)
    if max_layers >= _WIDE_BUDGET:
        return _batches(sizes, rung(lone))
    lone = min(lone, _few_lone_rung(sizes, max_layers))
    # Ends: past the total bytes each run is one batch, and both lone rungs leave room for that.
    batchings = (_batches(sizes, rung(lone), rung(k)) for k in itertools.count(max(0, lone - 4)))
    return next(spans for spans in batchings if len(spans) <= max_layers)


# Below this many layers each layer counts: the threshold for a path alone comes from how
# many big paths there are, and the batches fill what is left (see the module's docstring).
_WIDE_BUDGET = 64
_LONE_SHARE = 0.35  # of the layers, at most, for paths alone (below _WIDE_BUDGET)


def _few_lone_rung(sizes: list[int], max_layers: int) -> int:
    """The lowest octave rung at which the paths alone take at most _LONE_SHARE of the
    layers and leave one layer at least for each run of smaller paths between them."""
    past_total = _rung_above(sum(sizes))
    for k in range(0, past_total, 4):
        alone = sum(1 for size in sizes if size >= rung(k))
        one_batch_per_run = _batches(sizes, rung(k), rung(past_total))
        if alone <= _LONE_SHARE * max_layers and len(one_batch_per_run) <= max_layers:
            return k
    return past_total


def _batches(sizes: list[int], threshold: int, batch_threshold: int | None = None) -> list[range]:
    """Paths of at least `threshold` bytes alone; runs of the others batched until they
    reach `batch_threshold` (the same by default)."""
    batch_threshold = threshold if batch_threshold is None else batch_threshold
    result, start, batched = [], 0, 0
    for k, size in enumerate(sizes):
        if size >= threshold:
            if start < k:
                result.append(range(start, k))
            result.append(range(k, k + 1))
            start, batched = k + 1, 0
            continue
        batched += size
        if batched >= batch_threshold:
            result.append(range(start, k + 1))
            start, batched = k + 1, 0
    if start < len(sizes):
        result.append(range(start, len(sizes)))
    return result


def _lowest_rung(sizes: list[int], max_spans: int, spacing: int = 4) -> int:
    """The lowest rung (a multiple of `spacing`: an octave by default) whose batches number
    at most `max_spans`."""
    low, high = 0, _rung_above(sum(sizes)) // spacing
    while low < high:
        middle = (low + high) // 2
        if len(_batches(sizes, rung(middle * spacing))) <= max_spans:
            high = middle
        else:
            low = middle + 1
    return low * spacing


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
        for u in _batches(run_sizes, rung(_lowest_rung(run_sizes, _CANDIDATES, spacing=1)))
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


SPARSE = 32  # set bits up to which picking them one by one beats scanning the whole set
ONES = bytes.maketrans(b"01", b"\x00\x01")


def summed(values: list[int], bits: int) -> int:
    """The sum of values[i] over the set bits i; a dense set as a mask for compress (in C)."""
    if bits.bit_count() <= SPARSE:
        return sum(values[i] for i in set_bits(bits))
    return sum(itertools.compress(values, format(bits, "b")[::-1].encode().translate(ONES)))


def set_bits(bits: int) -> Iterator[int]:
    if bits.bit_count() <= SPARSE:
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
