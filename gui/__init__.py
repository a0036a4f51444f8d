"""The live pyqtgraph window (installed as ``rt_tagger.gui``; ``rt-tagger --gui``).

Importing this package imports Qt; ``rt_tagger`` itself never does, so ``rt-tagger --help``
stays fast. Entry point: :func:`rt_tagger.gui_launch.run_gui`. See ``docs/gui.md``.
"""
from __future__ import annotations

from .session import Session, Settings, settings_of
from .window import LiveWindow

__all__ = ["LiveWindow", "Session", "Settings", "settings_of"]
