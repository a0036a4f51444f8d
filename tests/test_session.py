"""The streaming engine (rt_tagger.stream): one Session for one source or many on one engine,
message order and times per source, typed messages with one schema."""
from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from rt_tagger.messages import Event, Summary, Update, validate_message
from rt_tagger.sources import open_source
from rt_tagger.tagger import Tagger
from signals import DATA, MUSIC_CLIPS, SR, load_music


@pytest.fixture(scope="module")
def tagger():
    return Tagger("musicnn.mtat", hop=0.5, threads=1)


def by_source(msgs):
    out: dict[str, list] = {}
    for m in msgs:
        out.setdefault(m["source"], []).append(m)
    return out


def test_source_ended_comes_after_the_last_update_and_t_never_goes_back(tagger, tmp_path):
    """A file decodes (and says 'ended') long before its last chunks are tagged: the event
    used to be printed first, with a later t than the updates after it."""
    y = np.concatenate([load_music(MUSIC_CLIPS[1]), np.full(SR // 2, np.nan, np.float32),
                        load_music(MUSIC_CLIPS[0])[: 3 * SR]])
    path = tmp_path / "x.wav"
    sf.write(path, y, SR, subtype="FLOAT")
    msgs = list(tagger.stream(path))
    for m in msgs:
        validate_message(m)
    ts = [m["t"] for m in msgs]
    assert ts == sorted(ts), [(m["type"], m.get("event"), m["t"]) for m in msgs if m["t"] < max(ts[: msgs.index(m) + 1])]
    kinds = [(m["type"], m.get("event"), m.get("state")) for m in msgs]
    ended = kinds.index(("event", "source_state", "ended"))
    last_update = max(i for i, k in enumerate(kinds) if k[0] == "update")
    assert last_update < ended < len(msgs) - 1 and kinds[-1][0] == "summary"
    nf = [m for m in msgs if m["type"] == "event" and m["event"] == "nonfinite_input"]
    assert len(nf) == 1 and nf[0]["samples"] == SR // 2  # reported once, in its place


def test_two_sources_one_engine_each_in_order(tagger, tmp_path):
    """One session, one scheduler: two files on one engine, each equal to tagging it alone,
    each source's times monotonic, one summary each."""
    session = tagger.session(batch=4)
    paths = {"a": DATA / MUSIC_CLIPS[0], "b": DATA / MUSIC_CLIPS[2]}
    for name, p in paths.items():
        session.add(open_source(p, name=name))
    with session:
        session.start()
        msgs = list(session.messages())
    per = by_source(msgs)
    assert set(per) == {"a", "b"}
    for name, ms in per.items():
        assert ms[0]["type"] == "status" and ms[-1]["type"] == "summary"
        ts = [m["t"] for m in ms]
        assert ts == sorted(ts)
        gram = np.stack([r[3] for r in sorted(session.streams[name].taggram, key=lambda r: r[0])])
        np.testing.assert_allclose(gram, tagger.tag_file(paths[name]).taggram, atol=1e-5)
    # workers for both: config.workers, by default 2 on a CPU with 2+ cores (else 1)
    import os

    want = 2 if tagger.engine.device == "cpu" and (os.cpu_count() or 1) >= 2 else 1
    assert len(session.scheduler.threads) == session.scheduler.workers == want


def test_the_end_is_said_at_once_after_the_last_summary(tagger):
    """Once every source's summary has been polled, the next poll ends the session at once,
    not after its timeout (which a file run used to spend idle at its end)."""
    import time

    session = tagger.session()
    session.add(open_source(DATA / MUSIC_CLIPS[0], name="a"))
    with session:
        session.start()
        while True:
            msg = session.poll(timeout=0.5)
            if msg is not None and msg.type == "summary":
                break
        t = time.perf_counter()
        with pytest.raises(StopIteration):
            session.poll(timeout=30)
        assert time.perf_counter() - t < 5  # not the 30 s timeout


def test_messages_are_typed_frozen_and_their_own_json():
    u = Update("main", 1.23456, 3, 0.5, {"a": 0.25}, [["a", 0.25]], False, level_db=-20.0)
    assert json.loads(json.dumps(u)) == u.to_json() == dict(u)
    assert u["t"] == 1.235 and "attention" not in u  # None fields are left out
    with pytest.raises(TypeError, match="read-only"):
        u["loudness"] = {}  # never patched after emission
    with pytest.raises(ValueError, match="missing tag"):
        Event("main", 0.0, "tag_on", {"p": 0.5})  # the schema is checked on construction
    s = Summary("main", 2.0, {"a": 0.5}, [["a", 0.5]], chunks=1, duration=2.0)
    validate_message(s)
    with pytest.raises(ValueError, match="count"):
        validate_message({**s, "samples_in": -1})
