"""The default model's report card: a student against its teacher on held-out sources and probes.

``python -m rt_tagger.training report --teacher musicnn.mtat --model STUDENT [--model OTHER ...]
--data PREPARED --corpus CORPUS --work DIR --markdown report.md --json report.json``

Everything is measured the way a user meets the model (hop 0.5 s, the CLI's defaults), on
sources no model trained on (the corpus' ``test`` split, :mod:`.data.corpus`):

* **song level on held-out real music** (soundtracks, music on hold, stems; not renders): every
  chunk at the runtime's hop, a song's vector is the mean of its chunks; per source and overall:
  overlap of the student's and the teacher's top-5 tags, how often their top-1 tag is the same,
  mean |difference| of the vectors;
* **instrument in the top 3** on General MIDI renders and on real solo recordings (the clip sets
  of :mod:`.teachers`), student and teacher, with the clips the teacher gets and the student misses;
* **singing**: held-out sung clips (WORLD-resynthesised voices over backing tracks, see
  :mod:`.corpus.sing`): when the teacher has a vocal tag in its top 5, does the student?
* **events per minute**: the ``rt-tagger`` command itself on two-minute excerpts of held-out
  tracks from different sources; the student at its own thresholds (the default), the teacher at
  0.5 (``--threshold 0.5``); tag_on + tag_off per minute;
* **probes**: digital silence, room tone (pink noise at -60 dBFS), white and pink noise at
  -20 dBFS, a 440 Hz sine at -12 dBFS, and held-out speech, through the same command: which tags
  switch on.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from rt_tagger.errors import ConfigError

from .data.corpus import read_manifest
from .data.dataset import Prepared

__all__ = ["VOCAL_TAGS", "format_report", "report"]

VOCAL_TAGS = ("vocal", "vocals", "singing", "voice", "male", "female", "man", "woman", "male vocal",
              "female vocal", "male voice", "female voice", "choir", "choral", "opera")
REAL_KINDS = ("music", "stem")
HOP_SECONDS = 0.5
SR = 16000


def _model(name: str):
    from rt_tagger.factory import create_model

    return create_model(name).eval()



def _shares_body(model, teacher) -> bool:
    """Whether ``model`` is a musicnn_att whose body is ``teacher``'s (tensor for tensor)."""
    from rt_tagger.models.musicnn_att import BODY_PREFIXES, MusicnnAtt

    if not isinstance(model, MusicnnAtt) or not hasattr(teacher, "body_and_logits"):
        return False
    mine, theirs = model.state_dict(), teacher.state_dict()
    return all(k in mine and mine[k].shape == v.shape and bool((mine[k] == v).all())
               for k, v in theirs.items() if k.startswith(BODY_PREFIXES))


def _song_vectors(models: dict, store, clips, hop_frames: int, teacher=None) -> dict[str, np.ndarray]:
    """Mean chunk probabilities of each clip for each model (chunks every ``hop_frames``, as
    the runtime cuts them). Models whose body is ``teacher``'s are run on the teacher's body
    output of the same pass (``teacher`` is then in the result under the key ``"teacher"``)."""
    import torch

    from .data.dataset import take

    length = next(iter(models.values())).input_length if models else teacher.input_length
    out: dict[str, list] = {k: [] for k in (*models, *(["teacher"] if teacher is not None else []))}
    shared = {k: teacher is not None and _shares_body(m, teacher) for k, m in models.items()}
    for i in clips:
        x = store.clip(int(i))
        starts = np.arange(0, max(x.shape[0] - length, 0) + 1, hop_frames)
        probs: dict[str, list] = {k: [] for k in out}
        with torch.inference_mode():
            for b in range(0, starts.size, 16):
                chunk = torch.from_numpy(np.stack([take(x, int(s), length) for s in starts[b:b + 16]]))
                body = None
                if teacher is not None:
                    body, logits = teacher.body_and_logits(chunk)
                    probs["teacher"].append(torch.sigmoid(logits).numpy())
                for k, m in models.items():
                    y = m.head(body) if shared[k] else m(chunk)
                    probs[k].append(torch.sigmoid(y).numpy())
        for k in out:
            out[k].append(np.concatenate(probs[k]).mean(0))
    return {k: np.stack(v) for k, v in out.items()}


def _top(p: np.ndarray, k: int) -> list[set[int]]:
    return [set(row) for row in np.argsort(-p, axis=1)[:, :k]]


def song_agreement(teacher: np.ndarray, student: np.ndarray, sources: list[str]) -> dict:
    """Top-5 overlap, same top-1 and mean |diff| overall and per source."""
    t5, s5 = _top(teacher, 5), _top(student, 5)
    overlap = np.array([len(a & b) / 5 for a, b in zip(t5, s5)])
    top1 = teacher.argmax(1) == student.argmax(1)
    mad = np.abs(teacher - student).mean(1)
    src = np.array(sources)
    per = {s: {"songs": int((src == s).sum()), "top5_overlap": float(overlap[src == s].mean()),
               "same_top1": float(top1[src == s].mean()), "mad": float(mad[src == s].mean())}
           for s in sorted(set(sources))}
    return {"songs": len(sources), "top5_overlap": float(overlap.mean()),
            "same_top1": float(top1.mean()), "mad": float(mad.mean()), "per_source": per}


def _cli_events(model: str, wav: Path, threshold: float | None, out: Path) -> dict:
    """Run ``rt-tagger`` on ``wav``: tags switched on and tag_on/off events."""
    cmd = [sys.executable, "-m", "rt_tagger", str(wav), "--model", model, "-q", "--threads", "1",
           "--jsonl", str(out)]
    if threshold is not None:
        cmd += ["--threshold", str(threshold)]
    out.unlink(missing_ok=True)  # --jsonl appends
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if res.returncode != 0:
        raise ConfigError(f"rt-tagger failed on {wav}: {res.stderr.strip()[-300:]}")
    events = [r for r in map(json.loads, out.read_text().splitlines())
              if r.get("type") == "event" and r.get("event") in ("tag_on", "tag_off")]
    return {"on": sorted({e["tag"] for e in events if e["event"] == "tag_on"}),
            "events": len(events)}


def _write(path: Path, y: np.ndarray) -> Path:
    import soundfile

    soundfile.write(path, np.clip(y, -1, 1).astype(np.float32), SR)
    return path


def probe_files(work: Path, speech: list[Path]) -> dict[str, Path]:
    """20 s probe signals (and up to two held-out speech files) as 16 kHz wav in ``work``."""
    rng = np.random.default_rng(0)
    n = 20 * SR

    def coloured(alpha: float, db: float) -> np.ndarray:
        spec = np.fft.rfft(rng.standard_normal(n)) * np.maximum(np.fft.rfftfreq(n, 1 / SR), 1) ** -alpha
        y = np.fft.irfft(spec, n)
        return y / np.sqrt(np.mean(y ** 2)) * 10 ** (db / 20)

    work.mkdir(parents=True, exist_ok=True)
    files = {
        "digital silence": _write(work / "silence.wav", np.zeros(n)),
        "room tone (-60 dBFS pink)": _write(work / "room.wav", coloured(0.5, -60)),
        "white noise (-20 dBFS)": _write(work / "white.wav", coloured(0.0, -20)),
        "pink noise (-20 dBFS)": _write(work / "pink.wav", coloured(0.5, -20)),
        "sine 440 Hz (-12 dBFS)": _write(work / "sine.wav",
                                         0.25 * np.sin(2 * np.pi * 440 * np.arange(n) / SR)),
    }
    for p in speech[:2]:
        files[f"speech ({p.parent.name}/{p.name})"] = p
    return files


def excerpt_files(work: Path, corpus: Path, rows: list[dict], n: int = 6) -> list[Path]:
    """Two-minute excerpts (0:30-2:30 where long enough) of the longest held-out real track of
    ``n`` different sources."""
    import soundfile

    work.mkdir(parents=True, exist_ok=True)
    best: dict[str, dict] = {}
    for r in rows:
        if float(r["duration_s"]) >= 125 and (r["source"] not in best or
                                              float(r["duration_s"]) > float(best[r["source"]]["duration_s"])):
            best[r["source"]] = r
    out = []
    for src in sorted(best, key=lambda s: -float(best[s]["duration_s"]))[:n]:
        y, sr = soundfile.read(corpus / best[src]["path"], dtype="float32", always_2d=True)
        start = int(30 * sr) if y.shape[0] >= 150 * sr else 0
        out.append(_write(work / f"excerpt_{src}.wav", y[start:start + 120 * sr].mean(1)))
    return out


def report(teacher: str, students: list[str], data: str | os.PathLike, corpus: str | os.PathLike,
           work: str | os.PathLike, *, threads: int = 1, skip: tuple[str, ...] = (),
           limit: int = 0) -> dict:
    import torch

    from . import teachers as teacher_sets

    torch.set_num_threads(threads)
    prep, corpus, work = Prepared(data), Path(corpus), Path(work)
    work.mkdir(parents=True, exist_ok=True)
    rows = {r["path"]: r for r in read_manifest(corpus)}
    t_model = _model(teacher)
    tags = list(t_model.checkpoint.tags)
    result: dict = {"teacher": teacher, "students": students, "tags": tags}
    models = {name: _model(name) for name in students}

    if "teacher" in students:
        raise ConfigError("a student cannot be called 'teacher'")
    test = [i for i in np.flatnonzero(prep.splits == "test")]
    real = [i for i in test if rows.get(prep.keys[i], {}).get("kind") in REAL_KINDS]
    sung = [i for i in test if rows.get(prep.keys[i], {}).get("kind") == "sung"]
    if limit:  # a quick look: every limit-th clip
        real, sung = real[::max(1, len(real) // limit)], sung[::max(1, len(sung) // limit)]

    def vectors(clips) -> dict[str, np.ndarray]:
        """Song vectors of the teacher (``"teacher"``) and every student, grouped by log-mel."""
        t_cfg = t_model.checkpoint.logmel_config
        groups: dict = {}
        for name, m in models.items():
            groups.setdefault(m.checkpoint.logmel_config, {})[name] = m
        res = {}
        for cfg in {t_cfg, *groups}:
            hop = round(HOP_SECONDS * cfg.sample_rate / cfg.hop_length)
            res.update(_song_vectors(groups.get(cfg, {}), prep.features(cfg), clips, hop,
                                     teacher=t_model if cfg == t_cfg else None))
        return res

    if "songs" not in skip:
        v = vectors(real)
        srcs = [rows[prep.keys[i]]["source"] for i in real]
        result["songs"] = {s: song_agreement(v["teacher"], v[s], srcs) for s in models}
    if "sung" not in skip and sung:
        v = vectors(sung)
        vocal = [tags.index(t) for t in VOCAL_TAGS]
        t_has = [bool(set(r) & set(vocal)) for r in np.argsort(-v["teacher"], 1)[:, :5]]
        result["sung"] = {"clips": len(sung), "teacher_vocal_top5": int(sum(t_has))}
        for s in models:
            s_top = np.argsort(-v[s], 1)[:, :5]
            s_has = [bool(set(r) & set(vocal)) for r in s_top]
            result["sung"][s] = {"vocal_top5": int(sum(s_has)),
                                 "vocal_top5_where_teacher": int(sum(a and b for a, b in zip(t_has, s_has)))}
    if "instruments" not in skip:
        result["instruments"] = {}
        for set_name, clips in (("renders", teacher_sets.render_set(work)),
                                ("real", teacher_sets.real_set(work))):
            res = {}
            for name in (teacher, *students):  # one at a time: their features may differ
                probs, _ = teacher_sets.teacher_probs(clips, (name,), threads)
                res[name] = teacher_sets.scores(clips, probs[name], tags)
            t_miss = {m.split(" -> ")[0] for m in res[teacher]["misses"]}  # the clip, not its tags
            for s in students:
                res[s]["misses_where_teacher_hits"] = sorted(
                    m for m in res[s]["misses"] if m.split(" -> ")[0] not in t_miss)
            result["instruments"][set_name] = {"clips": len(clips), **res}
    if "cli" not in skip:
        test_real_rows = [rows[prep.keys[i]] for i in real]
        speech = [corpus / rows[prep.keys[i]]["path"] for i in test
                  if rows.get(prep.keys[i], {}).get("kind") in ("speech", "tts")]
        ex = excerpt_files(work / "excerpts", corpus, test_real_rows, n=min(limit, 6) if limit else 6)
        probes = probe_files(work / "probes", speech[:1] + speech[-1:])
        runs = {teacher: 0.5, **{s: None for s in students}}
        result["events"] = {name: [] for name in runs}
        result["probes"] = {name: {} for name in runs}
        for name, thr in runs.items():
            for k, wav in enumerate(ex):
                r = _cli_events(name, wav, thr, work / f"events_{k}.jsonl")
                result["events"][name].append({"excerpt": wav.name, "per_minute": r["events"] / 2.0})
            for label, wav in probes.items():
                result["probes"][name][label] = _cli_events(name, wav, thr, work / "probe.jsonl")["on"]
    return result


def _name(s: str) -> str:
    return Path(s).parent.name + "/" + Path(s).name if s.endswith(".safetensors") else s


def format_report(r: dict) -> str:
    t, ss = r["teacher"], r["students"]
    lines = []
    if "songs" in r:
        lines += ["### Song level, held-out real music (hop 0.5 s)", "",
                  "| model | songs | top-5 overlap with teacher | same top-1 | mean abs diff |",
                  "|---|---:|---:|---:|---:|"]
        for s in ss:
            a = r["songs"][s]
            lines.append(f"| `{_name(s)}` | {a['songs']} | {a['top5_overlap']:.3f} | "
                         f"{a['same_top1']:.3f} | {a['mad']:.4f} |")
        lines += ["", "Per source (top-5 overlap / same top-1):", "",
                  "| source | songs | " + " | ".join(f"`{_name(s)}`" for s in ss) + " |",
                  "|---|---:|" + "---|" * len(ss)]
        first = r["songs"][ss[0]]["per_source"]
        for src in first:
            lines.append(f"| {src} | {first[src]['songs']} | " + " | ".join(
                f"{r['songs'][s]['per_source'][src]['top5_overlap']:.2f} / "
                f"{r['songs'][s]['per_source'][src]['same_top1']:.2f}" for s in ss) + " |")
    if "instruments" in r:
        lines += ["", "### Instrument in the top 3", "",
                  "| clip set | `" + t + "` | " + " | ".join(f"`{_name(s)}`" for s in ss) + " |",
                  "|---|---:|" + "---:|" * len(ss)]
        for set_name, res in r["instruments"].items():
            lines.append(f"| {set_name} ({res['clips']} clips) | {res[t]['top3_hits']}/{res[t]['judged']} | "
                         + " | ".join(f"{res[s]['top3_hits']}/{res[s]['judged']}" for s in ss) + " |")
        for set_name, res in r["instruments"].items():
            for s in ss:
                miss = res[s]["misses_where_teacher_hits"]
                lines.append(f"\n{set_name}, `{_name(s)}` misses where the teacher hits ({len(miss)}): "
                             + ("; ".join(miss) if miss else "none"))
    if "sung" in r:
        sg = r["sung"]
        lines += ["", f"### Singing: {sg['clips']} held-out sung clips; the teacher has a vocal tag in "
                      f"its top 5 on {sg['teacher_vocal_top5']}", ""]
        for s in ss:
            lines.append(f"- `{_name(s)}`: vocal tag in its top 5 on {sg[s]['vocal_top5']}, "
                         f"on {sg[s]['vocal_top5_where_teacher']} of the teacher's {sg['teacher_vocal_top5']}")
    if "events" in r:
        lines += ["", "### Tag on/off events per minute, two-minute held-out excerpts (`rt-tagger FILE`)", "",
                  "| excerpt | `" + t + "` at 0.5 | " + " | ".join(f"`{_name(s)}` (its thresholds)" for s in ss) + " |",
                  "|---|---:|" + "---:|" * len(ss)]
        for k, e in enumerate(r["events"][t]):
            lines.append(f"| {e['excerpt']} | {e['per_minute']:.1f} | " + " | ".join(
                f"{r['events'][s][k]['per_minute']:.1f}" for s in ss) + " |")
        lines.append("| **mean** | " + " | ".join(
            f"**{np.mean([e['per_minute'] for e in r['events'][m]]):.1f}**" for m in (t, *ss)) + " |")
        lines += ["", "### Probes: tags switched on", "",
                  "| probe | `" + t + "` at 0.5 | " + " | ".join(f"`{_name(s)}`" for s in ss) + " |",
                  "|---|---|" + "---|" * len(ss)]
        for label in r["probes"][t]:
            lines.append(f"| {label} | " + " | ".join(
                ", ".join(r["probes"][m][label]) or "none" for m in (t, *ss)) + " |")
    return "\n".join(lines)
