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


def _settings(args: argparse.Namespace, parser: argparse.ArgumentParser):
    """Sources and options from --config, overridden by whatever was given on the command line."""
    from dataclasses import replace

    from .config import MonitorConfig, load_config
    from .spec import SourceSpec

    cfg = load_config(args.config) if args.config else MonitorConfig()
    opts = dict(vars(args))
    for key, value in cfg.options.items():
        if key in opts and opts[key] == parser.get_default(key):
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
    from ..sinks import JsonlWriter, TerminalView
    from ..tagger import Tagger
    from .runner import Monitor

    sources, o = _settings(args, parser)
    for spec in sources:  # fail fast, before the model loads
        if spec.kind == "file":
            from ..sources.decode import Decoder

            Decoder(spec.target.partition(":")[2]).close()
    sinks = []
    if o.jsonl:
        sinks.append(JsonlWriter(o.jsonl))
    if not o.quiet:
        tty = None if len(sources) == 1 else False  # several sources: plain lines
        sinks.append(TerminalView(sys.stderr if o.jsonl == "-" else sys.stdout, topk=o.topk, tty=tty))
    if o.osc:
        from ..sinks.osc import OscSender

        sinks.append(OscSender(o.osc, topk=o.topk))
    if o.event_log:
        from ..sinks.eventlog import EventLog

        sinks.append(EventLog(o.event_log, max_bytes=getattr(o, "event_log_max_bytes", 10_000_000),
                              backups=getattr(o, "event_log_backups", 5)))
    try:
        tagger = Tagger(o.model, backend=o.backend, hop=o.hop, aggregation=o.aggregation,
                        horizon=o.horizon, threshold=o.threshold, min_duration=o.min_duration,
                        topk=o.topk, threads=o.threads)
    except BaseException:
        for sink in sinks:
            if hasattr(sink, "close"):
                sink.close()
        raise
    mon = Monitor(tagger, sources, restart_delay=getattr(o, "restart_delay", 30.0), workers=o.workers,
                  batch=o.batch)
    server = None
    interrupted = ending = False
    reached: set[str] = set()
    try:
        if o.http is not None:
            from ..sinks.http_status import StatusServer

            server = StatusServer(mon.status, str(o.http)).start()
            print(f"rt-tagger: status at {server.url}/status", file=sys.stderr)
        if o.gui and len(sources) > 1:  # the compact one-row-per-source window
            from ..gui_launch import run_multi_gui

            return run_multi_gui(mon, sinks, topk=min(o.topk, 3))
        mon.start()
        while True:
            try:
                msg = mon.poll()
            except StopIteration:
                break
            except KeyboardInterrupt:
                if ending:
                    break
                ending = interrupted = True
                print("rt-tagger: stopping, flushing outputs (Ctrl-C again to abort)", file=sys.stderr)
                mon.end_input()
                continue
            if msg is None:
                continue
            for sink in sinks:
                (sink.handle if hasattr(sink, "handle") else sink.write)(msg)
            if msg["type"] == "summary" or (msg["type"] == "update" and o.duration is not None
                                            and msg["t"] >= o.duration):
                reached.add(msg["source"])
            if o.duration is not None and not ending and reached:
                if reached >= set(mon.names):
                    ending = True
                    mon.end_input()
    finally:
        mon.stop()
        if server is not None:
            server.close()
        for sink in sinks:
            if hasattr(sink, "close"):
                sink.close()
    if interrupted:
        print("rt-tagger: interrupted", file=sys.stderr)
        return 130
    return 0
