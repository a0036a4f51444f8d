"""``--gui`` checks for a display and for Qt's xcb libraries before Qt is loaded.

Without them Qt aborts the whole process ("could not load the Qt platform plugin xcb",
exit 134); rt-tagger ends with one ``rt-tagger:`` line and exit status 2 instead, for the
single-source window and the multi-source window. The missing libraries are simulated by
replacing the loader lookup in-process (a CI machine has them installed); the missing
display is real (a subprocess without DISPLAY/WAYLAND_DISPLAY/QT_QPA_PLATFORM).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rt_tagger import gui_launch
from rt_tagger.cli import main

DATA = Path(__file__).parent / "data"
DRUMS = str(DATA / "render_drums_70bpm_12s.flac")
PIANO = str(DATA / "render_piano_monteverdi_12s.flac")
SINGLE = ["--gui", DRUMS]
MULTI = ["--source", f"a=file:{DRUMS}", "--source", f"b=file:{PIANO}", "--gui"]


def test_loader_lookup_is_real():
    assert gui_launch.library_loadable("libc.so.6")
    assert not gui_launch.library_loadable("librt-tagger-no-such-library.so.7")


@pytest.mark.parametrize("env, expected", [
    ({}, "neither DISPLAY nor WAYLAND_DISPLAY is set"),
    ({"QT_QPA_PLATFORM": "xcb"}, "DISPLAY is not set"),
    ({"QT_QPA_PLATFORM": "wayland", "DISPLAY": ":0"}, "WAYLAND_DISPLAY is not set"),
    ({"QT_QPA_PLATFORM": "offscreen"}, None),
    ({"QT_QPA_PLATFORM": "minimal:enable_fonts"}, None),
    ({"QT_QPA_PLATFORM": "wayland;offscreen"}, None),
    ({"WAYLAND_DISPLAY": "wayland-0", "XDG_SESSION_TYPE": "wayland"}, None),
])
def test_display_rules(env, expected):
    problem = gui_launch.display_problem(env, "linux", loadable=lambda name: True)
    if expected is None:
        assert problem is None
    else:
        assert expected in problem and "QT_QPA_PLATFORM=offscreen" in problem
    # Windows and macOS use Qt's own platform plugins: nothing to check there.
    assert gui_launch.display_problem(env, "win32", loadable=lambda name: False) is None


def test_xcb_libraries_named_with_their_packages():
    hidden = {"libxcb-cursor.so.0", "libxcb-keysyms.so.1"}
    problem = gui_launch.display_problem({"DISPLAY": ":0"}, "linux",
                                         loadable=lambda name: name not in hidden)
    assert "libxcb-cursor.so.0, libxcb-keysyms.so.1" in problem
    assert problem.endswith("sudo apt install libxcb-cursor0 libxcb-keysyms1)")
    # Wayland session: Qt takes the wayland plugin, the xcb libraries are not needed.
    assert gui_launch.display_problem({"DISPLAY": ":0", "WAYLAND_DISPLAY": "w-0",
                                       "XDG_SESSION_TYPE": "wayland"}, "linux",
                                      loadable=lambda name: name not in hidden) is None
    # ... unless xcb is asked for by name.
    assert "libxcb-cursor0" in gui_launch.display_problem(
        {"DISPLAY": ":0", "QT_QPA_PLATFORM": "xcb"}, "linux", loadable=lambda n: n not in hidden)


@pytest.mark.parametrize("argv", [SINGLE, MULTI], ids=["single", "multi"])
def test_missing_xcb_libraries_end_in_one_line(argv, monkeypatch, capsys, tmp_path):
    """The loader lookup hides three libraries (as on a stock Debian 12 desktop): one line
    naming them and their packages, exit 2 (with --jsonl open, which is closed on the way)."""
    if not sys.platform.startswith("linux"):
        pytest.skip("the xcb platform exists on Linux only")
    hidden = {"libxcb-cursor.so.0", "libxcb-icccm.so.4", "libxcb-keysyms.so.1"}
    real = gui_launch.library_loadable
    monkeypatch.setattr(gui_launch, "library_loadable", lambda n: n not in hidden and real(n))
    monkeypatch.setenv("DISPLAY", ":99")
    monkeypatch.setenv("QT_QPA_PLATFORM", "xcb")
    jsonl = tmp_path / "out.jsonl"
    code = main([*argv, "--jsonl", str(jsonl)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("rt-tagger: ")
    assert "libxcb-cursor.so.0, libxcb-icccm.so.4, libxcb-keysyms.so.1" in err[0]
    assert "sudo apt install libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1" in err[0]


@pytest.mark.parametrize("argv", [SINGLE, MULTI], ids=["single", "multi"])
def test_no_display_subprocess(argv):
    """A real process without any display: one line, exit 2 (Qt would abort with 134)."""
    if not sys.platform.startswith("linux"):
        pytest.skip("DISPLAY/WAYLAND_DISPLAY are Linux display servers")
    env = {k: v for k, v in os.environ.items()
           if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    proc = subprocess.run([sys.executable, "-m", "rt_tagger", *argv], env=env,
                          capture_output=True, text=True, timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert lines == [lines[0]] and lines[0].startswith("rt-tagger: the live window needs a display")
    assert "neither DISPLAY nor WAYLAND_DISPLAY is set" in lines[0]
