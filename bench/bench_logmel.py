"""Log-mel throughput and streaming latency, every implementation in the same run.

    python bench/bench_logmel.py [--minutes 10] [--repeats 5] [--out bench/results/logmel.md]

Throughput: frames/s on the same 10-minute 16 kHz signal (the test music clips tiled, plus
noise), best of --repeats runs (the machine is shared; best-of is the least noisy estimator, the
median is reported too). Streaming: wall time of one push of a 256-sample hop (one new frame)
through the Python API, median and p99 over many hops.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def signal(minutes: float) -> np.ndarray:
    import soundfile as sf

    clips = [sf.read(p, dtype="float32")[0] for p in sorted((ROOT / "tests" / "data").glob("*.flac"))]
    base = np.concatenate(clips)
    n = int(minutes * 60 * 16000)
    y = np.resize(base, n) + 0.01 * np.random.default_rng(0).standard_normal(n)
    return np.ascontiguousarray(y.astype(np.float32))


def timeit(fn, repeats: int) -> tuple[float, float]:
    fn()  # warm-up (JIT compile, allocator)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times), float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--hops", type=int, default=20000)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "logmel.md")
    args = ap.parse_args()

    import librosa
    import torch

    from rt_tagger.features import LogMel, LogMelConfig, mel_filterbank

    c = LogMelConfig()
    y = signal(args.minutes)
    n_frames = 1 + y.size // c.hop_length
    mel_t = torch.from_numpy(mel_filterbank(sample_rate=16000, n_fft=512, n_mels=96, fmax=8000))
    win_t = torch.hann_window(512, periodic=True)
    y_t = torch.from_numpy(y)

    def torch_logmel():
        spec = torch.stft(y_t, 512, 256, window=win_t, center=True, pad_mode="constant",
                          return_complex=True).abs().pow(2)
        return torch.log10(1 + 10000 * (mel_t @ spec)).T

    def librosa_logmel():
        m = librosa.feature.melspectrogram(y=y, sr=16000, n_fft=512, hop_length=256, n_mels=96,
                                           fmin=0, fmax=8000)
        return np.log10(1 + 10000 * m)

    cases = []
    for threads in (1, 2):
        native = LogMel(c, n_threads=threads)
        numba_ = LogMel(c, backend="numba", n_threads=threads)
        cases += [(f"native C++ ({threads} thread{'s' * (threads > 1)})", lambda m=native: m(y), threads),
                  (f"Numba ({threads} thread{'s' * (threads > 1)})", lambda m=numba_: m(y), threads)]
    numpy_ = LogMel(c, backend="numpy")
    cases += [("numpy reference (float64)", lambda: numpy_(y), 1), ("librosa 0.11", librosa_logmel, 1)]
    for threads in (1, 2):
        cases.append((f"torch.stft + mel matmul ({threads} thread{'s' * (threads > 1)})", torch_logmel, threads))

    rows = []
    for name, fn, threads in cases:
        torch.set_num_threads(threads)
        best, med = timeit(fn, args.repeats)
        rows.append((name, n_frames / best, n_frames / med))
        print(f"{name:40s} {n_frames / best / 1e6:6.3f} M frames/s (median {n_frames / med / 1e6:.3f})", flush=True)
    librosa_fps = dict((r[0], r[1]) for r in rows)["librosa 0.11"]

    # Streaming: one 256-sample hop per push.
    hops = {}
    for backend in ("native", "numba"):
        s = LogMel(c, backend=backend).stream()
        s.push(y[:16000])
        pos, lat = 16000, []
        for _ in range(args.hops):
            block = y[pos : pos + 256]
            pos = pos + 256 if pos + 512 < y.size else 16000
            t = time.perf_counter_ns()
            out = s.push(block)
            lat.append(time.perf_counter_ns() - t)
            assert out.shape[0] == 1
        lat_us = np.array(lat) / 1e3
        hops[backend] = (np.median(lat_us), np.percentile(lat_us, 99))
        print(f"streaming {backend}: median {hops[backend][0]:.2f} us, p99 {hops[backend][1]:.2f} us", flush=True)

    cmd = "python bench/bench_logmel.py " + " ".join(sys.argv[1:])
    lines = [
        "## Log-mel throughput (frames/s, same run, same signal)",
        "",
        f"Signal: {args.minutes:g} min at 16 kHz = {n_frames:,} frames (n_fft 512, hop 256, 96 Slaney mels, "
        f"log10(1+10000x)). Best of {args.repeats} runs (median in brackets). "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, shared machine; "
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC. Command: `{cmd.strip()}`",
        "",
        "| implementation | frames/s (best) | frames/s (median) | × librosa |",
        "|---|---:|---:|---:|",
    ]
    for name, best, med in rows:
        lines.append(f"| {name} | {best:,.0f} | {med:,.0f} | {best / librosa_fps:.1f} |")
    lines += [
        "",
        f"Streaming: one push of a 256-sample hop through the Python API (`StreamingLogMel.push`), "
        f"{args.hops:,} hops:",
        "",
        "| backend | median µs/hop | p99 µs/hop |",
        "|---|---:|---:|",
    ]
    for backend, (med, p99) in hops.items():
        lines.append(f"| {backend} | {med:.2f} | {p99:.2f} |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
