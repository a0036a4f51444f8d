"""Several real sources at once on one shared engine: realtime-paced files with injected
silence and level jumps, an HTTP stream served here that is killed and comes back, a manual
restart of one source, batched inference equal to single-source tagging, the HTTP status."""
from __future__ import annotations

import http.server
import json
import socket
import threading
import time
import urllib.request

import numpy as np
import pytest
import soundfile as sf

from rt_tagger.monitor import AlarmConfig, LoudnessMeter, Monitor, SourceSpec
from rt_tagger.sinks import validate_message
from rt_tagger.sinks.http_status import StatusServer
from rt_tagger.tagger import Tagger
from signals import DATA, MUSIC_CLIPS, SR, load_music

ALARMS = AlarmConfig(silence_seconds=2.0, loudness_high=-12.0, loudness_low=-30.0, loudness_seconds=2.0)
DELIVERY_TOL = 0.6  # s: wall-clock delay from the end of the audio that decides an alarm to its message


@pytest.fixture(scope="module")
def tagger():
    import torch

    torch.set_num_threads(1)
    return Tagger("musicnn.mtat", hop=0.5, threads=1)


def strings(seconds: float, gain_db: float = 0.0) -> np.ndarray:
    y = np.tile(load_music(MUSIC_CLIPS[1]), 2)[: int(seconds * SR)]
    return (y * 10 ** (gain_db / 20)).astype(np.float32)


def write(path, y, **kw):
    sf.write(path, y, SR, **({"subtype": "FLOAT"} | kw))
    return path


class _Paced(http.server.BaseHTTPRequestHandler):
    """Streams one MP3 at about real time, like a radio station; stops when killed."""

    data = b""
    seconds = 1.0
    kill = threading.Event()

    def do_GET(self):  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Type", "audio/mpeg")
        self.end_headers()
        step = max(1, int(len(self.data) / self.seconds / 10))  # 100 ms of audio per write
        try:
            for i in range(0, len(self.data), step):
                if self.kill.is_set():
                    self.connection.shutdown(socket.SHUT_RDWR)  # the station drops the line
                    return
                self.wfile.write(self.data[i : i + step])
                time.sleep(0.1)
        except OSError:
            pass

    def log_message(self, *a):
        pass


class Station:
    def __init__(self, path, seconds: float) -> None:
        self.handler = type("H", (_Paced,), {"data": path.read_bytes(), "seconds": seconds,
                                             "kill": threading.Event()})
        self.port = 0
        self.start()

    def start(self) -> None:
        self.handler.kill.clear()
        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), self.handler)
        self.srv.daemon_threads = True
        self.port = self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.handler.kill.set()
        self.srv.shutdown()
        self.srv.server_close()


def collect(mon: Monitor, until, timeout: float) -> list[tuple[float, dict]]:
    out, t0 = [], time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        try:
            msg = mon.poll(0.1)
        except StopIteration:
            return out
        if msg is not None:
            validate_message(msg)
            json.dumps(msg, allow_nan=False)
            out.append((time.perf_counter(), msg))
            until(msg, out)
    raise AssertionError(f"monitor still running after {timeout} s")


def events(msgs, source, name=None):
    return [(w, m) for w, m in msgs if m["type"] == "event" and m["source"] == source
            and (name is None or m["event"] == name)]


@pytest.mark.slow
def test_three_live_sources_alarms_and_stream_reconnect(tagger, tmp_path):
    gap = write(tmp_path / "gap.wav", np.concatenate([strings(4), np.zeros(3 * SR, np.float32), strings(3)]))
    jump = write(tmp_path / "jump.wav", np.concatenate([strings(3), strings(6, 20), strings(3)]))
    station = Station(write(tmp_path / "radio.mp3", strings(20), format="MP3", subtype="MPEG_LAYER_III"), 20)
    url = f"http://127.0.0.1:{station.port}/radio.mp3"
    specs = [SourceSpec("gap", f"file:{gap}", alarms=ALARMS), SourceSpec("jump", f"file:{jump}", alarms=ALARMS),
             SourceSpec("radio", f"url:{url}", alarms=ALARMS)]
    mon = Monitor(tagger, specs, restart_delay=1.0)
    status_seen = {}
    phase = {"killed": None, "back": None}

    def until(msg, out):
        now = time.perf_counter()
        if msg["source"] == "radio" and msg["type"] == "event" and msg["event"] == "source_state":
            if msg["state"] == "running" and phase["killed"] is None:
                phase["running_at"] = now
        if phase["killed"] is None and "running_at" in phase and now - phase["running_at"] > 4:
            station.stop()  # kill the stream mid-song ...
            phase["killed"] = now
            threading.Timer(1.0, station.start).start()  # ... and bring it back a second later
            phase["back"] = now + 1.0 + 1.5  # updates after this come from the new connection
        if not status_seen and now - phase.get("running_at", now) > 6:
            with urllib.request.urlopen(f"{server.url}/status", timeout=5) as r:
                status_seen.update(json.loads(r.read()))
        ended = {m["source"] for _, m in out if m["type"] == "summary"}
        radio_updates_after = [m for w, m in out if m["type"] == "update" and m["source"] == "radio"
                               and phase["back"] is not None and w > phase["back"]]
        if ended >= {"gap", "jump"} and len(radio_updates_after) >= 3:
            mon.end_input()

    with mon, StatusServer(mon.status, "127.0.0.1:0") as server:
        mon.start()
        msgs = collect(mon, until, timeout=60)
    station.stop()

    # Every source produced tags, its loudness rides along in the updates.
    for name in ("gap", "jump", "radio"):
        ups = [m for _, m in msgs if m["type"] == "update" and m["source"] == name]
        assert len(ups) >= 8 and ups[-1]["loudness"]["short_term"] is not None
    running = {m["source"]: w for w, m in msgs if m["type"] == "event" and m["event"] == "source_state"
               and m["state"] == "running"}

    # Dead air on "gap": audio stops at 4.0 s; the 400 ms level empties by 4.4 s; +2 s hold.
    (w_on, on), = events(msgs, "gap", "silence_start")
    (w_off, off), = events(msgs, "gap", "silence_end")
    assert 6.0 <= on["t"] <= 6.5 and 7.0 < off["t"] <= 7.1 + 1e-9
    # Delivered in real time, not at the end: an alarm arrives (wall clock minus audio time)
    # no later than the tag updates of the same source do (they wait for inference too).
    lag = np.median([w - m["t"] for w, m in msgs if m["type"] == "update" and m["source"] == "gap"])
    for w, m in ((w_on, on), (w_off, off)):
        assert -DELIVERY_TOL < (w - m["t"]) - lag < DELIVERY_TOL, (m, w - m["t"], lag)
    assert not events(msgs, "gap", "loudness_low")  # silence is dead air, not "too quiet"

    # +20 dB from 3 s to 9 s on "jump": short-term (3 s) crosses -12 LUFS, then 2 s hold.
    hi = events(msgs, "jump", "loudness_high")
    assert [m["state"] for _, m in hi] == ["start", "end"]
    assert 3.0 + 2.0 <= hi[0][1]["t"] <= 3.0 + 3.0 + 2.0
    assert 9.0 < hi[1][1]["t"] <= 9.0 + 3.0
    assert not events(msgs, "jump", "silence_start")

    # The stream was killed, reconnected by itself, and tagged again; the files never noticed.
    states = [m["state"] for _, m in events(msgs, "radio", "source_state")]
    i = states.index("reconnecting")
    assert "running" in states[:i] and "running" in states[i:], states
    assert not events(msgs, "gap", "source_restart") and running.keys() >= {"gap", "jump"}

    # The HTTP status showed all three, with states and loudness, while they ran.
    src = status_seen["sources"]
    assert set(src) == {"gap", "jump", "radio"}
    assert all(s["state"] in ("running", "reconnecting", "ended") and "momentary" in s["loudness"]
               and s["top"] for s in src.values())


@pytest.mark.parametrize("workers", [1, 2])
def test_batched_inference_across_sources_equals_tagging_each_alone(tagger, tmp_path, workers):
    paths = [DATA / MUSIC_CLIPS[0], DATA / MUSIC_CLIPS[2], DATA / MUSIC_CLIPS[1]][: workers + 1]
    specs = [SourceSpec(f"s{i}", f"file:{p}", realtime=False) for i, p in enumerate(paths)]
    mon = Monitor(tagger, specs, workers=workers, batch=16)  # offline: queues fill, batches form
    with mon:
        mon.start()
        msgs = collect(mon, lambda m, o: None, timeout=60)
        pipes = dict(mon.session.streams)
        taps = mon.taps
    assert max(mon.batches) > 1, mon.batches  # chunks of both sources shared engine calls
    assert sum(k * v for k, v in mon.batches.items()) == sum(len(p.taggram) for p in pipes.values())
    for i, path in enumerate(paths):
        got = np.stack([r[3] for r in sorted(pipes[f"s{i}"].taggram, key=lambda r: r[0])])
        np.testing.assert_allclose(got, tagger.tag_file(path).taggram, atol=1e-5)
        ref = LoudnessMeter(SR)
        ref.push(load_music(path.name))
        assert taps[f"s{i}"].meter.integrated() == pytest.approx(ref.integrated(), abs=1e-6)
    assert sum(m["type"] == "summary" for _, m in msgs) == len(paths)
    for i in range(len(paths)):  # each aggregator saw its chunks in order
        ts = [m["t"] for _, m in msgs if m["type"] == "update" and m["source"] == f"s{i}"]
        assert ts == sorted(ts) and len(ts) == len(pipes[f"s{i}"].taggram)


@pytest.mark.slow
def test_restart_one_source_while_the_other_runs(tagger, tmp_path):
    a = write(tmp_path / "a.wav", strings(8))
    b = write(tmp_path / "b.wav", strings(8))
    mon = Monitor(tagger, [SourceSpec("a", f"file:{a}"), SourceSpec("b", f"file:{b}")])
    done = {}

    def until(msg, out):
        if msg["type"] == "update" and msg["source"] == "b" and msg["t"] >= 3 and "r" not in done:
            done["r"] = time.perf_counter()
            mon.restart("b")

    with mon:
        mon.start()
        msgs = collect(mon, until, timeout=40)
    (w_r, restart), = events(msgs, "b", "source_restart")
    assert restart["restarts"] == 1
    a_up = [(w, m["t"]) for w, m in msgs if m["type"] == "update" and m["source"] == "a"]
    b_up = [m["t"] for w, m in msgs if m["type"] == "update" and m["source"] == "b" and w > w_r]
    ts = [t for _, t in a_up]
    assert ts == sorted(ts) and ts[-1] > 7  # "a" went on to its end, time never reset
    gaps = np.diff([w for w, _ in a_up])
    assert gaps.max() < 1.5, "the restart of b stalled a"
    b_before = [m["t"] for w, m in msgs if m["type"] == "update" and m["source"] == "b" and w < w_r]
    # "b" started its file again from the top (first chunk ~3 s in), on the same timeline: the
    # restart is stamped where b had got to, and its times go on from there, never back to 0.
    assert restart["t"] >= max(b_before) >= 3
    assert b_up and b_up == sorted(b_up) and 0 < b_up[0] - restart["t"] < 4.5
    assert sum(m["type"] == "summary" and m["source"] == "b" for _, m in msgs) == 1  # the new run's
    assert [m["source"] for _, m in msgs if m["type"] == "status"].count("b") == 2
