"""Decode every clip once and write features as memory-mapped arrays.

Output directory layout::

    OUT/prepared.json              dataset, split, tags, clips, features, failures
    OUT/labels.npy                 (n_clips, n_tags) uint8
    OUT/features/<id>/data.npy     logmel: (total_frames, n_mels) float32; raw: (total_samples,) int16
    OUT/features/<id>/offsets.npy  (n_clips + 1,) int64: clip i is data[offsets[i]:offsets[i+1]]
    OUT/features/<id>/spec.json    what the feature is (log-mel parameters or raw audio)

A log-mel feature's id is ``logmel-<hash of its LogMelConfig>``; raw 16 kHz audio is ``raw``
(int16, full scale 32767). Clips are computed in parallel into ``OUT/shards`` (one file per
clip and feature, written atomically), so an interrupted run resumes where it stopped; the
shards are packed into the arrays at the end. Unreadable clips, and clips shorter than the
dataset's minimum duration, are skipped and listed in ``prepared.json`` and ``failed.tsv``.
"""
from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import multiprocessing
import os
import shutil
from pathlib import Path

import numpy as np

from rt_tagger.errors import RtTaggerError
from rt_tagger.features import LogMelConfig

from ..progress import Progress
from .common import DatasetError, DatasetIndex

__all__ = ["FORMAT", "feature_id", "prepare", "resolve_features"]

FORMAT = 1
RAW = "raw"


def feature_id(config: LogMelConfig | None) -> str:
    """``raw`` for waveforms, ``logmel-<10 hex>`` for a log-mel configuration."""
    if config is None:
        return RAW
    blob = json.dumps(config.to_dict(), sort_keys=True).encode()
    return "logmel-" + hashlib.sha1(blob).hexdigest()[:10]


def resolve_features(names: list) -> dict[str, LogMelConfig | None]:
    """Map model names (``spec_att``, ``musicnn.mtat``, a checkpoint), ``raw`` or
    :class:`LogMelConfig` objects to features."""
    from rt_tagger.factory import default_logmel

    out: dict[str, LogMelConfig | None] = {}
    for name in names:
        if isinstance(name, LogMelConfig):
            cfg = name
        elif name == RAW:
            cfg = None
        elif name.endswith(".safetensors") or os.sep in name:
            from rt_tagger.checkpoint import load_checkpoint
            cfg = load_checkpoint(name).logmel_config
        else:
            cfg = default_logmel(name)
        out[feature_id(cfg)] = cfg
    return out


def _work(job: tuple) -> tuple[int, str, str]:
    """Worker: decode clip ``i`` and write one shard per feature. Returns (i, status, message)."""
    i, path, specs, sample_rate, min_seconds, shard_dir = job
    from rt_tagger.features import LogMel

    from .audio import load_audio

    shard_dir = Path(shard_dir)
    try:
        y = load_audio(path, sample_rate)
    except (RtTaggerError, OSError, ValueError, RuntimeError) as exc:
        return _fail(shard_dir, i, "unreadable", str(exc).splitlines()[0])
    if y.size < min_seconds * sample_rate:
        return _fail(shard_dir, i, "short", f"{y.size / sample_rate:.2f} s < {min_seconds} s")
    for fid, cfg in specs:
        if cfg is None:
            arr = np.round(np.clip(y, -1.0, 1.0) * 32767.0).astype(np.int16)
        else:
            arr = LogMel(LogMelConfig.from_dict(cfg))(y, nonfinite="zero")
        tmp = shard_dir / f"{i}.{fid}.tmp.npy"
        np.save(tmp, arr)
        os.replace(tmp, shard_dir / f"{i}.{fid}.npy")
    (shard_dir / f"{i}.done").touch()
    return i, "ok", ""


def _fail(shard_dir: Path, i: int, status: str, msg: str) -> tuple[int, str, str]:
    (shard_dir / f"{i}.err").write_text(json.dumps({"status": status, "message": msg}))
    return i, status, msg


def prepare(index: DatasetIndex, out: str | Path, features: list, *, workers: int = 2,
            sample_rate: int = 16000, progress: bool = True) -> Path:
    """Prepare ``index`` into ``out`` with the features of the given model names (or ``raw``).

    Resumable: finished clips are kept; an existing prepared directory of the same dataset
    gains the features it lacks. Returns ``out``.
    """
    out = Path(out)
    specs = resolve_features(features)
    for fid, cfg in specs.items():
        if cfg is not None and cfg.sample_rate != sample_rate:
            raise DatasetError(f"feature {fid} needs {cfg.sample_rate} Hz audio but preparation "
                               f"runs at {sample_rate} Hz")
    meta = _load_or_start(index, out, sample_rate)
    todo = {fid: cfg for fid, cfg in specs.items() if fid not in meta["features"]}
    if not todo:
        return out
    shard_dir = out / "shards"
    spec_file = shard_dir / "todo.json"
    todo_json = {fid: (cfg.to_dict() if cfg else None) for fid, cfg in todo.items()}
    if shard_dir.exists() and (not spec_file.is_file()
                               or json.loads(spec_file.read_text()) != todo_json):
        shutil.rmtree(shard_dir)  # shards of another feature set: start over
    shard_dir.mkdir(parents=True, exist_ok=True)
    spec_file.write_text(json.dumps(todo_json))

    clips = index.clips
    pending = [i for i in range(len(clips)) if not (shard_dir / f"{i}.done").exists()]
    for i in pending:  # retry earlier failures
        (shard_dir / f"{i}.err").unlink(missing_ok=True)
    jobs = [(i, str(clips[i].path), list(todo_json.items()), sample_rate, index.min_seconds,
             str(shard_dir)) for i in pending]
    with Progress(len(jobs), f"prepare {index.name}", enabled=progress) as bar:
        if workers <= 1 or len(jobs) <= 1:
            for job in jobs:
                bar.update(note=_work(job)[1])
        else:
            ctx = multiprocessing.get_context("spawn")  # torch may be imported: no fork
            try:
                with cf.ProcessPoolExecutor(workers, mp_context=ctx) as pool:
                    for _i, status, _msg in pool.map(_work, jobs, chunksize=4):
                        bar.update(note=status)
            except cf.process.BrokenProcessPool:
                raise DatasetError("a preparation worker died; when calling prepare() from a "
                                   "script, guard it with if __name__ == '__main__' (workers "
                                   "are spawned), or pass workers=1; finished clips are kept"
                                   ) from None
    _pack(meta, out, shard_dir, todo, len(clips))
    shutil.rmtree(shard_dir)
    return out


def _load_or_start(index: DatasetIndex, out: Path, sample_rate: int) -> dict:
    meta_path = out / "prepared.json"
    clips = [{"key": c.key, "path": str(c.path), "split": c.split} for c in index.clips]
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        same = (meta.get("dataset"), meta.get("split"), meta.get("tags"), meta.get("clips"),
                meta.get("sample_rate")) == (index.name, index.split, index.tags, clips,
                                             sample_rate)
        if not same:
            raise DatasetError(f"{out} already holds another preparation ({meta.get('dataset')}, "
                               f"split {meta.get('split')}); choose another output directory")
        return meta
    out.mkdir(parents=True, exist_ok=True)
    labels = np.zeros((len(index.clips), len(index.tags)), np.uint8)
    for i, c in enumerate(index.clips):
        if c.labels is not None:
            labels[i] = c.labels
    np.save(out / "labels.npy", labels)
    meta = {"format": FORMAT, "dataset": index.name, "split": index.split,
            "root": str(index.root), "tags": index.tags, "sample_rate": sample_rate,
            "labelled": bool(index.tags), "clips": clips, "features": {}, "failed": []}
    _write_meta(out, meta)
    return meta


def _write_meta(out: Path, meta: dict) -> None:
    tmp = out / "prepared.json.tmp"
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, out / "prepared.json")


def _pack(meta: dict, out: Path, shard_dir: Path, todo: dict, n: int) -> None:
    failed = []
    for i in range(n):
        err = shard_dir / f"{i}.err"
        if err.is_file():
            info = json.loads(err.read_text())
            failed.append({"index": i, "key": meta["clips"][i]["key"],
                           "path": meta["clips"][i]["path"], **info})
    bad = {f["index"] for f in failed}
    for fid, cfg in todo.items():
        # Headers first (shape, dtype) so the packed array can be allocated, then one clip at
        # a time: never more than one shard open (MSD has ~242k clips).
        shapes, dtype = [], None
        for i in range(n):
            if i in bad:
                shapes.append(None)
                continue
            shape, dtype = _npy_header(shard_dir / f"{i}.{fid}.npy")
            shapes.append(shape)
        if dtype is None:
            raise DatasetError(f"no clip of {meta['dataset']} could be read; see {out}/failed.tsv")
        lengths = np.array([0 if sh is None else sh[0] for sh in shapes], np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        tail = next(sh for sh in shapes if sh is not None)[1:]
        fdir = out / "features" / fid
        fdir.mkdir(parents=True, exist_ok=True)
        data = np.lib.format.open_memmap(fdir / "data.npy", mode="w+", dtype=dtype,
                                         shape=(int(offsets[-1]), *tail))
        for i in range(n):
            if shapes[i] is not None:
                data[offsets[i]:offsets[i + 1]] = np.load(shard_dir / f"{i}.{fid}.npy")
        data.flush()
        del data
        np.save(fdir / "offsets.npy", offsets)
        spec = {"kind": "raw" if cfg is None else "logmel",
                "logmel": None if cfg is None else cfg.to_dict()}
        (fdir / "spec.json").write_text(json.dumps(spec, indent=1))
        meta["features"][fid] = spec
    meta["failed"] = failed
    with open(out / "failed.tsv", "w", encoding="utf-8") as f:
        f.write("key\tstatus\tpath\tmessage\n")
        for x in failed:
            f.write(f"{x['key']}\t{x['status']}\t{x['path']}\t{x['message']}\n")
    _write_meta(out, meta)


def _npy_header(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                else np.lib.format.read_array_header_2_0)
        shape, _fortran, dtype = read(f)
    return shape, dtype
