"""One chunking convention: the runtime chunker, ``explain`` and training cut a file alike."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from rt_tagger.chunker import Chunker, chunk_starts, complete_chunks, pad_value
from rt_tagger.checkpoint import save_checkpoint
from rt_tagger.errors import ConfigError
from rt_tagger.factory import create_model
from rt_tagger.features import MUSICNN, SPEC_ATT_DB

torch.set_num_threads(1)

DRUMS = Path(__file__).parent / "data" / "render_drums_70bpm_12s.flac"


def streamed(n: int, length: int, hop: int, seed: int) -> list:
    """The chunks a Chunker emits for ``n`` units pushed in random-sized blocks, then finished."""
    rng = np.random.default_rng(seed)
    units = np.arange(n, dtype=np.float32)[:, None] * np.ones((1, 3), np.float32)
    ch, out, i = Chunker(length, hop, unit_shape=(3,)), [], 0
    while i < n:
        k = int(rng.integers(1, 3 * length))
        out += ch.push(units[i:i + k])
        i += k
    return out + ch.finish(-7.0, force=True)


@pytest.mark.parametrize("length,hop", [(1, 1), (7, 3), (16, 16), (16, 40), (64, 31)])
def test_chunker_emits_exactly_chunk_starts(length, hop):
    for n in [0, 1, length - 1, length, length + 1, 5 * length + 2, 333]:
        chunks = streamed(n, length, hop, seed=n)
        assert [c.start for c in chunks] == chunk_starts(n, length, hop).tolist()
        assert len(chunks) == max(complete_chunks(n, length, hop), 1)
        for c in chunks:
            have = min(length, n - c.start)
            assert c.padded == length - have
            np.testing.assert_array_equal(c.data[:have, 0], np.arange(c.start, c.start + have))
            assert (c.data[have:] == -7.0).all()


def test_chunk_starts_convention():
    assert chunk_starts(100, 32, 32).tolist() == [0, 32, 64]  # tail 96..99 dropped
    assert chunk_starts(150, 64, 32).tolist() == [0, 32, 64]
    assert chunk_starts(40, 64, 32).tolist() == [0] == chunk_starts(0, 64, 32).tolist()
    assert chunk_starts(64, 64, 1).tolist() == [0]
    assert complete_chunks(63, 64, 1) == 0 and complete_chunks(65, 64, 1) == 2
    with pytest.raises(ConfigError, match="hop"):
        chunk_starts(10, 4, 0)
    with pytest.raises(ConfigError, match="length"):
        chunk_starts(10, 0, 1)


def test_pad_value_is_the_log_mel_of_silence():
    from rt_tagger.features import LogMel

    silence = np.zeros(16000, np.float32)
    for cfg in (MUSICNN, SPEC_ATT_DB.replace(top_db=None)):
        assert LogMel(cfg, backend="numpy")(silence).max() == pytest.approx(pad_value(cfg))
    assert pad_value(None) == 0.0


def test_training_song_chunks_are_the_live_non_overlapping_chunks():
    from training.data.dataset import chunk_starts as song_chunks

    for n in (0, 10, 187, 188, 1000, 4321):
        assert song_chunks(n, 187, 0).tolist() == chunk_starts(n, 187, 187).tolist()


# ---- explain sees what the live tagger sees ----------------------------------------------------
SMALL = {
    "musicnn": dict(frontend_scale=0.1, midend_filters=4, backend_units=8, n_tags=3),
    "raw_cnn_l": dict(n_tags=3),
    "short_res": dict(channels=[4, 4, 4, 4, 4, 4, 8], n_tags=3),  # dB log-mel: pad -100 dB
}


def small_checkpoint(tmp_path: Path, arch: str) -> Path:
    torch.manual_seed(0)
    model = create_model(arch, **SMALL[arch]).eval()
    cfg = model.cfg
    return save_checkpoint(tmp_path / f"{arch}.safetensors", model, arch=arch,
                           arch_args=SMALL[arch], tags=["a", "b", "c"],
                           sample_rate=cfg.sample_rate, input_kind=cfg.input_kind,
                           input_length=cfg.input_length, logmel=cfg.logmel)


def live_chunks(monkeypatch, ckpt: Path, audio: Path, hop_seconds: float) -> tuple[list, int]:
    """Every chunk the live tagger (``Tagger.stream``) cuts from ``audio``, recorded where every
    runtime path cuts them: :class:`Chunker`."""
    from rt_tagger.tagger import Tagger

    seen, push, finish = [], Chunker.push, Chunker.finish

    def record(chunks):
        seen.extend((c.start, np.array(c.data)) for c in chunks)
        return chunks

    monkeypatch.setattr(Chunker, "push", lambda self, units: record(push(self, units)))
    monkeypatch.setattr(Chunker, "finish", lambda self, *a, **kw: record(finish(self, *a, **kw)))
    with Tagger(str(ckpt), backend="torch", hop=hop_seconds) as tagger:
        for _ in tagger.stream(str(audio)):
            pass
    monkeypatch.undo()
    return seen, tagger.hop_units


def explain_chunks(tmp_path: Path, ckpt: Path, audio: Path, hop: int) -> tuple[list, object]:
    """Every chunk ``explain`` feeds the model for ``audio`` (a hook on the model's input)."""
    from rt_tagger.explain import explain_file

    model = create_model(ckpt)
    fed = []
    model.register_forward_pre_hook(lambda m, args: fed.extend(args[0].numpy().copy()))
    layout = explain_file(audio, tmp_path / "f.png", model=model, tags=["a"], hop=hop,
                          backend="native")
    return fed, layout


@pytest.mark.parametrize("arch,rate,channels,seconds", [
    ("musicnn", 16000, 1, 12.0),   # the test clip as it is: no resampling
    ("musicnn", 44100, 2, 12.0),   # stereo at 44.1 kHz: downmix and resampling too
    ("musicnn", 16000, 1, 1.5),    # shorter than one chunk: one padded chunk
    ("raw_cnn_l", 16000, 1, 12.0),  # waveform model: chunks of samples
    ("short_res", 16000, 1, 2.0),  # dB model shorter than one chunk: padded with -100 dB
])
def test_explain_chunks_equal_the_live_taggers(tmp_path, monkeypatch, arch, rate, channels,
                                               seconds):
    pytest.importorskip("matplotlib")
    y, sr = sf.read(DRUMS, dtype="float32")
    y = y[: int(seconds * sr)]
    if rate != sr:
        import soxr

        y = soxr.resample(y, sr, rate)
    audio = tmp_path / "clip.wav"
    sf.write(audio, np.stack([y] * channels, axis=1), rate, subtype="FLOAT")
    ckpt = small_checkpoint(tmp_path, arch)

    live, hop = live_chunks(monkeypatch, ckpt, audio, hop_seconds=0.5)
    fed, _ = explain_chunks(tmp_path, ckpt, audio, hop)
    assert len(live) == len(fed) >= 1
    if seconds <= 2:  # one chunk, its end padded with the log-mel of silence
        assert len(live) == 1
        assert (live[0][1][-1] == pad_value(create_model(ckpt).cfg.logmel)).all()
    starts = np.array([s for s, _ in live])
    np.testing.assert_array_equal(starts, hop * np.arange(len(live)))
    for (start, data), x in zip(live, fed):
        # Same frames, bit for bit: one decoder, one resampler setting, and the streamed
        # log-mel equals the whole-file one (streaming = batch).
        np.testing.assert_array_equal(x, data, err_msg=f"chunk at {start}")
