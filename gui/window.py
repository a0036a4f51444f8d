"""The live window: polls the running session's snapshot on a QTimer and draws it.

Threads: the pipeline's source/feature/inference threads never touch Qt; this window reads
their :meth:`~rt_tagger.aggregator.Aggregator.snapshot` copies on its timer (>= 20 fps) on
the GUI thread, and drains their messages there too (non-blocking). Contribution maps run on
a Qt-free worker thread. Closing the window stops capture and joins every thread.
"""
from __future__ import annotations

import datetime as _dt
import time

import numpy as np

from rt_tagger.errors import BackendError

from .contrib import ContributionWorker, Request
from .controls import ControlPanel
from .qt import QtCore, QtWidgets
from .session import Session, Settings
from .views import LiveView

FPS = 25.0


class LiveWindow(QtWidgets.QMainWindow):
    """``LiveWindow(session)``; :meth:`show_snapshot` is the whole per-frame update."""

    sessionChanged = QtCore.Signal()

    def __init__(self, session: Session, *, fps: float = FPS, span: float = 30.0) -> None:
        super().__init__()
        self.session: Session | None = session
        self.setWindowTitle("rt-tagger")
        self.view = LiveView(span=span)
        self.controls = ControlPanel(session.settings, session.tagger.chunk_seconds)
        central = QtWidgets.QWidget()
        row = QtWidgets.QHBoxLayout(central)
        row.setContentsMargins(4, 4, 4, 4)
        row.addWidget(self.controls)
        row.addWidget(self.view, stretch=1)
        self.setCentralWidget(central)
        self.status = QtWidgets.QLabel()
        self.statusBar().addWidget(self.status, 1)
        self.resize(1500, 880)

        self.paused = False
        self.sorted = True
        self.selected: int | None = None  # tag index; None follows the top tag
        self.frames = 0  # snapshots drawn
        self.errors: list[str] = []  # pipeline failures (run_gui exits 1)
        self.notice: str | None = None  # e.g. a settings change that could not be applied
        self.last_request: Request | None = None
        self.snapshot_path: str | None = None
        self._asked = None
        self._fps = (time.perf_counter(), 0, 0.0)
        self._index: dict[str, int] = {}
        self._tags: list[str] | None = None
        self._no_contrib: dict[str, str] = {}  # model -> why it gives no contribution maps
        self.worker = ContributionWorker()

        self.view.tagClicked.connect(self.select_tag)
        self.controls.settingsChanged.connect(self.apply_settings)
        self.controls.pauseToggled.connect(self.set_paused)
        self.controls.sortToggled.connect(self._set_sorted)
        self.controls.overlayToggled.connect(self._set_overlay)
        self.controls.snapshotRequested.connect(self._snapshot_clicked)
        self.timer = QtCore.QTimer(self)
        self.timer.setInterval(int(round(1000.0 / fps)))
        self.timer.timeout.connect(self.tick)
        self.timer.start()

    # ---- the timer -----------------------------------------------------------------------------
    def tick(self) -> None:
        s = self.session
        if s is None:
            return
        s.drain()
        if s.error is not None and s.error_text() not in self.errors:
            self.errors.append(s.error_text())
        if not self.paused:
            self.show_snapshot(s.snapshot())

    def show_snapshot(self, snap) -> None:
        """Draws one snapshot: spectrogram + overlay, bars, taggram, strip, status line."""
        if snap.tags is not self._tags:
            self._tags = snap.tags
            self._index = {name: i for i, name in enumerate(snap.tags)}
        order = (np.argsort(-snap.probs, kind="stable") if self.sorted
                 else np.arange(len(snap.tags)))
        shown = self.shown_tag(snap)
        self.view.show_attention(snap, shown, None if shown is None else snap.tags[shown])
        self.view.bars.update(snap, order, self.selected, self._index)
        hop = self.session.tagger.hop_seconds if self.session else 0.5
        self.view.taggram.update(snap, order, hop)
        self._update_strip(snap, shown)
        self.frames += 1
        self._status(snap)

    def shown_tag(self, snap) -> int | None:
        if self.selected is not None:
            return self.selected
        return self._index.get(snap.top[0][0]) if snap.top else None

    # ---- contribution strip ----------------------------------------------------------------------
    def _update_strip(self, snap, tag: int | None) -> None:
        strip = self.view.strip
        att = snap.attention
        if tag is None:
            return
        name = snap.tags[tag]
        if att is None:
            strip.set_message(f"contribution of '{name}': model has no attention"
                              if snap.history_t.shape[0] else "contribution: waiting for the first chunk")
            return
        if att.kind == "per_tag":  # q2l: the tag's own cross-attention is the map
            strip.set_values(name, att.weights[tag], att.times, "cross-attention")
            return
        model = self.session.settings.model if self.session else None
        if model in self._no_contrib:
            strip.set_message(f"contribution of '{name}': {self._no_contrib[model]}")
            return
        req = self._request(snap, att, name)
        if req is not None and req.key != self._asked:
            self._asked = req.key
            self.last_request = req
            self.worker.submit(req)
        res = self.worker.take()
        if res is not None:
            if res.permanent:
                self._no_contrib[res.key[0]] = res.message
            if res.values is None:
                strip.set_message(f"contribution of '{res.tag}': {res.message}")
            else:
                strip.set_values(res.tag, res.values, res.edges, "contribution")

    def _request(self, snap, att, name: str) -> Request | None:
        """The chunk the engine saw last (the overlay carries it), for the selected tag."""
        s = self.session
        if s is None or att.chunk is None or s.tagger.logmel_config is None:
            return None
        key = (s.settings.model, round(float(att.start), 4), name)
        return Request(s.settings.model, att.chunk, float(att.start), name, key)

    # ---- controls ----------------------------------------------------------------------------------
    def select_tag(self, index: int) -> None:
        self.selected = int(index)

    def set_paused(self, on: bool) -> None:
        self.paused = bool(on)
        if self.controls.pause.isChecked() != self.paused:
            self.controls.pause.setChecked(self.paused)

    def _set_sorted(self, on: bool) -> None:
        self.sorted = bool(on)

    def _set_overlay(self, on: bool) -> None:
        """The attention overlay checkbox: shows or hides the cyan overlay on the spectrogram
        (the heat strip stays: it hides nothing)."""
        self.view.spectrogram.show_overlay = bool(on)
        if self.session is not None:
            snap = self.session.snapshot()
            self.view.spectrogram.set_attention(self.view.track, self.shown_tag(snap),
                                                max(snap.logmel.shape[1], 1), snap.frame_seconds)

    def apply_settings(self, changes: dict) -> None:
        """Restarts on new settings: the new tagger is built first, then the old session is
        closed (threads joined), then the new one starts. A failure keeps the window open
        and says why in the status line."""
        old = self.session
        base = old.settings if old is not None else None
        if base is None:
            return
        settings: Settings = base.replace(**changes)
        self.status.setText("restarting: " + ", ".join(f"{k}={v}" for k, v in changes.items()))
        QtWidgets.QApplication.processEvents()
        try:
            try:
                new = Session.open(settings, jsonl=old.jsonl)
            except BackendError:  # the backend cannot run the new model: let auto choose
                if "model" not in changes or settings.backend == "auto":
                    raise
                settings = settings.replace(backend="auto")
                new = Session.open(settings, jsonl=old.jsonl)
        except Exception as exc:  # the old session keeps running
            self.notice = "cannot switch: " + (str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            self.controls.show_settings(base, old.tagger.chunk_seconds)
            self.status.setText(self.notice)
            return
        self.notice = None
        old.close()
        self.session = new
        self.selected = None
        self._asked = None
        self.view.reset()
        new.start()
        self.controls.show_settings(settings, new.tagger.chunk_seconds)
        self.sessionChanged.emit()

    def save_png(self, path: str) -> str:
        if not self.grab().save(path):
            raise OSError(f"cannot write {path}")
        return path

    def _snapshot_clicked(self) -> None:
        name = _dt.datetime.now().strftime("rt-tagger-%Y%m%d-%H%M%S.png")
        try:
            self.snapshot_path = self.save_png(name)
            self.statusBar().showMessage(f"saved {name}", 4000)
        except OSError as exc:
            self.statusBar().showMessage(str(exc), 6000)

    # ---- status and closing -------------------------------------------------------------------
    def _status(self, snap) -> None:
        t0, n, fps = self._fps
        now = time.perf_counter()
        if now - t0 >= 1.0:
            fps = (self.frames - n) / (now - t0)
            self._fps = (now, self.frames, fps)
        st = snap.status
        s = self.session
        parts = [f"backend {s.tagger.engine.name if s else '-'}",
                 f"latency {st.get('latency_ms', 0):.0f} ms", f"CPU {st.get('cpu_percent', 0):.0f}%",
                 f"overruns {st.get('overruns', 0)}", f"dropped {st.get('dropped_chunks', 0)}",
                 f"source {st.get('source_state', '-')}", f"t {snap.t:.1f} s", f"{fps:.0f} fps"]
        if self.paused:
            parts.append("PAUSED")
        if self.notice:
            parts.append(self.notice)
        if self.errors:
            parts.append(f"error: {self.errors[-1]}")
        self.status.setText("  ·  ".join(parts))

    @property
    def fps(self) -> float:
        return self._fps[2]

    def shutdown(self) -> None:
        """Stops the timer, the contribution worker and the pipeline (threads joined)."""
        self.timer.stop()
        self.worker.close()
        if self.session is not None:
            self.session.close()
            if self.session.error is not None and self.session.error_text() not in self.errors:
                self.errors.append(self.session.error_text())

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt name
        self.shutdown()
        super().closeEvent(event)
