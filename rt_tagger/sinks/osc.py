"""OSC output for lighting and VJ software (python-osc, UDP).

For every ``update``: ``/rt-tagger/<source>/tag/<name> <prob>`` for each of the top-k tags,
``/rt-tagger/<source>/top <name1> <p1> <name2> <p2> ...`` and, when the update carries
loudness, ``/rt-tagger/<source>/loudness <momentary> <short_term> <level_db>`` (LUFS/dBFS,
-inf as -200). For every ``event``: ``/rt-tagger/<source>/event <event> [<detail>]`` where the
detail is the tag (tag events), the state (source_state, loudness alarms) or nothing.
Tag and source names are made address-safe: characters OSC reserves (space # * , / ? [ ] { })
become ``_``.
"""
from __future__ import annotations

import re

from ..errors import ConfigError

_UNSAFE = re.compile(r"[\s#*,/?\[\]{}]+")
FLOOR = -200.0  # stands in for -inf (silence) in numeric OSC arguments


def osc_name(text: str) -> str:
    return _UNSAFE.sub("_", str(text)).strip("_") or "_"


def parse_hostport(text: str, *, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """``HOST:PORT`` or ``PORT`` -> ``(host, port)``."""
    host, sep, port = str(text).rpartition(":")
    if not sep:
        host, port = default_host, str(text)
    try:
        value = int(port)
    except ValueError:
        raise ConfigError(f"expected [HOST:]PORT, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise ConfigError(f"port must be 0-65535, got {value}")
    return host.strip("[]") or default_host, value


class OscSender:
    """Sends the pipeline's messages as OSC over UDP to ``host:port``."""

    def __init__(self, target: str, *, topk: int = 5, prefix: str = "/rt-tagger") -> None:
        try:
            from pythonosc.udp_client import SimpleUDPClient
        except ImportError:
            raise ConfigError("--osc needs python-osc (pip install 'rt-tagger[osc]')") from None
        self.host, self.port = parse_hostport(target)
        self.topk = topk
        self.prefix = prefix.rstrip("/")
        try:
            self._client = SimpleUDPClient(self.host, self.port)
        except OSError as exc:
            raise ConfigError(f"--osc {target}: {exc.strerror or exc}") from None
        self.sent = 0
        self.errors = 0

    def _send(self, address: str, args) -> None:
        try:
            self._client.send_message(address, args)
            self.sent += 1
        except OSError:  # nobody listening, network down: never stop the tagger for OSC
            self.errors += 1

    def handle(self, msg: dict) -> None:
        kind = msg.get("type")
        base = f"{self.prefix}/{osc_name(msg.get('source', 'main'))}"
        if kind == "update":
            top = msg["top"][: self.topk]
            for tag, p in top:
                self._send(f"{base}/tag/{osc_name(tag)}", float(p))
            flat: list = []
            for tag, p in top:
                flat += [str(tag), float(p)]
            self._send(f"{base}/top", flat)
            loud = msg.get("loudness")
            if loud:
                self._send(f"{base}/loudness", [_num(loud.get("momentary")),
                                                _num(loud.get("short_term")),
                                                _num(loud.get("level_db"))])
        elif kind == "event":
            ev = msg["event"]
            detail = msg.get("tag") or msg.get("state")
            self._send(f"{base}/event", [ev] if detail is None else [ev, str(detail)])

    def close(self) -> None:
        sock = getattr(self._client, "_sock", None)
        if sock is not None:
            sock.close()

    def __enter__(self) -> "OscSender":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _num(v) -> float:
    return FLOOR if v is None else float(v)
