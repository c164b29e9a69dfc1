"""Store layers planned in a second process, while the first one reads and writes.

Walking the store, stat-ing every file and laying out every tar header is pure Python,
and under one GIL it competed with reading files and feeding the writer thread: on the
3 GB bench conf it was a third of the stream's time. A child process now does it for all
store layers, in order, and sends each layer's exact size, then its items (header, file,
size, kind) in batches over a pipe; the parent only reads files and writes. The pipe
bounds what is in flight. A child that fails sends its one-line error; the parent raises
it as its own.
"""

from __future__ import annotations

import contextlib
import gc
import multiprocessing
import signal
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Any

from layered_image.archive.output import FileSpan
from layered_image.archive.store_layer import Item, Owner, layer_bytes, layer_items, plan_store_layer
from layered_image.errors import StoreChangedError, UserError

BATCH = 1024  # items per message
ERRORS = {"StoreChangedError": StoreChangedError, "UserError": UserError}


class Planner:
    """Use as a context manager; `size(k)` and `items(k)` for store layer k."""

    def __init__(self, layers: list[list[str]], store_dir: str, owner: Owner, sizes_first: bool) -> None:
        # fork is quick; but only safe while this is the only thread (tests run us in-process)
        context = multiprocessing.get_context("fork" if threading.active_count() == 1 else "spawn")
        self.connection, sender = context.Pipe(duplex=False)
        self.process = context.Process(
            target=_plan, args=(sender, layers, store_dir, owner, sizes_first), daemon=True
        )
        self.process.start()
        sender.close()
        self.sizes: dict[int, int] = {}
        self.pending: dict[int, deque[list[Item]]] = {}
        self.done: set[int] = set()
        # a push's upload threads may each make a layer (digest_cache.py): one reads the pipe at a time
        self.lock = threading.Lock()

    def __enter__(self) -> Planner:
        return self

    def __exit__(self, *_: object) -> None:
        self.connection.close()
        if self.process.is_alive():  # it only reads: nothing to clean up, and a forked child
            self.process.kill()  # may still have our SIGTERM handler, which would print
        self.process.join()

    def size(self, layer: int) -> int:
        with self.lock:
            while layer not in self.sizes:
                self._receive()
            return self.sizes[layer]

    def items(self, layer: int) -> Iterator[Item]:
        while (batch := self._next_batch(layer)) is not None:
            yield from batch

    def _next_batch(self, layer: int) -> list[Item] | None:
        """The layer's next items; other layers' arriving meanwhile wait in `pending`."""
        with self.lock:
            queue = self.pending.setdefault(layer, deque())
            while not queue and layer not in self.done:
                self._receive()
            return queue.popleft() if queue else None

    def chunks(self, layer: int) -> Iterator[memoryview | bytes | FileSpan]:
        """The layer's bytes: its items, with the files they name read here."""
        return layer_bytes(self.items(layer))

    def _receive(self) -> None:
        try:
            kind, layer, value = self.connection.recv()
        except (EOFError, OSError):
            raise UserError("the planning process ended unexpectedly; see the messages above") from None
        if kind == "size":
            self.sizes[layer] = value
        elif kind == "items":
            self.pending.setdefault(layer, deque()).append(value)
        elif kind == "done":
            self.done.add(layer)
        else:  # "error": layer holds the exception's class name
            raise ERRORS.get(layer, UserError)(value)


def _plan(out: Connection, layers: list[list[str]], store_dir: str, owner: Owner, sizes_first: bool) -> None:
    """The child: plan each layer, send its size, then its items; errors as one message."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and ends us
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a forked child has the parent's handler
    gc.disable()  # a plan is ~10^5 objects without cycles: collecting only re-walks them
    with contextlib.suppress(BrokenPipeError, EOFError, OSError):  # the parent went away
        try:
            # Plan ahead in a thread: while a layer's items wait for room in the pipe,
            # the next layers are walked, so the parent never waits for a whole walk.
            with ThreadPoolExecutor(1) as ahead:
                plans = [ahead.submit(plan_store_layer, paths, store_dir, owner) for paths in layers]
                for number, plan in enumerate(plans if sizes_first else []):
                    out.send(("size", number, plan.result().size))
                for number, plan in enumerate(plans):
                    if not sizes_first:
                        out.send(("size", number, plan.result().size))
                    _send_items(out, number, layer_items(plan.result()))
                    out.send(("done", number, None))
        except UserError as err:
            out.send(("error", type(err).__name__, str(err)))
        out.close()


def _send_items(out: Connection, number: int, items: Iterator[Item]) -> None:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= BATCH:
            out.send(("items", number, batch))
            batch = []
    if batch:
        out.send(("items", number, batch))
