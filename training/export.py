"""Export a run's best epoch as a self-describing registry checkpoint (``.safetensors``).

The file carries architecture and arguments, tags, log-mel parameters, per-tag F1-optimal
thresholds chosen on the validation split (song-level), and provenance: dataset, split,
epochs, best epoch, validation and test metrics, the training configuration. Loading it with
``create_model(path)`` (or ``rt-tagger --model path``) gives the trained model.
"""
from __future__ import annotations

import datetime
import json
from pathlib import Path

import torch

from rt_tagger.checkpoint import save_checkpoint
from rt_tagger.errors import ConfigError

from .chunks import ChunkSource
from .config import TrainConfig
from .data.dataset import Prepared
from .evaluate import predict_songs
from .metrics import f1_thresholds, json_safe, tag_metrics
from .train import load_run_file

__all__ = ["export_run"]


def export_run(run: str | Path, out: str | Path | None = None, *, device: str = "cpu",
               model_card: str | None = None, extra_provenance: dict | None = None) -> Path:
    """Write ``run``'s best weights to ``out`` (default ``RUN/model.safetensors``).

    ``model_card`` replaces the one-line card; ``extra_provenance`` is merged into the
    provenance (e.g. how to rebuild the training data, licences of its sources)."""
    from rt_tagger.factory import create_model

    run = Path(run)
    for name in ("config.json", "best.pt", "log.csv"):
        if not (run / name).is_file():
            raise ConfigError(f"{run} is not a finished training run: {name} is missing")
    info = json.loads((run / "config.json").read_text())
    cfg = TrainConfig.from_dict(info["config"])
    tags, arch_args = info["tags"], info["arch_args"]
    best = load_run_file(run / "best.pt", "cpu")
    model = create_model(cfg.model, **arch_args)
    model.load_state_dict(best["model"])
    dev = torch.device(device)
    model.to(dev).eval()
    logmel, length = model.cfg.logmel, model.cfg.input_length
    data = Prepared(info["data"])
    source = ChunkSource(data, logmel, length)
    splits = {}
    reference = None
    if cfg.teacher:
        from .distill import Teacher

        reference = Teacher(cfg.teacher, data, logmel, length, dev)
    for split in ("valid", "test"):
        clips = source.indices(split)
        if clips.size == 0:
            continue
        probs = predict_songs(model, source, clips, n_chunks=cfg.val_chunks,
                              batch=cfg.eval_batch, device=dev)
        truth = (reference.song_labels(clips, cfg.val_chunks, cache=run / f"teacher_{split}.npy")
                 if reference is not None else data.labels[clips])
        m = tag_metrics(truth, probs, tags)
        splits[split] = (m, probs, truth)
    valid_m, valid_p, valid_y = splits["valid"]
    thresholds = f1_thresholds(valid_y, valid_p).tolist()
    with open(run / "log.csv") as f:
        epochs_run = sum(1 for _ in f) - 1
    metrics = {s: {"roc_auc": m["roc_auc"], "pr_auc": m["pr_auc"], "n_clips": int(len(y)),
                   "n_tags_scored": m["n_tags_scored"]} for s, (m, _, y) in splits.items()}
    provenance = {
        "source": "rt_tagger.training", "date": datetime.date.today().isoformat(),
        "dataset": data.meta["dataset"], "split": data.meta["split"],
        "dataset_root": data.meta["root"], "epochs": epochs_run, "best_epoch": best["epoch"],
        "optimizer": cfg.optimizer, "teacher": cfg.teacher or None,
        "metrics": metrics,
        "evaluation": f"song-level, mean of {cfg.val_chunks or 'all'} chunks; macro over tags",
        "thresholds": "per-tag F1-optimal on the validation split",
        "per_tag_test": [{k: r[k] for k in ("tag", "roc_auc", "pr_auc")}
                         for r in splits["test"][0]["per_tag"]] if "test" in splits else None,
        "config": cfg.to_dict(),
        **(extra_provenance or {}),
    }
    out = Path(out) if out is not None else run / "model.safetensors"
    kind = model.cfg.input_kind
    return save_checkpoint(
        out, model.cpu(), arch=cfg.model, arch_args=arch_args, tags=tags,
        sample_rate=data.sample_rate, input_kind=kind, input_length=length,
        logmel=logmel, thresholds=thresholds,
        provenance=json_safe(provenance),
        model_card=model_card or f"{cfg.model} trained on {data.meta['dataset']} ({data.meta['split']}) "
                   f"with rt_tagger.training; test ROC-AUC "
                   f"{metrics.get('test', {}).get('roc_auc', float('nan')):.4f}")

