"""Live terminal view: the top tags as bars, redrawn in place on a TTY, plain lines otherwise.

With an attention model (spec_att) each update also shows where in the chunk the model looked:
the [CLS] attention of the last layer as a sparkline over the chunk's time span, drawn in the
same columns as the bars.

On a TTY the bar block stays at the bottom of the screen: every frame moves the cursor back to
the block's first row, erases from there down, prints any new lines (status, events, summary)
and then the block again, in one write. New lines therefore scroll *above* the block, and
nothing is ever printed wider than the terminal (long lines are wrapped with an indent, so the
block's height on screen is exactly its number of lines).
"""
from __future__ import annotations

import os
import sys
import textwrap
from typing import IO

import numpy as np

_LEVELS = "▁▂▃▄▅▆▇█"
_BOLD, _RESET = "\x1b[1m", "\x1b[0m"
_HIDE, _SHOW = "\x1b[?25l", "\x1b[?25h"  # cursor off while a frame is drawn
_MAX_NAME = 20  # longest tag name shown in full in the block; longer ones end in "…"


def sparkline(weights, cells: int = 32) -> str:
    """``weights`` (>= 0) over time as ``cells`` block characters, scaled to their maximum."""
    from ..stream.attention import pool_cells

    w = np.asarray(weights, np.float64)
    # mean of the weights under each cell (cells may be narrower than one weight)
    means = pool_cells(np.repeat(w, cells), cells) if w.size < cells else pool_cells(w, cells)
    top = means.max()
    if not top > 0:
        return _LEVELS[0] * cells
    idx = np.minimum((means / top * len(_LEVELS)).astype(int), len(_LEVELS) - 1)
    return "".join(_LEVELS[i] for i in idx)


def terminal_size(stream: IO[str]) -> tuple[int, int]:
    """``(columns, lines)`` of the terminal behind ``stream``; COLUMNS / LINES override it,
    80 x 24 when neither says."""
    try:
        cols, rows = os.get_terminal_size(stream.fileno())
    except (AttributeError, ValueError, OSError):
        cols, rows = 0, 0
    for name in ("COLUMNS", "LINES"):
        value = os.environ.get(name, "")
        if value.isdigit() and int(value) > 0:
            cols, rows = (int(value), rows) if name == "COLUMNS" else (cols, int(value))
    return cols or 80, rows or 24


class TerminalView:
    """A sink for the pipeline's messages (see :mod:`rt_tagger.sinks`).

    ``width``: the most cells a bar (and the attention sparkline) takes; on a TTY it shrinks
    to fit the terminal. ``tty``: redraw in place (default: whether ``stream`` is a TTY).
    """

    def __init__(self, stream: IO[str] | None = None, *, topk: int = 5, width: int = 30,
                 tty: bool | None = None) -> None:
        self.f = stream or sys.stdout
        self.topk = topk
        self.width = width
        self.tty = self.f.isatty() if tty is None else tty
        self._drawn = 0  # rows the block occupies on screen right now (TTY)
        self._block: list[str] = []  # the block as last drawn, redrawn under new lines

    def handle(self, msg: dict) -> None:
        kind = msg.get("type")
        if kind == "status":
            self._status(msg)
        elif kind == "update":
            self._bars(msg)
        elif kind == "event":
            self._line(self._event_text(msg))
        elif kind == "summary":
            top = ", ".join(f"{t} {p:.2f}" for t, p in msg["top"])
            self._line(f"[{msg['source']}] summary over {msg['chunks']} chunks "
                       f"({msg['duration']:.1f} s): {top}")

    def _status(self, msg: dict) -> None:
        backend = msg.get("backend_reason", msg["backend"])
        timing = f"chunk {msg['chunk']:.2f} s, hop {msg['hop']:.2f} s"
        if not self.tty:
            self._line(f"rt-tagger: {msg['model']} on {backend}; input {msg.get('input', '?')}; "
                       f"{timing}")
            return
        self._line(f"rt-tagger: {msg['model']}; {timing}", f"backend: {backend}",
                   f"input: {msg.get('input', '?')}")

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
            if msg.get("silence"):
                text = "silence | " + text
            if att:
                text += f" | attention {sparkline(att, 16)}"
            self.f.write(f"[{msg['source']} {msg['t']:7.2f} s] {text}\n")
            self.f.flush()
            return
        self._block = self.block_lines(msg, *terminal_size(self.f))
        self._frame([])

    def block_lines(self, msg: dict, columns: int = 80, rows: int = 24) -> list[str]:
        """The bar block of update ``msg`` for a ``columns`` x ``rows`` terminal: a header, one
        bar per top tag and, with attention, the sparkline in the bars' columns. Every line is
        shorter than ``columns``; at most ``rows - 1`` lines (the header first)."""
        top = msg["top"][: self.topk]
        att = msg.get("attention")
        labels = [t if len(t) <= _MAX_NAME else t[: _MAX_NAME - 1] + "…" for t, _ in top]
        name_w = max([len(s) for s in labels] + ([len("attention")] if att else []) + [1])
        # "  NAME BAR 0.00": the bar gets what is left of the line, up to self.width
        bar_w = max(4, min(self.width, columns - 1 - (2 + name_w + 1) - 5))
        header = f"{msg['source']}  t = {msg['t']:7.2f} s"
        if msg.get("silence"):
            header += f"   silence ({msg.get('level_db', float('-inf')):.0f} dBFS): no tags on"
        elif att:
            header += f"   attention over {msg.get('t_start', 0):.1f}-{msg['t']:.1f} s"
        lines = [_BOLD + _fit(header, columns) + _RESET]
        for label, (_, p) in zip(labels, top):
            full = int(round(min(max(p, 0.0), 1.0) * bar_w))
            lines.append(_fit(f"  {label:<{name_w}} {'█' * full}{'░' * (bar_w - full)} {p:.2f}",
                              columns))
        if att:
            lines.append(_fit(f"  {'attention':<{name_w}} {sparkline(att, bar_w)}", columns))
        return lines[: max(1, rows - 1)]

    def _line(self, *texts: str) -> None:
        if not self.tty:
            self.f.write("".join(t + "\n" for t in texts))
            self.f.flush()
            return
        columns = terminal_size(self.f)[0]
        self._frame([w for t in texts for w in _wrap(t, columns)])

    def _frame(self, above: list[str]) -> None:
        """One write: back to the block's first row, erase down, ``above``, then the block."""
        parts = [_HIDE]
        if self._drawn:
            parts.append(f"\x1b[{self._drawn}F\x1b[J")
        parts += [line + "\n" for line in above + self._block]
        parts.append(_SHOW)
        self.f.write("".join(parts))
        self.f.flush()
        self._drawn = len(self._block)


def _fit(text: str, columns: int) -> str:
    """``text`` cut to fewer than ``columns`` characters (an ending "…" says it was cut)."""
    limit = max(2, columns - 1)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _wrap(text: str, columns: int) -> list[str]:
    """``text`` as lines shorter than ``columns``, continuation lines indented."""
    limit = max(8, columns - 1)
    return textwrap.wrap(text, limit, subsequent_indent="    ", break_long_words=True,
                         break_on_hyphens=False, drop_whitespace=True) or [""]
