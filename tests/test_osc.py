"""OSC output against a real python-osc server on loopback."""
from __future__ import annotations

import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from rt_tagger.errors import ConfigError
from rt_tagger.sinks.osc import OscSender, osc_name, parse_hostport
from signals import DATA, MUSIC_CLIPS

osc_server = pytest.importorskip("pythonosc.osc_server")
from pythonosc.dispatcher import Dispatcher  # noqa: E402


@pytest.fixture
def receiver():
    got: list[tuple[str, tuple]] = []
    lock = threading.Lock()

    def handler(address, *args):
        with lock:
            got.append((address, args))

    d = Dispatcher()
    d.set_default_handler(handler)
    srv = osc_server.ThreadingOSCUDPServer(("127.0.0.1", 0), d)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    yield f"127.0.0.1:{srv.server_address[1]}", got
    srv.shutdown()
    srv.server_close()


def wait_for(got, n, timeout=5.0):
    t0 = time.perf_counter()
    while len(got) < n and time.perf_counter() - t0 < timeout:
        time.sleep(0.01)
    return list(got)


def test_updates_and_events_arrive(receiver):
    target, got = receiver
    osc = OscSender(target, topk=2)
    osc.handle({"type": "update", "source": "fm", "t": 1.0, "probs": {"female vocal": 0.75, "rock": 0.5, "x": 0.1},
                "top": [["female vocal", 0.75], ["rock", 0.5], ["x", 0.1]],
                "loudness": {"momentary": -20.5, "short_term": None, "level_db": -18.0}})
    osc.handle({"type": "event", "source": "fm", "t": 2.0, "event": "tag_on", "tag": "rock", "p": 0.6})
    osc.handle({"type": "event", "source": "fm", "t": 3.0, "event": "silence_start", "since": 1.0,
                "level_db": None, "threshold_db": -50})
    osc.handle({"type": "status", "source": "fm", "t": 0.0})  # not sent
    msgs = dict(wait_for(got, 6))
    assert msgs["/rt-tagger/fm/tag/female_vocal"] == pytest.approx((0.75,))
    assert msgs["/rt-tagger/fm/tag/rock"] == pytest.approx((0.5,))
    assert "/rt-tagger/fm/tag/x" not in msgs  # top-2 only
    assert msgs["/rt-tagger/fm/top"][0::2] == ("female vocal", "rock")
    assert msgs["/rt-tagger/fm/loudness"] == pytest.approx((-20.5, -200.0, -18.0))
    events = [a for addr, a in got if addr == "/rt-tagger/fm/event"]
    assert events == [("tag_on", "rock"), ("silence_start",)]
    assert osc.sent == 6 and osc.errors == 0
    osc.close()


def test_names_and_addresses():
    assert osc_name("hard rock/metal?") == "hard_rock_metal"
    assert parse_hostport("9000") == ("127.0.0.1", 9000)
    assert parse_hostport("10.0.0.2:57120") == ("10.0.0.2", 57120)
    with pytest.raises(ConfigError, match=r"\[HOST:\]PORT"):
        parse_hostport("host:port")
    with pytest.raises(ConfigError, match="0-65535"):
        parse_hostport("70000")


def test_monitor_top_k_reaches_the_osc_server(receiver):
    from rt_tagger.monitor import Monitor, SourceSpec
    from rt_tagger.tagger import Tagger

    target, got = receiver
    tagger = Tagger("musicnn.mtat", hop=1.0, topk=3, threads=1)
    updates = []
    spec = SourceSpec("deck-a", f"file:{DATA / MUSIC_CLIPS[2]}", realtime=False)
    with OscSender(target, topk=3) as osc, Monitor(tagger, [spec]) as mon:
        mon.start()
        for msg in mon.messages():
            osc.handle(msg)
            if msg["type"] == "update":
                updates.append(msg)
            time.sleep(0.002)  # UDP on loopback: do not outrun the receiving thread
    n = sum(1 + 1 + len(u["top"]) for u in updates)  # tags, /top and /loudness per update
    received = wait_for(got, n)
    tags = [(addr, a) for addr, a in received if "/tag/" in addr]
    assert len(tags) == 3 * len(updates) >= 24
    for u, i in zip(updates, range(0, len(tags), 3)):
        sent = [(f"/rt-tagger/deck-a/tag/{osc_name(t)}", p) for t, p in u["top"]]
        got_u = [(addr, a[0]) for addr, a in tags[i : i + 3]]
        assert [a for a, _ in got_u] == [a for a, _ in sent]
        np.testing.assert_allclose([p for _, p in got_u], [p for _, p in sent], atol=1e-6)
    assert any(addr == "/rt-tagger/deck-a/event" and a[0] == "source_state" for addr, a in received)


# ---- issue #16: the target is checked at start-up, send errors surface once ----------
@pytest.mark.parametrize("target, text", [
    ("255.255.255.255:9000", "not a single host"), ("127.0.0.1:0", "port 0"),
    ("no-such-host.invalid:9000", "unknown host"), ("0.0.0.0:9000", "not a single host"),
    ("::1:9000", "brackets")])
def test_osc_target_checked_at_start_up(target, text):
    with pytest.raises(ConfigError) as info:
        OscSender(target)
    assert text in str(info.value) and "\n" not in str(info.value)


def test_osc_bad_target_is_one_line_from_the_command():
    p = subprocess.run([sys.executable, "-m", "rt_tagger", "--source", f"a=file:{DATA / MUSIC_CLIPS[0]}",
                        "--osc", "255.255.255.255:9000", "-q"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and p.stderr.startswith("rt-tagger: --osc 255.255.255.255:9000: "), p.stderr
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr


def test_osc_send_errors_surface_once_then_recover(capsys):
    with OscSender("127.0.0.1:9") as osc:
        huge = {"type": "update", "source": "a", "top": [("x" * 70000, 0.5)]}  # > one datagram
        for _ in range(5):
            osc.handle(huge)
        assert osc.state == "failing" and osc.errors >= 5 and "Message too long" in osc.error
        osc.handle({"type": "update", "source": "a", "top": [("rock", 0.5)]})
        assert osc.status["state"] == "ok" and osc.status["sent"] >= 2
    err = capsys.readouterr().err
    assert err.count("rt-tagger: OSC") == 1 and "Message too long" in err
