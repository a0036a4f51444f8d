"""Tagging metrics in numpy: per-tag ROC-AUC, average precision (PR-AUC), F1-optimal thresholds.

Macro averages skip tags whose ground truth has a single class in the evaluated set (their
AUC is undefined) and say how many were skipped. Definitions match scikit-learn's
``roc_auc_score`` (ties count one half) and ``average_precision_score`` (step-wise AP).
"""
from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

__all__ = ["average_precision", "f1_thresholds", "json_safe", "roc_auc", "tag_metrics", "top_k"]


def roc_auc(y: np.ndarray, s: np.ndarray) -> float:
    """ROC-AUC of scores ``s`` for binary truth ``y`` (Mann-Whitney U); NaN if one class."""
    y = np.asarray(y).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(np.asarray(s, np.float64))  # average ranks for ties
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _pr_steps(y: np.ndarray, s: np.ndarray):
    """Precision/recall at each distinct score threshold, highest threshold first."""
    order = np.argsort(-np.asarray(s, np.float64), kind="mergesort")
    s_sorted, y_sorted = np.asarray(s, np.float64)[order], np.asarray(y)[order].astype(np.float64)
    last = np.r_[np.flatnonzero(np.diff(s_sorted)), s_sorted.size - 1]  # end of each tie group
    tp = np.cumsum(y_sorted)[last]
    fp = (last + 1) - tp
    return tp, fp, s_sorted[last]


def average_precision(y: np.ndarray, s: np.ndarray) -> float:
    """Average precision: sum over thresholds of (R_n - R_{n-1}) P_n; NaN without positives."""
    y = np.asarray(y).astype(bool)
    if not y.any() or y.all():
        return float("nan")
    tp, fp, _ = _pr_steps(y, s)
    precision, recall = tp / (tp + fp), tp / y.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def f1_thresholds(y: np.ndarray, p: np.ndarray, default: float = 0.5) -> np.ndarray:
    """Per-tag threshold maximising F1 (predict the tag when ``p >= threshold``).

    ``y``, ``p``: ``(n_clips, n_tags)``. The threshold is the midpoint between the chosen score
    and the next lower one, so it is not tied to one clip's exact value. Tags without a positive
    clip get ``default``.
    """
    y, p = np.asarray(y).astype(bool), np.asarray(p, np.float64)
    out = np.full(y.shape[1], default, np.float64)
    for j in range(y.shape[1]):
        if not y[:, j].any():
            continue
        tp, fp, thr = _pr_steps(y[:, j], p[:, j])
        f1 = 2 * tp / (tp + fp + y[:, j].sum())
        k = int(np.argmax(f1))
        lower = thr[k + 1] if k + 1 < thr.size else max(thr[k] - 1e-3, 0.0)
        out[j] = (thr[k] + lower) / 2
    return out


def top_k(p: np.ndarray, k: int) -> np.ndarray:
    """``(n, n_tags)`` uint8 decisions: 1 for the ``k`` highest scores of each row."""
    out = np.zeros(np.shape(p), np.uint8)
    np.put_along_axis(out, np.argsort(-np.asarray(p), axis=1)[:, :k], 1, axis=1)
    return out


def tag_metrics(y: np.ndarray, p: np.ndarray, tags: list[str]) -> dict:
    """Per-tag and macro ROC-AUC / PR-AUC for ``(n_clips, n_tags)`` truth and scores."""
    y, p = np.asarray(y), np.asarray(p)
    roc = np.array([roc_auc(y[:, j], p[:, j]) for j in range(y.shape[1])])
    pr = np.array([average_precision(y[:, j], p[:, j]) for j in range(y.shape[1])])
    valid = ~np.isnan(roc)
    return {
        "roc_auc": float(np.mean(roc[valid])) if valid.any() else float("nan"),
        "pr_auc": float(np.mean(pr[valid])) if valid.any() else float("nan"),
        "n_tags_scored": int(valid.sum()),
        "n_tags_skipped": int((~valid).sum()),
        "per_tag": [{"tag": t, "roc_auc": float(r), "pr_auc": float(a), "positives": int(n)}
                    for t, r, a, n in zip(tags, roc, pr, y.sum(axis=0))],
    }


def json_safe(obj):
    """``obj`` with numpy scalars as Python numbers and NaN/inf as ``None`` (strict JSON)."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj
