"""The ``rt-tagger`` command (also ``python -m rt_tagger``).

    rt-tagger [FILE|URL] [--device D] [options]   tag a file, stream or live input
    rt-tagger --source NAME=KIND:TARGET ...       monitor several sources (or --config FILE.toml)
    rt-tagger --source ... --cluster local|ray://HEAD:PORT   the same, sharded over Ray actors
    rt-tagger demo                                the main job on the embedded default
    rt-tagger --list-devices                      input devices PortAudio sees (and loopback outputs)
    rt-tagger --loopback[=OUTPUT]                 tag what the computer plays (system audio)
    rt-tagger models                              registered models
    rt-tagger export MODEL --format onnx|torchscript [-o OUT]
    rt-tagger explain FILE [FILE2] [--tag T ...] [-o out.png] [--concat]

User mistakes end in one ``rt-tagger: <message>`` line and exit status 2, found before the
model loads or any audio is read. Ctrl-C, SIGTERM and SIGHUP stop cleanly (capture ends, what
was captured is tagged, summary and outputs written) with status 130, 143 or 129; a second
signal aborts the drain. An output that fails mid-run (disk full) is switched off and reported
once; the run goes on and ends with status 1.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

from .errors import RtTaggerError

SUBCOMMANDS = ("demo", "models", "export", "explain")


def _io_options(p: argparse.ArgumentParser) -> None:
    """Per-run input and output flags (the stream settings are StreamConfig.add_arguments)."""
    p.add_argument("--jsonl", metavar="FILE", help="write JSON Lines to FILE ('-' = stdout)")
    p.add_argument("--csv", metavar="FILE", help="write the taggram (one row per chunk) as CSV (one source)")
    p.add_argument("--realtime", action="store_true", help="pace a file like a live source")
    p.add_argument("--record", metavar="WAV", help="also write the audio as tagged (model rate) to WAV (one source)")
    p.add_argument("--channel", type=int, default=None, help="use one input channel instead of the mix")
    p.add_argument("--gui", action="store_true", help="open the live window")
    p.add_argument("--quiet", "-q", action="store_true", help="no terminal view")


def _stream_options(p: argparse.ArgumentParser) -> None:
    from .config import StreamConfig

    StreamConfig.add_arguments(p)
    _io_options(p)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rt-tagger", description="Streaming real-time music tagging.",
        epilog="subcommands: demo, models, export, explain (rt-tagger SUBCOMMAND --help)")
    p.add_argument("source", nargs="?", help="audio file or stream URL")
    p.add_argument("--device", "-d", help="input device: index or part of its name")
    p.add_argument("--list-devices", action="store_true")
    p.add_argument("--loopback", nargs="?", const="", default=None, metavar="OUTPUT",
                   help="tag what the computer plays: the default output, or the one named "
                        "(Linux: PulseAudio/PipeWire sink monitor; Windows: WASAPI, needs "
                        "rt-tagger[loopback]; macOS: use a BlackHole device with --device)")
    _stream_options(p)
    from .monitor.cli import add_options

    add_options(p)
    return p


def _run(args: argparse.Namespace) -> int:
    """Every source form (FILE, URL, --device, --loopback, --source ..., --config) goes into
    the one run (:class:`rt_tagger.run.Run`). Returns the exit status: 0; 1 if an output was
    lost (disk full: reported once, the run went on); 128 + signal number after
    SIGINT/SIGTERM/SIGHUP (drained, summaries and outputs written)."""
    from .monitor.cli import settings, wants_monitor
    from .run import Run

    sources, o = settings(args)
    if getattr(o, "cluster", None):  # Ray actors (rt_tagger.cluster, the [cluster] extra)
        from .cluster.run import ClusterRun

        return ClusterRun(sources, o, monitoring=True).execute()
    if getattr(o, "cluster_inference", None) or getattr(o, "cluster_actors", None):
        raise RtTaggerError("--cluster-inference and --cluster-actors need --cluster local|ray://HOST:PORT")
    return Run(sources, o, monitoring=wants_monitor(args)).execute()


def _check_loopback(args: argparse.Namespace) -> None:
    """``--loopback`` takes no other input (it becomes the source ``main``, or ``loopback``
    next to other sources)."""
    if args.device is not None:
        raise RtTaggerError("give either --loopback or --device, not both")
    name = args.loopback
    if args.source or os.path.exists(name) or "://" in name:
        raise RtTaggerError("give either a file/URL or --loopback, not both")


def cmd_main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list_devices:
        from .sources.device import format_devices
        from .sources.loopback import format_loopback

        print("\n".join(filter(None, [format_devices(), format_loopback()])))
        return 0
    if args.source and args.device is not None:
        raise RtTaggerError("give either a file/URL or --device, not both")
    if args.loopback is not None:
        _check_loopback(args)
    return _run(args)


def cmd_demo(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="rt-tagger demo",
                                description="Tag a 24 s clip synthesised by rt-tagger with the default "
                                            "model, played in real time (--fast: as fast as possible).")
    _stream_options(p)
    p.add_argument("--fast", action="store_true",
                   help="tag as fast as possible instead of in real time (--realtime, the "
                        "default, is accepted too)")
    args = p.parse_args(argv)
    if args.fast and args.realtime:
        raise RtTaggerError("give --fast or --realtime, not both")
    args.realtime = not args.fast
    import tempfile
    from pathlib import Path

    from .demo import describe, write_demo_clip
    from .monitor.cli import ALARM_FLAGS

    if not args.quiet:  # what the clip plays, so the tags can be judged
        print(describe(), file=sys.stderr if args.jsonl == "-" else sys.stdout, flush=True)
    with tempfile.TemporaryDirectory(prefix="rt-tagger-demo-") as d:
        path = write_demo_clip(Path(d) / "demo.wav")
        for key, value in (("source", str(path)), ("device", None), ("loopback", None),
                           ("sources", None), ("config", None)):
            setattr(args, key, value)
        for key in ("osc", "http", "event_log", *(d for d, _, _ in ALARM_FLAGS)):
            setattr(args, key, None)
        return _run(args)


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
    p.add_argument("--triton", metavar="REPO", default=None,
                   help="write a Triton model repository REPO/NAME/ (model.onnx + config.pbtxt)")
    p.add_argument("--name", default=None, help="Triton model name (default: from the model's name)")
    p.add_argument("--max-batch", type=int, default=16, help="Triton max_batch_size (default 16)")
    p.add_argument("--plan", action="store_true",
                   help="with --triton: also build a TensorRT plan (needs a CUDA GPU + TensorRT here)")
    args = p.parse_args(argv)
    if args.triton is not None:
        from .deploy.triton_repo import export_cli

        print(export_cli(args))
        return 0
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


def _stdout_gone() -> None:
    """The reader of stdout went away (`| head`): point stdout at /dev/null, so the flush at
    exit neither fails nor prints "Exception ignored ... BrokenPipeError"."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # stdout closed or not a real file
        pass


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"demo": cmd_demo, "models": cmd_models, "export": cmd_export, "explain": cmd_explain}
    cmd = commands.get(argv[0]) if argv else None
    # SIGPIPE stays ignored (Python's default): a fatal SIGPIPE would also kill the process
    # when an HTTP status client hangs up. `rt-tagger ... | head` ends quietly below instead.
    t0 = time.perf_counter()
    from . import shutdown

    shutdown.install()  # SIGTERM / SIGHUP drain like the first Ctrl-C (rt_tagger.shutdown)
    try:
        code = cmd(argv[1:]) if cmd else cmd_main(argv)
        sys.stdout.flush()  # here, where a reader that went away is caught
        return code
    except BrokenPipeError:
        _stdout_gone()
        return 141  # what a shell shows for a process ended by SIGPIPE (128 + 13)
    except RtTaggerError as exc:
        msg = str(exc).strip() or type(exc).__name__
        print(f"rt-tagger: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # a stop signal before there was anything to drain, or an abort
        print(f"rt-tagger: interrupted after {time.perf_counter() - t0:.1f} s", file=sys.stderr)
        return shutdown.exit_status(130)
    finally:
        shutdown.restore()


def run() -> None:
    """The ``rt-tagger`` command: :func:`main`, then a short exit.

    Once ``main`` has returned, all that is left is atexit handlers, which run, and Python's
    teardown of the run's modules and onnxruntime sessions, which costs 40-70 ms of a 30 s
    file's ~0.9 s cold start and changes nothing outside the process (every sink closed its
    file in ``main``). So the streams are flushed and the process ends with ``os._exit``.
    If a thread is somehow still alive, the normal exit waits for it instead."""
    import atexit
    import threading

    code = main()
    if threading.active_count() > 1:
        sys.exit(code)
    atexit._run_exitfuncs()  # logging.shutdown and whatever else was registered
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a reader that went away, or a closed stream
            pass
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    run()
