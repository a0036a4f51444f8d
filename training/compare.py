"""How closely distilled students follow their teacher on held-out audio, and what they cost.

``python -m rt_tagger.training compare --teacher musicnn.mtat --model runs/w256/model.safetensors
--data prepared/corpus --split test --corpus /data/corpus``

Every clip of the split is cut into non-overlapping student chunks (256 frames). For each chunk
the student gives its probabilities and the teacher the mean over the patches that cover the
chunk (the alignment of :mod:`.distill`: 187-frame patches at the chunk start and 69 frames
later). A clip's song-level vector is the mean over its chunks, for both models.

Reported, per student:

* agreement with the teacher's decisions: the teacher's top-k tags (``--top-k``, 5) of a song
  (or chunk) are its positives; per-tag ROC-AUC and PR-AUC of the student's scores against
  them, at song and chunk level (tags with no positive are skipped and counted);
* mean absolute difference of the song-level tag vectors (overall and per tag);
* top-5 agreement: mean overlap of the two top-5 sets, and how often the top-1 tag is equal;
* with ``--corpus`` (the manifest's ground truth): ROC-AUC of the instrument tags on the
  held-out score renders, student and teacher side by side;
* latency on the same chunks in the same run: one chunk, batch 1, onnxruntime, one thread
  (the teacher runs its two covering patches as one batch of 2).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from rt_tagger.errors import ConfigError

from .data.dataset import Prepared, take
from .distill import patch_starts
from .metrics import average_precision, json_safe, roc_auc, top_k

__all__ = ["INSTRUMENT_TAGS", "compare", "format_report"]

#: MTAT tags the score renders know for certain (their rendered GM programs).
INSTRUMENT_TAGS = ("piano", "harpsichord", "guitar", "violin", "strings", "cello", "choir",
                   "flute", "harp", "sitar", "synth", "drums")


def _engine(source, threads: int):
    from rt_tagger.engines import create_engine

    return create_engine(source, backend="onnxruntime", threads=threads, max_batch=32,
                         attention=False)


def _load(model_ref: str, threads: int):
    """A registry model, its log-mel and an onnxruntime engine of it."""
    from rt_tagger.factory import create_model

    model = create_model(model_ref)
    return model, model.cfg.logmel, _engine(model, threads)


def compare(teacher: str, students: list[str], data: str | Path, *, split: str = "test",
            corpus: str | Path | None = None, top_k: int = 5, threads: int = 2,
            latency_runs: int = 50) -> dict:
    data = Prepared(data)
    if not students:
        raise ConfigError("compare: name at least one --model (a student checkpoint)")
    t_model, t_logmel, t_engine = _load(teacher, threads)
    t_store = data.features(t_logmel)
    tags = list(t_model.checkpoint.tags)
    clips = data.indices(split, [t_store])
    if clips.size == 0:
        raise ConfigError(f"{data.root}: no readable clips in split {split!r}")
    gt = _ground_truth(data, clips, corpus) if corpus else None
    result = {"teacher": teacher, "split": split, "clips": int(clips.size), "top_k": top_k,
              "tags": tags, "students": {}}
    teacher_done = False
    t_memo: dict[tuple[int, int], np.ndarray] = {}  # (clip, chunk length) -> teacher chunks
    for name in students:
        s_model, s_logmel, s_engine = _load(name, threads)
        if list(s_model.checkpoint.tags) != tags:
            raise ConfigError(f"student {name} does not have the teacher's tags")
        s_store = data.features(s_logmel)
        length = s_model.cfg.input_length
        t_patch = t_model.cfg.input_length
        s_chunks, t_chunks, seconds = [], [], 0.0
        example = None
        for c in clips:
            starts, xs = _student_chunks(s_store, int(c), length)
            key = (int(c), length)
            if key not in t_memo or example is None:
                xt = _teacher_patches(t_store, int(c), starts, length, t_patch)
                if example is None:
                    example = (xs[:1], xt[0])
            s_chunks.append(s_engine.run(xs).probs)
            if key not in t_memo:
                tp = t_engine.run(xt.reshape(-1, *xt.shape[2:])).probs
                t_memo[key] = tp.reshape(xt.shape[0], xt.shape[1], -1).mean(axis=1)
            t_chunks.append(t_memo[key])
            seconds += xs.shape[0] * length * s_logmel.hop_length / s_logmel.sample_rate
        s_chunk, t_chunk = np.concatenate(s_chunks), np.concatenate(t_chunks)
        s_song = np.stack([p.mean(axis=0) for p in s_chunks])
        t_song = np.stack([p.mean(axis=0) for p in t_chunks])
        r = {"chunks": int(s_chunk.shape[0]), "hours": seconds / 3600,
             "song": _agreement(t_song, s_song, tags, top_k),
             "chunk": _agreement(t_chunk, s_chunk, tags, top_k),
             "arch": s_model.checkpoint.arch, "arch_args": s_model.checkpoint.arch_args}
        if gt is not None:
            r["instruments"] = _instrument_auc(gt, clips, s_song, tags)
            if not teacher_done:
                result["teacher_instruments"] = _instrument_auc(gt, clips, t_song, tags)
        r["latency_ms"] = _latency(name, teacher, example, latency_runs)
        result["students"][name] = r
        teacher_done = True
        s_engine.close()
    t_engine.close()
    return json_safe(result)


def _student_chunks(s_store, i: int, length: int):
    """Non-overlapping student chunks ``(n, L, mels)`` from the clip start, and their starts
    (one tiled chunk for a clip shorter than ``L``)."""
    clip = s_store.clip(i)
    starts = np.arange(0, max(clip.shape[0] - length, 0) + 1, length)
    return starts, np.stack([take(clip, s, length) for s in starts])


def _teacher_patches(t_store, i: int, starts, length: int, t_patch: int) -> np.ndarray:
    """Per student chunk, the teacher patches covering it: ``(n, k, P, mels)``."""
    clip = t_store.clip(i)
    return np.stack([np.stack([take(clip, p, t_patch)
                               for p in patch_starts(int(s), length, t_patch, clip.shape[0])])
                     for s in starts])


def _agreement(t: np.ndarray, s: np.ndarray, tags: list[str], k: int) -> dict:
    y = top_k(t, k)
    per_tag = []
    for j, tag in enumerate(tags):
        per_tag.append({"tag": tag, "positives": int(y[:, j].sum()),
                        "roc_auc": roc_auc(y[:, j], s[:, j]),
                        "pr_auc": average_precision(y[:, j], s[:, j]),
                        "mad": float(np.mean(np.abs(t[:, j] - s[:, j]))),
                        "teacher_mean": float(t[:, j].mean()),
                        "student_mean": float(s[:, j].mean())})
    roc = np.array([r["roc_auc"] for r in per_tag])
    pr = np.array([r["pr_auc"] for r in per_tag])
    ok = ~np.isnan(roc)
    ts, ss = np.argsort(-t, axis=1)[:, :5], np.argsort(-s, axis=1)[:, :5]
    overlap = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(ts, ss)])
    return {"roc_auc": float(roc[ok].mean()), "pr_auc": float(pr[ok].mean()),
            "tags_scored": int(ok.sum()), "tags_skipped": int((~ok).sum()),
            "mad": float(np.mean(np.abs(t - s))), "top5_overlap": float(overlap),
            "top1_equal": float(np.mean(ts[:, 0] == ss[:, 0])), "per_tag": per_tag}


def _ground_truth(data: Prepared, clips, corpus) -> dict[int, set[str]]:
    """Known tags of the split's score renders, by clip index."""
    from .data.corpus import RENDER_KINDS, read_manifest

    rows = {r["path"]: r for r in read_manifest(corpus)}
    out = {}
    for c in clips:
        r = rows.get(data.keys[int(c)])
        if r is not None and r.get("kind") in RENDER_KINDS and r.get("tags"):
            out[int(c)] = {t for t in r["tags"].split(";") if t}
    return out


def _instrument_auc(gt: dict[int, set[str]], clips, song: np.ndarray, tags: list[str]) -> dict:
    rows = [k for k, c in enumerate(clips) if int(c) in gt]
    out = {"renders": len(rows), "per_tag": {}}
    aucs = []
    for tag in INSTRUMENT_TAGS:
        if tag not in tags:
            continue
        y = np.array([tag in gt[int(clips[k])] for k in rows])
        a = roc_auc(y, song[rows, tags.index(tag)]) if rows else float("nan")
        out["per_tag"][tag] = {"roc_auc": a, "positives": int(y.sum())}
        if not np.isnan(a):
            aucs.append(a)
    out["mean_roc_auc"] = float(np.mean(aucs)) if aucs else float("nan")
    return out


def _latency(student: str, teacher: str, example, runs: int) -> dict:
    """Median and p90 ms of one student chunk vs the teacher's two covering patches (batch 2),
    onnxruntime on one thread, interleaved in the same loop."""
    xs, xt = example
    s, t = _engine(student, 1), _engine(teacher, 1)
    for _ in range(5):
        s.run(xs), t.run(xt)
    ts, tt = [], []
    for _ in range(runs):
        a = time.perf_counter()
        s.run(xs)
        b = time.perf_counter()
        t.run(xt)
        c = time.perf_counter()
        ts.append((b - a) * 1e3)
        tt.append((c - b) * 1e3)
    s.close(), t.close()
    q = lambda v: {"median": float(np.median(v)), "p90": float(np.percentile(v, 90))}
    return {"student": q(ts), "teacher": q(tt), "runs": runs}


def _label(name: str) -> str:
    """A student's short name: the file, with its folder when that says more (runs/w256/model)."""
    p = Path(name)
    return f"{p.parent.name}/{p.name}" if p.parent.name else p.name


def format_report(result: dict) -> str:
    """Markdown tables of a :func:`compare` result."""
    lines = [f"Held-out split `{result['split']}`: {result['clips']} clips; teacher "
             f"`{result['teacher']}`; teacher decisions = its top-{result['top_k']} tags.", "",
             "| student | hours | song ROC-AUC | song PR-AUC | chunk ROC-AUC | chunk PR-AUC | "
             "song MAD | top-5 overlap | top-1 equal | instrument ROC-AUC (teacher) | "
             "latency ms student / teacher |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    ti = result.get("teacher_instruments", {}).get("mean_roc_auc")
    for name, r in result["students"].items():
        si = r.get("instruments", {}).get("mean_roc_auc")
        inst = f"{si:.3f} ({ti:.3f})" if si is not None and ti is not None else "n/a"
        lat = r["latency_ms"]
        lines.append(
            f"| `{_label(name)}` | {r['hours']:.2f} | {r['song']['roc_auc']:.4f} | "
            f"{r['song']['pr_auc']:.4f} | {r['chunk']['roc_auc']:.4f} | "
            f"{r['chunk']['pr_auc']:.4f} | {r['song']['mad']:.4f} | "
            f"{r['song']['top5_overlap']:.3f} | {r['song']['top1_equal']:.3f} | {inst} | "
            f"{lat['student']['median']:.1f} / {lat['teacher']['median']:.1f} |")
    for name, r in result["students"].items():
        lines += ["", f"Per tag, `{_label(name)}` (chunk level; positives = teacher top-"
                      f"{result['top_k']}; sorted by ROC-AUC, worst first):", "",
                  "| tag | positives | ROC-AUC | PR-AUC | MAD | mean p teacher / student |",
                  "|---|---|---|---|---|---|"]
        rows = sorted(r["chunk"]["per_tag"],
                      key=lambda x: (x["roc_auc"] is None, x["roc_auc"] or 0))
        for x in rows:
            roc = "n/a" if x["roc_auc"] is None else f"{x['roc_auc']:.3f}"
            pr = "n/a" if x["pr_auc"] is None else f"{x['pr_auc']:.3f}"
            lines.append(f"| {x['tag']} | {x['positives']} | {roc} | {pr} | {x['mad']:.3f} | "
                         f"{x['teacher_mean']:.3f} / {x['student_mean']:.3f} |")
        if "instruments" in r:
            lines += ["", f"Instrument tags on {r['instruments']['renders']} held-out score "
                          f"renders, ROC-AUC against the rendered instruments:", "",
                      "| tag | renders with it | student | teacher | student - teacher |",
                      "|---|---|---|---|---|"]
            f = lambda a: "n/a" if a is None else f"{a:.3f}"  # noqa: E731
            for tag, v in r["instruments"]["per_tag"].items():
                tv = result["teacher_instruments"]["per_tag"][tag]["roc_auc"]
                sv = v["roc_auc"]
                d = "n/a" if sv is None or tv is None else f"{sv - tv:+.3f}"
                lines.append(f"| {tag} | {v['positives']} | {f(sv)} | {f(tv)} | {d} |")
            si = r["instruments"]["mean_roc_auc"]
            lines.append(f"| **mean** | | {f(si)} | {f(ti)} | "
                         + ("n/a" if si is None or ti is None else f"{si - ti:+.3f}") + " |")
    return "\n".join(lines)
