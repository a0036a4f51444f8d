"""The compact multi-source window on real Qt (offscreen) around a real monitor: two
realtime-paced file sources, one with a silent stretch. Rows, top-tag bars, level meters and
alarm lamps are checked on the pixels of the grabbed window; closing it ends every thread;
``rt-tagger --source ... --source ... --gui`` opens it."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from gui_env import rt_threads  # first: Qt offscreen, rt_tagger.gui importable
from rt_tagger.gui import multi
from rt_tagger.gui.qt import QtCore, QtGui, QtWidgets
from rt_tagger.monitor import AlarmConfig, Monitor, SourceSpec
from rt_tagger.tagger import Tagger
from signals import DATA, MUSIC_CLIPS, SR, load_music

DRUMS = DATA / MUSIC_CLIPS[2]
ALARMS = AlarmConfig(silence_seconds=1.0)  # dead air after 1 s (default 10 s)
MUSIC_S, SILENT_S = 5.0, 4.0  # the gap source: strings, then silence, then strings again


@pytest.fixture(scope="module")
def tagger():
    import torch

    torch.set_num_threads(1)
    return Tagger("musicnn.mtat", hop=0.5, threads=1)


def gap_file(path: Path) -> Path:
    y = load_music(MUSIC_CLIPS[1])
    audio = np.concatenate([y[: int(MUSIC_S * SR)], np.zeros(int(SILENT_S * SR), np.float32),
                            y[: int(2 * SR)]])
    sf.write(path, audio, SR, subtype="FLOAT")
    return path


def grab(window, path: Path) -> np.ndarray:
    """The window saved as PNG and read back: (height, width, 3) uint8."""
    window.save_png(str(path))
    img = QtGui.QImage(str(path)).convertToFormat(QtGui.QImage.Format.Format_RGB888)
    h, w, bpl = img.height(), img.width(), img.bytesPerLine()
    buf = np.frombuffer(img.constBits(), np.uint8, count=bpl * h).reshape(h, bpl)
    return buf[:, : w * 3].reshape(h, w, 3).copy()


def at(window, widget, x: int, y: int) -> tuple[int, int]:
    p = widget.mapTo(window, QtCore.QPoint(x, y))
    return p.x(), p.y()


def rgb(c: QtGui.QColor) -> np.ndarray:
    return np.array([c.red(), c.green(), c.blue()])


def lamp_colour(img, window, lamp) -> np.ndarray:
    x, y = at(window, lamp, lamp.width() // 2, 2)  # top edge: the background, not the text
    return img[y, x].astype(int)


def meter_fill_px(img, window, meter) -> int:
    """Pixels of the meter's scan line painted in the fill colour."""
    x0, y = at(window, meter, 0, meter.height() // 2)
    line = img[y, x0 : x0 + meter.width()].astype(int)
    return int(np.all(line == rgb(multi.METER_FILL), axis=1).sum())


def bar_fill_px(img, window, bars, i: int) -> tuple[int, int]:
    r = bars.bar_rect(i)
    x0, y = at(window, bars, r.x(), r.y() + r.height() // 2)
    line = img[y, x0 : x0 + r.width()].astype(int)
    return int(np.all(line == rgb(multi.BAR_FILL), axis=1).sum()), r.width()


@pytest.mark.slow
def test_two_sources_rows_meters_alarms_and_close(tagger, tmp_path, qtbot):
    gap = gap_file(tmp_path / "gap.wav")
    specs = [SourceSpec("gap", f"file:{gap}", alarms=ALARMS), SourceSpec("drums", f"file:{DRUMS}", alarms=ALARMS)]
    mon = Monitor(tagger, specs, restart_delay=None)
    seen: list[dict] = []
    window = multi.MultiWindow(mon, on_message=seen.append)
    qtbot.addWidget(window)
    assert window.timer.interval() <= 100  # >= 10 fps
    mon.start()
    window.show()
    rows = window.rows
    assert list(rows) == ["gap", "drums"] and len(window.findChildren(multi.SourceRow)) == 2

    def current(name: str):
        return mon.snapshots()[name]

    # Music on both: tags shown, the gap source's meter well up, no lamp lit.
    def both_playing() -> bool:
        assert all(r.tags.shown and r.tags.shown[0][1] > 0.05 for r in rows.values())
        assert (current("gap").loudness.get("level_db") or -200) > -40
    qtbot.waitUntil(both_playing, timeout=20_000)
    qtbot.waitUntil(lambda: rows["gap"].meter.level is not None and rows["gap"].meter.level > -40, timeout=3000)
    img = grab(window, tmp_path / "playing.png")
    loud_fill = meter_fill_px(img, window, rows["gap"].meter)
    expect = round(rows["gap"].meter.width() * multi._fraction(rows["gap"].meter.level))
    assert abs(loud_fill - expect) <= 1 and loud_fill > rows["gap"].meter.width() * 0.3
    for row in rows.values():
        for lamp in row.lamps.values():
            assert np.abs(lamp_colour(img, window, lamp) - rgb(multi.ALARM_OFF)).max() <= 8
        # the first bar's painted length is the shown top tag's probability
        px, width = bar_fill_px(img, window, row.tags, 0)
        assert abs(px - round(width * row.tags.shown[0][1])) <= 1

    # Each row's top tag is its own source's top tag (retried: the aggregators move on).
    for name, row in rows.items():
        qtbot.waitUntil(lambda: row.tags.shown[0][0] == current(name).tags.top[0][0], timeout=3000)
    assert rows["gap"].tags.shown != rows["drums"].tags.shown  # strings and drums differ

    # The gap goes silent: after 1 s its lamp lights, its meter empties; drums stay unlit.
    qtbot.waitUntil(lambda: rows["gap"].lamps["silence"].on, timeout=MUSIC_S * 1000 + 4000)
    img = grab(window, tmp_path / "silent.png")
    assert "silence" in current("gap").alarms and current("drums").alarms == []
    assert np.abs(lamp_colour(img, window, rows["gap"].lamps["silence"]) - rgb(multi.ALARM_ON)).max() <= 8
    for key in ("loudness_high", "loudness_low"):
        assert np.abs(lamp_colour(img, window, rows["gap"].lamps[key]) - rgb(multi.ALARM_OFF)).max() <= 8
    for lamp in rows["drums"].lamps.values():
        assert np.abs(lamp_colour(img, window, lamp) - rgb(multi.ALARM_OFF)).max() <= 8
    assert meter_fill_px(img, window, rows["gap"].meter) == 0 < loud_fill
    # the drum loop's 400 ms level never falls below -43 dBFS (0.28 of the scale)
    assert meter_fill_px(img, window, rows["drums"].meter) > rows["drums"].meter.width() * 0.2
    # The event follows the updates of the audio before it (t never goes back per source):
    # it reaches on_message once inference has caught up with the silence.
    qtbot.waitUntil(lambda: any(m.get("event") == "silence_start" for m in seen), timeout=10_000)
    starts = [m for m in seen if m.get("event") == "silence_start"]
    assert [m["source"] for m in starts] == ["gap"]  # the messages reached on_message
    assert abs(starts[0]["t"] - (MUSIC_S + ALARMS.silence_seconds)) <= 0.5

    if os.environ.get("RT_TAGGER_MULTI_PNG"):  # renders docs/images/multi.png
        window.save_png(os.environ["RT_TAGGER_MULTI_PNG"])

    # Closing the window stops the monitor: every source and inference thread ends.
    assert rt_threads()
    window.close()
    assert not rt_threads()


def test_cli_gui_with_two_sources_opens_the_compact_window(tmp_path):
    """``rt-tagger --source a=... --source b=... --gui``: the compact window opens with a row per
    source, the JSONL sink still gets both sources' messages, closing it exits 0."""
    from rt_tagger.cli import main

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    opened: list = []

    def close_when_tagging() -> None:
        wins = [w for w in app.topLevelWidgets() if isinstance(w, multi.MultiWindow) and w.isVisible()]
        if wins and all(r.tags.shown for r in wins[0].rows.values()):
            opened.append(sorted(wins[0].rows))
            wins[0].close()
            return
        QtCore.QTimer.singleShot(100, close_when_tagging)

    QtCore.QTimer.singleShot(100, close_when_tagging)
    out = tmp_path / "out.jsonl"
    code = main(["--source", f"piano=file:{DATA / MUSIC_CLIPS[0]}", "--source", f"drums=file:{DRUMS}",
                 "--gui", "--quiet", "--threads", "1", "--jsonl", str(out)])
    assert code == 0 and opened == [["drums", "piano"]]
    msgs = [json.loads(line) for line in out.read_text().splitlines()]
    assert {m["source"] for m in msgs if m["type"] == "update"} == {"piano", "drums"}
    assert not rt_threads()


@pytest.mark.parametrize("several", [False, True], ids=["one source", "two sources"])
def test_gui_is_one_behaviour_the_window_is_the_view(tmp_path, capsys, several):
    """``--gui`` with one source or several: the window is the view, the terminal stays
    quiet (no update lines, also without --quiet), --jsonl still gets every message and the
    summaries, closing the window exits 0 and ends every thread."""
    from rt_tagger.cli import main
    from rt_tagger.gui.window import LiveWindow

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([])
    kind = multi.MultiWindow if several else LiveWindow
    closed: list = []

    def close_when_tagging() -> None:
        wins = [w for w in app.topLevelWidgets() if isinstance(w, kind) and w.isVisible()]
        tagged = wins and (all(r.tags.shown for r in wins[0].rows.values()) if several
                           else wins[0].session.snapshot().history_t.size > 0)
        if tagged:
            closed.append(True)
            wins[0].close()
            return
        QtCore.QTimer.singleShot(100, close_when_tagging)

    QtCore.QTimer.singleShot(100, close_when_tagging)
    out = tmp_path / "out.jsonl"
    sources = (["--source", f"piano=file:{DATA / MUSIC_CLIPS[0]}", "--source", f"drums=file:{DRUMS}"]
               if several else [str(DRUMS), "--realtime"])
    code = main([*sources, "--gui", "--threads", "1", "--jsonl", str(out)])
    captured = capsys.readouterr()
    assert code == 0 and closed
    assert captured.out == "", captured.out  # no terminal view next to the window
    msgs = [json.loads(line) for line in out.read_text().splitlines()]
    assert {m["type"] for m in msgs} >= {"status", "update"}
    assert not rt_threads()
