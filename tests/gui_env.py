"""What a test of the Qt windows imports first: Qt offscreen (unless a display was chosen), a
module skip without the GUI extra (pyqtgraph, PySide6), and ``rt_tagger.gui`` registered also
from a source checkout. Import it before any ``rt_tagger.gui`` module."""
from __future__ import annotations

import os
import threading

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
pytest.importorskip("pyqtgraph")
pytest.importorskip("PySide6")

from rt_tagger.gui_launch import gui_package  # noqa: E402

gui_package()


def rt_threads() -> list[threading.Thread]:
    """The live threads rt-tagger started (all are named ``rt-tagger...``): empty once every
    window and pipeline is closed."""
    return [t for t in threading.enumerate() if t.name.startswith("rt-tagger")]
