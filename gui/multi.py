"""The compact multi-source window: one row per monitored source (``rt-tagger --source A=...
--source B=... --gui``).

Each row shows the source's name and state, its top tags as small bars, a level meter (RMS
level of the last 400 ms in dBFS, a peak-hold marker, momentary loudness in LUFS as text) and
one lamp per alarm (silence, loudness high, loudness low) that lights while the alarm is active.

Threads: the monitor's source, feature and inference threads never touch Qt. The window reads
:meth:`~rt_tagger.monitor.Monitor.snapshots` copies on its QTimer (>= 10 fps) on the GUI thread
and drains the monitor's messages there too (non-blocking), handing each to ``on_message`` (the
CLI's sinks). Closing the window stops the monitor and joins its threads.
"""
from __future__ import annotations

import time
from typing import Callable

from .qt import QtCore, QtGui, QtWidgets

FPS = 20.0
LEVEL_FLOOR = -60.0  # dBFS at the left end of the meter (0 dBFS at the right end)
PEAK_HOLD = 1.5  # seconds a peak marker holds before it follows the level down
READOUT_FLOOR = -70.0  # readouts below this show as '< -70'
MAX_DRAIN = 500  # messages handed on per tick at most, so a burst never freezes the window

ALARMS = (("silence", "SILENCE"), ("loudness_high", "LOUD"), ("loudness_low", "QUIET"))
ALARM_ON = QtGui.QColor(220, 40, 40)
ALARM_OFF = QtGui.QColor(60, 60, 66)
METER_BG = QtGui.QColor(30, 30, 34)
METER_FILL = QtGui.QColor(60, 190, 80)
PEAK_MARK = QtGui.QColor(250, 250, 250)
BAR_BG = QtGui.QColor(45, 45, 50)
BAR_FILL = QtGui.QColor(240, 150, 40)
STATE_COLOURS = {"running": "#4c4", "starting": "#aaa", "reconnecting": "#e90",
                 "failed": "#e33", "ended": "#888", "stopped": "#888"}


def _fraction(db: float | None) -> float:
    """dBFS -> 0..1 along the meter; ``None`` (minus infinity) is 0."""
    if db is None:
        return 0.0
    return min(1.0, max(0.0, (db - LEVEL_FLOOR) / -LEVEL_FLOOR))


class TagBars(QtWidgets.QWidget):
    """The top tags, one thin line each: a bar of the probability (0..1) and ``name 0.42``."""

    LINE = 15
    TEXT = 130  # pixels of text left of the bars

    def __init__(self, topk: int) -> None:
        super().__init__()
        self.topk = topk
        self.shown: list[tuple[str, float]] = []
        self.setMinimumSize(self.TEXT + 120, self.LINE * topk + 2)

    def set_tags(self, top: list[tuple[str, float]]) -> None:
        top = [(str(n), float(p)) for n, p in top[: self.topk]]
        if top != self.shown:
            self.shown = top
            self.update()

    def bar_rect(self, i: int) -> QtCore.QRect:
        """Where line ``i``'s bar (full scale, probability 1) is drawn, in widget pixels."""
        return QtCore.QRect(self.TEXT, i * self.LINE + 2, self.width() - self.TEXT - 2, self.LINE - 4)

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt name
        p = QtGui.QPainter(self)
        p.setPen(self.palette().color(QtGui.QPalette.ColorRole.WindowText))
        for i in range(self.topk):
            r = self.bar_rect(i)
            p.fillRect(r, BAR_BG)
            if i < len(self.shown):
                name, prob = self.shown[i]
                p.fillRect(QtCore.QRect(r.x(), r.y(), round(r.width() * min(1.0, max(0.0, prob))),
                                        r.height()), BAR_FILL)
                p.drawText(QtCore.QRect(2, i * self.LINE, self.TEXT - 6, self.LINE),
                           QtCore.Qt.AlignmentFlag.AlignVCenter | QtCore.Qt.AlignmentFlag.AlignLeft,
                           f"{name}  {prob:.2f}")
        p.end()


class LevelMeter(QtWidgets.QWidget):
    """A horizontal meter from ``LEVEL_FLOOR`` to 0 dBFS with a peak-hold marker."""

    def __init__(self) -> None:
        super().__init__()
        self.level: float | None = None
        self.peak: float | None = None
        self._peak_at = 0.0
        self.setFixedHeight(16)
        self.setMinimumWidth(160)

    def set_level(self, level_db: float | None, now: float) -> None:
        self.level = level_db
        lv = LEVEL_FLOOR if level_db is None else level_db
        if self.peak is None or lv >= self.peak or now - self._peak_at > PEAK_HOLD:
            self.peak, self._peak_at = lv, now
        self.update()

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt name
        p = QtGui.QPainter(self)
        w, h = self.width(), self.height()
        p.fillRect(0, 0, w, h, METER_BG)
        p.fillRect(0, 0, round(w * _fraction(self.level)), h, METER_FILL)
        if self.peak is not None and self.peak > LEVEL_FLOOR:
            x = min(w - 2, round(w * _fraction(self.peak)))
            p.fillRect(x, 0, 2, h, PEAK_MARK)
        p.end()


class AlarmLamp(QtWidgets.QLabel):
    """A labelled lamp: red while its alarm is active, dark otherwise."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.on: bool | None = None
        self.setAlignment(QtCore.Qt.AlignmentFlag.AlignCenter)
        self.setFixedSize(64, 20)
        self.set_on(False)

    def set_on(self, on: bool) -> None:
        if on is self.on:
            return
        self.on = on
        bg = (ALARM_ON if on else ALARM_OFF).name()
        fg = "#fff" if on else "#888"
        self.setStyleSheet(f"background-color: {bg}; color: {fg}; border-radius: 3px;")


class SourceRow(QtWidgets.QFrame):
    """One source: name and state | top tags | level meter and readout | alarm lamps."""

    def __init__(self, name: str, topk: int) -> None:
        super().__init__()
        self.name = name
        self.setFrameShape(QtWidgets.QFrame.Shape.StyledPanel)
        self.title = QtWidgets.QLabel(f"<b>{name}</b>")
        self.state = QtWidgets.QLabel("starting")
        self.tags = TagBars(topk)
        self.meter = LevelMeter()
        self.readout = QtWidgets.QLabel("—")
        self.lamps = {key: AlarmLamp(text) for key, text in ALARMS}

        left = QtWidgets.QVBoxLayout()
        left.addWidget(self.title)
        left.addWidget(self.state)
        left.addStretch(1)
        mid = QtWidgets.QVBoxLayout()
        mid.addWidget(self.meter)
        mid.addWidget(self.readout)
        lamps = QtWidgets.QHBoxLayout()
        for lamp in self.lamps.values():
            lamps.addWidget(lamp)
        mid.addLayout(lamps)
        mid.addStretch(1)
        row = QtWidgets.QHBoxLayout(self)
        row.setContentsMargins(6, 4, 6, 4)
        row.addLayout(left, 1)
        row.addWidget(self.tags, 3)
        row.addLayout(mid, 2)

    def show_snapshot(self, snap, now: float) -> None:
        colour = STATE_COLOURS.get(snap.state, "#aaa")
        text = snap.state + (f" (restarts: {snap.restarts})" if snap.restarts else "")
        self.state.setText(f'<span style="color:{colour}">{text}</span>')
        self.state.setToolTip(snap.error or snap.target)
        tagged = snap.tags is not None and snap.tags.history_t.shape[0] > 0  # a chunk was tagged
        self.tags.set_tags(snap.tags.top if tagged else [])
        ld = snap.loudness or {}
        self.meter.set_level(ld.get("level_db"), now)

        def fmt(v: float | None, unit: str) -> str:  # digital silence reads absurdly low
            return f"{v:.1f} {unit}" if v is not None and v >= READOUT_FLOOR else f"< {READOUT_FLOOR:g} {unit}"

        self.readout.setText(f"{fmt(ld.get('level_db'), 'dBFS')}   M {fmt(ld.get('momentary'), 'LUFS')}"
                             f"   S {fmt(ld.get('short_term'), 'LUFS')}" if ld else "—")
        active = set(snap.alarms)
        for key, lamp in self.lamps.items():
            lamp.set_on(key in active)


class MultiWindow(QtWidgets.QMainWindow):
    """``MultiWindow(monitor)`` of a started (or about to start) monitor; :meth:`tick` is
    the whole per-frame update."""

    def __init__(self, monitor, *, fps: float = FPS, topk: int = 3,
                 on_message: Callable[[dict], None] | None = None) -> None:
        super().__init__()
        if fps < 10:
            fps = 10.0  # a meter slower than 10 fps reads as broken
        self.monitor = monitor
        self.on_message = on_message
        self.setWindowTitle(f"rt-tagger — {len(monitor.names)} sources")
        self.rows = {name: SourceRow(name, topk) for name in monitor.names}
        central = QtWidgets.QWidget()
        col = QtWidgets.QVBoxLayout(central)
        col.setContentsMargins(4, 4, 4, 4)
        col.setSpacing(4)
        for row in self.rows.values():
            col.addWidget(row)
        col.addStretch(1)
        self.setCentralWidget(central)
        self.status = QtWidgets.QLabel()
        self.statusBar().addWidget(self.status, 1)
        self.resize(900, 40 + 90 * len(self.rows))

        self.frames = 0
        self.ended = False  # every source has ended (no restart pending)
        self.errors: list[str] = []
        self._closed = False
        self.timer = QtCore.QTimer(self)
        self.timer.setInterval(int(round(1000.0 / fps)))
        self.timer.timeout.connect(self.tick)
        self.timer.start()

    def drain(self) -> None:
        """Hands on what the monitor queued, without waiting."""
        for _ in range(MAX_DRAIN):
            if self.ended:
                return
            try:
                msg = self.monitor.poll(timeout=0)
            except StopIteration:
                self.ended = True
                return
            except Exception as exc:  # the shared inference thread failed: show it, keep the window
                text = str(exc) or type(exc).__name__
                if text not in self.errors:
                    self.errors.append(text)
                return
            if msg is None:
                return
            if self.on_message is not None:
                self.on_message(msg)

    def tick(self) -> None:
        if self._closed:
            return
        self.drain()
        now = time.monotonic()
        for name, snap in self.monitor.snapshots().items():
            self.rows[name].show_snapshot(snap, now)
        self.frames += 1
        eng = self.monitor.engine
        text = f"{self.monitor.tagger.model} on {eng.name} · {len(self.rows)} sources"
        if self.ended:
            text += " · all sources ended"
        if self.errors:
            text += f" · error: {self.errors[-1]}"
        self.status.setText(text)

    def save_png(self, path: str) -> None:
        if not self.grab().save(path, "PNG"):
            raise OSError(f"could not write {path}")

    def shutdown(self) -> None:
        """Stops the timer and the monitor (every source, the shared inference threads)."""
        if self._closed:
            return
        self._closed = True
        self.timer.stop()
        self.monitor.stop()

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt name
        self.shutdown()
        super().closeEvent(event)
