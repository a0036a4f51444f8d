"""Whole processes, as a user runs them: a fresh ``rt-tagger FILE`` against the original
TensorFlow musicnn's ``extractor`` (MTT_musicnn) on the same files, in the same run, commands
interleaved round by round; wall time and the peak RSS of each process tree's main process.

    python bench/bench_cold_start.py --tf-python /work/tfref/bin/python --rounds 5 \\
        --out bench/results/cold_start.md

Files: the three 12 s renders of ``tests/data`` concatenated (drums, piano, strings) and cut or
repeated to 30 s and to 10 minutes, 16 kHz mono FLAC. rt-tagger runs with the default model on
the auto backend (onnxruntime on CPU) with its ONNX export cached (one untimed run first), and
reports whether torch was imported; TensorFlow musicnn runs ``extractor(file, model=
'MTT_musicnn')`` (non-overlapping 3 s patches) in its own venv. On the 10-minute file, a third
row times the default model's frame stage alone (musicnn's timbral front-end, which
overlapping chunks share) once over every frame: no hop can tag the file faster with this model.
That row's time is the stage's own (log-mel made, process start-up not counted).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data"
CLIPS = ["render_drums_70bpm_12s.flac", "render_piano_monteverdi_12s.flac",
         "render_strings_bach_bwv47.5_12s.flac"]

# A fresh rt-tagger CLI process that says at exit whether torch was imported.
# (``run`` is the console script's entry: it runs atexit handlers, then ends the process.)
RT = ("import atexit, sys; atexit.register(lambda: sys.stderr.write("
      "'torch imported\\n' if 'torch' in sys.modules else 'no torch\\n')); "
      "from rt_tagger.cli import run; run()")
# The floor under any hop for the default model: its frame stage (musicnn's timbral front-end,
# shared by overlapping chunks) once over every frame of the file, log-mel already made, in
# blocks of 2,048 frames on onnxruntime's default threads; nothing else of the model runs.
FLOOR = ("import sys, time, soundfile as sf; from rt_tagger.engines import create_engine; "
         "from rt_tagger.features import logmel; "
         "from rt_tagger.factory import DEFAULT_MODEL; e = create_engine(DEFAULT_MODEL, 'onnxruntime', device='cpu'); r = e.frame_reuse; "
         "y, sr = sf.read(sys.argv[1], dtype='float32'); "
         "x = logmel(y, e.checkpoint.logmel_config); "
         "t = time.perf_counter(); "
         "[r._run_stage(x[i - 3:i + 2048 + 3]) for i in range(3, len(x) - 3, 2048)]; "
         "sys.stderr.write(f'stage {time.perf_counter() - t:.3f}\\n')")
TF = ("import sys, warnings; warnings.filterwarnings('ignore'); "
      "from musicnn.extractor import extractor; "
      "taggram, tags = extractor(sys.argv[1], model='MTT_musicnn', extract_features=False); "
      "print(taggram.shape)")


def make_file(path: Path, seconds: float) -> None:
    import numpy as np
    import soundfile as sf
    import soxr

    parts = []
    for name in CLIPS:
        y, sr = sf.read(DATA / name, dtype="float32", always_2d=True)
        parts.append(soxr.resample(y.mean(axis=1), sr, 16000))
    one = np.concatenate(parts)
    reps = int(np.ceil(seconds * 16000 / len(one)))
    sf.write(path, np.tile(one, reps)[: int(seconds * 16000)], 16000, subtype="PCM_16")


def timed(cmd: list[str], env: dict | None = None) -> dict:
    """Wall seconds and peak RSS (MiB) of ``cmd``'s process (os.wait4's rusage)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{cmd[:3]} failed: {err[-800:]}")
    stage = [float(line.split()[1]) for line in err.splitlines() if line.startswith("stage ")]
    return {"wall": stage[0] if stage else wall, "rss": ru.ru_maxrss / 1024,
            "torch": "torch imported" in err}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tf-python", required=True, help="python of the musicnn/TensorFlow venv")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--long-rounds", type=int, default=3, help="rounds on the 10-minute file")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    rt = [sys.executable, "-c", RT]
    with tempfile.TemporaryDirectory(prefix="rt-cold-") as d:
        short, long = Path(d) / "30s.flac", Path(d) / "10min.flac"
        make_file(short, 30.0)
        make_file(long, 600.0)
        # Bytecode as a regular install has it (pip byte-compiles a wheel as it installs it; a
        # checkout run with PYTHONDONTWRITEBYTECODE=1, as on this project's machines, would
        # compile ~30 modules, ~50 ms, in every run), then the ONNX export in the cache: both
        # untimed.
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "rt_tagger")],
                       check=True, stdout=subprocess.DEVNULL)
        timed([*rt, str(short), "-q"])
        cases = [
            ("30 s file, cold process", short, args.rounds, {
                "rt-tagger FILE": [*rt, str(short), "-q"],
                "TF musicnn extractor": [args.tf_python, "-c", TF, str(short)]}),
            ("10 min file, CLI defaults (hop 0.5 s)", long, args.long_rounds, {
                "rt-tagger FILE": [*rt, str(long), "-q"],
                "rt-tagger FILE --hop chunk": [*rt, str(long), "-q", "--hop", "chunk"],
                "frame stage alone (floor of any hop)": [sys.executable, "-c", FLOOR, str(long)],
                "TF musicnn extractor": [args.tf_python, "-c", TF, str(long)]}),
        ]
        rows = []
        for title, _, rounds, cmds in cases:
            got: dict[str, list[dict]] = {k: [] for k in cmds}
            for _ in range(rounds):  # interleaved: background load hits every command alike
                for name, cmd in cmds.items():
                    got[name].append(timed(cmd))
            tf_wall = statistics.median(r["wall"] for r in got["TF musicnn extractor"])
            for name, runs in got.items():
                wall = statistics.median(r["wall"] for r in runs)
                rows.append({"case": title, "command": name, "wall": wall,
                             "rss": statistics.median(r["rss"] for r in runs),
                             "torch": any(r["torch"] for r in runs) if name != "TF musicnn extractor" else None,
                             "vs_tf": tf_wall / wall, "rounds": rounds,
                             "min": min(r["wall"] for r in runs), "max": max(r["wall"] for r in runs)})
                print(json.dumps(rows[-1]), flush=True)
    load = os.getloadavg()[0]
    if args.out:
        lines = [f"## Cold start and whole files: rt-tagger vs TensorFlow musicnn ({dt.date.today()})",
                 "",
                 f"Command: `python bench/bench_cold_start.py --tf-python /work/tfref/bin/python "
                 f"--rounds {args.rounds} --long-rounds {args.long_rounds} --out {args.out}` "
                 f"(1-min load average at the end: {load:.1f}). Fresh processes, commands "
                 "interleaved round by round, medians (min-max) of the rounds; peak RSS of the "
                 "process (`wait4`). rt-tagger: default model, auto backend (onnxruntime, CPU), "
                 "its ONNX export already cached, its modules byte-compiled (as a regular "
                 "install has them); TF: musicnn 0.1.0 `extractor(file, "
                 "model='MTT_musicnn')` (TensorFlow 2.15, non-overlapping 3 s patches). Files: "
                 "the three 12 s renders of `tests/data` in turn, 16 kHz mono FLAC. \"Frame stage "
                 "alone\": the default model's timbral front-end (the part overlapping chunks "
                 "share) once over every frame of the 10-minute file, timed on its own (no "
                 "start-up, log-mel already made): the floor under any hop for this model.",
                 "",
                 "| case | command | wall (median) | min-max | peak RSS | imports torch | speed vs TF |",
                 "|---|---|---|---|---|---|---|"]
        for r in rows:
            torch = "" if r["torch"] is None else ("yes" if r["torch"] else "no")
            lines.append(f"| {r['case']} | {r['command']} | {r['wall']:.2f} s | {r['min']:.2f}-"
                         f"{r['max']:.2f} s | {r['rss']:.0f} MiB | {torch} | {r['vs_tf']:.2f}x |")
        args.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
