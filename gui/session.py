"""One running tagger: a :class:`~rt_tagger.tagger.Tagger` plus its started pipeline.

No Qt here. The window owns one :class:`Session` at a time; changing the device, model, hop,
horizon or threshold builds a new one from :class:`Settings` and stops the old one (its
threads joined) before starting the new one, so restarts never leak capture threads.
"""
from __future__ import annotations

from dataclasses import dataclass

from rt_tagger.config import StreamConfig
from rt_tagger.errors import RtTaggerError


@dataclass(frozen=True, init=False)
class Settings:
    """What a session is built from: ``source`` (path/URL or ``device:INDEX``), how it is read
    (``realtime``, ``channel``) and the stream settings, ``config``
    (:class:`~rt_tagger.config.StreamConfig`). ``Settings(source, model=..., hop=...)`` and
    ``settings.model`` reach the config's fields directly."""

    source: str
    config: StreamConfig
    realtime: bool
    channel: int | None

    def __init__(self, source: str, config: StreamConfig | None = None, *, realtime: bool = False,
                 channel: int | None = None, **stream) -> None:
        object.__setattr__(self, "source", source)
        object.__setattr__(self, "config", (config or StreamConfig()).replace(**stream))
        object.__setattr__(self, "realtime", bool(realtime))
        object.__setattr__(self, "channel", channel)

    def __getattr__(self, name: str):
        if name in StreamConfig.names():
            return getattr(self.config, name)
        raise AttributeError(name)

    def replace(self, **changes) -> "Settings":
        own = {k: changes.pop(k) for k in ("source", "realtime", "channel") if k in changes}
        return Settings(own.get("source", self.source), self.config.replace(**changes),
                        realtime=own.get("realtime", self.realtime),
                        channel=own.get("channel", self.channel))


def source_spec(source) -> str:
    """The spec that reopens ``source`` (``device:INDEX`` or the file/URL target)."""
    if getattr(source, "kind", "") == "device":
        return f"device:{source.device_index}"
    return str(getattr(source, "target", source.name))


def settings_of(tagger, pipe) -> Settings:
    """The settings an existing tagger and (not yet started) pipeline were built with."""
    return Settings(source_spec(pipe.source),
                    tagger.config.replace(model=tagger.model, backend=tagger.engine.name,
                                          hop=round(tagger.hop_seconds, 6)),
                    realtime=bool(getattr(pipe.source, "realtime", False)),
                    channel=getattr(pipe.source, "channel", None))


class Session:
    """A tagger and its one-source session (``pipe``). :meth:`drain` forwards its messages (to
    ``jsonl``: anything with ``write(msg)``, the CLI's outputs) without blocking;
    :meth:`close` stops capture and joins every thread."""

    def __init__(self, tagger, pipe, settings: Settings, status: dict | None = None,
                 jsonl=None) -> None:
        self.tagger, self.pipe, self.settings = tagger, pipe, settings
        self.status = status or tagger.status(pipe.source)
        self.jsonl = jsonl
        self.finished = False  # the source ended and the summary came
        self.error: BaseException | None = None
        self.summary: dict | None = None
        self.started = False
        self.closed = False

    @classmethod
    def open(cls, settings: Settings, jsonl=None) -> "Session":
        """Builds the tagger and pipeline (model loaded, source opened, nothing started)."""
        from rt_tagger.tagger import Tagger

        tagger = Tagger(None, settings.config)
        try:
            status, pipe = tagger.open_stream(settings.source, realtime=settings.realtime,
                                              channel=settings.channel)
        except BaseException:
            tagger.close()
            raise
        return cls(tagger, pipe, settings, status, jsonl)

    def start(self) -> None:
        self.started = True
        self.pipe.start()

    def drain(self, budget: int = 500) -> int:
        """Forwards up to ``budget`` waiting messages; returns how many. Never blocks."""
        n = 0
        while n < budget and not self.finished and self.error is None:
            try:
                msg = self.pipe.poll(timeout=0)
            except StopIteration:
                self.finished = True
                break
            except Exception as exc:  # a worker's error, re-raised by poll (pipeline stopped)
                self.error = exc
                break
            if msg is None:
                break
            n += 1
            if msg.get("type") == "summary":
                self.summary = msg
            if self.jsonl is not None:
                self.jsonl.write(msg)
        return n

    def error_text(self) -> str | None:
        e = self.error
        if e is None:
            return None
        text = str(e).strip().splitlines()[0] if str(e).strip() else ""
        return text if isinstance(e, RtTaggerError) and text else f"{type(e).__name__}: {text}"

    def snapshot(self):
        return self.pipe.snapshot()

    def threads(self) -> list:
        return self.pipe.threads()

    def close(self) -> None:
        """Stops capture, joins the pipeline threads, releases the engine. Idempotent."""
        if self.closed:
            return
        self.closed = True
        try:
            self.pipe.stop()
            if self.started:
                self.drain(budget=100_000)  # the last messages still reach the JSONL file
        finally:
            self.tagger.close()
