"""The terminal view on a real terminal, and the demo that drives it.

The screen is modelled by pyte (an independent VT100/xterm emulator, in the [test] extra): the
bytes the view writes are fed to an 80 x 24 screen, as a terminal would show them, and to a
200-column screen of the same height, where a line the view made too wide for 80 columns shows
up instead of being wrapped away. The end-to-end test runs ``python -m rt_tagger demo`` on a
real pseudo-terminal (pty.fork) with TERM, COLUMNS and LINES set and the window size set by
ioctl.
"""
from __future__ import annotations

import io
import os
import re
import select
import sys
import time

import numpy as np
import pytest

pyte = pytest.importorskip("pyte", reason="pyte (in the [test] extra) models the terminal screen")

from rt_tagger.demo import SECTIONS, SR, demo_clip, describe  # noqa: E402
from rt_tagger.sinks.terminal import TerminalView, sparkline  # noqa: E402

COLS, ROWS = 80, 24
HEADER = re.compile(r"^main  t = +(\d+\.\d\d) s   attention over \d+\.\d-\d+\.\d s *$")
BAR = re.compile(r"^  (\S.*?) +([█░]+) (\d\.\d\d) *$")
SPARK = re.compile(r"^  attention +([▁▂▃▄▅▆▇█]+) *$")
EVENT = re.compile(r"^\[main +\d+\.\d\d s\] [+-] \S")


class Screens:
    """The same bytes on an 80 x 24 screen (what the user sees) and a 200 x 24 one (widths)."""

    def __init__(self) -> None:
        self.screen = pyte.Screen(COLS, ROWS)
        self.wide = pyte.Screen(200, ROWS)
        self._streams = [pyte.ByteStream(self.screen), pyte.ByteStream(self.wide)]

    def feed(self, data: bytes) -> None:
        for s in self._streams:
            s.feed(data)

    def rows(self) -> list[str]:
        return [line.rstrip() for line in self.screen.display]

    def widest(self) -> int:
        return max(len(line.rstrip()) for line in self.wide.display)


def find_block(rows: list[str], topk: int = 5) -> int:
    """Row of the bar block's header, after checking the block: header, ``topk`` bars and the
    attention sparkline in the bars' columns, with nothing below it. -1 if there is no header."""
    heads = [i for i, r in enumerate(rows) if HEADER.match(r)]
    if not heads:
        return -1
    h = heads[-1]
    bars = [BAR.match(r) for r in rows[h + 1: h + 1 + topk]]
    assert all(bars), "\n".join(rows)
    spark = SPARK.match(rows[h + 1 + topk])
    assert spark, "\n".join(rows)
    columns = {(m.start(2), m.end(2)) for m in bars} | {(spark.start(1), spark.end(1))}
    assert len(columns) == 1, f"bars and sparkline not aligned: {columns}\n" + "\n".join(rows)
    assert not any(rows[h + 2 + topk:]), "\n".join(rows)  # the block is the bottom of the view
    return h


def update(t: float, top: list[tuple[str, float]], attention=None) -> dict:
    msg = {"type": "update", "source": "main", "t": t, "t_start": max(0.0, t - 4.1), "top": top}
    if attention is not None:
        msg["attention"] = list(attention)
    return msg


def event(t: float, tag: str, on: bool = True, p: float = 0.6) -> dict:
    return {"type": "event", "source": "main", "t": t, "event": "tag_on" if on else "tag_off",
            "tag": tag, "p": p}


def test_bar_block_stays_below_scrolling_events(monkeypatch):
    """Synthetic messages through the view into the screen model: after every message the
    block is whole at the bottom, event lines sit above it, nothing wider than 79 columns."""
    monkeypatch.setenv("COLUMNS", str(COLS))
    monkeypatch.setenv("LINES", str(ROWS))
    out = io.StringIO()
    view = TerminalView(out, topk=5, tty=True)
    screens = Screens()
    rng = np.random.default_rng(0)
    tags = ["guitar", "slow", "a very long tag name indeed, longer than the bar", "drums", "pop"]
    long_detail = "reconnecting to http://radio.example/stream.mp3 after " + "x" * 120
    msgs = [{"type": "status", "model": "spec_att.w256", "backend": "onnxruntime",
             "backend_reason": "onnxruntime (CPU, fp32): " + "no CUDA device; " * 4,
             "input": "file /tmp/" + "d" * 90 + "/demo.wav", "chunk": 4.1, "hop": 0.5}]
    for i in range(40):  # enough events to scroll the screen several times
        msgs.append(update(4.1 + 0.5 * i, [(t, float(p)) for t, p in zip(tags, rng.random(5))],
                           rng.random(26)))
        if i % 3 == 0:
            msgs.append(event(4.1 + 0.5 * i, tags[i % 5], on=i % 2 == 0))
    msgs.append({"type": "event", "source": "main", "t": 25.0, "event": "source_state",
                 "state": "error", "detail": long_detail})
    for msg in msgs:
        pos = out.tell()
        view.handle(msg)
        # a tty's line discipline turns "\n" into "\r\n" (ONLCR); a StringIO does not
        screens.feed(out.getvalue()[pos:].replace("\n", "\r\n").encode())
        rows = screens.rows()
        assert screens.widest() < COLS
        if msg["type"] != "status":
            h = find_block(rows)
            assert h > 0 and screens.screen.cursor.y == h + 7
    assert any(EVENT.match(r) for r in rows[:h])
    above = "".join(r.strip() for r in rows[:h]).replace(" ", "")
    assert long_detail.replace(" ", "") in above  # wrapped over several lines, nothing cut
    assert rows[h + 3].startswith("  a very long tag nam… ")  # cut to 20 characters


def test_sparkline_aligned_with_short_tag_names(monkeypatch):
    """Tag names shorter than 'attention' used to push the sparkline right of the bars."""
    monkeypatch.setenv("COLUMNS", "60")
    view = TerminalView(io.StringIO(), topk=2, tty=True)
    lines = view.block_lines(update(5.0, [("rock", 0.5), ("pop", 1.0)], np.ones(8)), 60, 24)
    assert lines[1].index("█") == lines[2].index("█") == lines[3].index("█")
    assert lines[2].endswith("█" * 30 + " 1.00") and lines[3].endswith(sparkline(np.ones(8), 30))
    narrow = view.block_lines(update(5.0, [("rock", 0.5)], np.ones(8)), 30, 24)
    assert all(len(x) < 30 for x in narrow[1:]) and len(narrow[1]) - 5 == len(narrow[2])
    assert len(view.block_lines(update(5.0, [("rock", 0.5), ("pop", 1.0)], None), 80, 3)) == 2


def _section_features(y: np.ndarray) -> list[dict[str, float]]:
    """Per third of the clip: how tonal the melody band is at the A-minor notes, the share of
    energy in the kick band, and how tonal the bass band is at the bass notes."""
    ks = lambda f0: SR / (round(SR / f0) - 0.5)  # pitch of demo.py's Karplus-Strong loop  # noqa: E731
    out = []
    n = y.size // len(SECTIONS)
    for i in range(len(SECTIONS)):
        s = y[i * n: (i + 1) * n]
        power = np.abs(np.fft.rfft(s)) ** 2
        f = np.fft.rfftfreq(s.size, 1 / SR)

        def tonal(notes, lo, hi, tol):
            band = (f > lo) & (f < hi)
            near = np.any([np.abs(f - ks(x)) < tol for x in notes], axis=0) & band
            return power[near].sum() / power[band].sum()

        out.append({"melody": tonal([220.0, 246.94, 261.63, 293.66, 329.63, 349.23, 392.0, 440.0],
                                    200, 460, 3.0),
                    "kick": power[(f > 30) & (f < 100)].sum() / power.sum(),
                    "bass": tonal([55.0, 87.31, 82.41], 45, 100, 0.15)})
    return out


def test_demo_description_says_what_the_audio_contains():
    """The one-line description, checked against the clip's spectrum section by section."""
    text = describe()
    assert len(text) < COLS
    spans = re.findall(r"(\d+)-(\d+) s ([^;]+)", text)
    assert [(int(a), int(b)) for a, b, _ in spans] == [(0, 8), (8, 16), (16, 24)]
    feats = _section_features(demo_clip())
    bass_floor = max(f["bass"] for f, (_, _, what) in zip(feats, spans) if "bass" not in what)
    for f, (_, _, what) in zip(feats, spans):
        assert ("melody" in what) == (f["melody"] > 0.4), (what, f)
        assert ("drum" in what) == (f["kick"] > 0.1), (what, f)
        if "bass" in what:
            assert f["bass"] > 2 * bass_floor, (what, f, bass_floor)


def _run_demo_on_pty(args: list[str], timeout: float = 120.0):
    """``python -m rt_tagger demo ARGS`` on an 80 x 24 pseudo-terminal. Yields
    ``(seconds since start, Screens)`` each time the output pauses (what a person would see
    between frames), then ``(None, exit status)``."""
    import fcntl
    import pty
    import struct
    import termios

    pid, fd = pty.fork()
    if pid == 0:  # child: the real command, as a user runs it in a terminal
        env = dict(os.environ, TERM="xterm-256color", COLUMNS=str(COLS), LINES=str(ROWS))
        os.execve(sys.executable, [sys.executable, "-m", "rt_tagger", "demo", *args], env)
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
    screens, t0, fresh = Screens(), time.monotonic(), False
    try:
        while time.monotonic() - t0 < timeout:
            ready, _, _ = select.select([fd], [], [], 0.05)
            if ready:
                try:
                    data = os.read(fd, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                screens.feed(data)
                fresh = True
            elif fresh:
                fresh = False
                yield time.monotonic() - t0, screens
        else:
            os.kill(pid, 9)
    finally:
        os.close(fd)
    if fresh:  # the last frame, written just before the child closed the terminal
        yield time.monotonic() - t0, screens
    yield None, os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


@pytest.mark.slow
def test_demo_live_view_in_a_real_terminal():
    """The demo at its default pace on an 80 x 24 pty: the description first, then at every
    pause in the output the bar block is whole at the bottom, events scroll above it, no line
    is wider than 79 columns, and the clip's time advances no faster than the wall clock."""
    samples, seen_events, seen_description, clock, started = 0, False, False, [], None
    for wall, screens in _run_demo_on_pty(["--duration", "6", "--min-duration", "0.5"]):
        if wall is None:
            status = screens
            break
        rows = screens.rows()
        assert screens.widest() < COLS, "\n".join(screens.wide.display)
        seen_description |= describe() in rows
        if started is None and any(r.startswith("input: file ") for r in rows):
            started = wall  # the status lines, written just before the audio starts to flow
        h = find_block(rows)
        if h < 0:
            assert not clock, "the bar block vanished:\n" + "\n".join(rows)
            continue
        samples += 1
        assert screens.screen.cursor.y == h + 7
        seen_events |= any(EVENT.match(r) for r in rows[:h])
        t = float(HEADER.match(rows[h]).group(1))
        if not clock or t != clock[-1][1]:
            clock.append((wall, t))
    assert status == 0
    assert seen_description and seen_events and samples >= 5
    assert any("summary over" in r for r in rows[:h])
    assert clock[-1][1] - clock[0][1] >= 1.0  # several updates were seen ...
    # ... and paced like a live source: audio up to t cannot have arrived sooner than t seconds
    # after the start (unpaced, the 6 s take about a second here). 1 s for delays in reading.
    wall, t = clock[-1]
    assert wall - started >= t - 1.0, (started, clock)
