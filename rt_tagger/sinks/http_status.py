"""A small read-only JSON status endpoint for dashboards (stdlib ``http.server``).

``GET /status`` (or ``/``): every source's state, current top tags, active tags, alarms and
loudness, plus recent events; ``GET /sources/<name>``: one source. Binds to 127.0.0.1 unless
told otherwise; only GET and HEAD are served.
"""
from __future__ import annotations

import http.server
import json
import threading
from typing import Callable

from ..errors import ConfigError
from .osc import parse_hostport


class StatusServer:
    """Serves ``status()`` (a JSON-ready dict) on ``[HOST:]PORT`` from a daemon thread."""

    def __init__(self, status: Callable[[], dict], address: str = "127.0.0.1:8000") -> None:
        host, port = parse_hostport(address)
        self._status = status
        handler = _handler(self)
        try:
            self._server = http.server.ThreadingHTTPServer((host, port), handler)
        except OSError as exc:
            raise ConfigError(f"--http {address}: cannot listen: {exc.strerror or exc}") from None
        self._server.daemon_threads = True
        self.host, self.port = self._server.server_address[:2]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="rt-tagger-http-status")

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

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
            return 200, self._status()
        if path.startswith("/sources/"):
            name = path[len("/sources/"):]
            src = self._status().get("sources", {}).get(name)
            if src is not None:
                return 200, src
            return 404, {"error": f"no source named {name!r}"}
        return 404, {"error": "unknown path; try /status or /sources/<name>"}


def _handler(owner: StatusServer):
    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "rt-tagger"

        def _reply(self, send_body: bool) -> None:
            try:
                code, body = owner.body(self.path)
            except Exception as exc:  # a status bug must not kill the server thread
                code, body = 500, {"error": f"{type(exc).__name__}: {exc}"}
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

    return Handler
