"""Alarms, config file, event log and HTTP status without the model (fast, deterministic)."""
from __future__ import annotations

import json
import urllib.error
import urllib.request

import numpy as np
import pytest

from rt_tagger.errors import ConfigError
from rt_tagger.monitor.alarms import AlarmConfig, MeterTap
from rt_tagger.monitor.config import load_config
from rt_tagger.monitor.runner import SourceSpec
from rt_tagger.sinks import validate_message
from rt_tagger.sinks.eventlog import EventLog
from rt_tagger.sinks.http_status import StatusServer
from signals import MUSIC_CLIPS, SR, load_music

FAST = AlarmConfig(silence_seconds=2.0, loudness_high=-12.0, loudness_low=-30.0, loudness_seconds=2.0)


def feed(tap: MeterTap, y: np.ndarray, seed: int = 0) -> list[dict]:
    """Push ``y`` in random block sizes (as the feature thread does); all events."""
    rng = np.random.default_rng(seed)
    out, pos = [], 0
    while pos < y.size:
        k = int(rng.integers(100, 3000))
        out += tap(y[pos : pos + k])
        pos += k
    for m in out:
        m.setdefault("source", "x")
        validate_message(m)
    return out


def music(seconds: float, gain_db: float = 0.0) -> np.ndarray:
    y = np.tile(load_music(MUSIC_CLIPS[1]), 3)[: int(seconds * SR)]  # strings: no gaps
    return (y * 10 ** (gain_db / 20)).astype(np.float32)


def test_silence_alarm_fires_after_the_stated_duration_and_clears_on_recovery():
    y = np.concatenate([music(4), np.zeros(3 * SR, np.float32), music(2)])
    ev = feed(MeterTap(SR, FAST), y)
    kinds = [e["event"] for e in ev]
    assert kinds == ["silence_start", "silence_end"], kinds
    start, end = ev
    # The 400 ms level window empties between 4.0 and 4.4 s; the alarm needs 2 s more.
    assert 4.0 <= start["since"] <= 4.4
    assert start["t"] == pytest.approx(start["since"] + 2.0, abs=1e-6)
    # Audio comes back at 7.0 s: the first 100 ms sub-block holding it ends the alarm.
    assert 7.0 < end["t"] <= 7.1 + 1e-9
    assert end["silent_for"] == pytest.approx(end["t"] - start["since"], abs=1e-3)


def test_quiet_noise_above_threshold_is_not_silence():
    rng = np.random.default_rng(1)
    cfg = AlarmConfig(silence_seconds=2.0, loudness_high=None, loudness_low=None)
    y = (10 ** (-45 / 20) * rng.standard_normal(8 * SR)).astype(np.float32)  # -45 dBFS RMS
    assert [e["event"] for e in feed(MeterTap(SR, cfg), y)] == []
    y = (10 ** (-55 / 20) * rng.standard_normal(8 * SR)).astype(np.float32)  # -55 dBFS RMS
    assert [e["event"] for e in feed(MeterTap(SR, cfg), y)] == ["silence_start"]


def test_loudness_alarms_fire_on_level_jumps_and_clear():
    # strings at about -17 LUFS (short-term -18..-16): 6 s normal, 8 s at +20 dB, 8 s normal,
    # 8 s at -18 dB (short-term -36..-34 LUFS, level still above the -50 dBFS silence line)
    y = np.concatenate([music(6), music(8, 20), music(8), music(8, -18)])
    ev = feed(MeterTap(SR, FAST), y)
    got = [(e["event"], e.get("state")) for e in ev]
    assert got == [("loudness_high", "start"), ("loudness_high", "end"),
                   ("loudness_low", "start")], got
    hi_on, hi_off, lo_on = ev
    # Short-term loudness (3 s) crosses -12 LUFS within 3 s of the jump at 6 s; +2 s hold.
    assert 6.0 + 2.0 <= hi_on["t"] <= 6.0 + 3.0 + 2.0 and hi_on["lufs"] > -12
    assert 14.0 < hi_off["t"] <= 14.0 + 3.0 and hi_off["lufs"] < -13  # 1 LU hysteresis
    assert 22.0 + 2.0 <= lo_on["t"] <= 22.0 + 3.0 + 2.0 and lo_on["lufs"] < -30


def test_silence_is_not_a_low_loudness_alarm():
    y = np.concatenate([music(4), np.zeros(6 * SR, np.float32)])
    kinds = [e["event"] for e in feed(MeterTap(SR, FAST), y)]
    assert kinds == ["silence_start"]


def test_stereo_mix_weight_follows_the_dual_mono_convention():
    from rt_tagger.monitor.loudness import LoudnessMeter

    y = music(6).astype(np.float64)
    stereo = LoudnessMeter(SR, 2)
    stereo.push(np.stack([y, y], axis=1))
    tap = MeterTap(SR, weight=2.0)  # what the runner uses for a stereo source mixed to mono
    tap(y.astype(np.float32))
    assert tap.meter.integrated() == pytest.approx(stereo.integrated(), abs=1e-9)


def test_alarm_config_errors():
    with pytest.raises(ConfigError, match="silence_seconds must be > 0"):
        AlarmConfig(silence_seconds=0)
    with pytest.raises(ConfigError, match="loudness_low .* must be below"):
        AlarmConfig(loudness_high=-20, loudness_low=-10)
    with pytest.raises(ConfigError, match="below 0 dBFS"):
        AlarmConfig(silence_db=3)


CONFIG = """
model = "musicnn.mtat"
hop = 1.0
osc = "127.0.0.1:9000"
event_log = "events.jsonl"
restart_delay = 5

[alarms]
silence_seconds = 4
loudness_high = false

[sources]
studio = "device:pulse"
[sources.fm]
input = "url:http://127.0.0.1:8000/x.mp3"
silence_seconds = 1.5
[sources.backup]
input = "file:backup.mp3"
realtime = false
"""


def test_config_file(tmp_path):
    path = tmp_path / "m.toml"
    path.write_text(CONFIG)
    cfg = load_config(path)
    assert [(s.name, s.target, s.realtime) for s in cfg.sources] == [
        ("studio", "device:pulse", True), ("fm", "url:http://127.0.0.1:8000/x.mp3", True),
        ("backup", "file:backup.mp3", False)]
    studio, fm, _ = cfg.sources
    assert studio.alarms.silence_seconds == 4 and studio.alarms.loudness_high is None
    assert fm.alarms.silence_seconds == 1.5 and fm.alarms.loudness_high is None
    assert studio.alarms.silence_db == -50 and studio.alarms.loudness_low == -36  # defaults
    assert cfg.options == {"osc": "127.0.0.1:9000", "event_log": "events.jsonl", "restart_delay": 5}
    assert (cfg.stream.model, cfg.stream.hop) == ("musicnn.mtat", 1.0)  # the StreamConfig part


@pytest.mark.parametrize("text,match", [
    ("modle = 'x'", "unknown key.*modle"),
    ("[sources]\na = 'mic:1'", "must start with device:, file: or url:"),
    ("[sources]\n'bad name' = 'file:x'", "source name 'bad name'"),
    ("[sources.a]\nrealtime = true", "needs input"),
    ("[alarms]\nsilence_seconds = 'long'", "wrong type"),
    ("[alarms]\nloudness_low = -5", "must be below"),
    ("hop = [1]", "hop has the wrong type"),
    ("x = = 1", "not valid TOML"),
])
def test_config_errors_are_one_line(tmp_path, text, match):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match) as err:
        load_config(path)
    assert "\n" not in str(err.value)


def test_source_option_parsing():
    s = SourceSpec.parse("fm=url:http://x/y.mp3")
    assert (s.name, s.kind, s.target) == ("fm", "url", "url:http://x/y.mp3")
    for bad in ("fm", "=file:x", "fm=", "fm=ftp:x"):
        with pytest.raises(ConfigError):
            SourceSpec.parse(bad)


def test_event_log_rotates_and_keeps_every_line_valid(tmp_path):
    path = tmp_path / "ev.jsonl"
    with EventLog(path, max_bytes=2000, backups=3) as log:
        for i in range(100):
            log.write({"type": "event", "event": "tag_on", "source": "fm", "t": float(i),
                       "tag": "rock", "p": 0.9})
            log.write({"type": "update", "source": "fm", "t": float(i), "probs": {"a": 0.1},
                       "top": [["a", 0.1]]})  # updates are not events: not logged
    files = sorted(tmp_path.iterdir())
    assert [f.name for f in files] == ["ev.jsonl", "ev.jsonl.1", "ev.jsonl.2", "ev.jsonl.3"]
    assert all(f.stat().st_size <= 2000 for f in files)
    oldest_first = files[:0:-1] + files[:1]
    lines = [json.loads(x) for f in oldest_first for x in f.read_text().splitlines()]
    ts = [m["t"] for m in lines]
    assert ts == sorted(ts) and ts[-1] == 99.0 and len(ts) < 100  # oldest rotated away
    for m in lines:
        validate_message(m)
        assert m["time"].endswith("+00:00") and "T" in m["time"]


def _get(url: str, method: str = "GET") -> tuple[int, dict]:
    req = urllib.request.Request(url, data=b"{}" if method == "POST" else None, method=method)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as err:
        with err:
            return err.code, {}


def test_http_status_serves_json_read_only():
    state = {"sources": {"fm": {"state": "running", "loudness": {"momentary": -20.0}}}}
    with StatusServer(lambda: state, "127.0.0.1:0") as srv:
        assert srv.host == "127.0.0.1"
        code, body = _get(f"{srv.url}/status")
        # the server's own counters ride along: this request is the one connection served
        assert body.pop("http") == {"connections": 1, "refused": 0, "client_errors": 0}
        assert (code, body) == (200, state)
        assert _get(f"{srv.url}/sources/fm") == (200, state["sources"]["fm"])
        assert _get(f"{srv.url}/sources/nope")[0] == 404
        assert _get(f"{srv.url}/other")[0] == 404
        assert _get(f"{srv.url}/status", "POST")[0] == 501  # read-only
