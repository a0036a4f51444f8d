"""Peak memory of offline tagging: ``Tagger.tag_file`` (streams the file in blocks) against
reading the whole file first (``read_audio`` + ``tag_array``, what ``tag_file`` used to do),
each in a fresh process, on generated 44.1 kHz stereo FLAC files of growing length.

    .venv/bin/python bench/bench_tag_file_memory.py --minutes 1 10 30 --out bench/results/tag_file_memory.md
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
from rt_tagger import Tagger
from rt_tagger.sources import read_audio
mode, path = sys.argv[1], sys.argv[2]
t = Tagger(threads=1)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t0 = time.perf_counter()
if mode == "whole":
    y, _ = read_audio(path, sample_rate=t.sample_rate)
    r = t.tag_array(y)
else:
    r = t.tag_file(path)
print(json.dumps({"chunks": int(r.taggram.shape[0]), "seconds": time.perf_counter() - t0,
                  "model_mib": base, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def write_flac(path: Path, minutes: float) -> None:
    """Tone + noise, 44.1 kHz stereo, written a second at a time (never whole in memory)."""
    import numpy as np
    import soundfile as sf

    rate, rng = 44100, np.random.default_rng(0)
    with sf.SoundFile(path, "w", samplerate=rate, channels=2, subtype="PCM_16") as f:
        for i in range(int(minutes * 60)):
            t = np.arange(i * rate, (i + 1) * rate) / rate
            x = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(rate)
            f.write(np.stack([x, 0.8 * x], 1).astype(np.float32))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, nargs="+", default=[1, 10, 30])
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="rt-mem-") as d:
        for minutes in args.minutes:
            path = Path(d) / f"{minutes:g}min.flac"
            write_flac(path, minutes)
            row = {"minutes": minutes}
            for mode in ("whole", "stream"):
                out = subprocess.run([sys.executable, "-c", CHILD, mode, str(path)], capture_output=True,
                                     text=True, check=True).stdout
                row[mode] = json.loads(out.strip().splitlines()[-1])
            rows.append(row)
            print(row, file=sys.stderr)
    lines = [f"## Offline tagging memory: streaming `tag_file` vs whole-file reading "
             f"({dt.date.today().isoformat()})", "",
             f"Command: `python {' '.join(sys.argv)}` (default model, onnxruntime, 1 thread; "
             "44.1 kHz stereo FLAC; peak RSS of a fresh process; model loaded = RSS before tagging)", "",
             "| file | chunks | whole file: peak RSS, time | `tag_file` (streaming): peak RSS, time | model loaded |",
             "|---|---|---|---|---|"]
    for r in rows:
        w, s = r["whole"], r["stream"]
        assert w["chunks"] == s["chunks"]
        lines.append(f"| {r['minutes']:g} min | {s['chunks']} | {w['peak_mib']:.0f} MiB, {w['seconds']:.1f} s | "
                     f"{s['peak_mib']:.0f} MiB, {s['seconds']:.1f} s | {s['model_mib']:.0f} MiB |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
