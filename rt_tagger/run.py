"""One run of the ``rt-tagger`` command: sources -> session -> outputs, for every source form.

:class:`Run` takes the sources and options :func:`rt_tagger.monitor.cli.settings` made of the
command line and runs them: the checks first (values, paths, files: one ``rt-tagger:`` line
before any model loads), then the tagger, then a :class:`~rt_tagger.monitor.Monitor` (a
session with restart policy and alarms; without monitoring outputs a plain session: no alarms,
a failing source ends the run) drained by :func:`rt_tagger.shutdown.drive` into the outputs,
or the live window (``--gui``). Every option is honoured, or refused in one line:

* ``--csv``, ``--record``: one source only (one table, one WAV);
* ``--gui`` with one source opens the live window, with several the compact one; the window
  is the view (no terminal view either way), ``--jsonl``/``--csv`` still get everything;
  the one-source window does not carry ``--osc``/``--http``/``--event-log``.
"""
from __future__ import annotations

import os
import sys

from .errors import ConfigError

__all__ = ["Run", "refused"]


def refused(sources, o) -> str | None:
    """Why these options cannot run together (one line), or ``None``."""
    several = len(sources) > 1
    for flag, on in (("--csv", o.csv), ("--record", o.record)):
        if on and several:
            return (f"{flag} writes one source, but {len(sources)} are given "
                    f"({', '.join(s.name for s in sources)}); use --jsonl, or run one source")
    if o.gui and not several:
        extra = [f for f, on in (("--osc", o.osc), ("--http", o.http is not None),
                                 ("--event-log", o.event_log)) if on]
        if extra:
            return (f"--gui with one source opens the live window, which does not carry "
                    f"{', '.join(extra)}; give them without --gui, or --gui with several sources")
    return None


class Run:
    """``Run(sources, options, monitoring=...).execute()`` -> exit status."""

    def __init__(self, sources, o, *, monitoring: bool) -> None:
        self.sources, self.o, self.monitoring = sources, o, monitoring

    def check(self) -> None:
        """Every user mistake, before the model loads or any audio is read."""
        from .preflight import check_outputs

        line = refused(self.sources, self.o)
        if line:
            raise ConfigError(line)
        check_outputs(self.o)
        for spec in self.sources:
            if spec.kind == "file":
                from .sources.decode import Decoder, is_pipe

                path = spec.target.partition(":")[2]
                if not is_pipe(path):  # a pipe can be read only once
                    Decoder(path).close()

    def execute(self) -> int:
        self.check()
        from .tagger import Tagger

        tagger = Tagger(None, self.o.config)
        if self.o.gui:
            return self._gui(tagger)
        return self._drive(tagger)

    # ---- outputs ------------------------------------------------------------------------------
    def _outputs(self, tagger, mon, *, view: bool, stream=None):
        """The sinks: --csv (of ``stream``, default the monitor's one stream), --jsonl, the
        terminal view (``view``), --osc, --event-log."""
        from .sinks import JsonlWriter, Outputs, TerminalView

        o = self.o
        outputs = Outputs(on_event=mon.events.append if mon is not None else None)
        if o.csv:  # first: a CSV that cannot be written is still told to the JSON Lines
            def one_stream():
                return stream if stream is not None else next(iter(mon.session.streams.values()), None)

            outputs.add("csv", _CsvAtEnd(tagger.tags, one_stream, o.csv), o.csv)
        if o.jsonl:
            to_stdout = o.jsonl == "-"
            sink = outputs.add("jsonl", JsonlWriter(o.jsonl), "stdout" if to_stdout else o.jsonl,
                               stdout=to_stdout,
                               reopen=None if to_stdout else (lambda: JsonlWriter(o.jsonl)))
            if mon is not None:
                mon.outputs["jsonl"] = sink
        if view and not o.quiet:
            to_stderr = o.jsonl == "-"
            tty = None if len(self.sources) == 1 else False  # several sources: plain lines
            outputs.add("terminal", TerminalView(sys.stderr if to_stderr else sys.stdout,
                                                 topk=o.config.topk, tty=tty),
                        "stderr" if to_stderr else "stdout", stdout=not to_stderr)
        if o.osc:
            from .sinks.osc import OscSender

            mon.outputs["osc"] = OscSender(o.osc, topk=o.config.topk)  # its own status: never raises
            outputs.add("osc", mon.outputs["osc"], o.osc)
        if o.event_log:
            from .sinks.eventlog import EventLog

            def event_log():
                return EventLog(o.event_log, max_bytes=getattr(o, "event_log_max_bytes", 10_000_000),
                                backups=getattr(o, "event_log_backups", 5))

            mon.outputs["event_log"] = outputs.add("event_log", event_log(), o.event_log, reopen=event_log)
        return outputs

    # ---- the terminal / headless run ------------------------------------------------------------
    def _monitor(self, tagger):
        from .monitor import Monitor

        o = self.o
        one = self.sources[0].name if len(self.sources) == 1 else None
        return Monitor(tagger, self.sources, monitoring=self.monitoring,
                       restart_delay=getattr(o, "restart_delay", 30.0) if self.monitoring else None,
                       records={one: o.record} if o.record and one else None)

    def _drive(self, tagger) -> int:
        from . import shutdown

        mon = self._monitor(tagger)
        server, outputs = None, None
        try:
            mon.start()  # opens every source; a mistake raises here, before any output exists
            outputs = self._outputs(tagger, mon, view=True)
            if self.o.http is not None:
                from .sinks.http_status import StatusServer

                server = StatusServer(mon.status, str(self.o.http)).start()
                print(f"rt-tagger: status at {server.url}/status", file=sys.stderr)
            shutdown.drive(mon.poll, mon.end_input, outputs.handle)
        finally:
            mon.stop()
            if server is not None:
                server.close()
            if outputs is not None:
                outputs.close()  # flushes the JSON Lines, writes the CSV
            tagger.close()
        return shutdown.final_status(outputs, 0)

    # ---- the live windows -----------------------------------------------------------------------
    def _gui(self, tagger) -> int:
        from . import shutdown
        from .gui_launch import run_gui, run_multi_gui

        o = self.o
        if len(self.sources) > 1:
            mon = self._monitor(tagger)
            outputs = self._outputs(tagger, mon, view=False)
            if o.http is not None:
                from .sinks.http_status import StatusServer

                server = StatusServer(mon.status, str(o.http)).start()
                print(f"rt-tagger: status at {server.url}/status", file=sys.stderr)
            else:
                server = None
            try:
                code = run_multi_gui(mon, [outputs], topk=min(o.config.topk, 3))
            finally:
                mon.stop()
                if server is not None:
                    server.close()
                outputs.close()
                tagger.close()
            return shutdown.final_status(outputs, code)
        spec = self.sources[0]
        status, pipe = tagger.open_stream(spec.target, realtime=spec.realtime,
                                          channel=spec.channel, record=o.record)
        outputs = self._outputs(tagger, None, view=False, stream=pipe)
        try:
            code = run_gui(tagger, pipe, status, jsonl=outputs)
        finally:
            outputs.close()  # writes the CSV
        return shutdown.final_status(outputs, code)


class _CsvAtEnd:
    """``--csv``: the one source's taggram, written when the run ends (``close``)."""

    def __init__(self, tags: list[str], stream, path: str) -> None:
        self.tags, self.stream, self.path = tags, stream, path

    def handle(self, msg) -> None:
        pass

    def close(self) -> None:
        import numpy as np

        from .tagger import TagResult

        stream = self.stream()
        rows = sorted(stream.taggram, key=lambda r: r[0]) if stream is not None else []
        if not rows:
            return
        times = np.array([(r[1], r[2]) for r in rows])
        gram = np.stack([r[3] for r in rows])
        TagResult(self.tags, times, gram, gram.mean(axis=0), float(times[-1, 1])).to_csv(os.fspath(self.path))
