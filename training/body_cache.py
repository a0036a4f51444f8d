"""Cache of a musicnn teacher's body outputs and logits on a grid of chunks, for students that
share the teacher's frozen body (``musicnn_att``: only the attention back-end trains).

``python -m rt_tagger.training body-cache --teacher musicnn.mtat --data PREPARED --out CACHE``

What is cached (``CACHE/<part>/``, one part per kind of chunk):

* ``train`` / ``valid``: every non-overlapping ``input_length``-frame chunk of every clip of the
  split, cut from the prepared log-mel exactly as the runtime chunker cuts a file;
* ``aug``: training audio changed in timbre and room before the log-mel (peaking EQ, synthetic
  reverb, pitch shift, time stretch, gain, white noise, and a mix with another training clip),
  on chunks half a chunk off the clean grid, ``--aug-fraction`` of them;
* ``probes``: synthetic non-music, labelled by the teacher like everything else: white, pink and
  brown noise, sines, hum, clicks and near-silence at levels from -90 to -10 dBFS, so that the
  student sees what the teacher does with noise and dead air.

Each part holds ``feats.npy`` ``(N, T, 753)`` float16 (the body output the student attends
over), ``logits.npy`` ``(N, n_tags)`` float32 (the teacher's logits on the same chunk, after any
augmentation: the target is always what the teacher hears) and ``index.json`` (clip, start,
kind per row). Rows are computed in ``--workers`` processes with one thread each; every worker
records how many of its rows are done, so an interrupted run resumes where it stopped.
"""
from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

import numpy as np

from rt_tagger.errors import RtTaggerError

from .data.dataset import Prepared, chunk_starts
from .progress import Progress

__all__ = ["PARTS", "build_body_cache", "completed_rows", "load_part", "part_complete",
           "probe_signal"]

PARTS = ("train", "valid", "aug", "probes")
SR = 16000
BATCH = 8


def probe_signal(k: int, n: int, sr: int = SR) -> np.ndarray:
    """Synthetic non-music probe ``k`` (deterministic), ``n`` samples of float32."""
    rng = np.random.default_rng(10_000 + k)
    kind = ("white", "pink", "brown", "sine", "hum", "clicks", "dither", "sweep")[k % 8]
    level_db = rng.uniform(-90, -40) if kind == "dither" else rng.uniform(-60, -10)
    t = np.arange(n) / sr
    if kind in ("white", "pink", "brown", "dither"):
        spec = np.fft.rfft(rng.standard_normal(n))
        f = np.maximum(np.fft.rfftfreq(n, 1 / sr), 1.0)
        spec *= {"white": 1.0, "dither": 1.0, "pink": f ** -0.5, "brown": f ** -1.0}[kind]
        y = np.fft.irfft(spec, n)
    elif kind == "sine":
        y = np.sin(2 * np.pi * np.exp(rng.uniform(np.log(50), np.log(6000))) * t)
    elif kind == "hum":
        f0 = rng.choice([50.0, 60.0])
        y = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 6))
    elif kind == "clicks":
        y = np.zeros(n)
        y[rng.integers(0, n, int(rng.integers(3, 40)))] = 1.0
    else:  # sweep
        f1, f2 = np.exp(rng.uniform(np.log(50), np.log(8000), 2))
        y = np.sin(2 * np.pi * np.cumsum(np.geomspace(f1, f2, n)) / sr)
    y = y / (np.sqrt(np.mean(y ** 2)) + 1e-12) * 10 ** (level_db / 20)
    return np.clip(y, -1, 1).astype(np.float32)


def _plan(prep: Prepared, config, length: int, aug_fraction: float, n_probes: int,
          seed: int) -> dict[str, list[tuple[int, int]]]:
    logmel = prep.features(config)
    rng = np.random.default_rng(seed)
    plan: dict[str, list[tuple[int, int]]] = {p: [] for p in PARTS}
    for split in ("train", "valid"):
        for i in prep.indices(split, [logmel]):
            n = logmel.length(int(i))
            plan[split] += [(int(i), int(s)) for s in chunk_starts(n, length, 0)]
            if split == "train" and aug_fraction > 0:
                # half a chunk off the grid; the raw segment needs one frame either side
                starts = np.arange(length // 2 + 1, max(n - length - 1, 0), length)
                keep = rng.random(starts.size) < aug_fraction
                plan["aug"] += [(int(i), int(s)) for s in starts[keep]]
    plan["probes"] = [(-1, k) for k in range(n_probes)]
    for part in ("aug",):
        rng.shuffle(plan[part])
    return plan


def _augment(y: np.ndarray, other: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    from .augment import apply_timbre

    if rng.random() < 0.3:
        w = rng.uniform(0.2, 0.5)
        y = (1 - w) * y + w * other
    y = apply_timbre(y, {"aug_eq_db": 9.0, "aug_reverb": 0.5, "aug_pitch": 2.0,
                          "aug_stretch": 0.1}, rng)
    y = y * 10 ** (rng.uniform(-12, 6) / 20)
    if rng.random() < 0.5:
        power = float(np.mean(y.astype(np.float64) ** 2)) + 1e-12
        y = y + rng.standard_normal(y.size) * np.sqrt(power / 10 ** (rng.uniform(10, 40) / 10))
    return np.clip(y, -1, 1).astype(np.float32)


def _worker(args: tuple) -> int:
    (root, out, part, rows, worker, workers, teacher_name, length, seed) = args
    import torch

    from rt_tagger.factory import create_model
    from rt_tagger.features import LogMel

    torch.set_num_threads(1)
    prep = Prepared(root)
    teacher = create_model(teacher_name).eval()
    config = teacher.checkpoint.logmel_config
    store = prep.features(config)
    raw = prep.features(None) if part == "aug" else None
    mel = LogMel(config)
    hop = config.hop_length
    pdir = Path(out) / part
    feats = np.load(pdir / "feats.npy", mmap_mode="r+")
    logits = np.load(pdir / "logits.npy", mmap_mode="r+")
    done_path = pdir / f"done.{worker}"
    done = int(done_path.read_text()) if done_path.is_file() else 0
    mine = list(range(worker, len(rows), workers))
    train_idx = prep.indices("train", [store])
    for b in range(done, len(mine), BATCH):
        batch = mine[b:b + BATCH]
        x = []
        for r in batch:
            clip, start = rows[r]
            if part == "probes":
                x.append(mel(probe_signal(start, (length + 1) * hop))[:length])
            elif part == "aug":
                rng = np.random.default_rng(seed * 1_000_003 + r)
                seg = np.asarray(raw.raw(clip)[(start - 1) * hop:(start + length + 1) * hop],
                                 np.float32) / 32767.0
                j = int(train_idx[rng.integers(len(train_idx))])
                other_clip = raw.raw(j)
                o0 = int(rng.integers(0, max(other_clip.shape[0] - seg.size, 0) + 1))
                other = np.resize(np.asarray(other_clip[o0:o0 + seg.size], np.float32) / 32767.0,
                                  seg.size)
                x.append(mel(_augment(seg, other, rng))[1:1 + length])
            else:
                x.append(store.chunk(clip, start, length))
        with torch.inference_mode():
            out_ = teacher.body_and_logits(torch.from_numpy(np.stack(x)))
        rows_idx = np.array(batch)
        feats[rows_idx] = out_[0].numpy().astype(np.float16)
        logits[rows_idx] = out_[1].numpy()
        if (b // BATCH) % 8 == 7 or b + BATCH >= len(mine):
            feats.flush()
            logits.flush()
            done_path.write_text(str(min(b + BATCH, len(mine))))
    return len(mine)


def build_body_cache(data: str | os.PathLike, out: str | os.PathLike, *,
                     teacher: str = "musicnn.mtat", length: int = 187, workers: int = 2,
                     aug_fraction: float = 0.5, n_probes: int = 480, seed: int = 0,
                     parts: tuple[str, ...] = PARTS, quiet: bool = False) -> dict[str, int]:
    """Build (or resume) the cache; returns rows per part."""
    from rt_tagger.factory import create_model

    prep = Prepared(data)
    t = create_model(teacher)
    if not hasattr(t, "body_and_logits"):
        raise RtTaggerError(f"teacher {teacher!r} is not a musicnn model (no shared body to cache)")
    n_feat, n_tags = t.n_features, t.n_tags
    plan = _plan(prep, t.checkpoint.logmel_config, length, aug_fraction, n_probes, seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    meta = out / "cache.json"
    old = json.loads(meta.read_text())["parts"] if meta.is_file() else {}

    def write_meta(done: dict[str, int]) -> None:
        meta.write_text(json.dumps({"teacher": teacher, "length": length,
                                    "parts": {**old, **done}, "data": str(prep.root)}))

    write_meta({})
    counts = {}
    for part in parts:
        rows = plan[part]
        pdir = out / part
        pdir.mkdir(parents=True, exist_ok=True)
        index = {"teacher": teacher, "length": length, "seed": seed, "rows": rows,
                 "keys": {str(c): prep.keys[c] for c in sorted({c for c, _ in rows if c >= 0})}}
        ipath = pdir / "index.json"
        if ipath.is_file():
            old = json.loads(ipath.read_text())
            if old["rows"] != [list(r) for r in rows] or old["teacher"] != teacher:
                raise RtTaggerError(f"{pdir}: a cache of other rows is there; remove it to rebuild")
        else:
            np.lib.format.open_memmap(pdir / "feats.npy", "w+", np.float16, (len(rows), length, n_feat))
            np.lib.format.open_memmap(pdir / "logits.npy", "w+", np.float32, (len(rows), n_tags))
            ipath.write_text(json.dumps(index))
        jobs = [(str(prep.root), str(out), part, rows, w, workers, teacher, length, seed)
                for w in range(workers)]
        with Progress(len(rows), f"body-cache {part}", enabled=not quiet) as prog, \
                multiprocessing.get_context("spawn").Pool(workers) as pool:
            for n in pool.imap_unordered(_worker, jobs):
                prog.update(n)
        counts[part] = len(rows)
        write_meta(counts)
    return counts


def completed_rows(cache: str | os.PathLike, part: str) -> tuple[int, int]:
    """``(rows computed, rows planned)`` of ``part``: worker ``w`` of ``W`` computes rows ``w,
    w + W, ...`` in order, so the first ``W * min(done)`` rows are all there (a part stopped
    early can still be used up to there)."""
    pdir = Path(cache) / part
    if not (pdir / "index.json").is_file():
        return 0, 0
    rows = len(json.loads((pdir / "index.json").read_text())["rows"])
    done = [int(p.read_text()) for p in pdir.glob("done.*")]
    if not done:
        return 0, rows
    if sum(done) == rows:
        return rows, rows
    return min(len(done) * min(done), rows), rows


def part_complete(cache: str | os.PathLike, part: str) -> bool:
    """Whether every row of ``part`` has been computed."""
    done, rows = completed_rows(cache, part)
    return rows > 0 and done == rows


def load_part(cache: str | os.PathLike, part: str,
              partial: bool = False) -> tuple[np.ndarray, np.ndarray, dict]:
    """``(feats (N, T, C) float16 memmap, logits (N, n_tags), index)`` of one part; with
    ``partial``, the rows computed so far of a part stopped early (see :func:`completed_rows`)."""
    pdir = Path(cache) / part
    n, rows = completed_rows(cache, part)
    if n == 0 or (n < rows and not partial):
        raise RtTaggerError(f"{pdir}: no complete body cache here ({n} of {rows} rows; run "
                            "body-cache to finish it)")
    index = json.loads((pdir / "index.json").read_text())
    index["rows"] = index["rows"][:n]
    return (np.load(pdir / "feats.npy", mmap_mode="r")[:n], np.load(pdir / "logits.npy")[:n],
            index)
