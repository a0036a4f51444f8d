"""A small progress bar for long loops (stderr; one line per 10 % when not a terminal)."""
from __future__ import annotations

import sys
import time

__all__ = ["Progress"]


class Progress:
    """``with Progress(total, "prepare") as bar: ... bar.update()``."""

    def __init__(self, total: int, label: str = "", *, stream=None, enabled: bool = True) -> None:
        self.total, self.label, self.done = max(int(total), 0), label, 0
        self.stream = stream or sys.stderr
        self.enabled = enabled and self.total > 0
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start = time.monotonic()
        self._last_draw = 0.0
        self._last_decile = -1

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, n: int = 1, note: str = "") -> None:
        self.done += n
        if not self.enabled:
            return
        now = time.monotonic()
        decile = 10 * self.done // self.total
        if self.tty and (now - self._last_draw > 0.1 or self.done >= self.total):
            self._draw(now, note, "\r")
        elif not self.tty and decile != self._last_decile:
            self._draw(now, note, "")
            self.stream.write("\n")
        self._last_draw, self._last_decile = now, decile

    def _draw(self, now: float, note: str, prefix: str) -> None:
        elapsed = now - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        eta = (self.total - self.done) / rate if rate > 0 else 0.0
        filled = 24 * self.done // self.total
        bar = "#" * filled + "." * (24 - filled)
        self.stream.write(f"{prefix}{self.label} [{bar}] {self.done}/{self.total} "
                          f"{rate:.1f}/s eta {eta:.0f}s {note}".rstrip())
        self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()
        self.enabled = False
