"""The monitoring options (``--source NAME=KIND:TARGET ...``, ``--config FILE.toml``, outputs,
alarms) and :func:`settings`, which turns a command line into the sources and options of a run."""
from __future__ import annotations

import argparse

from ..config import StreamConfig
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
    g.add_argument("--cluster", metavar="local|ray://HOST:PORT",
                   help="run the sources in Ray actors (rt-tagger[cluster]); 'local' starts Ray on this machine")
    g.add_argument("--cluster-inference", choices=("actor", "serve"), default=None,
                   help="with --cluster: the model in each actor (default) or one shared Ray Serve deployment")
    g.add_argument("--cluster-actors", type=int, default=None, metavar="N",
                   help="with --cluster: source actors (default 2; sources are dealt out round-robin)")
    for dest, flag, text in ALARM_FLAGS:
        g.add_argument(flag, dest=dest, type=float, default=None, help=text)


def wants_monitor(args: argparse.Namespace) -> bool:
    return bool(args.sources or args.config or args.osc or args.http or args.event_log
                or getattr(args, "cluster", None))


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


def settings(args: argparse.Namespace):
    """The run the command line (and ``--config``) asks for: ``(sources, options)``.

    ``sources``: :class:`~rt_tagger.monitor.spec.SourceSpec` list (the file's, every
    ``--source``, and the single-source form ``FILE``/``URL``/``--device``/``--loopback`` as
    ``main``; none of these: the default input device). ``options``: a namespace with
    ``config`` (the :class:`~rt_tagger.config.StreamConfig`: the file's values, then every stream
    flag given, also one equal to its default) and the outputs and monitor-only keys (the
    flag if given, else the file's value).
    """
    from dataclasses import replace

    from .config import MonitorConfig
    from .spec import SourceSpec

    cfg = _load_config(args.config) if args.config else MonitorConfig()
    opts = {k: v for k, v in vars(args).items() if k not in StreamConfig.names()}
    for key, value in cfg.options.items():  # outputs and config-only keys (restart_delay, ...)
        if key not in StreamConfig.names() and opts.get(key) in (None, False):
            opts[key] = value
    opts["config"] = StreamConfig.from_args(args, cfg.stream)
    overrides = {d: getattr(args, d) for d, _, _ in ALARM_FLAGS if getattr(args, d) is not None}
    sources = [replace(s, alarms=replace(s.alarms, **overrides)) for s in cfg.sources]
    base = replace(cfg.alarms, **overrides)
    for text in args.sources or ():
        sources.append(SourceSpec.parse(text, alarms=base, realtime=True, channel=args.channel))
    if args.loopback is not None:
        label = "loopback" if sources else "main"
        sources.append(SourceSpec(label, f"loopback:{args.loopback}", channel=args.channel, alarms=base))
    elif args.source or args.device is not None or not sources:
        if args.source:
            kind = args.source.partition(":")[0]
            target = (args.source if kind in ("file", "url", "device") else
                      f"url:{args.source}" if "://" in args.source else f"file:{args.source}")
        else:
            target = f"device:{args.device or ''}"
        sources.append(SourceSpec("main", target, realtime=args.realtime or not target.startswith("file:"),
                                  channel=args.channel, alarms=base))
    return sources, argparse.Namespace(**opts)
