"""A small read-only JSON status endpoint for dashboards (stdlib ``http.server``).

``GET /status`` (or ``/``): every source's state, current top tags, active tags, alarms and
loudness, plus recent events; ``GET /sources/<name>``: one source. Binds to 127.0.0.1 unless
told otherwise (``[::1]:PORT`` for IPv6); only GET and HEAD are served.

Built to sit on a machine that runs for weeks, in front of clients nobody controls:

* a client that goes away early (does not read the body, closes in the middle of its headers,
  resets the connection) costs nothing: no traceback, and never a signal - replies are sent
  with ``MSG_NOSIGNAL``, so even a process whose ``SIGPIPE`` is fatal survives;
* every socket operation times out after ``timeout`` seconds, so idle connections end;
* at most ``max_connections`` requests are served at once; one more gets a short
  ``503`` (``{"error": "too many connections"}``) on a connection that itself times out fast;
* credentials in stream URLs (``user:password@``) never leave the process.

``/status`` also carries an ``http`` object: connections served now, refused, and client
errors (early closes and resets) so far.
"""
from __future__ import annotations

import http.server
import io
import json
import socket
import socketserver
import sys
import threading
from typing import Callable

from ..errors import ConfigError
from ..sources.decode import redact, redact_all
from .osc import parse_hostport

_NOSIGNAL = getattr(socket, "MSG_NOSIGNAL", 0)  # Linux: EPIPE instead of SIGPIPE


class StatusServer:
    """Serves ``status()`` (a JSON-ready dict) on ``[HOST:]PORT`` from a daemon thread."""

    def __init__(self, status: Callable[[], dict], address: str = "127.0.0.1:8000", *,
                 timeout: float = 10.0, max_connections: int = 32) -> None:
        host, port = parse_hostport(address)
        self._status = status
        try:
            family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        except (OSError, UnicodeError) as exc:
            raise ConfigError(f"--http {address}: unknown host {host!r} "
                              f"({getattr(exc, 'strerror', None) or exc})") from None
        handler, refuser = _handlers(self, timeout)
        try:
            self._server = _Server((host, port), handler, refuser, family=family,
                                   max_connections=max_connections)
        except OSError as exc:
            hint = " (is IPv6 enabled on this machine?)" if family == socket.AF_INET6 else ""
            raise ConfigError(f"--http {address}: cannot listen: {exc.strerror or exc}{hint}") from None
        self.host, self.port = self._server.server_address[:2]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="rt-tagger-http-status")

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def counters(self) -> dict:
        """Connections being served now, refused (over the cap) and client errors so far."""
        s = self._server
        return {"connections": s.active, "refused": s.refused, "client_errors": s.client_errors}

    def start(self) -> "StatusServer":
        self._thread.start()
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> "StatusServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def body(self, path: str) -> tuple[int, dict]:
        path = path.split("?", 1)[0].rstrip("/") or "/status"
        if path == "/status":
            return 200, redact_all(dict(self._status(), http=self.counters))
        if path.startswith("/sources/"):
            name = path[len("/sources/"):]
            src = self._status().get("sources", {}).get(name)
            if src is not None:
                return 200, redact_all(src)
            return 404, {"error": f"no source named {redact(name)!r}"}
        return 404, {"error": "unknown path; try /status or /sources/<name>"}


class _Server(http.server.HTTPServer):
    """One thread per connection, at most ``max_connections`` of them serving; the rest are
    answered 503 by ``refuser``. Client errors are counted, never printed."""

    def __init__(self, address, handler, refuser, *, family: int, max_connections: int) -> None:
        self.address_family = family
        self.max_connections = max(1, int(max_connections))
        self.refuser = refuser
        self.active = self.refused = self.client_errors = 0
        self._lock = threading.Lock()
        super().__init__(address, handler)

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # not HTTPServer's: no reverse DNS lookup
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    def process_request(self, request, client_address) -> None:
        with self._lock:
            over = self.active >= self.max_connections
            if over:
                self.refused += 1
            else:
                self.active += 1
        cls = self.refuser if over else self.RequestHandlerClass
        threading.Thread(target=self._serve, args=(cls, request, client_address, over),
                         daemon=True, name="rt-tagger-http-client").start()

    def _serve(self, cls, request, client_address, over: bool) -> None:
        try:
            cls(request, client_address, self)
        except Exception:
            self.handle_error(request, client_address)
        finally:
            self.shutdown_request(request)
            if not over:
                with self._lock:
                    self.active -= 1

    def handle_error(self, request, client_address) -> None:
        exc = sys.exc_info()[1]
        with self._lock:
            self.client_errors += 1
        if not isinstance(exc, OSError):  # a bug of ours, not a client going away: one line
            print(f"rt-tagger: http status: {type(exc).__name__}: {exc}", file=sys.stderr)


class _NoSignalWriter(io.BufferedIOBase):
    """``wfile`` that sends with ``MSG_NOSIGNAL``: a closed peer is an error, not a signal."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self._sock.sendall(data, _NOSIGNAL)
        with memoryview(data) as view:
            return view.nbytes

    def fileno(self) -> int:
        return self._sock.fileno()


def _handlers(owner: StatusServer, timeout: float):
    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "rt-tagger"

        def setup(self) -> None:
            self.timeout = timeout  # every read and write of this connection
            super().setup()
            self.wfile = _NoSignalWriter(self.connection)

        def _reply(self, send_body: bool) -> None:
            try:
                code, body = owner.body(self.path)
            except Exception as exc:  # a status bug must not kill the server thread
                code, body = 500, {"error": f"{type(exc).__name__}: {exc}"}
            self._send(code, body, send_body)

        def _send(self, code: int, body: dict, send_body: bool) -> None:
            data = json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            if send_body:
                self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self._reply(True)

        def do_HEAD(self) -> None:  # noqa: N802
            self._reply(False)

        def log_message(self, *args) -> None:  # quiet: the terminal view owns stdout
            pass

    class Refuser(Handler):
        """Over the connection cap: read the request (briefly), answer 503, close."""

        def setup(self) -> None:
            super().setup()
            self.connection.settimeout(min(timeout, 2.0))

        def _reply(self, send_body: bool) -> None:
            self._send(503, {"error": "too many connections"}, send_body)

    return Handler, Refuser
