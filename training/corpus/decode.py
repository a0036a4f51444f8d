"""Decode any audio file the sources ship (ogg, opus, mp3, flac, wav, tracker modules) to the
corpus format: 16 kHz mono 16-bit wav, optionally cut to its first ``max_sec`` seconds."""
from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf

__all__ = ["SR", "duration", "safe_name", "tags_of", "to_wav", "write_wav"]

SR = 16000


def safe_name(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", s).strip("_") or "x"


def duration(path: str | Path) -> float:
    """Seconds of audio in ``path`` (0.0 when no decoder can tell)."""
    try:
        info = sf.info(str(path))
        if info.frames > 0:
            return info.frames / info.samplerate
    except (RuntimeError, sf.LibsndfileError):
        pass
    r = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of",
                        "csv=p=0", str(path)], capture_output=True, text=True)
    try:
        return float(r.stdout.strip())
    except ValueError:
        return 0.0


def tags_of(path: str | Path) -> str:
    """Artist, title, genre and licence from the file's own tags, as ``k=v; ...``."""
    r = subprocess.run(["ffprobe", "-v", "quiet", "-show_entries", "format_tags:stream_tags",
                        "-of", "json", str(path)], capture_output=True, text=True)
    found: dict[str, str] = {}
    try:
        j = json.loads(r.stdout or "{}")
        for d in [j.get("format", {}).get("tags", {})] + [s.get("tags", {})
                                                          for s in j.get("streams", [])]:
            found.update({k.lower(): str(v) for k, v in d.items()})
    except json.JSONDecodeError:
        pass
    keep = ("artist", "title", "genre", "license")
    return "; ".join(f"{k}={found[k]}" for k in keep if k in found).replace("\n", " ")[:300]


def to_wav(src: str | Path, dst: str | Path, max_sec: float = 0) -> bool:
    """Decode ``src`` to 16 kHz mono s16 ``dst`` (written whole or not at all).

    sox first (it reads the Vorbis files ffmpeg rejects), ffmpeg for the rest (opus, mp3,
    tracker modules through libopenmpt).
    """
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(dst.stem + ".part.wav")
    trim = ["trim", "0", str(max_sec)] if max_sec else []
    ok = subprocess.run(["sox", "-q", str(src), "-r", str(SR), "-c", "1", "-b", "16", str(tmp)]
                        + trim, capture_output=True).returncode == 0 and duration(tmp) > 0
    if not ok:
        cut = ["-t", str(max_sec)] if max_sec else []
        ok = subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(src)] + cut
                            + ["-ac", "1", "-ar", str(SR), "-sample_fmt", "s16", "-f", "wav",
                               str(tmp)], capture_output=True).returncode == 0 \
            and duration(tmp) > 0
    if ok:
        os.replace(tmp, dst)
    elif tmp.exists():
        tmp.unlink()
    return ok


def write_wav(dst: str | Path, y: np.ndarray, peak_db: float = -1.0) -> float:
    """Write float audio at 16 kHz, peak-normalised to ``peak_db`` dBFS; returns seconds."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    y = np.asarray(y, dtype=np.float64)
    peak = float(np.max(np.abs(y))) if y.size else 0.0
    if peak > 0:
        y = y * (10 ** (peak_db / 20) / peak)
    tmp = dst.with_name(dst.stem + ".part.wav")
    sf.write(tmp, y.astype(np.float32), SR, subtype="PCM_16")
    os.replace(tmp, dst)
    return y.size / SR
