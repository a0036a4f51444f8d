"""Give a finished checkpoint its model card and extra provenance (the figures measured after
training, how to rebuild its data): the same weights and description, written to a new file.

``python -m rt_tagger.training card --model RUN/model.safetensors --card CARD.md
[--provenance EXTRA.json] --out musicnn_att_mtat.safetensors``
"""
from __future__ import annotations

import json
from pathlib import Path

from rt_tagger.errors import ConfigError

__all__ = ["corpus_record", "write_card"]


def corpus_record(root: str | Path) -> dict:
    """What a model was trained on, from the corpus manifest: per source its files, hours,
    kinds, licence and splits; hours per split; the manifest's SHA-256; how to rebuild it."""
    import hashlib

    from .data.corpus import split_of, read_manifest

    rows = read_manifest(root)
    sources: dict[str, dict] = {}
    hours: dict[str, float] = {}
    for r in rows:
        h = float(r["duration_s"]) / 3600
        s = sources.setdefault(r["source"], {"files": 0, "hours": 0.0, "kind": set(), "license": set(),
                                             "splits": set()})
        split = split_of(r)
        s["files"] += 1
        s["hours"] += h
        s["kind"].add(r["kind"])
        s["license"].add(r["license"])
        s["splits"].add(split)
        hours[split] = hours.get(split, 0.0) + h
    return {
        "files": len(rows), "hours": {k: round(v, 2) for k, v in sorted(hours.items())},
        "manifest_sha256": hashlib.sha256((Path(root) / "manifest.csv").read_bytes()).hexdigest(),
        "rebuild": "python -m rt_tagger.training corpus DEST (as root, or with its tools installed), "
                   "then bash training/recipes/default_musicnn_att.sh DEST WORK",
        "split": "whole sources held out (training/data/corpus.py HELD_OUT); score renders and sung "
                 "clips by score",
        "sources": {k: {"files": v["files"], "hours": round(v["hours"], 3), "kind": sorted(v["kind"]),
                        "license": " | ".join(sorted(v["license"])), "splits": sorted(v["splits"])}
                    for k, v in sorted(sources.items())},
    }


def write_card(model: str | Path, out: str | Path, card: str,
               extra_provenance: dict | None = None) -> Path:
    """Write ``model``'s weights and description to ``out`` with ``card`` as its model card and
    ``extra_provenance`` merged into its provenance; returns ``out``."""
    from rt_tagger.checkpoint import load_checkpoint, save_checkpoint

    if not card.strip():
        raise ConfigError("the model card is empty")
    ckpt = load_checkpoint(model)
    net = ckpt.build_model()
    provenance = {**ckpt.provenance, **(extra_provenance or {})}
    json.dumps(provenance)  # fails here, not half-way through the write
    return save_checkpoint(out, net, arch=ckpt.arch, arch_args=ckpt.arch_args, tags=ckpt.tags,
                           sample_rate=ckpt.sample_rate, input_kind=ckpt.input_kind,
                           input_length=ckpt.input_length, logmel=ckpt.logmel,
                           thresholds=ckpt.thresholds, provenance=provenance, model_card=card)
