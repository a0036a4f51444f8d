"""Unattended 24/7 runs against hostile clients and flaky inputs (issue #16): HTTP clients that
hang up early or reset, idle connections and a connection cap, stream credentials kept out of
/status and the event log, a radio that drops every ~1.5 s and is followed for good (its
timeline going on), stdin and FIFOs read as finite pipes, ``| head`` ending quietly, and the
config's restart_delay honoured. (OSC targets: test_osc.py; config checks: test_monitor_cli.py.)

Everything is real: the ``rt-tagger`` command as a subprocess, HTTP servers and clients on
127.0.0.1, a real named pipe."""
from __future__ import annotations

import http.server
import json
import os
import re
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import soundfile as sf

from rt_tagger.errors import ConfigError
from rt_tagger.sinks.eventlog import EventLog
from rt_tagger.sinks.http_status import StatusServer
from rt_tagger.sources.decode import Decoder, is_url, redact
from rt_tagger.sources.file import FileSource
from signals import MUSIC_CLIPS, SR, load_music

SECRET = "s3cr3t-pw"


def strings(seconds: float) -> np.ndarray:
    return np.tile(load_music(MUSIC_CLIPS[1]), 3)[: int(seconds * SR)].astype(np.float32)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("clips")
    sf.write(d / "a.wav", strings(6), SR)
    sf.write(d / "short.wav", strings(3), SR)
    sf.write(d / "radio.mp3", strings(30), SR, format="MP3", subtype="MPEG_LAYER_III")
    return d


def start(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "rt_tagger", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def stderr_rest(proc: subprocess.Popen, timeout: float = 60) -> str:
    """The rest of ``proc``'s stderr once it ended, read through the file object
    :func:`status_url` read lines from (lines already in its buffer would be missed by
    ``communicate()``)."""
    proc.wait(timeout=timeout)  # quiet runs (-q, messages to files): no pipe fills
    try:
        return proc.stderr.read()
    finally:
        proc.stderr.close()
        proc.stdout.close()


def status_url(proc: subprocess.Popen, timeout: float = 60) -> str:
    """Reads stderr up to the ``status at URL`` line (printed once the model is loaded)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        line = proc.stderr.readline()
        m = re.search(r"status at (http://\S+?)/status", line)
        if m:
            return m.group(1)
        assert line or proc.poll() is None, f"exited {proc.returncode}: {line}"
    raise AssertionError("no status URL")


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


# ---- a radio station that drops the line every `hold` seconds -----------------------------
class Station:
    """Serves an MP3 like a live station; every connection gets the next ``burst`` seconds of
    audio at once, is held open for ``hold`` s, then dropped (shutdown, as a failing server)."""

    def __init__(self, path, seconds: float, burst: float = 1.5, hold: float = 1.5) -> None:
        data = path.read_bytes()
        rate = len(data) / seconds  # bytes per second of audio
        outer = self
        self.connections = 0
        self.offset = 0
        self.down = False

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                if outer.down:
                    self.send_error(503)
                    return
                outer.connections += 1
                start = outer.offset % len(data)
                piece = data[start : start + int(burst * rate)]
                outer.offset += len(piece)
                self.send_response(200)
                self.send_header("Content-Type", "audio/mpeg")
                self.end_headers()
                try:
                    self.wfile.write(piece)
                    time.sleep(hold)
                    self.connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

            def log_message(self, *a):
                pass

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.srv.daemon_threads = True
        self.port = self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.srv.shutdown()
        self.srv.server_close()


@pytest.mark.slow
def test_a_stream_that_drops_every_few_seconds_is_followed_past_five_drops(clips):
    station = Station(clips / "radio.mp3", 30, burst=1.2, hold=0.2)
    states: list[tuple[str, str]] = []
    src = FileSource(f"http://127.0.0.1:{station.port}/radio.mp3", name="r")
    assert src.max_retries == 5
    try:
        src.start(lambda state, detail: states.append((state, detail)))
        t0 = time.monotonic()
        while sum(s == "reconnecting" for s, _ in states) < 6 and time.monotonic() - t0 < 40:
            assert src.state != "failed", states
            time.sleep(0.05)
    finally:
        src.stop()
        station.close()
    drops = [d for s, d in states if s == "reconnecting"]
    assert len(drops) >= 6, states  # the old counter gave up at the 6th drop
    assert all("retry 1 in" in d for d in drops), drops  # each good connection starts over
    assert [s for s, _ in states].count("running") >= 6
    assert src.samples_pushed >= 6 * 1.0 * src.sample_rate


def test_a_failed_reopen_is_not_reported_running(clips):
    station = Station(clips / "radio.mp3", 30, burst=1.5, hold=0.2)
    states: list[str] = []
    src = FileSource(f"http://127.0.0.1:{station.port}/radio.mp3", name="r", max_retries=2)
    try:
        src.start(lambda state, detail: states.append(state))
        t0 = time.monotonic()
        while "reconnecting" not in states and time.monotonic() - t0 < 20:
            time.sleep(0.02)
        station.down = True  # the station answers 503 from now on
        while not src.done and time.monotonic() - t0 < 20:
            time.sleep(0.05)
    finally:
        src.stop()
        station.close()
    i = states.index("reconnecting")
    assert states[:i] == ["running"], states
    assert set(states[i:-2]) == {"reconnecting"} and states[-2:] == ["failed", "stopped"], states
    assert "giving up after 2" in str(src.error)


@pytest.mark.slow  # ~15-20 s: model load, then about 5 s of a paced stream with its drops
def test_monitor_follows_a_dropping_stream_timeline_goes_on_credentials_hidden(clips, tmp_path):
    station = Station(clips / "radio.mp3", 30, burst=1.5, hold=0.3)
    log, out = tmp_path / "events.jsonl", tmp_path / "out.jsonl"
    url = f"http://listener:{SECRET}@127.0.0.1:{station.port}/radio.mp3"
    p = start("--source", f"r=url:{url}", "--http", "127.0.0.1:0", "--event-log", str(log),
              "--jsonl", str(out), "--duration", "5", "-q", "--hop", "0.5", "--model", "musicnn.mtat",
              "--osc", "127.255.255.255:9")  # a subnet broadcast: every send fails (EACCES)
    try:
        base = status_url(p)
        seen = None
        t0 = time.monotonic()
        while p.poll() is None and time.monotonic() - t0 < 40:
            try:
                st = get_json(f"{base}/status")
            except OSError:  # the run just ended
                break
            if st["sources"]["r"]["t"] > 0 and st["outputs"]["osc"]["errors"]:
                seen = st
                break
            time.sleep(0.2)
        err = stderr_rest(p)
    finally:
        p.kill() if p.poll() is None else None
        station.close()
    assert p.returncode == 0, err
    assert "Traceback" not in err
    assert SECRET not in json.dumps(seen) and "***@127.0.0.1" in seen["sources"]["r"]["input"]
    osc = seen["outputs"]["osc"]
    assert osc["state"] == "failing" and "Permission denied" in osc["error"], osc
    assert len(re.findall(r"rt-tagger: OSC", err)) == 1, err  # once, not per message
    assert SECRET not in log.read_text() and SECRET not in out.read_text()
    msgs = [json.loads(x) for x in out.read_text().splitlines()]
    ts = [m["t"] for m in msgs if m["type"] == "update"]
    reconnects = [m for m in msgs if m["type"] == "event" and m.get("state") == "reconnecting"]
    assert len(reconnects) >= 2 and station.connections >= 3
    # One timeline across the drops, never back to 0: each drop is later than the one before.
    drop_t = [m["t"] for m in reconnects]
    assert drop_t == sorted(drop_t) and drop_t[0] > 1.0 and drop_t[1] > drop_t[0] + 1.0, drop_t
    # --duration 5 reads no audio past 5 s: the last chunk ends at most one hop (0.5 s) before it
    assert ts == sorted(ts) and 5.0 - 0.5 < ts[-1] <= 5.0


# ---- hostile HTTP clients -------------------------------------------------------------------
def _request(port: int, data: bytes = b"GET /status HTTP/1.1\r\nHost: x\r\n\r\n") -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(data)
    return s


def _reset(s: socket.socket) -> None:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()  # RST instead of FIN


@pytest.mark.slow
def test_hostile_http_clients_neither_kill_the_monitor_nor_print(clips, tmp_path):
    out = tmp_path / "out.jsonl"
    p = start("--source", f"a=file:{clips / 'short.wav'}", "--http", "127.0.0.1:0", "--jsonl", str(out),
              "-q", "--hop", "0.5")
    try:
        base = status_url(p)
        port = int(base.rsplit(":", 1)[1])
        for _ in range(15):
            _request(port).close()  # asks, never reads the answer
            _reset(_request(port))  # asks, then resets
            _request(port, b"GET /status HTTP/1.1\r\nHost: x\r\n").close()  # headers unfinished
            _reset(_request(port, b"GET /sta"))
            time.sleep(0.02)
        time.sleep(0.3)
        assert p.poll() is None, "a client that hung up ended the monitor"
        st = get_json(f"{base}/status")  # still serving
        assert set(st["sources"]) == {"a"} and st["http"]["refused"] == 0
        err = stderr_rest(p)
    finally:
        p.kill() if p.poll() is None else None
    assert p.returncode == 0, err
    assert "Traceback" not in err and "Exception" not in err, err
    assert any(json.loads(x)["type"] == "summary" for x in out.read_text().splitlines())


def test_idle_connections_time_out_and_the_cap_refuses_cleanly():
    before = threading.active_count()
    with StatusServer(lambda: {"sources": {}}, "127.0.0.1:0", timeout=0.5, max_connections=3) as srv:
        idle = [socket.create_connection(("127.0.0.1", srv.port), timeout=5) for _ in range(3)]
        time.sleep(0.1)
        with pytest.raises(urllib.error.HTTPError) as info:  # the 4th: a clean 503
            urllib.request.urlopen(f"{srv.url}/status", timeout=5)
        assert info.value.code == 503 and json.loads(info.value.read()) == {"error": "too many connections"}
        for s in idle:  # the server ends idle connections by itself
            assert s.recv(100) == b""
            s.close()
        time.sleep(0.2)
        st = get_json(f"{srv.url}/status")
        assert st["http"]["refused"] == 1 and st["http"]["connections"] == 1
    time.sleep(0.2)
    assert threading.active_count() <= before


def test_status_and_event_log_redact_stream_credentials(tmp_path):
    src = {"input": f"url:http://u:{SECRET}@radio.example/live", "error": None}
    status = {"sources": {"fm": src}, "events": [
        {"type": "event", "event": "source_state", "state": "failed", "source": "fm",
         "detail": f"cannot open rtsp://{SECRET}@10.0.0.1/cam: Connection refused"}]}
    with StatusServer(lambda: status, "127.0.0.1:0") as srv:
        text = urllib.request.urlopen(f"{srv.url}/status", timeout=5).read().decode()
        one = urllib.request.urlopen(f"{srv.url}/sources/fm", timeout=5).read().decode()
    assert SECRET not in text + one and "http://***@radio.example/live" in text
    log = EventLog(tmp_path / "e.jsonl")
    log.write(dict(status["events"][0], t=1.0))
    log.close()
    line = json.loads((tmp_path / "e.jsonl").read_text())
    assert line["detail"] == "cannot open rtsp://***@10.0.0.1/cam: Connection refused"
    assert redact("http://host/a?mail=x@y") == "http://host/a?mail=x@y"  # not userinfo


def test_http_on_ipv6_loopback_or_one_clear_line():
    try:  # does this machine have IPv6 loopback at all? (asked of the kernel, not of rt-tagger)
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        with pytest.raises(ConfigError, match=r"^--http \[::1\]:0: cannot listen: .*IPv6"):
            StatusServer(lambda: {"sources": {}}, "[::1]:0")
        return
    with StatusServer(lambda: {"sources": {}}, "[::1]:0") as srv:
        assert srv.url.startswith("http://[::1]:")
        assert "sources" in get_json(f"{srv.url}/status")
    with pytest.raises(ConfigError, match="brackets"):
        StatusServer(lambda: {}, "::1:0")


def test_stdout_reader_gone_ends_quietly_and_keeps_the_csv(clips, tmp_path):
    csv = tmp_path / "tags.csv"
    p = start(str(clips / "a.wav"), "--jsonl", "-", "-q", "--hop", "0.25", "--csv", str(csv))
    lines = [p.stdout.readline() for _ in range(8)]  # status, updates ...
    assert all(x.startswith("{") for x in lines)
    p.stdout.close()  # `| head -8`: the reader is gone, the rest of the run must stay quiet
    err = p.stderr.read()
    p.stderr.close()
    p.wait(timeout=60)
    assert p.returncode in (0, 141), (p.returncode, err)  # not killed by SIGPIPE (-13)
    assert "Traceback" not in err and "Exception ignored" not in err, err
    updates = sum('"update"' in x for x in lines)
    assert csv.exists() and len(csv.read_text().splitlines()) >= 1 + updates  # header + rows


# ---- pipes ----------------------------------------------------------------------------------
def test_stdin_is_a_finite_pipe(clips):
    assert not is_url("pipe:0") and not is_url("-") and is_url("http://x/y")
    p = subprocess.run([sys.executable, "-m", "rt_tagger", "-", "--jsonl", "-", "-q"],
                       input=(clips / "short.wav").read_bytes(), capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr.decode()
    msgs = [json.loads(x) for x in p.stdout.decode().splitlines()]
    assert msgs[0]["input"].startswith("pipe ")
    assert not [m for m in msgs if m.get("state") in ("reconnecting", "failed")]
    (summary,) = [m for m in msgs if m["type"] == "summary"]
    assert summary["samples_in"] == 3 * SR


def test_a_fifo_is_read_as_a_stream(clips, tmp_path):
    fifo = tmp_path / "audio.fifo"
    os.mkfifo(fifo)
    data = (clips / "short.wav").read_bytes()

    def writer():
        with open(fifo, "wb") as f:
            f.write(data)

    threading.Thread(target=writer, daemon=True).start()
    src = FileSource(fifo, name="f")  # was: "audio.fifo is empty (0 bytes)"
    assert src.kind == "pipe" and src.finite and not src.reconnect and not src.realtime
    ring = src.start()
    got = 0
    buf = np.empty(8192, np.float32)
    t0 = time.monotonic()
    while not (src.done and ring.available == 0) and time.monotonic() - t0 < 20:
        ring.wait(1, timeout=0.05)
        got += ring.read_into(buf)
    src.stop()
    assert src.error is None and got == 3 * SR
    with pytest.raises(Exception, match="no such file"):
        Decoder(tmp_path / "missing.wav")


@pytest.mark.slow
def test_restart_delay_from_the_config_is_honoured(clips, tmp_path):
    station = Station(clips / "radio.mp3", 30, burst=1.5, hold=0.2)
    log = tmp_path / "events.jsonl"
    cfg = tmp_path / "m.toml"
    cfg.write_text(f'restart_delay = 2\nevent_log = "{log}"\nquiet = true\n[sources]\n'
                   f'r = "url:http://127.0.0.1:{station.port}/radio.mp3"\n')
    p = start("--config", str(cfg))
    try:
        t0 = time.monotonic()
        while station.connections < 1 and time.monotonic() - t0 < 60:
            time.sleep(0.05)
        station.down = True  # 503 from now on: retries run out (~16 s), then restarts every 2 s
        text = ""
        while text.count('"source_restart"') < 2 and time.monotonic() - t0 < 90:
            time.sleep(0.5)
            text = log.read_text() if log.exists() else ""
    finally:
        p.terminate()
        p.communicate(timeout=30)
        station.close()
    events = [json.loads(x) for x in text.splitlines()]
    failed = [e for e in events if e.get("state") == "failed" and "restarting in" in e["detail"]]
    assert failed and failed[0]["detail"].endswith("restarting in 2 s"), failed
    restart = next(e for e in events if e.get("event") == "source_restart"
                   and _iso(e["time"]) >= _iso(failed[0]["time"]))
    wait = _iso(restart["time"]) - _iso(failed[0]["time"])
    assert 1.8 <= wait <= 4.0, wait  # was 30 s whatever the config said


def _iso(text: str) -> float:
    import datetime

    return datetime.datetime.fromisoformat(text).timestamp()
