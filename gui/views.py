"""The plots of the live window, all in one pyqtgraph scene (so one grab shows everything).

Left column: the scrolling log-mel spectrogram with the translucent attention overlay, under
it the attention heat strip with its colour bar, then the contribution strip of the selected
tag (all x-linked: the same seconds; frame ``j`` is drawn centred on its time, as in the
explain figure and :mod:`rt_tagger.interpret.timeaxis`). Right: the tag
probability bars (one row per tag) and the taggram timeline whose rows are the same tags in
the same order (y-linked). Every update is whole-array numpy + one ``setImage``/``setOpts``.
"""
from __future__ import annotations

import math

import numpy as np

from .attention import AttentionTrack, overlay_rgba
from .heatstrip import AttentionStrip, color_bar
from .qt import QtCore, QtGui, pg

BAR = (80, 110, 150)
TOPK = (255, 150, 40)
OVERLAY = (0, 235, 255)  # cyan over the inferno spectrogram
OVERLAY_ALPHA = 190  # alpha at 16x the chunk's mean attention (interpret.display)
THRESHOLD = (230, 40, 40)
TAGGRAM_MIN_TOP = 0.25  # taggram colour scale: 0 to max(this, the largest probability shown)
SCROLL_STEP = 0.5  # seconds the time axes advance at once
LEVELS_FRAMES = 30  # spectrogram colour levels follow the last ~30 s, updated every 30 frames


def _rect(x0: float, y0: float, w: float, h: float) -> QtCore.QRectF:
    return QtCore.QRectF(float(x0), float(y0), float(w), float(h))


def _fixed(plot: pg.PlotItem) -> None:
    """No mouse panning, no auto-range button, no SI-prefix relabelling on every scroll."""
    plot.setMouseEnabled(x=False, y=False)
    plot.hideButtons()
    for name in ("left", "bottom"):
        plot.getAxis(name).enableAutoSIPrefix(False)


def visible_span(t_end: float, span: float, minimum: float = 10.0,
                 step: float = SCROLL_STEP) -> tuple[float, float]:
    """The scrolling time window: the last ``span`` seconds, at least ``minimum`` wide. The
    right edge moves in ``step`` seconds (the axes are redrawn twice a second, not per frame;
    the newest frames fill the last step as they come)."""
    end = math.ceil(t_end / step - 1e-9) * step
    lo = max(0.0, end - span)
    return lo, max(end, lo + minimum)


class Spectrogram:
    """Log-mel image (frames x mels) plus the translucent attention overlay: cyan whose
    opacity follows the attention of every chunk seen (:class:`~.attention.AttentionTrack`,
    clear at or below each chunk's mean, :data:`OVERLAY_ALPHA` at 16x)."""

    def __init__(self, plot: pg.PlotItem, span: float) -> None:
        self.plot, self.span = plot, span
        plot.setLabel("bottom", "time (s)")
        plot.setLabel("left", "mel band")
        _fixed(plot)
        self.image = pg.ImageItem(axisOrder="col-major")
        self.image.setColorMap(pg.colormap.get("inferno"))
        plot.addItem(self.image)
        self.overlay = pg.ImageItem(axisOrder="col-major")
        self.overlay.setZValue(10)
        plot.addItem(self.overlay)
        self.overlay.hide()
        self.show_overlay = True
        self.overlay_ratio: np.ndarray | None = None  # per track cell, as drawn (None: hidden)
        self.overlay_t0: float | None = None  # drawn time of the first cell's left edge
        self._key = None
        self._att_key = None
        self._levels: tuple[float, float] | None = None
        self._levels_at = 0
        self._range = None
        self._title = ""

    def update(self, snap, tag_index: int | None, track: AttentionTrack | None = None) -> None:
        mel = snap.logmel
        if mel.shape[0] == 0:
            return
        key = (snap.logmel_t0, mel.shape[0])
        if key != self._key:
            self._key = key
            count = int(round(snap.logmel_t0 / snap.frame_seconds)) + mel.shape[0]
            if self._levels is None or abs(count - self._levels_at) >= LEVELS_FRAMES:
                lo, hi = np.percentile(mel[::4], [2.0, 99.8])
                self._levels, self._levels_at = (float(lo), float(max(hi, lo + 1e-6))), count
            self.image.setImage(mel, autoLevels=False, levels=self._levels)
            n, m = mel.shape
            # Frame j is centred on its time (librosa frames_to_time, the explain figure).
            self.image.setRect(_rect(snap.logmel_t0 - 0.5 * snap.frame_seconds, 0,
                                     n * snap.frame_seconds, m))
            xr = visible_span(snap.logmel_t0 + n * snap.frame_seconds, self.span)
            if (xr, m) != self._range:
                self._range = (xr, m)
                self.plot.setXRange(*xr, padding=0)
                self.plot.setYRange(0, m, padding=0)
        self.set_attention(track, tag_index, mel.shape[1], snap.frame_seconds)
        kind = None if snap.attention is None else snap.attention.kind
        title = "log-mel spectrogram" + {None: "", "cls": ", [CLS] attention (cyan overlay)",
                                         "per_tag": ", the tag's cross-attention (cyan overlay)"}[
            kind if self.show_overlay else None]
        if title != self._title:
            self._title = title
            self.plot.setTitle(title)

    def set_attention(self, track: AttentionTrack | None, tag_index: int | None, n_mels: int,
                      frame_seconds: float) -> None:
        """Draws the track's row (``tag_index`` for per-tag maps) over the spectrogram."""
        has = track is not None and track.sums is not None
        row = (tag_index or 0) if has and track.kind == "per_tag" else 0
        key = (id(track), track.chunks if has else None, track.first if has else None, row,
               self.show_overlay, n_mels)
        if key == self._att_key:
            return
        self._att_key = key
        if not has or not self.show_overlay:
            self.overlay.hide()
            self.overlay_ratio = None
            return
        t0, ratio = track.values(row)
        self.overlay.setImage(overlay_rgba(ratio, OVERLAY, OVERLAY_ALPHA), autoLevels=False)
        x0 = t0 - 0.5 * frame_seconds
        self.overlay.setRect(_rect(x0, 0, ratio.shape[0] * track.cell, n_mels))
        self.overlay.show()
        self.overlay_ratio, self.overlay_t0 = ratio, x0


class ContributionStrip:
    """One row: the selected tag's probability when [CLS] attends only to each step."""

    def __init__(self, plot: pg.PlotItem) -> None:
        self.plot = plot
        _fixed(plot)
        plot.getAxis("left").setTicks([[], []])
        plot.setYRange(0, 1, padding=0)
        self.image = pg.ImageItem(axisOrder="col-major")
        self.image.setColorMap(pg.colormap.get("viridis"))
        plot.addItem(self.image)
        self.title = ""
        self.values: np.ndarray | None = None
        self.tag: str | None = None
        self.set_message("contribution: waiting for the first chunk")

    def set_message(self, text: str) -> None:
        self.image.hide()
        self.values = None
        self._title(text)

    def set_values(self, tag: str, values: np.ndarray, edges: np.ndarray, label: str) -> None:
        v = np.asarray(values, np.float32)
        lo, hi = float(v.min()), float(v.max())
        self.image.setImage(v[:, None], autoLevels=False, levels=(lo, max(hi, lo + 1e-6)))
        self.image.setRect(_rect(edges[0], 0, edges[-1] - edges[0], 1))
        self.image.show()
        self.values, self.tag = v, tag
        self._title(f"{label} of '{tag}' ({lo:.2f} to {hi:.2f})")

    def _title(self, text: str) -> None:
        if text != self.title:
            self.title = text
            self.plot.setTitle(text, size="9pt")


class TagBars:
    """Horizontal probability bars, one row per tag (row 0 at the top), threshold marks,
    top-k in orange, the selected tag outlined."""

    def __init__(self, plot: pg.PlotItem) -> None:
        self.plot = plot
        _fixed(plot)
        plot.invertY(True)
        plot.setXRange(0, 1, padding=0.02)
        plot.setLabel("bottom", "probability")
        plot.getAxis("left").setStyle(tickFont=QtGui.QFont("DejaVu Sans", 7))
        plot.getAxis("left").setWidth(80)  # fixed: re-sorting must not re-layout the scene
        self.bars = pg.BarGraphItem(x0=0, y=[0.5], height=0.75, width=[0.0], brush=BAR)
        plot.addItem(self.bars)
        self.marks = pg.PlotDataItem(pen=pg.mkPen(THRESHOLD, width=2), connect="pairs")
        plot.addItem(self.marks)
        self._brush, self._brush_top = pg.mkBrush(BAR), pg.mkBrush(TOPK)
        self._pen, self._pen_selected = pg.mkPen(None), pg.mkPen("w", width=2)
        self.order: np.ndarray | None = None
        self._tags: list[str] | None = None
        self.widths = np.zeros(0)
        self._style_key = None
        self._marks_key = None

    def update(self, snap, order: np.ndarray, selected: int | None, index: dict[str, int]) -> None:
        n = len(order)
        rows = np.arange(n) + 0.5
        if (self.order is None or not np.array_equal(order, self.order)
                or snap.tags is not self._tags):
            self.order, self._tags = order.copy(), snap.tags
            names = [snap.tags[i] for i in order]
            self.plot.getAxis("left").setTicks([[(r, s) for r, s in zip(rows, names)], []])
            self.plot.setYRange(0, n, padding=0)
            self._style_key = self._marks_key = None
        self.widths = snap.probs[order].astype(np.float64)
        top = {index[name] for name, _ in snap.top}
        style = (tuple(sorted(top)), selected, tuple(order))
        if style != self._style_key:
            self._style_key = style
            brushes = [self._brush_top if i in top else self._brush for i in order]
            pens = [self._pen_selected if i == selected else self._pen for i in order]
            self.bars.setOpts(y=rows, width=self.widths, brushes=brushes, pens=pens)
        else:
            self.bars.setOpts(width=self.widths)
        thr = snap.thresholds[order]
        mk = (thr.tobytes(), tuple(order))
        if mk != self._marks_key:
            self._marks_key = mk
            x = np.repeat(thr, 2)
            y = np.stack([rows - 0.45, rows + 0.45], axis=1).ravel()
            self.marks.setData(x, y)

    def row_at(self, scene_pos) -> int | None:
        """Row under a scene position, or None outside the bars."""
        vb = self.plot.vb
        if self.order is None or not vb.sceneBoundingRect().contains(scene_pos):
            return None
        y = vb.mapSceneToView(scene_pos).y()
        row = int(np.floor(y))
        return row if 0 <= row < len(self.order) else None


class Taggram:
    """Chunk probabilities (time x tags), rows in the bars' order, the last ``span`` seconds."""

    def __init__(self, plot: pg.PlotItem, span: float) -> None:
        self.plot, self.span = plot, span
        _fixed(plot)
        plot.hideAxis("left")
        plot.setLabel("bottom", "time (s)")
        plot.setTitle("taggram", size="9pt")
        self.image = pg.ImageItem(axisOrder="col-major")
        self.image.setColorMap(pg.colormap.get("viridis"))
        plot.addItem(self.image)
        self._key = None

    def update(self, snap, order: np.ndarray, hop: float) -> None:
        t = snap.history_t
        if t.shape[0] == 0:
            return
        key = (float(t[-1]), t.shape[0], tuple(order))
        if key == self._key:
            return
        self._key = key
        dt = float(np.median(np.diff(t))) if t.shape[0] > 1 else hop
        hist = snap.history[:, order]
        top = max(TAGGRAM_MIN_TOP, float(hist.max()))  # small probabilities stay visible
        self.image.setImage(hist, autoLevels=False, levels=(0.0, top))
        self.plot.setTitle(f"taggram (colour 0 to {top:.2f})", size="9pt")
        self.image.setRect(_rect(t[0] - dt, 0, t[-1] - t[0] + dt, len(order)))
        self.plot.setXRange(*visible_span(float(t[-1]), self.span), padding=0)


class LiveView(pg.GraphicsLayoutWidget):
    """The panels; emits ``tagClicked(index)`` when a bar or a taggram row is clicked."""

    tagClicked = QtCore.Signal(int)

    def __init__(self, span: float = 30.0) -> None:
        super().__init__()
        self.setBackground((18, 18, 22))
        spec = self.addPlot(row=0, col=0)
        heat = self.addPlot(row=1, col=0)
        self.colorbar = color_bar()
        self.addItem(self.colorbar, row=2, col=0)
        strip = self.addPlot(row=3, col=0)
        bars = self.addPlot(row=0, col=1, rowspan=4, title="tag probabilities")
        gram = self.addPlot(row=0, col=2, rowspan=4)
        heat.setXLink(spec)
        strip.setXLink(spec)
        gram.invertY(True)  # row 0 at the top, as in the bars
        gram.setYLink(bars)
        for plot in (spec, heat, strip):  # same axis width: the linked x axes line up exactly
            plot.getAxis("left").setWidth(48)
        heat.setMaximumHeight(80)
        heat.hideAxis("bottom")
        strip.setMaximumHeight(110)
        grid = self.ci.layout
        grid.setColumnStretchFactor(0, 5)
        grid.setColumnStretchFactor(1, 2)
        grid.setColumnStretchFactor(2, 2)
        grid.setRowStretchFactor(0, 4)
        grid.setRowStretchFactor(1, 1)
        grid.setRowStretchFactor(3, 1)
        self.spectrogram = Spectrogram(spec, span)
        self.heat = AttentionStrip(heat)
        self.track: AttentionTrack | None = None  # made on the first snapshot (its frame hop)
        self.strip = ContributionStrip(strip)
        self.bars = TagBars(bars)
        self.taggram = Taggram(gram, span)
        self.scene().sigMouseClicked.connect(self._clicked)

    def reset(self) -> None:
        """Forget what was drawn (a new session starts from scratch)."""
        sp = self.spectrogram
        sp._key = sp._att_key = sp._levels = sp._range = None
        self.track = None
        self.heat.set_message("attention: waiting for the first chunk")
        self.taggram._key = None
        self.bars._tags = None
        self.strip.set_message("contribution: waiting for the first chunk")

    def show_attention(self, snap, tag_index: int | None, tag_name: str | None) -> None:
        """Adds the snapshot's attention to the track and draws the overlay and heat strip."""
        att = snap.attention
        if att is not None:
            if self.track is None:
                self.track = AttentionTrack(snap.frame_seconds, keep=self.spectrogram.span + 10.0)
            self.track.add(att)
        elif snap.history_t.shape[0]:
            self.track = None
            self.heat.set_message("attention: the model has none")
        self.spectrogram.update(snap, tag_index, self.track)
        if self.track is not None:
            per_tag = self.track.kind == "per_tag"
            row = (tag_index or 0) if per_tag else 0
            label = (f"cross-attention of '{tag_name}'" if per_tag
                     else "attention ([CLS], last layer, heads summed)")
            self.heat.update(self.track, row, label, -0.5 * snap.frame_seconds)

    def _clicked(self, event) -> None:
        pos = event.scenePos()
        row = self.bars.row_at(pos)
        if row is None and self.taggram.plot.vb.sceneBoundingRect().contains(pos):
            row = self.bars.row_at(self.bars.plot.vb.mapViewToScene(
                QtCore.QPointF(0.5, self.taggram.plot.vb.mapSceneToView(pos).y())))
        if row is not None:
            self.tagClicked.emit(int(self.bars.order[row]))
