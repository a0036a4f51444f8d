"""``rt-tagger --gui``: the live window around an opened (not yet started) pipeline.

Qt is imported here only, lazily. The GUI package lives in ``gui/`` at the top of the
repository and installs as ``rt_tagger.gui``; from a source checkout it is loaded under that
same name, so both layouts behave alike.
"""
from __future__ import annotations

import importlib
import importlib.util
import signal
import sys
import threading
from pathlib import Path
from types import ModuleType

from .errors import RtTaggerError


def gui_package() -> ModuleType:
    """``rt_tagger.gui``, installed or from the source tree (``<repo>/gui``)."""
    try:
        return importlib.import_module("rt_tagger.gui")
    except ModuleNotFoundError as exc:
        if exc.name != "rt_tagger.gui":
            raise
    root = Path(__file__).resolve().parent.parent / "gui"
    if not (root / "__init__.py").is_file():
        raise RtTaggerError("the GUI package rt_tagger.gui is missing (reinstall rt-tagger)")
    spec = importlib.util.spec_from_file_location("rt_tagger.gui", root / "__init__.py",
                                                  submodule_search_locations=[str(root)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["rt_tagger.gui"] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules["rt_tagger.gui"]
        raise
    return module


def run_gui(tagger, pipe, status: dict, *, jsonl=None) -> int:
    """Starts ``pipe``, shows the live window until it is closed, stops capture cleanly.

    Messages are drained on the window's timer (written to ``jsonl`` if given), so the
    pipeline never waits on the GUI. Returns 0, 1 if the pipeline failed (the error is shown
    in the window and printed), or 130 after Ctrl-C.
    """
    gui = gui_package()
    from rt_tagger.gui.qt import QtWidgets

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    session = gui.Session(tagger, pipe, gui.settings_of(tagger, pipe), status, jsonl)
    window = gui.LiveWindow(session)
    try:
        return _exec(app, window, session.start)
    finally:
        if jsonl is not None:
            jsonl.close()


def run_multi_gui(monitor, sinks=(), *, topk: int = 3) -> int:
    """Starts ``monitor``, shows the compact one-row-per-source window until it is closed,
    then stops every source. Messages are drained on the window's timer and handed to each
    sink (``handle`` or ``write``). Returns 0, 1 if the shared inference failed, 130 after Ctrl-C."""
    gui_package()
    from rt_tagger.gui.multi import MultiWindow
    from rt_tagger.gui.qt import QtWidgets

    def out(msg: dict) -> None:
        for sink in sinks:
            (sink.handle if hasattr(sink, "handle") else sink.write)(msg)

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    window = MultiWindow(monitor, topk=topk, on_message=out)
    return _exec(app, window, monitor.start)


def _exec(app, window, start) -> int:
    """Runs ``start()``, shows ``window`` and the Qt loop until it closes (Ctrl-C closes it),
    then ``window.shutdown()``. Returns 0, 1 if the window recorded errors, 130 after Ctrl-C."""
    from rt_tagger.gui.qt import QtCore

    interrupted: list[int] = []
    old_handler = None
    try:
        start()
        window.show()
        if threading.current_thread() is threading.main_thread():
            def on_sigint(*_: object) -> None:
                interrupted.append(1)
                window.close()

            old_handler = signal.signal(signal.SIGINT, on_sigint)
        # Python runs signal handlers only when it gets control: a timer hands it control.
        wake = QtCore.QTimer(window)
        wake.timeout.connect(lambda: None)
        wake.start(200)
        app.exec()
    finally:
        window.shutdown()
        if old_handler is not None:
            signal.signal(signal.SIGINT, old_handler)
    for err in window.errors:
        print(f"rt-tagger: {err}", file=sys.stderr)
    if interrupted:
        return 130
    return 1 if window.errors else 0
