"""The teacher comparison's own parts: hand-written MIDI, reserved packages, the scores."""
from __future__ import annotations

import struct

import numpy as np
import pytest

from rt_tagger.training.corpus import CorpusError
from rt_tagger.training.teachers import MELODIES, _debian, drums_midi, melody_midi, scores


def _events(data: bytes) -> list[tuple[int, bytes]]:
    """(absolute tick, status+data) of a type-0 file's channel messages, parsed independently."""
    assert data[:4] == b"MThd" and struct.unpack(">IHHH", data[4:14]) == (6, 0, 1, 480)
    assert data[14:18] == b"MTrk"
    (length,) = struct.unpack(">I", data[18:22])
    track, i, tick, out = data[22:], 0, 0, []
    assert len(track) == length and track.endswith(b"\xff\x2f\x00")
    while i < len(track):
        delta = 0
        while True:
            b = track[i]
            i += 1
            delta = (delta << 7) | (b & 0x7F)
            if b < 0x80:
                break
        tick += delta
        if track[i] == 0xFF:  # meta: type, length, data
            i += 3 + track[i + 2]
            continue
        size = 2 if track[i] & 0xF0 == 0xC0 else 3
        out.append((tick, track[i:i + size]))
        i += size
    return out


def test_melody_midi_plays_the_melody_twice():
    ev = _events(melody_midi("twinkle", program=40, transpose=12, bass=False))
    assert ev[0] == (0, bytes((0xC0, 40)))
    ons = [(t, m[1]) for t, m in ev if m[0] == 0x90]
    offs = [m for _, m in ev if m[0] == 0x80]
    want = [n + 12 for n, _ in MELODIES["twinkle"]] * 2
    assert [n for _, n in ons] == want and len(offs) == len(ons)
    beats = sum(b for _, b in MELODIES["twinkle"])
    assert ons[len(want) // 2][0] == beats * 480  # the repeat starts after one pass
    assert all(a <= b for (a, _), (b, _) in zip(ev, ev[1:]))  # time never goes back


def test_drums_are_on_channel_10():
    ev = _events(drums_midi("rock", bars=2))
    assert ev and all(m[0] & 0x0F == 9 for _, m in ev)
    assert sum(m[0] == 0x99 and m[1] == 38 for _, m in ev) == 4  # two snares a bar


def test_reserved_packages_are_refused(tmp_path):
    for name in ("0ad-data", "wesnoth-1.16-music", "sonic-pi-samples"):
        with pytest.raises(CorpusError, match="reserved"):
            _debian(name, tmp_path)
    assert not (tmp_path / "debs").exists()


def test_scores_top3_and_auc():
    tags = ["piano", "guitar", "violin", "strings", "drums"]
    clips = [{"path": "a.wav", "instrument": "piano", "tags": ["piano"]},
             {"path": "b.wav", "instrument": "violin", "tags": ["violin", "strings"]},
             {"path": "c.wav", "instrument": "organ", "tags": []},
             {"path": "d.wav", "instrument": "piano", "tags": ["piano"]}]
    probs = np.array([[.9, .1, .1, .1, .0],    # piano first: hit
                      [.5, .1, .45, .3, .2],   # violin 2nd: hit
                      [.8, .1, .1, .1, .1],    # organ: not judged, a negative for every tag
                      [.1, .5, .4, .3, .2]])   # piano 5th: miss
    s = scores(clips, probs, tags)
    assert (s["top3_hits"], s["judged"]) == (2, 3)
    assert s["misses"] == ["piano:d -> guitar, violin, strings"]
    # piano: positives 0.9, 0.1 against negatives 0.5, 0.8 -> 2 of 4 pairs won
    assert s["per_tag_roc_auc"] == {"piano": 0.5, "violin": 1.0}
    assert s["mean_roc_auc"] == 0.75
