"""Live terminal view: the top tags as bars, redrawn in place on a TTY, plain lines otherwise.

With an attention model (spec_att) each update also shows where in the chunk the model looked:
the [CLS] attention of the last layer as a sparkline over the chunk's time span.
"""
from __future__ import annotations

import sys
from typing import IO

import numpy as np

_LEVELS = "▁▂▃▄▅▆▇█"


def sparkline(weights, cells: int = 32) -> str:
    """``weights`` (>= 0) over time as ``cells`` block characters, scaled to their maximum."""
    from ..aggregator import pool_cells

    w = np.asarray(weights, np.float64)
    # mean of the weights under each cell (cells may be narrower than one weight)
    means = pool_cells(np.repeat(w, cells), cells) if w.size < cells else pool_cells(w, cells)
    top = means.max()
    if not top > 0:
        return _LEVELS[0] * cells
    idx = np.minimum((means / top * len(_LEVELS)).astype(int), len(_LEVELS) - 1)
    return "".join(_LEVELS[i] for i in idx)


class TerminalView:
    def __init__(self, stream: IO[str] | None = None, *, topk: int = 5, width: int = 30,
                 tty: bool | None = None) -> None:
        self.f = stream or sys.stdout
        self.topk = topk
        self.width = width
        self.tty = self.f.isatty() if tty is None else tty
        self._drawn = 0

    def handle(self, msg: dict) -> None:
        kind = msg.get("type")
        if kind == "status":
            self._line(f"rt-tagger: {msg['model']} on {msg.get('backend_reason', msg['backend'])}; "
                       f"input {msg.get('input', '?')}; chunk {msg['chunk']:.2f} s, hop {msg['hop']:.2f} s")
        elif kind == "update":
            self._bars(msg)
        elif kind == "event":
            self._line(self._event_text(msg))
        elif kind == "summary":
            top = ", ".join(f"{t} {p:.2f}" for t, p in msg["top"])
            self._line(f"[{msg['source']}] summary over {msg['chunks']} chunks "
                       f"({msg['duration']:.1f} s): {top}")

    @staticmethod
    def _event_text(msg: dict) -> str:
        ev = msg["event"]
        head = f"[{msg['source']} {msg['t']:7.2f} s]"
        if ev in ("tag_on", "tag_off"):
            return f"{head} {'+' if ev == 'tag_on' else '-'} {msg['tag']} ({msg['p']:.2f})"
        if ev == "overrun":
            return f"{head} overrun: {msg['samples']} samples lost"
        if ev == "source_state":
            return f"{head} source {msg['state']}" + (f": {msg['detail']}" if msg.get("detail") else "")
        extra = msg.get("detail") or ""
        return f"{head} {ev}" + (f": {extra}" if extra else "")

    def _bars(self, msg: dict) -> None:
        top = msg["top"][: self.topk]
        att = msg.get("attention")
        if not self.tty:
            text = " | ".join(f"{t} {p:.2f}" for t, p in top)
            if att:
                text += f" | attention {sparkline(att, 16)}"
            self.f.write(f"[{msg['source']} {msg['t']:7.2f} s] {text}\n")
            self.f.flush()
            return
        name_w = max(len(t) for t, _ in top)
        lines = [f"\x1b[1m{msg['source']}  t = {msg['t']:7.2f} s\x1b[0m"]
        for tag, p in top:
            full = int(round(p * self.width))
            lines.append(f"  {tag:<{name_w}} {'█' * full}{'░' * (self.width - full)} {p:.2f}")
        if att:
            lines.append(f"  {'attention':<{name_w}} {sparkline(att, self.width)} "
                         f"{msg.get('t_start', 0):.1f}-{msg['t']:.1f} s")
        self._clear()
        self.f.write("\n".join(lines) + "\n")
        self.f.flush()
        self._drawn = len(lines)

    def _clear(self) -> None:
        if self.tty and self._drawn:
            self.f.write(f"\x1b[{self._drawn}F\x1b[J")
            self._drawn = 0

    def _line(self, text: str) -> None:
        self._clear()
        self.f.write(text + "\n")
        self.f.flush()
