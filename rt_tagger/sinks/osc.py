"""OSC output for lighting and VJ software (python-osc, UDP).

For every ``update``: ``/rt-tagger/<source>/tag/<name> <prob>`` for each of the top-k tags,
``/rt-tagger/<source>/top <name1> <p1> <name2> <p2> ...`` and, when the update carries
loudness, ``/rt-tagger/<source>/loudness <momentary> <short_term> <level_db>`` (LUFS/dBFS,
-inf as -200). For every ``event``: ``/rt-tagger/<source>/event <event> [<detail>]`` where the
detail is the tag (tag events), the state (source_state, loudness alarms) or nothing.
Tag and source names are made address-safe: characters OSC reserves (space # * , / ? [ ] { })
become ``_``.

The target is checked at start-up (one ``rt-tagger:`` line for a host that does not resolve,
port 0, 0.0.0.0 or the broadcast address 255.255.255.255). A send that fails later never stops the tagger: the first
failure prints one line on stderr, and ``state`` / ``error`` / ``errors`` (read by the
monitor's ``/status``) tell the rest; ``state`` goes back to ``ok`` when sends succeed again.
"""
from __future__ import annotations

import ipaddress
import re
import socket
import sys

from ..errors import ConfigError

_UNSAFE = re.compile(r"[\s#*,/?\[\]{}]+")
FLOOR = -200.0  # stands in for -inf (silence) in numeric OSC arguments


def osc_name(text: str) -> str:
    return _UNSAFE.sub("_", str(text)).strip("_") or "_"


def parse_hostport(text: str, *, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """``HOST:PORT``, ``[IPV6]:PORT`` or ``PORT`` -> ``(host, port)``."""
    host, sep, port = str(text).rpartition(":")
    if not sep:
        host, port = default_host, str(text)
    try:
        value = int(port)
    except ValueError:
        raise ConfigError(f"expected [HOST:]PORT, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise ConfigError(f"port must be 0-65535, got {value}")
    if ":" in host and not (host.startswith("[") and host.endswith("]")):
        raise ConfigError(f"write an IPv6 address in brackets, as [::1]:PORT, got {text!r}")
    return host.strip("[]") or default_host, value


class OscSender:
    """Sends the pipeline's messages as OSC over UDP to ``host:port``."""

    def __init__(self, target: str, *, topk: int = 5, prefix: str = "/rt-tagger") -> None:
        try:
            from pythonosc.udp_client import SimpleUDPClient
        except ImportError:
            raise ConfigError("--osc needs python-osc (pip install 'rt-tagger[osc]')") from None
        host, self.port = parse_hostport(target)
        self.target = target
        self.host = _resolve(target, host, self.port)  # resolved once, not on every send
        self.topk = topk
        self.prefix = prefix.rstrip("/")
        try:
            self._client = SimpleUDPClient(self.host, self.port)
        except OSError as exc:
            raise ConfigError(f"--osc {target}: {exc.strerror or exc}") from None
        self.sent = 0
        self.errors = 0
        self.state = "ok"  # "failing" while sends fail
        self.error: str | None = None  # the latest send error

    def _send(self, address: str, args) -> None:
        try:
            self._client.send_message(address, args)
        except OSError as exc:  # network down, message too large: never stop the tagger for OSC
            self.errors += 1
            self.error = f"sending to {self.host}:{self.port} failed: {exc.strerror or exc}"
            if self.state != "failing":
                self.state = "failing"
                if self.errors == 1:  # once per run; /status shows the state from then on
                    print(f"rt-tagger: OSC {self.error} (going on; shown in the status)",
                          file=sys.stderr)
            return
        self.sent += 1
        self.state = "ok"

    @property
    def status(self) -> dict:
        """What the monitor's ``/status`` shows for this output."""
        return {"target": f"{self.host}:{self.port}", "state": self.state, "sent": self.sent,
                "errors": self.errors, "error": self.error}

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


def _resolve(target: str, host: str, port: int) -> str:
    """The address OSC goes to, or a one-line ConfigError for a target that cannot work."""
    if port == 0:
        raise ConfigError(f"--osc {target}: port 0 cannot receive; give the receiver's port")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except (OSError, UnicodeError) as exc:
        raise ConfigError(f"--osc {target}: unknown host {host!r} "
                          f"({getattr(exc, 'strerror', None) or exc})") from None
    addr = str(infos[0][4][0])
    ip = ipaddress.ip_address(addr.split("%")[0])
    if ip.is_unspecified or ip == ipaddress.IPv4Address("255.255.255.255"):
        raise ConfigError(f"--osc {target}: {addr} is not a single host; give the receiver's address")
    return addr


def _num(v) -> float:
    return FLOOR if v is None else float(v)
