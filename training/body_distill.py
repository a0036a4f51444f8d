"""Distil a ``musicnn_att`` student from its musicnn teacher on a body cache.

``python -m rt_tagger.training distill-body --cache CACHE --out RUN [--width 256 ...]``

The student shares the teacher's frozen body (:mod:`rt_tagger.models.musicnn_att`), so training
only needs the cached body outputs (:mod:`.body_cache`): each step draws a batch of rows from
the clean, augmented and probe parts, and the back-end learns the teacher's probabilities
(binary cross-entropy against ``sigmoid(teacher logits)``). AdamW with linear warm-up and
cosine decay; the validation part (whole held-out sources) is scored every ``--eval-every``
steps and the best back-end (lowest mean |student - teacher| probability) is kept.

Where the instruments of a clip are known by construction (General MIDI renders, drum loops, the
sung clips' backing, isolated stems: the corpus manifest's ``tags``) and the teacher has none of
them among its 3 most probable tags on a chunk, ``--truth F`` raises the target of the playing
instrument it ranks highest to ``F`` times the teacher's 3rd-highest probability (so into the
top 3); every other target stays the teacher's. The teacher hears a harpsichord through a small
soundfont as a guitar; the student need not, and the correction is as small as that allows (a
floor on every known instrument, tried first, moved the student away from the teacher on real
music: song-level top-5 overlap 0.94 -> 0.87).

At the end the best back-end and the teacher's body are written as one checkpoint
(``RUN/model.safetensors``) whose per-tag thresholds say "the teacher at 0.5 would call it":
on the validation chunks, tag ``k``'s threshold is the one at which the student's decisions
best agree (F1) with ``teacher probability >= 0.5``; a tag the teacher never calls there keeps
a threshold no validation chunk reaches (the student's maximum there, at least 0.5).
"""
from __future__ import annotations

import csv
import datetime
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from rt_tagger.errors import ConfigError

from .body_cache import completed_rows, load_part
from .metrics import json_safe

__all__ = ["INSTRUMENT_TAGS", "BodyDistillConfig", "calibrate_thresholds", "distill_body",
           "instrument_top3", "known_instruments", "lift_targets"]


@dataclass
class BodyDistillConfig:
    cache: str = ""
    out: str = "runs/musicnn_att"
    width: int = 128
    layers: int = 2
    heads: int = 4
    ffn_dim: int = 0  # 0: 4 x width
    dropout: float = 0.1
    pool: int = 4  # frames per attention step
    steps: int = 4000
    batch_size: int = 64
    lr: float = 5e-4
    weight_decay: float = 0.01
    warmup: int = 500
    probe_weight: float = 1.0  # sampling weight of a probe row relative to a music row
    eval_every: int = 1000
    threads: int = 1
    seed: int = 0
    init: str = ""  # start from this run's best.pt (e.g. to go on with more cache parts)
    stop_after: int = 0  # stop after this many steps (the schedule still spans --steps); 0: all
    truth: float = 0.0  # lift a known instrument the teacher misses to truth x its 3rd prob.; 0: off

    def validate(self) -> "BodyDistillConfig":
        if not self.cache:
            raise ConfigError("distill-body needs --cache (built by body-cache)")
        for name in ("width", "layers", "heads", "pool", "steps", "batch_size", "eval_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"distill-body: {name} must be >= 1")
        if self.truth and self.truth <= 1.0:
            raise ConfigError("distill-body: --truth is a factor > 1 (or 0: off)")
        if self.width % self.heads:
            raise ConfigError(f"distill-body: width {self.width} is not divisible by heads {self.heads}")
        return self


def calibrate_thresholds(student_p: np.ndarray, teacher_p: np.ndarray,
                         min_positives: int = 5) -> np.ndarray:
    """Per-tag thresholds on the student's probabilities that best reproduce the teacher's
    decisions at 0.5 (F1 between ``student >= t`` and ``teacher >= 0.5``), see the module doc."""
    from .metrics import f1_thresholds

    y = teacher_p >= 0.5
    out = f1_thresholds(y, student_p, default=0.5)
    for k in range(y.shape[1]):
        if y[:, k].sum() < min_positives:
            out[k] = max(0.5, float(student_p[:, k].max()) + 1e-3) if not y[:, k].any() \
                else max(0.5, out[k])
    return out


#: MTAT tags that name an instrument (or an ensemble of them): what ``--truth`` may change
INSTRUMENT_TAGS = ("cello", "choir", "drums", "flute", "guitar", "harp", "harpsichord", "piano",
                   "sitar", "strings", "synth", "violin")
_TRUTH_KINDS = ("midi_render", "drum_loop", "sung", "stem")


def known_instruments(cache: str, part: str, n: int, tags: list[str]) -> np.ndarray | None:
    """``(n, n_tags)`` booleans: the instrument tags known to play in each of ``part``'s first
    ``n`` rows (from the corpus manifest; see the module doc), or None where nothing is known."""
    from .data.corpus import read_manifest

    if part == "probes":  # synthetic non-music: no instrument plays
        return None
    data = json.loads((Path(cache) / "cache.json").read_text())["data"]
    prepared = json.loads((Path(data) / "prepared.json").read_text())
    if prepared.get("dataset") != "corpus":
        return None
    index = json.loads((Path(cache) / part / "index.json").read_text())
    rows = {r["path"]: r for r in read_manifest(prepared["root"])}
    per_clip = {}
    for c, key in index["keys"].items():
        row = rows.get(key)
        if row is not None and row["kind"] in _TRUTH_KINDS:
            playing = {t for t in row["tags"].split(";") if t} & set(INSTRUMENT_TAGS)
            per_clip[int(c)] = np.array([t in playing for t in tags])
    out = np.zeros((n, len(tags)), bool)
    for r, (c, _) in enumerate(index["rows"][:n]):
        if c in per_clip:
            out[r] = per_clip[c]
    return out if out.any() else None


def lift_targets(p: np.ndarray, present: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """``(targets, lifted rows)``: ``p`` (teacher probabilities) with, on each row where no
    ``present`` tag is among the 3 most probable, the most probable present tag raised to
    ``factor`` x the 3rd-highest probability (at most 1)."""
    third = np.sort(p, axis=1)[:, -3]
    masked = np.where(present, p, -1.0)
    fix = present.any(1) & ~(masked >= third[:, None]).any(1)
    out = p.copy()
    best = masked.argmax(1)
    out[fix, best[fix]] = np.minimum(1.0, third[fix] * factor)
    return out, fix


def _rows(cache: str, probe_weight: float, quiet: bool, tags: list[str] | None = None,
          truth: bool = False) -> tuple[list, np.ndarray, np.ndarray, np.ndarray]:
    """The training parts present (train, aug, probes: what has been computed of each), their
    sampling weights, the teacher's logits and (with ``truth``) the known instruments."""
    parts, weights, logits, known = [], [], [], []
    for part in ("train", "aug", "probes"):
        done, planned = completed_rows(cache, part)
        if not done:
            continue
        if not quiet:
            print(f"{part}: {done} of {planned} rows", flush=True)
        f, lg, _ = load_part(cache, part, partial=True)
        parts.append(f)
        logits.append(lg)
        weights.append(np.full(len(lg), probe_weight if part == "probes" else 1.0, np.float64))
        k = known_instruments(cache, part, len(lg), tags or []) if truth else None
        if k is not None and not quiet:
            print(f"{part}: known instruments on {int(k.any(1).sum())} rows", flush=True)
        known.append(np.zeros(lg.shape, bool) if k is None else k)
    if not parts:
        raise ConfigError(f"{cache}: no training part in the body cache")
    return parts, np.concatenate(weights), np.concatenate(logits), np.concatenate(known)


def distill_body(cfg: BodyDistillConfig, quiet: bool = False) -> Path:
    import torch
    import torch.nn.functional as F

    from rt_tagger.checkpoint import save_checkpoint
    from rt_tagger.factory import create_model

    cfg.validate()
    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    rng = np.random.default_rng(cfg.seed)
    info = json.loads((Path(cfg.cache) / "cache.json").read_text())
    teacher = create_model(info["teacher"])
    arch_args = {"width": cfg.width, "layers": cfg.layers, "heads": cfg.heads,
                 "ffn_dim": cfg.ffn_dim or None, "dropout": cfg.dropout, "pool": cfg.pool,
                 "input_length": info["length"], "n_tags": teacher.n_tags}
    student = create_model("musicnn_att", **arch_args)
    student.load_body(teacher.state_dict())
    if cfg.init:
        student.load_state_dict(torch.load(Path(cfg.init), map_location="cpu", weights_only=True)["state"])
    parts, weights, t_logits, known = _rows(cfg.cache, cfg.probe_weight, quiet,
                                            list(teacher.checkpoint.tags), cfg.truth > 0)
    offsets = np.cumsum([0] + [len(p) for p in parts])
    weights /= weights.sum()
    v_feats, v_logits, _ = load_part(cfg.cache, "valid")
    v_probs = 1 / (1 + np.exp(-v_logits))
    tags = list(teacher.checkpoint.tags)
    present = known_instruments(cfg.cache, "valid", len(v_probs), tags) if cfg.truth else None
    # with --truth the student is told to differ from the teacher where the teacher misses a
    # known instrument: it is then scored against the teacher (and the best kept) on the other
    # rows, and the known rows are scored by whether a playing instrument is in its top 3
    free = np.ones(len(v_probs), bool) if present is None else \
        ~lift_targets(v_probs, present, cfg.truth)[1]
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(asdict(cfg), indent=1))
    params = [p for p in student.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / cfg.warmup)
                                              * 0.5 * (1 + math.cos(math.pi * min(s, cfg.steps) / cfg.steps)))

    def fetch(rows: np.ndarray) -> np.ndarray:
        rows = np.sort(rows)
        which = np.searchsorted(offsets, rows, side="right") - 1
        return np.concatenate([parts[w][rows[which == w] - offsets[w]] for w in np.unique(which)])

    def predict(feats: np.ndarray) -> np.ndarray:
        student.eval()
        res = []
        with torch.inference_mode():
            for i in range(0, len(feats), 256):
                x = torch.from_numpy(np.asarray(feats[i:i + 256], np.float32))
                res.append(torch.sigmoid(student.head(x)).numpy())
        student.train()
        return np.concatenate(res)

    best, best_state, t0, run_loss = math.inf, None, time.time(), []
    student.train()
    with open(out / "log.csv", "w", newline="") as log:
        writer = csv.writer(log)
        writer.writerow(["step", "lr", "train_loss", "valid_mad", "valid_top5", "valid_agree05",
                         "valid_inst_top3", "seconds"])
        last = min(cfg.stop_after or cfg.steps, cfg.steps)
        for step in range(1, last + 1):
            rows = np.sort(rng.choice(len(weights), cfg.batch_size, p=weights))
            x = torch.from_numpy(fetch(rows).astype(np.float32))
            target = 1 / (1 + np.exp(-t_logits[rows]))
            if cfg.truth:
                target = lift_targets(target, known[rows], cfg.truth)[0]
            target = torch.from_numpy(target.astype(np.float32))
            loss = F.binary_cross_entropy_with_logits(student.head(x), target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            run_loss.append(loss.item())
            if step % cfg.eval_every and step != last:
                continue
            p = predict(v_feats)
            mad = float(np.abs(p[free] - v_probs[free]).mean())
            top5 = _top_overlap(p[free], v_probs[free], 5)
            agree = float(((p[free] >= 0.5) == (v_probs[free] >= 0.5)).mean())
            inst = instrument_top3(p, present)
            writer.writerow([step, f"{sched.get_last_lr()[0]:.3g}", f"{np.mean(run_loss):.5f}",
                             f"{mad:.5f}", f"{top5:.4f}", f"{agree:.4f}",
                             "" if inst is None else f"{inst:.4f}", f"{time.time() - t0:.0f}"])
            log.flush()
            if not quiet:
                print(f"step {step}: loss {np.mean(run_loss):.4f} valid |dp| {mad:.4f} "
                      f"top-5 {top5:.3f} agree@0.5 {agree:.4f}"
                      + ("" if inst is None else f" instrument in top 3 {inst:.3f}")
                      + f" ({time.time() - t0:.0f} s)", flush=True)
            run_loss = []
            if mad < best:
                best = mad
                best_state = {k: v.detach().clone() for k, v in student.state_dict().items()}
                torch.save({"step": step, "state": best_state}, out / "best.pt")
    student.load_state_dict(best_state)
    student.eval()
    p = predict(v_feats)
    thresholds = calibrate_thresholds(p, v_probs)
    provenance = json_safe({
        "source": "rt_tagger.training distill-body", "date": datetime.date.today().isoformat(),
        "teacher": info["teacher"], "cache": info, "config": asdict(cfg),
        "best_valid_mad": best, "valid_chunks": int(len(v_probs)),
        "valid_chunks_followed": int(free.sum()),
        "thresholds": "per tag, the student threshold that best agrees (F1) with the teacher "
                      "at 0.5 on the validation chunks (whole held-out sources)",
    })
    path = save_checkpoint(out / "model.safetensors", student, arch="musicnn_att",
                           arch_args=arch_args,
                           tags=list(teacher.checkpoint.tags), sample_rate=teacher.checkpoint.sample_rate,
                           input_kind="logmel", input_length=info["length"],
                           logmel=teacher.checkpoint.logmel, thresholds=thresholds.tolist(),
                           provenance=provenance,
                           model_card=f"musicnn_att distilled from {info['teacher']}")
    return path


def instrument_top3(p: np.ndarray, present: np.ndarray | None) -> float | None:
    """Share of the rows with a known playing instrument (``present``, boolean per tag) that
    have one of them in ``p``'s top 3; None without such rows."""
    if present is None or not present.any():
        return None
    rows = present.any(1)
    top3 = np.argsort(-p[rows], axis=1)[:, :3]
    return float(np.take_along_axis(present[rows], top3, 1).any(1).mean())


def _top_overlap(p: np.ndarray, q: np.ndarray, k: int) -> float:
    a = np.argsort(-p, axis=1)[:, :k]
    b = np.argsort(-q, axis=1)[:, :k]
    return float(np.mean([len(set(x) & set(y)) / k for x, y in zip(a, b)]))


def add_arguments(parser) -> None:
    for name, default in asdict(BodyDistillConfig()).items():
        parser.add_argument("--" + name.replace("_", "-"), type=type(default), default=default)


def from_args(ns) -> BodyDistillConfig:
    return BodyDistillConfig(**{k: getattr(ns, k) for k in asdict(BodyDistillConfig())})

