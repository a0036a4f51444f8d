"""Training, top to bottom: data -> model -> epochs (train, validate, checkpoint, log) -> export.

    python -m rt_tagger.training train --model spec_att --dataset mtat --data /data/mtat
    torchrun --nproc_per_node 2 -m rt_tagger.training train --data prepared/mtat ...

Run directory ``--out``: ``config.json``, ``last.pt`` (weights, optimiser, schedule, RNG after
every epoch: ``--resume`` continues from it), ``best.pt`` (best validation ROC-AUC weights),
``log.csv`` (per epoch: loss, ROC-AUC, PR-AUC) and, at the end, ``model.safetensors``.
"""
from __future__ import annotations

import csv
import json
import os
import pickle
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from rt_tagger.errors import ConfigError
from rt_tagger.factory import create_model, model_cfg

from . import augment
from .chunks import ChunkSource
from .config import TrainConfig
from .data.dataset import Prepared
from .ddp import Dist, all_mean, setup
from .evaluate import predict_songs
from .metrics import tag_metrics
from .schedule import make_optimizer, phase_at

__all__ = ["build_model", "load_run_file", "resolve_data", "train"]

LOG_FIELDS = ("epoch", "phase", "optimizer", "lr", "train_loss", "val_loss", "val_roc_auc",
              "val_pr_auc", "best_epoch", "seconds")


def resolve_data(cfg: TrainConfig, dist: Dist) -> Path:
    """The prepared directory; with ``--dataset``, prepare the raw dataset first (rank 0)."""
    if not cfg.dataset:
        return Path(cfg.data)
    from .data import load_dataset
    from .data.prepare import prepare

    out = Path(cfg.prepared or Path(cfg.out) / "prepared")
    logmel = model_cfg(cfg.model, **{**cfg.model_args, "n_tags": 1}).logmel
    feats = ["raw"] if logmel is None else [logmel]
    if augment.needs_waveform(cfg) and logmel is not None:
        feats.append("raw")
    if cfg.teacher:
        feats.append(cfg.teacher)
    if dist.main:
        index = load_dataset(cfg.dataset, cfg.data, cfg.split or None)
        prepare(index, out, feats, progress=not cfg.quiet)
    dist.barrier()
    return out


def build_model(cfg: TrainConfig, n_tags: int):
    args = {"n_tags": n_tags, **cfg.model_args}
    return create_model(cfg.model, **args), args


def train(cfg: TrainConfig, callback=None) -> Path:
    """Train as configured; returns the run directory. ``callback(event, epoch, model)`` is
    called at ``"epoch_start"``, ``"reload"`` (best weights just loaded) and
    ``"before_validation"`` (tests use it to observe and perturb)."""
    cfg.validate()
    dist = setup(cfg.device)
    try:
        return _train(cfg, dist, callback or (lambda *a: None))
    finally:
        dist.close()


def _train(cfg: TrainConfig, dist: Dist, callback) -> Path:
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    last_path, best_path = out / "last.pt", out / "best.pt"
    if last_path.exists() and not cfg.resume:
        raise ConfigError(f"{out} already holds a run; pass --resume to continue it or choose "
                          "another --out")
    if cfg.resume and not last_path.exists():
        raise ConfigError(f"--resume: no {last_path} to resume from")
    micro = cfg.batch_size // dist.world // cfg.accum_steps
    if micro * dist.world * cfg.accum_steps != cfg.batch_size:
        raise ConfigError(f"batch_size {cfg.batch_size} must split evenly over {dist.world} "
                          f"rank(s) x {cfg.accum_steps} accumulation step(s)")
    if cfg.tensorboard and dist.main:
        _tensorboard_class()  # fail before any work if the package is missing
    data = Prepared(resolve_data(cfg, dist))
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)

    teacher = None
    if cfg.teacher:
        from .distill import Teacher

        student = model_cfg(cfg.model, **{"n_tags": 1, **cfg.model_args})
        teacher = Teacher(cfg.teacher, data, student.logmel, student.input_length, dist.device)
        tags = teacher.tags
    elif not data.labelled:
        raise ConfigError(f"{data.root} has no labels: train with --teacher (distillation)")
    else:
        tags = data.tags
    model, arch_args = build_model(cfg, len(tags))
    model.to(dist.device)
    source = ChunkSource(data, model.cfg.logmel, model.cfg.input_length, cfg)
    if teacher is not None:
        source.target_fn = _teacher_targets(cfg, dist, teacher, data, source)
    train_idx, valid_idx = source.indices("train"), source.indices("valid")
    if train_idx.size < cfg.batch_size or valid_idx.size == 0:
        raise ConfigError(f"{data.root}: {train_idx.size} training and {valid_idx.size} "
                          f"validation clips; need at least batch_size={cfg.batch_size} and 1")
    if dist.main:
        out.mkdir(parents=True, exist_ok=True)
    dist.barrier()
    valid_truth = (teacher.song_labels(valid_idx, cfg.val_chunks, dist,
                                       cache=out / "teacher_valid.npy")
                   if teacher is not None else data.labels[valid_idx])

    net = model
    if dist.enabled:
        if cfg.sync_bn and dist.device.type == "cuda":
            model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[dist.device.index] if dist.device.type == "cuda" else None)
    use_amp = cfg.amp and dist.device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    state = {"epoch": 0, "phase": None, "best_epoch": -1, "best_roc_auc": -1.0}
    phase = phase_at(cfg, 0)
    optimizer = make_optimizer(cfg, model.parameters(), phase)
    if cfg.resume:
        ck = load_run_file(last_path, dist.device)
        model.load_state_dict(ck["model"])
        state = ck["state"]
        phase = phase_at(cfg, max(state["epoch"] - 1, 0))
        optimizer = make_optimizer(cfg, model.parameters(), phase)
        optimizer.load_state_dict(ck["optimizer"])
        scaler.load_state_dict(ck["scaler"])
        torch.set_rng_state(ck["rng"])
    elif dist.main:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(
            {"config": cfg.to_dict(), "data": str(data.root), "arch_args": arch_args,
             "tags": tags, "world_size": dist.world, "argv": sys.argv}, indent=1))
        with open(out / "log.csv", "w", newline="") as f:
            csv.writer(f).writerow(LOG_FIELDS)
    writer = _tensorboard(cfg, out) if dist.main else None

    try:
        for epoch in range(state["epoch"], cfg.epochs):
            t0 = time.monotonic()
            new = phase_at(cfg, epoch)
            if epoch > 0 and new.index != phase.index:
                if new.reload_best and best_path.exists():
                    dist.barrier()
                    best = load_run_file(best_path, dist.device)
                    model.load_state_dict(best["model"])
                    callback("reload", epoch, model)
                    _say(cfg, dist, f"epoch {epoch}: loaded the best weights (epoch "
                                    f"{best['epoch']}), now {new.kind} lr {new.lr:g}")
                optimizer = make_optimizer(cfg, model.parameters(), new)
            phase = new
            callback("epoch_start", epoch, model)
            loss = _train_epoch(cfg, dist, net, source, train_idx, epoch, optimizer, scaler,
                                micro, use_amp)
            callback("before_validation", epoch, model)
            probs = predict_songs(model, source, valid_idx, n_chunks=cfg.val_chunks,
                                  batch=cfg.eval_batch, device=dist.device, dist=dist)
            m = tag_metrics(valid_truth, probs, tags)
            p = np.clip(probs, 1e-7, 1 - 1e-7)
            val_loss = float(-np.mean(valid_truth * np.log(p) + (1 - valid_truth) * np.log(1 - p)))
            improved = m["roc_auc"] > state["best_roc_auc"]
            if improved:
                state.update(best_epoch=epoch, best_roc_auc=m["roc_auc"])
            state["epoch"] = epoch + 1
            if dist.main:
                if improved:
                    _save(best_path, {"model": model.state_dict(), "epoch": epoch, "metrics": {
                        "roc_auc": m["roc_auc"], "pr_auc": m["pr_auc"], "loss": val_loss}})
                _save(last_path, {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                  "scaler": scaler.state_dict(), "state": state,
                                  "rng": torch.get_rng_state()})
                row = [epoch, phase.index, phase.kind, f"{phase.lr:g}", f"{loss:.6f}",
                       f"{val_loss:.6f}", f"{m['roc_auc']:.6f}", f"{m['pr_auc']:.6f}",
                       state["best_epoch"], f"{time.monotonic() - t0:.2f}"]
                with open(out / "log.csv", "a", newline="") as f:
                    csv.writer(f).writerow(row)
                if writer is not None:
                    for k, v in (("loss/train", loss), ("loss/valid", val_loss),
                                 ("roc_auc/valid", m["roc_auc"]), ("pr_auc/valid", m["pr_auc"])):
                        writer.add_scalar(k, v, epoch)
            _say(cfg, dist, f"epoch {epoch} {phase.kind} lr {phase.lr:g}: train loss {loss:.4f} "
                            f"valid loss {val_loss:.4f} ROC-AUC {m['roc_auc']:.4f} PR-AUC "
                            f"{m['pr_auc']:.4f}" + (" (best)" if improved else ""))
            dist.barrier()
    except KeyboardInterrupt:
        _say(cfg, dist, f"interrupted; {last_path} holds the last finished epoch, continue "
                        "with --resume")
        raise
    finally:
        if writer is not None:
            writer.close()
    if cfg.export and dist.main:
        from .export import export_run

        export_run(out, device=str(dist.device))
    dist.barrier()
    return out


def _train_epoch(cfg, dist, net, source, train_idx, epoch, optimizer, scaler, micro,
                 use_amp) -> float:
    net.train()
    plan = source.plan(train_idx, epoch, cfg.seed, cfg.batch_size, cfg.steps_per_epoch)
    losses = []
    for item in plan:
        optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for a in range(cfg.accum_steps):
            lo = (dist.rank * cfg.accum_steps + a) * micro
            part = {"clips": item["clips"][lo:lo + micro], "starts": item["starts"][lo:lo + micro],
                    "aug": None if item["aug"] is None else
                    {k: v[lo:lo + micro] for k, v in item["aug"].items()}}
            x, y = source.batch(part)
            x, y = x.to(dist.device), torch.from_numpy(y).to(dist.device)
            sync = a == cfg.accum_steps - 1 or not dist.enabled
            ctx = net.no_sync() if not sync else _null()
            with ctx:
                with torch.autocast(dist.device.type, enabled=use_amp):
                    logits = net(x).float()
                loss = F.binary_cross_entropy_with_logits(logits, y) / cfg.accum_steps
                scaler.scale(loss).backward()
            total += float(loss.detach())
        scaler.step(optimizer)
        scaler.update()
        losses.append(total)
    return all_mean(dist, float(np.mean(losses)))


def _teacher_targets(cfg, dist, teacher, data, source):
    """The student's targets: cached teacher outputs on a grid of chunk starts when the
    alignment has one (``--teacher-cache``, the default), else the teacher run per batch."""
    if not cfg.teacher_cache:
        return teacher.targets
    from .teacher_cache import TeacherCache

    cache = TeacherCache(teacher, data.root)
    if not cache.usable:
        _say(cfg, dist, f"teacher {teacher.name}: no patch grid for this chunk length; "
                        "running it per batch")
        return teacher.targets
    if dist.main:
        cache.load_or_build(len(data.keys), threads=cfg.threads, progress=not cfg.quiet)
    dist.barrier()
    if not dist.main:
        cache.load_or_build(len(data.keys), threads=cfg.threads, progress=False)
    source.grid = cache.stride
    return cache.targets


class _null:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def load_run_file(path: Path, map_location=None) -> dict:
    """``last.pt`` / ``best.pt`` loaded with ``weights_only=True``: tensors and plain Python
    values only (what :func:`_save` writes), so a crafted file cannot run code when loaded; a
    file holding anything else is refused with one line naming what it tried to load."""
    try:
        obj = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        what = f" ({found.group(1)})" if found else ""
        raise ConfigError(f"{path}: refused to load: it holds code or objects{what}, not only "
                          "the tensors and plain values of an rt-tagger run file") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(f"{path}: cannot read this run file: {reason}") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("model"), dict):
        raise ConfigError(f"{path}: not an rt-tagger run file (no model weights)")
    return obj


def _save(path: Path, obj: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _say(cfg, dist, msg: str) -> None:
    if dist.main and not cfg.quiet:
        print(msg, flush=True)


def _tensorboard_class():
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError("--tensorboard needs the tensorboard package (pip install "
                          "tensorboard); log.csv is written either way") from None
    return SummaryWriter


def _tensorboard(cfg, out: Path):
    return _tensorboard_class()(str(out / "tensorboard")) if cfg.tensorboard else None
