"""The streaming pipeline on files: streaming equals offline tagging, musicnn parity, formats,
sample rates, channel layouts and bad input."""
from __future__ import annotations

import http.server
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from rt_tagger.errors import AudioFileError, AudioInputError, ConfigError
from rt_tagger.sinks import validate_message
from rt_tagger.sources import Decoder
from rt_tagger.tagger import Tagger
from signals import DATA, MUSIC_CLIPS, load_music

MUSICNN_PARITY_TOL = 1e-3  # probabilities; measured ~5e-5 (16-bit FLAC, float16 mel in TF)


@pytest.fixture(scope="module")
def tagger():
    return Tagger("musicnn.mtat", hop=0.5)


@pytest.fixture(scope="module")
def chunk_tagger():
    return Tagger("musicnn.mtat", hop="chunk")


def run_stream(tg: Tagger, source, **kw):
    msgs = list(tg.stream(source, **kw))
    for m in msgs:
        validate_message(m)
    raw = np.stack([r[3] for r in sorted(tg.pipeline.taggram, key=lambda r: r[0])])
    return msgs, raw


@pytest.mark.parametrize("clip", MUSIC_CLIPS)
def test_streaming_equals_offline_tagging(tagger, clip):
    path = DATA / clip
    offline = tagger.tag_file(path)
    msgs, raw = run_stream(tagger, path)
    assert msgs[0]["type"] == "status" and msgs[-1]["type"] == "summary"
    assert raw.shape == offline.taggram.shape
    np.testing.assert_allclose(raw, offline.taggram, atol=1e-5)
    summary = msgs[-1]
    song = np.array([summary["probs"][t] for t in tagger.tags])
    np.testing.assert_allclose(song, offline.probs, atol=1e-4)  # JSON rounds to 4 decimals
    assert summary["chunks"] == offline.taggram.shape[0]
    assert summary["overrun_samples"] == 0 and summary["dropped_chunks"] == 0
    assert summary["samples_in"] == load_music(clip).size  # no sample lost


@pytest.mark.parametrize("clip", MUSIC_CLIPS)
def test_summary_with_hop_chunk_matches_original_musicnn(chunk_tagger, clip):
    ref = np.load(DATA / "musicnn_ref_first12s.npz")
    assert list(ref["tags"]) == chunk_tagger.tags
    msgs, raw = run_stream(chunk_tagger, DATA / clip)
    summary = msgs[-1]
    assert summary["chunks"] == 4  # 12 s = 750 frames -> 4 patches of 187, tail dropped
    np.testing.assert_allclose(raw, ref[clip], atol=MUSICNN_PARITY_TOL)
    song = np.array([summary["probs"][t] for t in chunk_tagger.tags])
    np.testing.assert_allclose(song, ref[clip].mean(axis=0), atol=MUSICNN_PARITY_TOL)


def _write(path: Path, y: np.ndarray, sr: int, **kw) -> Path:
    sf.write(path, y, sr, **kw)
    return path


@pytest.mark.parametrize(
    "fmt,ext,kw",
    [("wav-f32", "wav", dict(subtype="FLOAT")), ("wav-16", "wav", dict(subtype="PCM_16")),
     ("ogg", "ogg", dict(format="OGG", subtype="VORBIS")), ("mp3", "mp3", dict(format="MP3"))],
)
def test_encoded_formats_give_the_same_tags(tagger, tmp_path, fmt, ext, kw):
    y = load_music(MUSIC_CLIPS[1])
    ref = tagger.tag_array(np.ascontiguousarray(y)).probs
    got = tagger.tag_file(_write(tmp_path / f"x.{ext}", y, 16000, **kw)).probs
    tol = 0.02 if fmt in ("wav-f32", "wav-16") else 0.08  # lossy codecs move probabilities
    assert np.abs(got - ref).max() < tol
    assert np.argmax(got) == np.argmax(ref)


def test_pyav_fallback_for_containers_soundfile_cannot_read(tagger, tmp_path):
    import av

    y = load_music(MUSIC_CLIPS[0])[: 16000 * 8]
    path = tmp_path / "clip.m4a"
    with av.open(str(path), "w") as out:
        st = out.add_stream("aac", rate=16000, layout="mono")
        frame = av.AudioFrame.from_ndarray(y[None, :], format="flt", layout="mono")
        frame.rate = 16000
        for pkt in st.encode(frame):
            out.mux(pkt)
        for pkt in st.encode(None):
            out.mux(pkt)
    with Decoder(path) as dec:
        assert dec.info.backend == "pyav" and dec.info.sample_rate == 16000
    ref = tagger.tag_array(np.ascontiguousarray(y)).probs
    msgs, _ = run_stream(tagger, path)
    got = np.array([msgs[-1]["probs"][t] for t in tagger.tags])
    assert np.argmax(got) == np.argmax(ref) and np.abs(got - ref).max() < 0.1


@pytest.mark.parametrize("sr,channels", [(44100, 2), (48000, 6), (22050, 1), (8000, 1)])
def test_any_sample_rate_and_channel_layout(tagger, tmp_path, sr, channels):
    import soxr

    y16 = load_music(MUSIC_CLIPS[2])
    y = soxr.resample(y16, 16000, sr)
    multi = np.repeat(y[:, None], channels, axis=1) * (1.0 if channels == 1 else 0.9)
    path = _write(tmp_path / "x.wav", multi, sr, subtype="FLOAT")
    ref = tagger.tag_array(np.ascontiguousarray(y16)).probs
    msgs, raw = run_stream(tagger, path)
    got = np.array([msgs[-1]["probs"][t] for t in tagger.tags])
    offline = tagger.tag_file(path)
    np.testing.assert_allclose(raw, offline.taggram, atol=2e-3)  # stream vs one-shot resampling
    if sr >= 16000:  # 8 kHz audio has nothing above 4 kHz: the model rightly hears it differently
        assert np.abs(got - ref).max() < 0.05
    assert msgs[0]["input_rate"] == sr


def test_pick_one_channel(tagger, tmp_path):
    piano, drums = load_music(MUSIC_CLIPS[0]), load_music(MUSIC_CLIPS[2])
    path = _write(tmp_path / "two.wav", np.stack([piano, drums], axis=1), 16000, subtype="FLOAT")
    for ch, clip in ((0, piano), (1, drums)):
        msgs, _ = run_stream(tagger, path, channel=ch)
        got = np.array([msgs[-1]["probs"][t] for t in tagger.tags])
        np.testing.assert_allclose(got, tagger.tag_array(np.ascontiguousarray(clip)).probs, atol=1e-4)
    with pytest.raises(AudioInputError, match="--channel 2 requested"):
        list(tagger.stream(path, channel=2))


def test_short_file_is_padded_and_says_so(tagger, tmp_path):
    path = _write(tmp_path / "short.wav", load_music(MUSIC_CLIPS[0])[:16000], 16000)
    msgs, raw = run_stream(tagger, path)
    assert raw.shape[0] == 1
    assert any(m["type"] == "event" and m["event"] == "short_input" for m in msgs)
    assert tagger.tag_file(path).padded > 0


def test_nan_and_clipped_samples_do_not_break_tagging(tagger, tmp_path):
    y = np.array(load_music(MUSIC_CLIPS[1]))
    y[1000:1100] = np.nan
    y[5000:9000] *= 50  # clipped far beyond full scale
    path = _write(tmp_path / "bad.wav", y, 16000, subtype="FLOAT")
    msgs, raw = run_stream(tagger, path)
    assert np.isfinite(raw).all() and msgs[-1]["chunks"] > 0


@pytest.mark.parametrize(
    "content,match",
    [(b"", "empty"), (b"\x00garbage" * 100, "cannot open"), (b"ID3\x03\x00" + b"\xff" * 50, "cannot open|no audio")],
)
def test_corrupt_and_empty_files_give_clear_errors(tagger, tmp_path, content, match):
    path = tmp_path / "bad.mp3"
    path.write_bytes(content)
    with pytest.raises(AudioFileError, match=match):
        list(tagger.stream(path))


def test_zero_length_and_missing_files(tagger, tmp_path):
    path = _write(tmp_path / "zero.wav", np.zeros(0, np.float32), 16000)
    with pytest.raises(AudioFileError, match="no audio"):
        list(tagger.stream(path))
    with pytest.raises(AudioFileError, match="no such file"):
        list(tagger.stream(tmp_path / "missing.flac"))
    with pytest.raises(AudioFileError, match="directory"):
        list(tagger.stream(tmp_path))


def test_bad_settings_are_config_errors():
    with pytest.raises(ConfigError, match="hop"):
        Tagger("musicnn.mtat", hop="fast")
    with pytest.raises(ConfigError, match="aggregation"):
        Tagger("musicnn.mtat", aggregation="median")


def test_realtime_pacing(tagger, tmp_path):
    path = _write(tmp_path / "three.wav", load_music(MUSIC_CLIPS[0])[: 16000 * 4], 16000)
    t0 = time.perf_counter()
    msgs, _ = run_stream(tagger, path, realtime=True)
    elapsed = time.perf_counter() - t0
    assert elapsed >= 3.7, f"4 s of audio paced in {elapsed:.2f} s"
    assert msgs[-1]["overrun_samples"] == 0


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a):  # keep test output clean
        pass


@pytest.fixture
def http_server(tmp_path):
    y = load_music(MUSIC_CLIPS[2])[: 16000 * 4]
    _write(tmp_path / "radio.mp3", y, 16000, format="MP3")
    handler = lambda *a, **k: _Handler(*a, directory=str(tmp_path), **k)  # noqa: E731
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", srv
    srv.shutdown()
    srv.server_close()


@pytest.mark.slow
def test_http_stream_reconnects_then_gives_up_cleanly(tagger, http_server):
    from rt_tagger.sources.file import FileSource

    base, srv = http_server
    src = FileSource(f"{base}/radio.mp3", max_retries=1)
    assert src.url and src.realtime  # network streams arrive in real time
    states = []
    msgs = []
    with pytest.raises(AudioFileError, match="giving up"):
        for m in tagger.stream(src):
            msgs.append(m)
            if m["type"] == "event" and m["event"] == "source_state":
                states.append(m["state"])
                if m["state"] == "reconnecting":
                    srv.shutdown()  # the station goes away for good
    assert states[:3] == ["running", "reconnecting", "running"] or "reconnecting" in states
    assert any(m["type"] == "update" for m in msgs)
