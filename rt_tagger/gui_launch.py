"""``rt-tagger --gui``: the live window around an opened (not yet started) pipeline.

Qt is imported here only, lazily. The GUI package lives in ``gui/`` at the top of the
repository and installs (also editable) as ``rt_tagger.gui``.
"""
from __future__ import annotations

import ctypes
import importlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from types import ModuleType

from .errors import RtTaggerError

#: The shared libraries Qt 6's xcb platform plugin links against (``readelf -d`` of
#: PySide6's ``plugins/platforms/libqxcb.so`` and ``lib/libQt6XcbQpa.so.6``, PySide6 6.11),
#: each with the Debian/Ubuntu package that ships it. A stock desktop Debian 12 lacks the
#: first three; the loader aborts the whole process (exit 134) when any one is missing.
XCB_LIBRARIES = {
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-util.so.1": "libxcb-util1",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render.so.0": "libxcb-render0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libxcb.so.1": "libxcb1",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libX11.so.6": "libx11-6",
    "libGL.so.1": "libgl1",
    "libEGL.so.1": "libegl1",
    "libfontconfig.so.1": "libfontconfig1",
    "libglib-2.0.so.0": "libglib2.0-0",
    "libdbus-1.so.3": "libdbus-1-3",
}
#: Qt platforms that draw without any display server.
NO_DISPLAY_PLATFORMS = {"offscreen", "minimal", "minimalegl", "vnc", "linuxfb", "eglfs",
                        "vkkhrdisplay"}


def library_loadable(soname: str) -> bool:
    """Whether the dynamic loader finds ``soname`` (dlopen by soname, as Qt's loader would)."""
    try:
        ctypes.CDLL(soname, mode=getattr(os, "RTLD_LAZY", 1) | getattr(ctypes, "RTLD_LOCAL", 0))
    except OSError:
        return False
    return True


def missing_xcb_libraries(loadable: Callable[[str], bool] | None = None) -> list[str]:
    """Sonames of :data:`XCB_LIBRARIES` the loader cannot find (``loadable``: the lookup,
    default :func:`library_loadable`; tests pass one that hides a library)."""
    look = loadable or library_loadable
    return [name for name in XCB_LIBRARIES if not look(name)]


def display_problem(env: Mapping[str, str] | None = None, platform: str | None = None,
                    loadable: Callable[[str], bool] | None = None) -> str | None:
    """Why Qt could not open a window here, as one line, or None if it can.

    Checked before Qt is imported (Qt aborts the process on these instead of raising):
    a display server (``DISPLAY`` / ``WAYLAND_DISPLAY``) unless ``QT_QPA_PLATFORM`` names a
    platform that needs none (offscreen, minimal, vnc, ...), and, where the xcb (X11)
    platform will be used on Linux, the libraries of :data:`XCB_LIBRARIES`.
    """
    env = os.environ if env is None else env
    platform = sys.platform if platform is None else platform
    if not platform.startswith("linux"):
        return None  # Windows and macOS: Qt's own platform plugins, no display server to find
    # QT_QPA_PLATFORM: "name[:options]", or "a;b" = try a, then b.
    wanted = [p.split(":", 1)[0].strip().lower()
              for p in env.get("QT_QPA_PLATFORM", "").split(";") if p.strip()]
    if any(p in NO_DISPLAY_PLATFORMS for p in wanted):
        return None
    x11, wayland = bool(env.get("DISPLAY")), bool(env.get("WAYLAND_DISPLAY"))
    hint = ("run it in a desktop session, under Xvfb (xvfb-run rt-tagger ...), or set "
            "QT_QPA_PLATFORM=offscreen to draw without a screen")
    if wanted == ["wayland"] and not wayland:
        return f"the live window needs a display: WAYLAND_DISPLAY is not set; {hint}"
    if "xcb" in wanted and not x11 and not ("wayland" in wanted and wayland):
        return f"the live window needs a display: DISPLAY is not set; {hint}"
    if not x11 and not wayland:
        return ("the live window needs a display: neither DISPLAY nor WAYLAND_DISPLAY is set; "
                + hint)
    # No platform named: Qt tries wayland first only in a Wayland session, else xcb.
    wayland_session = wayland and env.get("XDG_SESSION_TYPE", "").lower() == "wayland"
    uses_xcb = "xcb" in wanted or (not wanted and x11 and not wayland_session)
    if uses_xcb:
        missing = missing_xcb_libraries(loadable)
        if missing:
            pkgs = " ".join(XCB_LIBRARIES[m] for m in missing)
            return (f"the live window (Qt's xcb platform) needs {', '.join(missing)}, not "
                    f"found: install them (Debian/Ubuntu: sudo apt install {pkgs})")
    return None


def preflight() -> None:
    """Raises :class:`RtTaggerError` with :func:`display_problem`'s line, if there is one."""
    problem = display_problem()
    if problem:
        raise RtTaggerError(problem)


def gui_package() -> ModuleType:
    """``rt_tagger.gui`` (the repository's ``gui/``), or one line naming the missing extra."""
    try:
        return importlib.import_module("rt_tagger.gui")
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in ("pyqtgraph", "PySide6"):
            raise RtTaggerError(f"the live window needs {exc.name.split('.')[0]}: "
                                "pip install 'rt-tagger[gui]'") from None
        raise


def run_gui(tagger, pipe, status: dict, *, jsonl=None) -> int:
    """Starts ``pipe``, shows the live window until it is closed, stops capture cleanly.

    Messages are drained on the window's timer (written to ``jsonl`` if given), so the
    pipeline never waits on the GUI. Returns 0, 1 if the pipeline failed (the error is shown
    in the window and printed), or 130 after Ctrl-C.
    """
    try:
        preflight()  # before Qt is imported: Qt aborts the process where this raises
        gui = gui_package()
    except BaseException:  # nothing started yet: release what the CLI opened
        if jsonl is not None:
            jsonl.close()
        try:
            pipe.stop()
        finally:
            tagger.close()
        raise
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
    preflight()  # before Qt is imported: Qt aborts the process where this raises
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
    """Runs ``start()``, shows ``window`` and the Qt loop until it closes (Ctrl-C, SIGTERM or
    SIGHUP close it), then ``window.shutdown()``. Returns 0, 1 if the window recorded errors,
    128 + the signal's number after a signal (130, 143, 129)."""
    from rt_tagger.gui.qt import QtCore

    from . import shutdown

    interrupted: list[int] = []
    old_handlers: dict = {}
    try:
        start()
        window.show()
        if threading.current_thread() is threading.main_thread():
            def on_signal(signum: int, _frame: object) -> None:
                interrupted.append(signum)
                window.close()

            # Ctrl-C, SIGTERM and SIGHUP close the window alike; an ignored SIGINT stays ignored.
            for sig in shutdown.stop_signals():
                if not (sig == signal.SIGINT and signal.getsignal(sig) == signal.SIG_IGN):
                    old_handlers[sig] = signal.signal(sig, on_signal)
        # Python runs signal handlers only when it gets control: a timer hands it control.
        wake = QtCore.QTimer(window)
        wake.timeout.connect(lambda: None)
        wake.start(200)
        app.exec()
    finally:
        window.shutdown()
        for sig, handler in old_handlers.items():
            signal.signal(sig, handler)
    for err in window.errors:
        print(f"rt-tagger: {err}", file=sys.stderr)
    if interrupted:
        return 128 + interrupted[0]  # 130 SIGINT, 143 SIGTERM, 129 SIGHUP
    return 1 if window.errors else 0
