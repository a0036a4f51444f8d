"""The control column: device, model, hop, horizon, threshold, view toggles, pause, snapshot.

Changes that need a new pipeline are emitted as one ``settingsChanged(dict)`` (keys of
:class:`~.session.Settings`); the spin boxes wait until the value has settled (debounce), so
stepping through values does not restart the pipeline for each step.
"""
from __future__ import annotations

import os

from .qt import QtCore, QtWidgets
from .session import Settings

DEBOUNCE_MS = 600


def device_entries(current_source: str) -> list[tuple[str, str]]:
    """``(label, source spec)`` for the current file (if any) and every input device."""
    out = []
    if not current_source.startswith("device:"):
        out.append((f"file: {os.path.basename(current_source) or current_source}", current_source))
    try:
        from rt_tagger.sources.device import input_devices

        devices = input_devices()
    except Exception:  # no PortAudio / no sound server: files still work
        devices = []
    out += [(f"{d['index']}: {d['name']}", f"device:{d['index']}") for d in devices]
    return out


def model_entries(current_model: str) -> list[tuple[str, str]]:
    from rt_tagger.models import list_models

    names = list_models(pretrained=True)
    out = [(n, n) for n in names]
    if current_model not in names:
        out.insert(0, (os.path.basename(current_model), current_model))
    return out


class ControlPanel(QtWidgets.QWidget):
    settingsChanged = QtCore.Signal(dict)
    pauseToggled = QtCore.Signal(bool)
    snapshotRequested = QtCore.Signal()
    sortToggled = QtCore.Signal(bool)
    overlayToggled = QtCore.Signal(bool)

    def __init__(self, settings: Settings, chunk_seconds: float) -> None:
        super().__init__()
        form = QtWidgets.QFormLayout(self)
        self.device = QtWidgets.QComboBox()
        self.model = QtWidgets.QComboBox()
        self.hop = self._spin(0.05, max(chunk_seconds, 0.05), 0.1, " s")
        self.horizon = self._spin(0.5, 60.0, 0.5, " s")
        self.threshold = self._spin(0.0, 0.99, 0.05, "")
        self.threshold.setSpecialValueText("model")  # 0 = the model's per-tag thresholds
        self.sort = QtWidgets.QCheckBox("sort by probability")
        self.sort.setChecked(True)
        self.overlay = QtWidgets.QCheckBox("attention overlay")
        self.overlay.setChecked(True)
        self.pause = QtWidgets.QPushButton("Pause")
        self.pause.setCheckable(True)
        self.snapshot = QtWidgets.QPushButton("Snapshot to PNG")
        for label, w in (("input", self.device), ("model", self.model), ("hop", self.hop),
                         ("horizon", self.horizon), ("threshold", self.threshold)):
            form.addRow(label, w)
        for w in (self.sort, self.overlay, self.pause, self.snapshot):
            form.addRow(w)
        self._debounce = QtCore.QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(DEBOUNCE_MS)
        self._debounce.timeout.connect(self.flush)
        self.show_settings(settings, chunk_seconds)
        self.device.activated.connect(self._picked)
        self.model.activated.connect(self._picked)
        for spin in (self.hop, self.horizon, self.threshold):
            spin.valueChanged.connect(lambda *_: self._debounce.start())
        self.pause.toggled.connect(self._paused)
        self.snapshot.clicked.connect(self.snapshotRequested)
        self.sort.toggled.connect(self.sortToggled)
        self.overlay.toggled.connect(self.overlayToggled)
        self.setMaximumWidth(300)

    @staticmethod
    def _spin(lo: float, hi: float, step: float, suffix: str) -> QtWidgets.QDoubleSpinBox:
        s = QtWidgets.QDoubleSpinBox()
        s.setRange(lo, hi)
        s.setSingleStep(step)
        s.setDecimals(2)
        s.setSuffix(suffix)
        s.setKeyboardTracking(False)
        return s

    def show_settings(self, settings: Settings, chunk_seconds: float) -> None:
        """Shows ``settings`` without emitting anything (after a restart)."""
        self._settings = settings
        widgets = (self.device, self.model, self.hop, self.horizon, self.threshold)
        for w in widgets:
            w.blockSignals(True)
        try:
            for combo, entries, current in (
                    (self.device, device_entries(settings.source), settings.source),
                    (self.model, model_entries(settings.model), settings.model)):
                combo.clear()
                for label, data in entries:
                    combo.addItem(label, data)
                combo.setCurrentIndex(max(0, combo.findData(current)))
            hop = settings.hop if not isinstance(settings.hop, str) else chunk_seconds
            self.hop.setMaximum(max(chunk_seconds, float(hop), 0.05))
            self.hop.setValue(float(hop))
            self.horizon.setValue(float(settings.horizon))
            self.threshold.setValue(settings.threshold or 0.0)
        finally:
            for w in widgets:
                w.blockSignals(False)

    def changes(self) -> dict:
        """The settings that differ between the widgets and the running session."""
        s = self._settings
        r = lambda x: None if x is None or isinstance(x, str) else round(float(x), 2)  # noqa: E731
        want = {"source": self.device.currentData(), "model": self.model.currentData(),
                "hop": r(self.hop.value()), "horizon": r(self.horizon.value()),
                "threshold": r(self.threshold.value()) or None}
        have = {"source": s.source, "model": s.model, "hop": r(s.hop), "horizon": r(s.horizon),
                "threshold": r(s.threshold)}
        out = {k: v for k, v in want.items() if v is not None or k == "threshold"}
        return {k: v for k, v in out.items() if v != have[k]}

    def flush(self) -> None:
        """Emits pending changes now (the debounce timer calls this)."""
        self._debounce.stop()
        changes = self.changes()
        if changes:
            self.settingsChanged.emit(changes)

    def _picked(self, *_: object) -> None:
        self.flush()

    def _paused(self, on: bool) -> None:
        self.pause.setText("Resume" if on else "Pause")
        self.pauseToggled.emit(on)
