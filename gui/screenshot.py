"""Render the live window offscreen on a real clip and save it as PNG (the README image).

    QT_QPA_PLATFORM=offscreen python -m rt_tagger.gui.screenshot [FILE] [-o docs/images/gui.png]
    (from a source checkout: python -m gui.screenshot ...)

The window runs the real pipeline on the clip, paced like a live input by default (so the
status line shows live latency and frame rate; ``--fast`` decodes as fast as possible), waits
until the clip is tagged and the last strip is drawn, then grabs itself.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

DEFAULT_CLIP = Path(__file__).resolve().parent.parent / "tests" / "data" / "render_drums_70bpm_12s.flac"


def render(source: str | os.PathLike[str], out: str | os.PathLike[str], *, model: str | None = None,
           backend: str = "auto", tag: str | None = None, size: tuple[int, int] = (1500, 880),
           realtime: bool = True, timeout: float = 120.0) -> Path:
    """Runs the window on ``source`` until the clip is tagged, selects ``tag`` (if given) and
    saves the grab to ``out``. Returns the path."""
    from rt_tagger.tagger import DEFAULT_MODEL

    from .qt import QtWidgets
    from .session import Session, Settings
    from .window import LiveWindow

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    session = Session.open(Settings(source=os.fspath(source), model=model or DEFAULT_MODEL,
                                    backend=backend, realtime=realtime))
    window = LiveWindow(session)
    window.resize(*size)
    try:
        session.start()
        window.show()
        if tag is not None:
            window.select_tag(session.tagger.tags.index(tag))
        deadline = time.monotonic() + timeout
        while not (session.finished and window.worker.idle) or session.error is not None:
            if session.error is not None or time.monotonic() > deadline:
                raise RuntimeError(session.error_text() or f"{source}: not tagged in {timeout:g} s")
            app.processEvents()
            time.sleep(0.01)
        for _ in range(3):  # the last snapshot drawn, its strip asked for, computed, drawn
            end = time.monotonic() + 0.3  # the window's own timer draws
            while time.monotonic() < end:
                app.processEvents()
                time.sleep(0.01)
            while not window.worker.idle and time.monotonic() < deadline:
                app.processEvents()
                time.sleep(0.02)
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        return Path(window.save_png(os.fspath(out)))
    finally:
        window.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m rt_tagger.gui.screenshot", description=__doc__.splitlines()[0])
    p.add_argument("source", nargs="?", default=str(DEFAULT_CLIP),
                   help="audio file (default: the drum test clip, else the synthesised demo clip)")
    p.add_argument("--output", "-o", default="docs/images/gui.png")
    p.add_argument("--model", "-m", default=None)
    p.add_argument("--backend", default="auto")
    p.add_argument("--tag", default=None, help="select this tag (contribution strip)")
    p.add_argument("--fast", action="store_true", help="do not pace the clip like a live input")
    args = p.parse_args(argv)
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    if args.source == str(DEFAULT_CLIP) and not DEFAULT_CLIP.is_file():  # installed: no tests/
        import tempfile

        from rt_tagger.demo import write_demo_clip

        args.source = str(write_demo_clip(Path(tempfile.mkdtemp(prefix="rt-tagger-")) / "demo.wav"))
    path = render(args.source, args.output, model=args.model, backend=args.backend, tag=args.tag,
                  realtime=not args.fast)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
