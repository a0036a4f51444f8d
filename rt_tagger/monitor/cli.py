"""``rt-tagger --source NAME=KIND:TARGET ...`` / ``--config FILE.toml``: the monitoring command."""
from __future__ import annotations

import argparse
import sys

from ..errors import ConfigError

ALARM_FLAGS = (("silence_db", "--silence-db", "dBFS level below which a source is silent (default -50)"),
               ("silence_seconds", "--silence-seconds", "seconds of silence before silence_start (default 10)"),
               ("loudness_high", "--loudness-high", "short-term LUFS above which loudness_high fires (default -8)"),
               ("loudness_low", "--loudness-low", "short-term LUFS below which loudness_low fires (default -36)"),
               ("loudness_seconds", "--loudness-seconds", "seconds over/under before a loudness alarm (default 10)"))


def add_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("monitoring (several sources, alarms, outputs)")
    g.add_argument("--source", dest="sources", action="append", default=None, metavar="NAME=KIND:TARGET",
                   help="a named source: NAME=device:DEV, NAME=file:PATH or NAME=url:URL (repeatable)")
    g.add_argument("--config", metavar="FILE.toml", help="monitoring config (sources, alarms, outputs)")
    g.add_argument("--osc", metavar="HOST:PORT", help="send tags and events as OSC (UDP)")
    g.add_argument("--http", metavar="[HOST:]PORT", help="serve a JSON status on HOST:PORT (default host 127.0.0.1)")
    g.add_argument("--event-log", metavar="FILE", help="append events to a rotating JSON Lines log")
    g.add_argument("--inference-workers", dest="workers", type=int, default=1, metavar="N",
                   help="threads sharing the engine across sources (default 1; 2 on 2+ cores "
                        "with --threads 1 lowers latency for many sources)")
    g.add_argument("--inference-batch", dest="batch", type=int, default=None, metavar="N",
                   help="most chunks (of all sources) per engine call (default: 1 on CPU, "
                        "the engine's max batch on GPU)")
    for dest, flag, text in ALARM_FLAGS:
        g.add_argument(flag, dest=dest, type=float, default=None, help=text)


def wants_monitor(args: argparse.Namespace) -> bool:
    return bool(args.sources or args.config or args.osc or args.http or args.event_log)


def _load_config(path: str):
    """``load_config`` with the file's own troubles (a directory, unreadable, not UTF-8) as one line."""
    import os

    from .config import load_config

    if os.path.isdir(path):
        raise ConfigError(f"--config {path}: is a directory, not a TOML file")
    try:
        return load_config(path)
    except UnicodeDecodeError as exc:
        raise ConfigError(f"--config {path}: not UTF-8 text (bad byte at offset {exc.start})") from None
    except OSError as exc:
        raise ConfigError(f"--config {path}: cannot read: {exc.strerror or exc}") from None


def _settings(args: argparse.Namespace, parser: argparse.ArgumentParser):
    """Sources and options from --config, overridden by whatever was given on the command line."""
    from dataclasses import replace

    from .config import MonitorConfig
    from .spec import SourceSpec

    cfg = _load_config(args.config) if args.config else MonitorConfig()
    opts = dict(vars(args))
    for key, value in cfg.options.items():  # config-only keys (restart_delay, ...) too
        if key not in opts or opts[key] == parser.get_default(key):
            opts[key] = value
    overrides = {d: getattr(args, d) for d, _, _ in ALARM_FLAGS if getattr(args, d) is not None}
    sources = [replace(s, alarms=replace(s.alarms, **overrides)) for s in cfg.sources]
    base = replace(cfg.alarms, **overrides)
    for text in args.sources or ():
        sources.append(SourceSpec.parse(text, alarms=base, realtime=True, channel=args.channel))
    if args.source or args.device is not None:  # the single-source form, with monitoring outputs
        target = f"device:{args.device}" if args.device is not None else (
            args.source if args.source.partition(":")[0] in ("file", "url", "device") else
            (f"url:{args.source}" if "://" in args.source else f"file:{args.source}"))
        sources.append(SourceSpec("main", target, realtime=args.realtime or target.startswith(("url", "device")),
                                  channel=args.channel, alarms=base))
    if not sources:
        raise ConfigError("no sources: give --source NAME=KIND:TARGET or a config with [sources]")
    return sources, argparse.Namespace(**opts)


def run_monitor(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Several sources (or one, with monitoring outputs). Exit status as ``_run_stream``:
    0; 1 if an output was lost; 128 + signal number after SIGINT/SIGTERM/SIGHUP."""
    from .. import shutdown
    from ..preflight import check_outputs, check_values
    from ..sinks import JsonlWriter, Outputs, TerminalView
    from ..tagger import Tagger, parse_silence_gate
    from .runner import Monitor

    sources, o = _settings(args, parser)
    # Not (yet) carried by the monitor: refused rather than silently ignored.
    unsupported = [flag for flag, on in (("--csv", o.csv), ("--record", o.record),
                                         ("--gui (one source)", o.gui and len(sources) == 1)) if on]
    if unsupported:
        raise ConfigError(f"{', '.join(unsupported)} cannot be combined with --source/--config/--osc/"
                          "--http/--event-log (monitoring); use --jsonl, or run without them")
    check_values(o)
    check_outputs(o)  # every path first: nothing is created, no audio read, no model loaded
    for spec in sources:  # fail fast, before the model loads
        if spec.kind == "file":
            from ..sources.decode import Decoder, is_pipe

            if not is_pipe(spec.target.partition(":")[2]):  # a pipe can be read only once
                Decoder(spec.target.partition(":")[2]).close()
    tagger = Tagger(o.model, backend=o.backend, hop=o.hop, aggregation=o.aggregation,
                    horizon=o.horizon, threshold=o.threshold, min_duration=o.min_duration,
                    topk=o.topk, threads=o.threads, silence_db=parse_silence_gate(o.silence_gate))
    mon = Monitor(tagger, sources, restart_delay=getattr(o, "restart_delay", 30.0), workers=o.workers,
                  batch=o.batch, max_seconds=o.duration)
    # One failing output (disk full) is switched off and reported once - in /status too.
    outputs = Outputs(on_event=mon.events.append)
    server, code = None, 0
    try:
        if o.jsonl:
            mon.outputs["jsonl"] = outputs.add(
                "jsonl", JsonlWriter(o.jsonl), "stdout" if o.jsonl == "-" else o.jsonl,
                stdout=o.jsonl == "-", reopen=None if o.jsonl == "-" else (lambda: JsonlWriter(o.jsonl)))
        if not o.quiet:
            tty = None if len(sources) == 1 else False  # several sources: plain lines
            to_stderr = o.jsonl == "-"
            outputs.add("terminal", TerminalView(sys.stderr if to_stderr else sys.stdout, topk=o.topk, tty=tty),
                        "stderr" if to_stderr else "stdout", stdout=not to_stderr)
        if o.osc:
            from ..sinks.osc import OscSender

            mon.outputs["osc"] = OscSender(o.osc, topk=o.topk)  # its own status: sends never raise
            outputs.add("osc", mon.outputs["osc"], o.osc)
        if o.event_log:
            from ..sinks.eventlog import EventLog

            def event_log():
                return EventLog(o.event_log, max_bytes=getattr(o, "event_log_max_bytes", 10_000_000),
                                backups=getattr(o, "event_log_backups", 5))

            mon.outputs["event_log"] = outputs.add("event_log", event_log(), o.event_log, reopen=event_log)
        if o.http is not None:
            from ..sinks.http_status import StatusServer

            server = StatusServer(mon.status, str(o.http)).start()
            print(f"rt-tagger: status at {server.url}/status", file=sys.stderr)
        if o.gui and len(sources) > 1:  # the compact one-row-per-source window
            from ..gui_launch import run_multi_gui

            code = run_multi_gui(mon, [outputs], topk=min(o.topk, 3))
        else:
            reached: set[str] = set()

            def all_reached_duration(msg: dict) -> bool:
                if o.duration is None:
                    return False
                if msg["type"] == "summary" or (msg["type"] == "update" and msg["t"] >= o.duration):
                    reached.add(msg["source"])
                return reached >= set(mon.names)

            mon.start()
            shutdown.drive(mon.poll, mon.end_input, outputs.handle, should_end=all_reached_duration)
    finally:
        mon.stop()
        if server is not None:
            server.close()
        outputs.close()
    return shutdown.final_status(outputs, code)
