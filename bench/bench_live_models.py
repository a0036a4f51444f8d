"""Live latency and CPU of several models on the same paced input, the way a user runs them.

    python bench/bench_live_models.py --model musicnn_att.mtat spec_att.w256 musicnn.mtat \
        [--seconds 60] [--rounds 3] [--out bench/results/live_models.md]

Each run is the real command, ``rt-tagger FILE --realtime --hop 0.5 --threads 1 -q --jsonl``,
on a music file (the test clips, tiled) paced like a live source. Latency is each update's
``latency_ms`` (from the block that completed the chunk to its probabilities); median and p99
over the run. CPU is the child process' user + system time while streaming, in percent of one
core: the CPU of a run of ``--seconds`` minus that of a 2-second run (start-up: imports, model
load, ONNX Runtime session), over the difference in audio seconds. Models take turns within
each round; the table gives the median over rounds of each figure.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
SHORT = 2.0


def music(seconds: float) -> np.ndarray:
    clips = [sf.read(p, dtype="float32")[0] for p in sorted((ROOT / "tests" / "data").glob("*.flac"))]
    return np.resize(np.concatenate(clips), int(seconds * 16000)).astype(np.float32)


def run(model: str, wav: Path, seconds: float, jsonl: Path) -> tuple[float, list[float]]:
    """CPU seconds of one ``rt-tagger`` run and its update latencies (ms)."""
    jsonl.unlink(missing_ok=True)  # --jsonl appends
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([sys.executable, "-m", "rt_tagger", str(wav), "--model", model, "--realtime",
                    "--hop", "0.5", "--threads", "1", "-q", "--duration", str(seconds),
                    "--jsonl", str(jsonl)], check=True, capture_output=True, timeout=seconds + 300)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    lat = [r["latency_ms"] for r in map(json.loads, jsonl.read_text().splitlines())
           if r.get("type") == "update"]
    return cpu, lat


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", nargs="+", required=True)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "live_models.md")
    args = ap.parse_args()
    rows: dict[str, list[tuple[float, float, float, int]]] = {m: [] for m in args.model}
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "music.wav"
        sf.write(wav, music(args.seconds + 5), 16000)
        jsonl = Path(tmp) / "out.jsonl"
        for r in range(args.rounds):
            for m in args.model:
                cpu_short, _ = run(m, wav, SHORT, jsonl)
                cpu_long, lat = run(m, wav, args.seconds, jsonl)
                cpu = 100 * max(cpu_long - cpu_short, 0.0) / (args.seconds - SHORT)
                rows[m].append((float(np.median(lat)), float(np.percentile(lat, 99)), cpu, len(lat)))
                print(f"round {r + 1} {m}: median {rows[m][-1][0]:.1f} ms p99 {rows[m][-1][1]:.1f} ms "
                      f"CPU {cpu:.1f} %", flush=True)
    load = open("/proc/loadavg").read().split()[0]
    lines = [f"## Live latency and CPU per model ({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC)", "",
             f"Command: `python bench/bench_live_models.py --model {' '.join(args.model)} "
             f"--seconds {args.seconds:g} --rounds {args.rounds}`; `rt-tagger FILE --realtime --hop 0.5 "
             f"--threads 1` per run, onnxruntime on the CPU; 2-core shared machine, 1-min load "
             f"average {load} at the end. Median over {args.rounds} rounds of each run's figure.", "",
             "| model | chunks per run | latency median ms | latency p99 ms | CPU % of one core |",
             "|---|---:|---:|---:|---:|"]
    for m, rs in rows.items():
        a = np.array(rs)
        lines.append(f"| `{m}` | {int(np.median(a[:, 3]))} | {np.median(a[:, 0]):.1f} | "
                     f"{np.median(a[:, 1]):.1f} | {np.median(a[:, 2]):.1f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.write_text(text)


if __name__ == "__main__":
    t = time.time()
    main()
    print(f"({time.time() - t:.0f} s)")
