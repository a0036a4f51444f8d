"""Streaming pipeline figures: live latency and CPU, offline speed vs TF musicnn, a 1-hour soak.

    python bench/bench_stream.py [--live-seconds 60] [--soak-minutes 60] \
        [--tf-python /work/tfref/bin/python] [--out bench/results/stream.md]

* Live latency: a file paced like a live source (``realtime=True``) through the whole pipeline;
  per chunk, the time from the consumer reading the block that completed the chunk (within
  0.5 ms of the block entering the ring) to the updated probabilities being available.
  Median / p99 over all chunks, and the process CPU time over wall time (percent of one core).
* Offline: a 10-minute file tagged with ``Tagger.tag_file`` (decode, resample, log-mel,
  batched inference) vs the original TensorFlow musicnn (``musicnn.extractor.extractor`` in
  the ``--tf-python`` interpreter) on the same file, same run: real-time factor (audio seconds
  per wall second).
* Soak: ``--soak-minutes`` of audio pushed through the live path as fast as it goes; samples
  lost, RSS at start and end, latency in the first and last tenth.
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def music(seconds: float) -> np.ndarray:
    clips = [sf.read(p, dtype="float32")[0] for p in sorted((ROOT / "tests" / "data").glob("*.flac"))]
    return np.resize(np.concatenate(clips), int(seconds * 16000)).astype(np.float32)


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def spec_att_checkpoint(width: int, tmp: Path) -> str:
    """A spec_att checkpoint with random weights (latency does not depend on the weights)."""
    import torch

    from rt_tagger.checkpoint import save_checkpoint
    from rt_tagger.factory import create_model, default_logmel

    torch.manual_seed(0)
    model = create_model("spec_att", width=width).eval()
    lm = default_logmel("spec_att")
    path = tmp / f"spec_att_w{width}.safetensors"
    save_checkpoint(path, model, arch="spec_att", arch_args={"width": width}, tags=[f"tag{i}" for i in range(50)],
                    sample_rate=16000, input_kind="logmel", input_length=model.input_length,
                    logmel=lm, provenance={"source": "random init for benchmarking"})
    return str(path)


def live(model: str, hop: float, seconds: float, wav: Path) -> dict:
    from rt_tagger.tagger import Tagger

    tg = Tagger(model, hop=hop, threads=1)
    lat, t0c, t0w = [], time.process_time(), time.perf_counter()
    summary = None
    for m in tg.stream(wav, realtime=True):
        if m["type"] == "update":
            lat.append(m["latency_ms"])
        elif m["type"] == "summary":
            summary = m
    cpu = 100 * (time.process_time() - t0c) / (time.perf_counter() - t0w)
    lat = np.array(lat)
    return {"median": np.median(lat), "p99": np.percentile(lat, 99), "cpu": cpu,
            "chunks": len(lat), "lost": summary["overrun_samples"] + summary["dropped_chunks"],
            "backend": tg.engine.name}


TF_SNIPPET = r"""
import os, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
from musicnn.extractor import extractor
t = time.perf_counter()
taggram, tags = extractor(sys.argv[1], model="MTT_musicnn", input_length=3, input_overlap=False, extract_features=False)
print(time.perf_counter() - t, taggram.shape[0])
"""


class SynthSource:
    """Bench-only source: pushes tiled music into the ring as fast as the consumer takes it."""

    def __new__(cls, seconds: float):
        from rt_tagger.sources.base import Source

        class _S(Source):
            kind = "synthetic"

            def __init__(self) -> None:
                super().__init__(name="soak")
                self.sample_rate, self.channels, self.finite = 16000, 1, True
                self.total = int(seconds * 16000)
                self.base = music(120.0)

            def _start(self) -> None:
                threading.Thread(target=self._run, daemon=True).start()

            def _run(self) -> None:
                pos, block = 0, 4096
                self.set_state("running")
                while pos < self.total and not self._stop.is_set():
                    n = min(block, self.total - pos)
                    i = pos % (self.base.size - block)
                    while self.ring.capacity - self.ring.available < n:
                        time.sleep(0.001)
                    self.ring.push(np.ascontiguousarray(self.base[i:i + n]))
                    pos += n
                self._done.set()

        return _S()


def soak(minutes: float, model: str) -> dict:
    from rt_tagger.tagger import Tagger

    tg = Tagger(model, hop=0.5, threads=1)
    src = SynthSource(minutes * 60)
    lat, rss = [], [rss_mb()]
    t0 = time.perf_counter()
    summary = None
    for m in tg.stream(src):
        if m["type"] == "update":
            lat.append(m["latency_ms"])
            if len(lat) % 500 == 0:
                rss.append(rss_mb())
        elif m["type"] == "summary":
            summary = m
    rss.append(rss_mb())
    lat = np.array(lat)
    tenth = max(1, lat.size // 10)
    return {"audio_s": summary["duration"], "wall_s": time.perf_counter() - t0,
            "samples_in": summary["samples_in"], "expected": src.total,
            "lost": summary["overrun_samples"] + summary["dropped_chunks"], "chunks": lat.size,
            "rss": (rss[0], rss[len(rss) // 2], rss[-1], max(rss)),
            "first": (np.median(lat[:tenth]), np.percentile(lat[:tenth], 99)),
            "last": (np.median(lat[-tenth:]), np.percentile(lat[-tenth:], 99))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--live-seconds", type=float, default=60.0)
    ap.add_argument("--offline-minutes", type=float, default=10.0)
    ap.add_argument("--soak-minutes", type=float, default=60.0)
    ap.add_argument("--tf-python", default=None)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "stream.md")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="rt-bench-"))
    cmd = "python bench/bench_stream.py " + " ".join(sys.argv[1:])
    lines = [f"## Streaming pipeline ({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC)", "",
             f"Command: `{cmd.strip()}`; {os.cpu_count()} cores, shared machine; inference 1 thread.", ""]

    wav = tmp / "live.wav"
    sf.write(wav, music(args.live_seconds), 16000, subtype="FLOAT")
    models = [("musicnn.mtat", "musicnn.mtat"), ("spec_att width 512", spec_att_checkpoint(512, tmp)),
              ("spec_att width 256", spec_att_checkpoint(256, tmp))]
    lines += ["### Live path (file paced in real time)", "",
              "| model | backend | hop s | chunks | latency median ms | latency p99 ms | CPU % of one core | samples/chunks lost |",
              "|---|---|---:|---:|---:|---:|---:|---:|"]
    for name, model in models:
        for hop in (0.5, 0.25):
            r = live(model, hop, args.live_seconds, wav)
            row = (f"| {name} | {r['backend']} | {hop} | {r['chunks']} | {r['median']:.1f} | {r['p99']:.1f} "
                   f"| {r['cpu']:.0f} | {r['lost']} |")
            print(row, flush=True)
            lines.append(row)

    long_wav = tmp / "long.wav"
    sf.write(long_wav, music(args.offline_minutes * 60), 16000, subtype="PCM_16")
    dur = args.offline_minutes * 60
    lines += ["", f"### Offline tagging of a {args.offline_minutes:g}-minute file (16 kHz WAV)", "",
              "| implementation | wall s | real-time factor (× faster than real time) |", "|---|---:|---:|"]
    from rt_tagger.tagger import Tagger

    ours = {}
    for (name, model), threads in ((models[0], 1), (models[0], 2), (models[1], 1)):
        tg = Tagger(model, hop="chunk", threads=threads)
        t = time.perf_counter()
        tg.tag_file(long_wav)
        ours[(name, threads)] = time.perf_counter() - t
        lines.append(f"| rt-tagger {name}, hop = chunk ({tg.engine.name}, {threads} thread{'s' * (threads > 1)}) "
                     f"| {ours[(name, threads)]:.1f} | {dur / ours[(name, threads)]:.0f} |")
        print(lines[-1], flush=True)
    if args.tf_python:
        p = subprocess.run([args.tf_python, "-c", TF_SNIPPET, str(long_wav)], capture_output=True, text=True)
        if p.returncode == 0:
            tf_s = float(p.stdout.split()[-2])
            lines.append(f"| original TensorFlow musicnn (`extractor`, MTT_musicnn, 3 s patches, TF's default thread pools) | {tf_s:.1f} | {dur / tf_s:.0f} |")
            lines.append("")
            lines.append(f"rt-tagger musicnn is **{tf_s / ours[('musicnn.mtat', 1)]:.1f}×** faster than the original on the same file "
                         f"with one inference thread, **{tf_s / ours[('musicnn.mtat', 2)]:.1f}×** with two (TensorFlow uses both cores).")
        else:
            lines.append(f"| original TensorFlow musicnn | failed: {p.stderr.strip().splitlines()[-1]} | |")
        print(lines[-1], flush=True)

    s = soak(args.soak_minutes, "musicnn.mtat")
    lines += ["", f"### Soak: {s['audio_s'] / 60:.0f} minutes of audio through the live path (musicnn.mtat, hop 0.5 s, as fast as possible)", "",
              f"- wall time {s['wall_s']:.0f} s ({s['audio_s'] / s['wall_s']:.0f}× real time), {s['chunks']} chunks",
              f"- samples in {s['samples_in']:,} of {s['expected']:,} pushed; samples/chunks lost: {s['lost']}",
              f"- RSS start {s['rss'][0]:.0f} MB, middle {s['rss'][1]:.0f} MB, end {s['rss'][2]:.0f} MB (max {s['rss'][3]:.0f} MB)",
              f"- latency first tenth: median {s['first'][0]:.1f} ms, p99 {s['first'][1]:.1f} ms; "
              f"last tenth: median {s['last'][0]:.1f} ms, p99 {s['last'][1]:.1f} ms "
              "(as-fast-as-possible mode: chunks queue behind each other, so these are throughput-bound, not live latencies)"]
    print("\n".join(lines[-5:]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}; max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
