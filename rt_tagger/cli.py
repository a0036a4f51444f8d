"""The ``rt-tagger`` command (also ``python -m rt_tagger``).

    rt-tagger [FILE|URL] [--device D] [options]   tag a file, stream or live input
    rt-tagger --source NAME=KIND:TARGET ...       monitor several sources (or --config FILE.toml)
    rt-tagger demo                                the main job on the embedded default
    rt-tagger --list-devices                      input devices PortAudio sees
    rt-tagger models                              registered models
    rt-tagger export MODEL --format onnx|torchscript [-o OUT]
    rt-tagger explain FILE [FILE2] [--tag T ...] [-o out.png] [--concat]

User mistakes end in one ``rt-tagger: <message>`` line and exit status 2; Ctrl-C stops cleanly
(outputs flushed) with status 130.
"""
from __future__ import annotations

import argparse
import signal
import sys
import time

from .errors import RtTaggerError

SUBCOMMANDS = ("demo", "models", "export", "explain")


def _stream_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", "-m", default=None,
                   help="registry name, checkpoint (.safetensors) or .onnx file (default: the embedded model)")
    p.add_argument("--backend", default="auto", choices=("auto", "tensorrt", "onnxruntime", "torch"))
    p.add_argument("--threads", type=int, default=None, help="inference CPU threads")
    p.add_argument("--hop", default="0.5", help="seconds between chunks, or 'chunk' (default 0.5)")
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("--threshold", type=float, default=None,
                   help="tag event threshold (default: per-tag thresholds of the model, else 0.5)")
    p.add_argument("--aggregation", default="mean", choices=("mean", "ema", "max"))
    p.add_argument("--horizon", type=float, default=3.0, help="aggregation horizon in seconds")
    p.add_argument("--min-duration", type=float, default=1.0,
                   help="seconds a tag must stay above threshold before tag_on")
    p.add_argument("--jsonl", metavar="FILE", help="write JSON Lines to FILE ('-' = stdout)")
    p.add_argument("--csv", metavar="FILE", help="write the taggram (one row per chunk) as CSV")
    p.add_argument("--realtime", action="store_true", help="pace a file like a live source")
    p.add_argument("--record", metavar="WAV", help="also write the audio as tagged (model rate) to WAV")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds of audio")
    p.add_argument("--channel", type=int, default=None, help="use one input channel instead of the mix")
    p.add_argument("--gui", action="store_true", help="open the live window")
    p.add_argument("--quiet", "-q", action="store_true", help="no terminal view")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rt-tagger", description="Streaming real-time music tagging.",
        epilog="subcommands: demo, models, export, explain (rt-tagger SUBCOMMAND --help)")
    p.add_argument("source", nargs="?", help="audio file or stream URL")
    p.add_argument("--device", "-d", help="input device: index or part of its name")
    p.add_argument("--list-devices", action="store_true")
    _stream_options(p)
    from .monitor.cli import add_options

    add_options(p)
    return p


def _run_stream(args: argparse.Namespace, source) -> int:
    from .sinks import JsonlWriter, TerminalView
    from .tagger import Tagger

    tagger = Tagger(args.model, backend=args.backend, hop=args.hop, aggregation=args.aggregation,
                    horizon=args.horizon, threshold=args.threshold, min_duration=args.min_duration,
                    topk=args.topk, threads=args.threads)
    jsonl = JsonlWriter(args.jsonl) if args.jsonl else None
    to_stdout = args.jsonl == "-"
    view = None if args.quiet else TerminalView(sys.stderr if to_stdout else sys.stdout, topk=args.topk)
    status, pipe = tagger.open_stream(source, realtime=args.realtime, channel=args.channel,
                                      record=args.record)
    if args.gui:
        from .gui_launch import run_gui

        return run_gui(tagger, pipe, status, jsonl=jsonl)

    def out(msg: dict) -> None:
        if jsonl:
            jsonl.write(msg)
        if view:
            view.handle(msg)

    interrupted = ending = False
    out(status)
    try:
        pipe.start()
        while True:
            try:
                msg = pipe.poll()
            except StopIteration:
                break
            except KeyboardInterrupt:
                if ending:  # second Ctrl-C: stop now
                    break
                ending = interrupted = True
                print("rt-tagger: stopping, flushing outputs (Ctrl-C again to abort)", file=sys.stderr)
                pipe.end_input()
                continue
            if msg is None:
                continue
            out(msg)
            if (not ending and args.duration is not None and msg["type"] == "update"
                    and msg["t"] >= args.duration):
                ending = True
                pipe.end_input()  # drain, tag the rest, then the summary
    finally:
        pipe.stop()
        if args.csv:
            _write_csv(tagger, args.csv)
        if jsonl:
            jsonl.close()
    if interrupted:
        print("rt-tagger: interrupted", file=sys.stderr)
        return 130
    return 0


def _write_csv(tagger, path: str) -> None:
    import numpy as np

    from .tagger import TagResult

    rows = sorted(tagger.pipeline.taggram, key=lambda r: r[0])
    if not rows:
        return
    times = np.array([(r[1], r[2]) for r in rows])
    gram = np.stack([r[3] for r in rows])
    TagResult(tagger.tags, times, gram, gram.mean(axis=0), float(times[-1, 1])).to_csv(path)


def cmd_main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from .monitor.cli import run_monitor, wants_monitor

    if args.list_devices:
        from .sources.device import format_devices

        print(format_devices())
        return 0
    if args.source and args.device is not None:
        raise RtTaggerError("give either a file/URL or --device, not both")
    if wants_monitor(args):
        return run_monitor(args, parser)
    if args.device is not None or not args.source:
        from .sources.device import DeviceSource

        source = DeviceSource(args.device, channel=args.channel)
    else:
        source = args.source
    return _run_stream(args, source)


def cmd_demo(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="rt-tagger demo",
                                description="Tag a 24 s clip synthesised by rt-tagger with the default model.")
    _stream_options(p)
    args = p.parse_args(argv)
    import tempfile
    from pathlib import Path

    from .demo import write_demo_clip

    with tempfile.TemporaryDirectory(prefix="rt-tagger-demo-") as d:
        path = write_demo_clip(Path(d) / "demo.wav")
        return _run_stream(args, path)


def cmd_models(argv: list[str]) -> int:
    argparse.ArgumentParser(prog="rt-tagger models", description="List registered models.").parse_args(argv)
    from .models import list_models

    pretrained = set(list_models(pretrained=True))
    for name in list_models():
        print(f"{name}{'  (pretrained)' if name in pretrained else ''}")
    return 0


def cmd_export(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="rt-tagger export", description="Export a model to ONNX or TorchScript.")
    p.add_argument("model")
    p.add_argument("--format", "-f", choices=("onnx", "torchscript"), default="onnx")
    p.add_argument("--output", "-o", default=None)
    p.add_argument("--batch", type=int, default=None, help="static batch size (default dynamic)")
    p.add_argument("--no-attention", action="store_true", help="export logits only")
    args = p.parse_args(argv)
    from .export import export_model

    out = args.output or f"{args.model.replace('/', '_')}.{'onnx' if args.format == 'onnx' else 'pt'}"
    path = export_model(args.model, args.format, out, batch=args.batch,
                        with_attention=not args.no_attention)
    print(f"wrote {path}")
    return 0


def cmd_explain(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="rt-tagger explain",
                                description="Attention and tag-wise contribution heat maps (Spec_Att paper, Figs. 6-7).")
    p.add_argument("files", nargs="+")
    p.add_argument("--tag", action="append", default=None, help="tag to explain (repeatable)")
    p.add_argument("--topk", type=int, default=3)
    p.add_argument("--concat", action="store_true", help="concatenate the files, as in the paper")
    p.add_argument("--model", "-m", default=None)
    p.add_argument("--output", "-o", default="explain.png")
    args = p.parse_args(argv)
    from .explain import explain_file
    from .tagger import DEFAULT_MODEL

    layout = explain_file(args.files, args.output, model=args.model or DEFAULT_MODEL, tags=args.tag,
                          topk=args.topk, concat=args.concat)
    print(f"wrote {layout.path} ({', '.join(layout.order)})")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"demo": cmd_demo, "models": cmd_models, "export": cmd_export, "explain": cmd_explain}
    cmd = commands.get(argv[0]) if argv else None
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `rt-tagger ... | head` ends quietly
    t0 = time.perf_counter()
    try:
        return cmd(argv[1:]) if cmd else cmd_main(argv)
    except RtTaggerError as exc:
        msg = str(exc).strip() or type(exc).__name__
        print(f"rt-tagger: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"rt-tagger: interrupted after {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
