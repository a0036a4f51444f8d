"""Cost of N simultaneous live sources: one process with inference batched across sources
(rt_tagger.monitor) vs one process per source, measured in the same run.

Each source is a realtime-paced file (music clips from tests/data tiled to --seconds). For
every configuration the workers report, over the streaming phase only (after the model is
loaded): CPU time of the whole process (all threads) / wall time, the update latencies (last
sample of a chunk read from the ring -> its probabilities available), dropped chunks and ring
overruns. "separate" sums the CPU of its N concurrent processes.

    PYTHONPATH=. /work/venv/bin/python bench/bench_sources.py --n 1 2 4 8 --seconds 20 \
        --out bench/results/sources.md
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MODES = ("shared-1w-b16", "shared-1w", "shared-2w", "separate")
ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
CLIPS = sorted(DATA.glob("render_*.flac"))


def make_files(n: int, seconds: float, d: Path) -> list[Path]:
    import soundfile as sf

    out = []
    for i in range(n):
        y, sr = sf.read(CLIPS[i % len(CLIPS)], dtype="float32")
        y = np.tile(np.roll(y, i * 4000), int(np.ceil(seconds * sr / y.size)) + 1)[: int(seconds * sr)]
        p = d / f"src{i}.wav"
        sf.write(p, y, sr)
        out.append(p)
    return out


# ---- workers (run in their own process) -----------------------------------------------------
class ThreadCpu:
    """CPU seconds per kind of thread of this process (``rt-tagger-features-s3`` counts as
    ``features``), read from /proc/self/task every second while the sources run: a thread's
    last second before it ends is not counted (Linux only; elsewhere it stays empty)."""

    def __init__(self) -> None:
        import threading

        self._last: dict[int, tuple[str, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True, name="bench-thread-cpu")

    def __enter__(self) -> "ThreadCpu":
        self._base = self._read()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _read(self) -> dict[int, tuple[str, float]]:
        import threading

        names = {t.native_id: t.name for t in threading.enumerate()}
        tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        out = {}
        for task in Path("/proc/self/task").glob("*"):
            try:
                fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            tid = int(task.name)
            kind = names.get(tid, "native")
            kind = kind.split("-")[2] if kind.startswith("rt-tagger-") else kind
            out[tid] = (kind, (int(fields[11]) + int(fields[12])) / tick)  # utime + stime
        return out

    def _sample(self) -> None:
        while not self._stop.wait(1.0):
            self._last.update(self._read())
        self._last.update(self._read())

    def by_kind(self) -> dict[str, float]:
        total: dict[str, float] = {}
        for tid, (kind, cpu) in self._last.items():
            total[kind] = total.get(kind, 0.0) + cpu - self._base.get(tid, (kind, 0.0))[1]
        return total



def worker(mode: str, files: list[str], model: str, threads: int, hop: float, workers: int,
           batch: int | None) -> dict:
    from rt_tagger.tagger import Tagger

    t_load = time.perf_counter()
    tagger = Tagger(model, hop=hop, threads=threads)
    load_s = time.perf_counter() - t_load
    ck = tagger.checkpoint  # warm the engine up (first calls allocate) for batch 1 and batch N
    for b in {1, len(files)}:
        tagger.engine.run(np.zeros((b, int(ck.input_length), tagger.logmel_config.n_mels), np.float32))
    lat, dropped, overruns, batches = [], 0, 0, {}
    cpu0, w0 = time.process_time(), time.perf_counter()
    with ThreadCpu() as threads:  # per kind of thread, beside the process total
        if mode == "shared":
            from rt_tagger.monitor import Monitor, SourceSpec

            specs = [SourceSpec(f"s{i}", f"file:{f}") for i, f in enumerate(files)]
            with Monitor(tagger, specs, workers=workers, batch=batch) as mon:
                mon.start()
                msgs = list(mon.messages())
                batches = dict(mon.batches)
        else:  # the same work per source as the monitor: tagging plus the loudness meter/alarms
            from rt_tagger.monitor import MeterTap
            from rt_tagger.sources import open_source

            session = tagger.session()
            src = open_source(files[0], realtime=True)
            session.add(src, meter=MeterTap(src.sample_rate))
            session.start()
            try:
                msgs = list(session.messages())
            finally:
                session.stop()
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - w0
    for m in msgs:
        if m["type"] == "update" and "latency_ms" in m:
            lat.append(m["latency_ms"])
        elif m["type"] == "summary":
            dropped += m["dropped_chunks"]
            overruns += m["overrun_samples"]
    return {"cpu_s": cpu, "wall_s": wall, "load_s": load_s, "latency_ms": lat, "dropped": dropped,
            "overruns": overruns, "batches": batches, "thread_cpu_s": threads.by_kind()}


def spawn(mode: str, files: list[Path], args, workers: int = 1, batch: int | None = None) -> subprocess.Popen:
    cmd = [sys.executable, __file__, "--worker", mode, "--model", args.model, "--threads",
           str(args.threads), "--hop", str(args.hop), "--workers", str(workers),
           *(["--batch", str(batch)] if batch else []), *map(str, files)]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)


def run_config(mode: str, files: list[Path], args) -> dict:
    load0 = os.getloadavg()[0]
    if mode.startswith("shared"):
        parts = mode.split("-")
        batch = int(parts[2][1:]) if len(parts) > 2 else None
        procs = [spawn("shared", files, args, workers=int(parts[1][0]), batch=batch)]
    else:
        procs = [spawn("single", [f], args) for f in files]
    res = []
    for p in procs:
        _, status, usage = os.wait4(p.pid, 0)
        out = p.stdout.read()
        p.stdout.close()
        p.returncode = os.waitstatus_to_exitcode(status)
        if p.returncode != 0:
            raise SystemExit(f"{mode} worker failed ({p.returncode})")
        r = json.loads(out.strip().splitlines()[-1])
        r["rss_mb"] = usage.ru_maxrss / 1024
        res.append(r)
    lat = np.array([x for r in res for x in r["latency_ms"]])
    wall = max(r["wall_s"] for r in res)
    batches = {}
    for r in res:
        for k, v in r["batches"].items():
            batches[int(k)] = batches.get(int(k), 0) + v
    nb = sum(batches.values())
    return {"cpu_pct": 100 * sum(r["cpu_s"] for r in res) / wall,
            "p50": float(np.percentile(lat, 50)), "p99": float(np.percentile(lat, 99)),
            "updates": int(lat.size), "dropped": sum(r["dropped"] for r in res),
            "overruns": sum(r["overruns"] for r in res), "rss_mb": sum(r["rss_mb"] for r in res),
            "load_s": max(r["load_s"] for r in res), "loadavg": (load0 + os.getloadavg()[0]) / 2,
            "mean_batch": (sum(k * v for k, v in batches.items()) / nb) if nb else 1.0,
            "ms_per_update": {k: 1000 * sum(r["thread_cpu_s"].get(k, 0.0) for r in res) / max(lat.size, 1)
                              for k in sorted({k for r in res for k in r["thread_cpu_s"]})}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="*")
    p.add_argument("--worker", choices=("shared", "single"))
    p.add_argument("--n", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--model", default="musicnn.mtat")
    p.add_argument("--threads", type=int, default=1, help="engine threads per process")
    p.add_argument("--hop", type=float, default=0.5)
    p.add_argument("--workers", type=int, default=1, help="(worker) shared inference threads")
    p.add_argument("--batch", type=int, default=None, help="(worker) most chunks per engine call")
    p.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES),
                   help="configurations to run (separate = one process per source)")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.files, args.model, args.threads, args.hop, args.workers,
                                args.batch)))
        return
    rows = []
    with tempfile.TemporaryDirectory() as d:
        files = make_files(max(args.n), args.seconds, Path(d))
        for n in args.n:
            for mode in args.modes:
                r = run_config(mode, files[:n], args)
                rows.append((n, mode, r))
                print(f"N={n} {mode:13s} CPU {r['cpu_pct']:6.1f}%  latency p50 {r['p50']:7.1f} ms "
                      f"p99 {r['p99']:7.1f} ms  updates {r['updates']}  dropped {r['dropped']}  "
                      f"overruns {r['overruns']}  RSS {r['rss_mb']:.0f} MB  batch {r['mean_batch']:.2f}  "
                      f"load {r['loadavg']:.1f}",
                      flush=True)
                print("    CPU ms per update by thread: " + ", ".join(
                    f"{k} {v:.2f}" for k, v in sorted(r["ms_per_update"].items(), key=lambda kv: -kv[1])))
    if args.out:
        write_md(Path(args.out), rows, args)


def write_md(path: Path, rows, args) -> None:
    cmd = ("PYTHONPATH=. /work/venv/bin/python bench/bench_sources.py --n " + " ".join(map(str, args.n))
           + f" --seconds {args.seconds:g} --model {args.model} --threads {args.threads} --hop {args.hop:g}"
           + ("" if list(args.modes) == list(MODES) else " --modes " + " ".join(args.modes))
           + f" --out {args.out}")
    lines = [
        "# N simultaneous live sources: one shared engine vs one process per source",
        "",
        f"Date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC. Machine: {os.cpu_count()} CPU cores, "
        f"no GPU, {platform.python_implementation()} {platform.python_version()}.",
        "",
        f"Command: `{cmd}`",
        "",
        f"Each source: a {args.seconds:g} s music file paced in real time (`file:` source, realtime), "
        f"model `{args.model}` on the auto backend with {args.threads} engine thread(s) per process, "
        f"hop {args.hop:g} s. **shared-1w** = `rt_tagger.monitor.Monitor`: N pipelines, one engine, "
        "one inference thread taking the waiting chunks of all sources round-robin, one chunk "
        "per engine call (the default on CPU); **shared-1w-b16** = the same, batching up to 16 "
        "waiting chunks into one call (the default on GPU); **shared-2w** = two inference "
        "threads sharing the engine, one chunk per call "
        "(`--inference-workers 2`), so one process can use both cores; **separate** = N concurrent "
        "processes, one `Tagger.stream` each. CPU = CPU time of all threads of all processes "
        "during the streaming phase / wall time (100 % = one core; model loading excluded); "
        "latency = last sample of a chunk read from the ring -> its probabilities available "
        "(over all updates of all sources); RSS = sum of peak RSS of the processes; load = "
        "1-minute load average of the machine (mean of before/after the configuration: other "
        "jobs share these 2 cores, and under contention the scheduler gives N processes N "
        "shares of the CPU but the shared process one share for its single inference thread).",
        "",
        "| N | mode | CPU % | latency p50 (ms) | latency p99 (ms) | updates | dropped chunks | overrun samples | RSS (MB) | mean batch | load |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for n, mode, r in rows:
        lines.append(f"| {n} | {mode} | {r['cpu_pct']:.1f} | {r['p50']:.1f} | {r['p99']:.1f} | {r['updates']} "
                     f"| {r['dropped']} | {r['overruns']} | {r['rss_mb']:.0f} | {r['mean_batch']:.2f} | {r['loadavg']:.1f} |")
    lines += ["", "CPU ms per update, by kind of thread (from /proc/self/task; features = the sources' "
              "feature threads, decode = their decoders, inference = the scheduler's workers):", ""]
    lines += [f"- N={n} {mode}: " + ", ".join(f"{k} {v:.2f}" for k, v in
                                            sorted(r["ms_per_update"].items(), key=lambda kv: -kv[1]))
              for n, mode, r in rows]
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
