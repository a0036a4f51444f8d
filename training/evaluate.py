"""Song-level evaluation: average the chunk predictions of each clip, then tagging metrics.

As in the papers: each clip is cut into ``n_chunks`` (16) evenly spaced chunks of the model's
input length (``0``: every non-overlapping chunk), the sigmoid outputs are averaged over the
chunks, and macro ROC-AUC / PR-AUC are computed over the tags. Works for any registry model
(``musicnn.mtat``, a checkpoint path, ...) whose tags overlap the dataset's: tags are matched
by name and only the common ones are scored.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from rt_tagger.errors import ModelError

from .chunks import ChunkSource, model_logmel
from .data.dataset import Prepared
from .ddp import Dist, gather_rows
from .metrics import json_safe, tag_metrics

__all__ = ["evaluate", "format_table", "predict_songs"]


@torch.no_grad()
def predict_songs(model, source: ChunkSource, clips: np.ndarray, *, n_chunks: int = 16,
                  batch: int = 32, device=torch.device("cpu"), dist: Dist | None = None
                  ) -> np.ndarray:
    """``(len(clips), n_tags)`` song-level probabilities (mean sigmoid over chunks).

    Under DDP each rank predicts every ``world``-th clip and the rows are gathered.
    """
    dist = dist or Dist()
    was_training = model.training
    model.eval()
    mine = np.arange(dist.rank, len(clips), dist.world)
    rows: dict[int, np.ndarray] = {}
    pending: list[tuple[int, torch.Tensor]] = []

    def flush() -> None:
        if not pending:
            return
        x = torch.cat([c for _, c in pending]).to(device)
        p = torch.sigmoid(model(x).float()).cpu().numpy()
        at = 0
        for k, c in pending:
            rows[k] = p[at:at + len(c)].mean(axis=0)
            at += len(c)
        pending.clear()

    for k in mine:
        x, _ = source.song_chunks(int(clips[k]), n_chunks)
        pending.append((int(k), x))
        if sum(len(c) for _, c in pending) >= batch:
            flush()
    flush()
    model.train(was_training)
    merged: dict[int, np.ndarray] = {}
    for part in gather_rows(dist, rows):
        merged.update(part)
    n_tags = getattr(model, "n_tags", None) or next(iter(merged.values())).size
    out = np.zeros((len(clips), n_tags), np.float32)
    for k, v in merged.items():
        out[k] = v
    return out


def evaluate(model_name: str, data: str | Path, *, split: str = "test", n_chunks: int = 16,
             batch: int = 32, device: str = "cpu", model=None) -> dict:
    """Song-level metrics of a registry model or checkpoint on a prepared dataset split."""
    from rt_tagger.factory import create_model

    prepared = Prepared(data)
    if not prepared.labelled:
        raise ModelError(f"{data} has no labels ({prepared.meta['dataset']}); nothing to score")
    if model is None:
        model = create_model(model_name)
    ckpt = getattr(model, "checkpoint", None)
    model_tags = ckpt.tags if ckpt is not None else prepared.tags
    common = [t for t in model_tags if t in prepared.tags]
    if not common:
        raise ModelError(f"model {model_name} shares no tag with {prepared.meta['dataset']} "
                         f"(model tags: {', '.join(model_tags[:5])}, ...)")
    arch = ckpt.arch if ckpt is not None else model_name
    dev = torch.device(device)
    model.to(dev)
    source = ChunkSource(prepared, model_logmel(arch, model), model.cfg.input_length)
    clips = source.indices(split)
    probs = predict_songs(model, source, clips, n_chunks=n_chunks, batch=batch, device=dev)
    mi = [model_tags.index(t) for t in common]
    di = [prepared.tags.index(t) for t in common]
    result = tag_metrics(prepared.labels[clips][:, di], probs[:, mi], common)
    result.update({"model": str(model_name), "dataset": prepared.meta["dataset"],
                   "split": prepared.meta["split"], "subset": split, "n_clips": int(clips.size),
                   "n_chunks": n_chunks})
    result["_probs"], result["_labels"] = probs[:, mi], prepared.labels[clips][:, di]
    return result


def format_table(result: dict) -> str:
    """A per-tag table like Table 5 of Won et al., then the macro averages."""
    lines = [f"{'tag':<16} {'ROC-AUC':>8} {'PR-AUC':>8} {'positives':>9}"]
    scored = [r for r in result["per_tag"] if not np.isnan(r["roc_auc"])]
    for r in sorted(scored, key=lambda r: -r["roc_auc"]):
        lines.append(f"{r['tag']:<16} {r['roc_auc']:8.4f} {r['pr_auc']:8.4f} {r['positives']:9d}")
    lines.append(f"{'macro':<16} {result['roc_auc']:8.4f} {result['pr_auc']:8.4f} "
                 f"({result['n_tags_scored']} tags scored, {result['n_tags_skipped']} skipped: "
                 "a single class in this split)")
    return "\n".join(lines)


def public(result: dict) -> dict:
    """The JSON-serialisable part of an :func:`evaluate` result."""
    return json_safe({k: v for k, v in result.items() if not k.startswith("_")})
