"""The attention heat strip under the spectrogram, and its colour bar.

One row on the spectrogram's time axis (x-linked): every chunk's attention at its own time
span, overlaps averaged (:class:`~.attention.AttentionTrack`), coloured on the shared ramp of
:mod:`rt_tagger.interpret.display` (log2 of the ratio to the chunk's mean, 1/8x to 16x). A
white bar along its top edge marks the span of the newest chunk.
"""
from __future__ import annotations

import numpy as np

from rt_tagger.interpret.display import COLORS, LOG2_RANGE, TICKS

from .attention import AttentionTrack, strip_rgba
from .qt import QtCore, QtWidgets, pg

LATEST = (255, 255, 255)


def color_map() -> pg.ColorMap:
    return pg.ColorMap([p for p, _ in COLORS], [c for _, c in COLORS], name="rt-tagger attention")


class AttentionStrip:
    """The heat strip (a PlotItem row); :meth:`update` redraws when a chunk came or the
    shown tag changed."""

    def __init__(self, plot: pg.PlotItem) -> None:
        self.plot = plot
        plot.setMouseEnabled(x=False, y=False)
        plot.hideButtons()
        plot.getAxis("bottom").enableAutoSIPrefix(False)
        plot.getAxis("left").setTicks([[], []])
        plot.setYRange(0, 1, padding=0)
        self.image = pg.ImageItem(axisOrder="col-major")
        plot.addItem(self.image)
        self.latest = QtWidgets.QGraphicsRectItem()  # cheaper to move than a PlotDataItem
        self.latest.setPen(pg.mkPen(None))
        self.latest.setBrush(pg.mkBrush(LATEST))
        self.latest.setZValue(5)
        plot.addItem(self.latest)
        self.ratio: np.ndarray | None = None  # ratios drawn, one per track cell
        self.t0: float | None = None  # drawn time of cell 0's left edge
        self.cell: float | None = None
        self._key = None
        self.title = ""
        self.set_message("attention: waiting for the first chunk")

    def set_message(self, text: str) -> None:
        self.image.hide()
        self.latest.hide()
        self.ratio = None
        self._key = None
        self._set_title(text)

    def update(self, track: AttentionTrack | None, row: int, label: str, shift: float) -> None:
        """Draws ``track.values(row)``; ``shift``: seconds added to the track's times to get
        the plot's (minus half a frame: frames are drawn centred on their times)."""
        if track is None or track.sums is None:
            return
        key = (track.chunks, track.first, row, label)
        if key == self._key:
            return
        self._key = key
        t0, ratio = track.values(row)
        x0 = t0 + shift
        self.image.setImage(strip_rgba(ratio), autoLevels=False)
        self.image.setRect(QtCore.QRectF(x0, 0.0, ratio.shape[0] * track.cell, 1.0))
        self.image.show()
        a, b = (v + shift for v in track.last)
        self.latest.setRect(QtCore.QRectF(a, 0.93, b - a, 0.07))
        self.latest.show()
        self.ratio, self.t0, self.cell = ratio, x0, track.cell
        self._set_title(f"{label}: every chunk at its time, white = newest chunk")

    def _set_title(self, text: str) -> None:
        if text != self.title:
            self.title = text
            self.plot.setTitle(text, size="9pt")


def color_bar() -> pg.ColorBarItem:
    """A horizontal colour bar of the ramp, ticks in multiples of the chunk's mean."""
    bar = pg.ColorBarItem(values=LOG2_RANGE, colorMap=color_map(), interactive=False,
                          orientation="horizontal", width=12, colorMapMenu=False,
                          label="attention / chunk mean (log scale); overlay: cyan above 1x")
    bar.axis.setTicks([[(v, s) for v, s in TICKS], []])
    bar.axis.setStyle(hideOverlappingLabels=False)  # the end ticks (1/8x, 16x) too
    bar.setMaximumHeight(58)
    bar.setMaximumWidth(560)
    bar.setContentsMargins(36, 0, 24, 0)  # room for the end labels
    return bar
