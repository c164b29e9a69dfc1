"""Progress on stderr: a bar with bytes, rate and ETA on a terminal, plain lines in a log."""

from __future__ import annotations

import re
import sys
import threading
import time
from collections import deque
from typing import TextIO

# a store path (any store directory) and its name: /nix/store/<32-character hash>-hello-2.12
STORE_PATH = re.compile(r"\S*/[0-9a-df-np-sv-z]{32}-(\S+)")


def human_bytes(count: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    raise AssertionError("unreachable")


class Progress:
    """Tracks bytes written (against the total, when known); `quiet` silences it entirely."""

    REDRAW_SECONDS = 0.2

    def __init__(self, total: int | None, quiet: bool = False, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.total = total
        self.done = 0
        self.quiet = quiet
        self.bar = not quiet and self.stream.isatty()
        self.started = time.monotonic()
        self.last_draw = 0.0
        self.label = ""
        self.coming: deque[tuple[int, str]] = deque()  # labels waiting for their bytes, by offset
        self.lock = threading.Lock()

    def step(self, text: str, at: int | None = None) -> None:
        """A new phase (a layer, the manifest): a line in logs, the bar's label on a terminal.
        It takes over when the bytes from offset `at` on are written (default: now): the
        writing thread runs behind the one that labels, by up to many megabytes."""
        with self.lock:
            self.coming.append((self.done if at is None else at, short_label(text)))
        self._take_labels()

    def advance(self, count: int) -> None:
        """`count` bytes from offset `done` on were (or are being) written."""
        self._take_labels()
        self.done += count
        if self.bar and time.monotonic() - self.last_draw >= self.REDRAW_SECONDS:
            self._draw()

    def _take_labels(self) -> None:
        """Make current the labels whose bytes are reached; in a log, print each."""
        with self.lock:
            while self.coming and self.coming[0][0] <= self.done:
                self.label = self.coming.popleft()[1]
                if not self.quiet and not self.bar:
                    print(self.label, file=self.stream, flush=True)

    def finish(self) -> None:
        self._take_labels()
        elapsed = time.monotonic() - self.started
        if self.bar:
            self._draw()
            self.stream.write("\n")
        if not self.quiet:
            rate = human_bytes(self.done / elapsed) if elapsed > 0 else "-"
            seconds = f"{elapsed:.1f}" if elapsed >= 1 else f"{elapsed:.2g}"  # not "0.0 s" at 47 MB/s
            print(f"wrote {human_bytes(self.done)} in {seconds} s ({rate}/s)", file=self.stream)

    def _draw(self) -> None:
        self.last_draw = now = time.monotonic()
        elapsed = max(now - self.started, 1e-6)
        rate = self.done / elapsed
        total = self.total or 0
        share = min(self.done / total, 1.0) if total else 1.0
        eta = (total - self.done) / rate if rate and total > self.done else 0
        filled = int(share * 30)
        bar = "#" * filled + "-" * (30 - filled)
        line = (
            f"\r[{bar}] {share:4.0%} {human_bytes(self.done)}/{human_bytes(total)}"
            f" {human_bytes(rate)}/s ETA {eta:4.0f} s  {self.label[:40]}"
        )
        self.stream.write(line.ljust(120)[:120])
        self.stream.flush()


def short_label(text: str) -> str:
    """Store paths by their names (hello-2.12): a hash prefix is all a bar's label would show."""
    return STORE_PATH.sub(r"\1", text.replace("store paths: ", "", 1))
