"""Training curves of one or more runs (their ``log.csv``): a markdown table and a PNG.

    python -m rt_tagger.training curves --run runs/w512 runs/w256 --png curves.png
"""
from __future__ import annotations

import csv
from pathlib import Path

from rt_tagger.errors import ConfigError

__all__ = ["curves_table", "plot_curves", "read_log"]


def read_log(run: str | Path) -> list[dict[str, str]]:
    path = Path(run) / "log.csv"
    if not path.is_file():
        raise ConfigError(f"{run}: no log.csv (not a training run directory)")
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def curves_table(runs: list[str | Path]) -> str:
    """One markdown table per run: epoch, optimiser, lr, losses, validation metrics, time."""
    out = []
    for run in runs:
        rows = read_log(run)
        out += [f"`{Path(run).name}` ({len(rows)} epochs; * = best so far, kept)", "",
                "| epoch | optimizer | lr | train loss | valid loss | valid ROC-AUC | "
                "valid PR-AUC | s |", "|---|---|---|---|---|---|---|---|"]
        for r in rows:
            star = "*" if r["best_epoch"] == r["epoch"] else ""
            out.append(f"| {r['epoch']}{star} | {r['optimizer']} | {r['lr']} | "
                       f"{float(r['train_loss']):.4f} | {float(r['val_loss']):.4f} | "
                       f"{float(r['val_roc_auc']):.4f} | {float(r['val_pr_auc']):.4f} | "
                       f"{float(r['seconds']):.0f} |")
        out.append("")
    return "\n".join(out)


def plot_curves(runs: list[str | Path], png: str | Path) -> Path:
    """Train/valid loss and valid ROC-AUC per epoch, all runs in one figure (needs matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError("--png needs matplotlib (pip install 'rt-tagger[explain]')") from None
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6), constrained_layout=True)
    for run in runs:
        rows = read_log(run)
        ep = [int(r["epoch"]) for r in rows]
        line, = a.plot(ep, [float(r["train_loss"]) for r in rows], label=f"{Path(run).name} train")
        a.plot(ep, [float(r["val_loss"]) for r in rows], "--", color=line.get_color(),
               label=f"{Path(run).name} valid")
        b.plot(ep, [float(r["val_roc_auc"]) for r in rows], color=line.get_color(),
               label=Path(run).name)
        switch = [int(r["epoch"]) for r, p in zip(rows[1:], rows) if r["phase"] != p["phase"]]
        for e in switch:
            b.axvline(e, color=line.get_color(), alpha=0.3, lw=0.8)
    a.set(xlabel="epoch", ylabel="BCE", title="loss (train: augmented chunks)")
    b.set(xlabel="epoch", ylabel="ROC-AUC", title="validation: agreement with the teacher")
    a.legend(fontsize=8)
    b.legend(fontsize=8)
    Path(png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)
    return Path(png)
