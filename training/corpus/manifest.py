"""The corpus' record: ``manifest.csv`` (the columns ``training.data.corpus`` reads),
``summary.txt`` (hours and licence per source), and one marker per finished work item.

Resumability: an item's outputs are written first, its marker (``.items/ID.json``: the manifest
rows it produced, or its failure) last and atomically. A marker means finished, never redone;
no marker means not started or interrupted, so the item runs again from scratch.
"""
from __future__ import annotations

import csv
import json
import os
from collections import defaultdict
from pathlib import Path

__all__ = ["FIELDS", "done_rows", "is_done", "mark_done", "refresh", "write_manifest",
           "write_summary"]

FIELDS = ["path", "source", "package", "license", "duration_s", "orig_duration_s", "kind",
          "tags", "weak_tags", "style", "meta"]


def _marker(dest: Path, item_id: str) -> Path:
    return Path(dest) / ".items" / (item_id.replace("/", "__") + ".json")


def is_done(dest: Path, item_id: str) -> bool:
    return _marker(dest, item_id).is_file()


def mark_done(dest: Path, item_id: str, rows: list[dict], error: str = "") -> None:
    m = _marker(dest, item_id)
    m.parent.mkdir(parents=True, exist_ok=True)
    tmp = m.with_suffix(".tmp")
    clean = [{k: str(r.get(k, "")) for k in FIELDS} for r in rows]
    tmp.write_text(json.dumps({"id": item_id, "rows": clean, "error": error}))
    os.replace(tmp, m)


def refresh(dest: Path, item_id: str, **fields: str) -> None:
    """Set metadata ``fields`` (e.g. a corrected licence) on a finished item's rows."""
    m = _marker(dest, item_id)
    if not m.is_file():
        return
    d = json.loads(m.read_text())
    if all(r.get(k) == v for r in d["rows"] for k, v in fields.items()):
        return
    for r in d["rows"]:
        r.update(fields)
    tmp = m.with_suffix(".tmp")
    tmp.write_text(json.dumps(d))
    os.replace(tmp, m)


def done_rows(dest: Path) -> tuple[list[dict], list[tuple[str, str]]]:
    """Manifest rows of every finished item whose files exist, and the failed items."""
    rows, failed = [], []
    folder = Path(dest) / ".items"
    for m in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        d = json.loads(m.read_text())
        if d.get("error"):
            failed.append((d["id"], d["error"]))
        rows += [r for r in d["rows"] if (Path(dest) / r["path"]).is_file()]
    rows.sort(key=lambda r: r["path"])
    return rows, failed


def write_manifest(dest: Path, rows: list[dict]) -> Path:
    path = Path(dest) / "manifest.csv"
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, FIELDS, restval="", extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)
    return path


def summary_text(rows: list[dict], failed: list[tuple[str, str]] = (),
                 elapsed_s: float | None = None) -> str:
    agg: dict[tuple[str, str], list] = defaultdict(lambda: [0, 0.0, set()])
    for r in rows:
        a = agg[(r["kind"], r["source"])]
        a[0] += 1
        a[1] += float(r["duration_s"] or 0)
        a[2].add(r["license"])
    lines = [f"{'kind':11s} {'source':24s} {'files':>6s} {'hours':>7s}  licence"]
    by_kind: dict[str, float] = defaultdict(float)
    for (kind, src), (n, sec, lic) in sorted(agg.items()):
        by_kind[kind] += sec
        lines.append(f"{kind:11s} {src:24s} {n:6d} {sec / 3600:7.2f}  {' | '.join(sorted(lic))}")
    total = sum(a[1] for a in agg.values())
    lines.append("")
    lines += [f"{kind:11s} {'(all)':24s} {'':6s} {sec / 3600:7.2f}"
              for kind, sec in sorted(by_kind.items())]
    lines.append(f"TOTAL {len(rows)} files {total / 3600:.2f} h from {len(agg)} sources")
    if failed:
        lines.append(f"{len(failed)} items failed (skipped): "
                     + "; ".join(f"{i}: {e}" for i, e in failed[:20]))
    if elapsed_s is not None:
        lines.append(f"built in {elapsed_s / 60:.1f} min (this run)")
    return "\n".join(lines) + "\n"


def write_summary(dest: Path, rows: list[dict], failed=(), elapsed_s: float | None = None) -> Path:
    path = Path(dest) / "summary.txt"
    path.write_text(summary_text(rows, failed, elapsed_s))
    return path
