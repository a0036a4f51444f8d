"""The Qt binding, checked once: PySide6 below 6.12 (or PyQt6) under pyqtgraph.

PySide6 6.12.0 on Python 3.11 leaks a reference on every signal emit and aborts the process
after ~2000 image updates (``Fatal Python error: bool_dealloc``); a live view emits thousands,
so that version is refused with a one-line error instead of crashing minutes later.
"""
from __future__ import annotations

import importlib.util
import os

from rt_tagger.errors import RtTaggerError

_INSTALL = "install the GUI extra: pip install 'rt-tagger[gui]' (pyqtgraph, PySide6-Essentials<6.12)"


def _binding() -> str:
    wanted = os.environ.get("PYQTGRAPH_QT_LIB")
    if wanted:
        return wanted
    try:
        import PySide6
    except ImportError:
        if importlib.util.find_spec("PyQt6") is None:
            raise RtTaggerError(f"no Qt binding found; {_INSTALL}") from None
        return "PyQt6"
    if tuple(PySide6.__version_info__[:2]) >= (6, 12):
        raise RtTaggerError(f"PySide6 {PySide6.__version__} leaks on every signal and aborts a live "
                            f"view after ~2000 updates; {_INSTALL} or use PyQt6")
    return "PySide6"


os.environ["PYQTGRAPH_QT_LIB"] = _binding()
try:
    import pyqtgraph as pg
    from pyqtgraph.Qt import QtCore, QtGui, QtWidgets
except ImportError as exc:
    raise RtTaggerError(f"cannot import the GUI libraries ({exc}); {_INSTALL}") from None

__all__ = ["QtCore", "QtGui", "QtWidgets", "pg"]
