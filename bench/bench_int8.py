"""int8 against fp32 on onnxruntime's CPU provider, in one run: speed per chunk and accuracy on
held-out real music, for the shipped int8 graph and the other quantization methods tried.

    python bench/bench_int8.py --prepared PREPARED [--files 60] [--chunks 8] [--calib 512] \
        [--reps 100] [--out bench/results/int8.md]

``PREPARED``: the corpus prepared with musicnn's log-mel (``python -m rt_tagger.training
prepare --dataset corpus``); its clip splits are the corpus' (whole sources held out).

* **Methods.** The shipped graph (``rt_tagger/weights/musicnn_att_mtat.int8.onnx``, made by
  ``python -m rt_tagger.training quantize``) and candidates quantized here by the same code
  (:func:`training.quantize.quantize_model`), calibrated on ``--calib`` chunks of the **train**
  split (seeded random clips and starts): QDQ vs QOperator, per-channel vs per-tensor, MatMul/
  Gemm only (the attention back-end) vs Conv too.
* **Accuracy.** ``--files`` real-music clips (kinds music and stem) of the **test** split,
  drawn with a fixed seed, ``--chunks`` evenly spaced 3 s chunks each; a file's tag vector is
  the mean of its chunk probabilities. Top-5 overlap with fp32 and with the teacher
  ``musicnn.mtat`` (fp32), mean |Δ| of probabilities against fp32, file and chunk level.
* **Speed.** ms per chunk at batch 1, 1 and 2 intra-op threads, whole model per chunk; the
  sessions take turns chunk by chunk (same load for all), median and p90 of ``--reps`` runs.
  fp32 with frame reuse (what the live default runs at hop 0.5 s) is given for context.
"""
from __future__ import annotations

import argparse
import csv
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MODEL = "musicnn_att.mtat"
TEACHER = "musicnn.mtat"
REAL_KINDS = ("music", "stem")
#: name -> (QuantMethod fields); "shipped" is the file in rt_tagger/weights.
CANDIDATES = {
    "qdq, per-channel, MatMul/Gemm": dict(fmt="qdq", ops="matmul"),
    "qdq, per-tensor, MatMul/Gemm": dict(fmt="qdq", ops="matmul", per_channel=False),
    "qoperator, per-channel, MatMul/Gemm": dict(fmt="qoperator", ops="matmul"),
    "qdq, per-channel, Conv+MatMul/Gemm": dict(fmt="qdq", ops="all"),
    "qdq, per-tensor, Conv+MatMul/Gemm": dict(fmt="qdq", ops="all", per_channel=False),
    "qoperator (u8 act.), per-channel, Conv+MatMul/Gemm": dict(fmt="qoperator", ops="all",
                                                              activation="uint8"),
    "qoperator, per-channel, Conv+MatMul/Gemm": dict(fmt="qoperator", ops="all"),
}


def session(path: Path, threads: int):
    import onnxruntime as ort

    so = ort.SessionOptions()  # as OrtEngine opens it
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.set_denormal_as_zero", "1")
    return ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])


def probs(sess, x: np.ndarray) -> np.ndarray:
    from rt_tagger.engines import sigmoid

    return np.concatenate([sigmoid(sess.run(["logits"], {"features": x[i:i + 32]})[0])
                           for i in range(0, len(x), 32)])


def top5_overlap(a: np.ndarray, b: np.ndarray) -> float:
    ta, tb = np.argsort(-a, 1)[:, :5], np.argsort(-b, 1)[:, :5]
    return float(np.mean([len(set(x) & set(y)) / 5 for x, y in zip(ta, tb)]))


def data(prepared: str, n_files: int, n_chunks: int, n_calib: int, ckpt) -> tuple:
    """(test chunks (files*chunks, T, M), file index per chunk, calibration chunks, n test files
    available)."""
    from rt_tagger.features import LogMelConfig
    from training.data.dataset import Prepared, chunk_starts

    P = Prepared(prepared)
    store = P.features(LogMelConfig.from_dict(ckpt.logmel))
    kinds = {r["path"]: r["kind"] for r in csv.DictReader(open(Path(P.meta["root"]) / "manifest.csv"))}
    L = int(ckpt.input_length)
    test = [i for i in P.indices("test", [store]) if kinds.get(P.keys[i]) in REAL_KINDS]
    rng = np.random.default_rng(0)
    pick = sorted(rng.choice(test, min(n_files, len(test)), replace=False))
    x, owner = [], []
    for j, i in enumerate(pick):
        for s in chunk_starts(store.length(int(i)), L, n_chunks):
            x.append(store.chunk(int(i), int(s), L))
            owner.append(j)
    train = P.indices("train", [store])
    cal = []
    for i in rng.choice(train, n_calib, replace=True):
        cal.append(store.chunk(int(i), int(rng.integers(0, max(store.length(int(i)) - L, 1))), L))
    return np.stack(x), np.array(owner), np.stack(cal), len(test)


def timing(sessions: dict, x: np.ndarray, reps: int, reuse=None) -> dict[str, tuple[float, float]]:
    """name -> (median, p90) ms per chunk at batch 1, sessions in turn."""
    times = {k: [] for k in sessions}
    if reuse is not None:
        times["fp32 + frame reuse (hop 0.5 s)"] = []
    for k, s in sessions.items():
        for _ in range(3):
            s.run(["logits"], {"features": x[:1]})
    for r in range(reps):
        chunk = x[r % len(x): r % len(x) + 1]
        for k, s in sessions.items():
            t = time.perf_counter()
            s.run(["logits"], {"features": chunk})
            times[k].append(time.perf_counter() - t)
        if reuse is not None:
            t = time.perf_counter()
            reuse(r)
            times["fp32 + frame reuse (hop 0.5 s)"].append(time.perf_counter() - t)
    return {k: (1000 * float(np.median(v)), 1000 * float(np.percentile(v, 90)))
            for k, v in times.items()}


def reuse_runner(engine, stream: np.ndarray, hop: int):
    """A callable running chunk r of ``stream`` at ``hop`` frames through the engine's frame
    reuse (a live stream's steady state: only the new frames go through the stage)."""
    L = engine.input_length
    n = (stream.shape[0] - L) // hop

    def run(r: int) -> None:
        start = (r % n) * hop
        if r % n == 0:
            engine.frame_reuse.forget("bench")
        engine.run(stream[None, start:start + L], attention=False, positions=[("bench", start)])
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prepared", required=True)
    ap.add_argument("--files", type=int, default=60)
    ap.add_argument("--chunks", type=int, default=8)
    ap.add_argument("--calib", type=int, default=512)
    ap.add_argument("--reps", type=int, default=100)
    ap.add_argument("--work", default=str(ROOT / "bench" / "out" / "int8"))
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "int8.md"))
    args = ap.parse_args()

    import onnxruntime

    from rt_tagger.engines import create_engine
    from rt_tagger.engines.ort_engine import cached_onnx
    from rt_tagger.engines.quantize import find_int8
    from rt_tagger.factory import describe_model
    from training.quantize import QuantMethod, quantize_model

    t0 = time.time()
    load0 = os.getloadavg()
    ckpt = describe_model(MODEL)
    x, owner, cal, n_test = data(args.prepared, args.files, args.chunks, args.calib, ckpt)
    print(f"{x.shape[0]} test chunks of {owner.max() + 1} files; {cal.shape[0]} calibration chunks",
          flush=True)
    paths = {"fp32": cached_onnx(MODEL)[0], "shipped int8 (qdq, per-channel, MatMul/Gemm)":
             find_int8(MODEL)[0]}
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    for i, (name, kw) in enumerate(CANDIDATES.items()):
        out = work / f"candidate{i}.onnx"
        quantize_model(MODEL, cal, out, method=QuantMethod(**kw),
                       calibration={"set": "bench: prepared train split", "seed": 0})
        paths[name] = out
    print(f"quantized {len(CANDIDATES)} candidates ({time.time() - t0:.0f} s)", flush=True)

    teacher = probs(session(cached_onnx(TEACHER)[0], 2), x)
    rows = {}
    ref_chunks = ref_files = None
    for name, p in paths.items():
        pc = probs(session(p, 2), x)
        pf = np.stack([pc[owner == j].mean(0) for j in range(owner.max() + 1)])
        tf = np.stack([teacher[owner == j].mean(0) for j in range(owner.max() + 1)])
        if ref_chunks is None:
            ref_chunks, ref_files = pc, pf
        rows[name] = {"file_top5": top5_overlap(ref_files, pf),
                      "file_mad": float(np.abs(pf - ref_files).mean()),
                      "file_maxd": float(np.abs(pf - ref_files).max()),
                      "chunk_top5": top5_overlap(ref_chunks, pc),
                      "chunk_mad": float(np.abs(pc - ref_chunks).mean()),
                      "teacher_top5": top5_overlap(tf, pf),
                      "size_mb": os.path.getsize(p) / 1e6}
    print(f"accuracy done ({time.time() - t0:.0f} s)", flush=True)

    stream = np.concatenate([x[owner == 0][k] for k in range(args.chunks)])  # one file's chunks
    for threads in (1, 2):
        sessions = {name: session(p, threads) for name, p in paths.items()}
        eng = create_engine(MODEL, "onnxruntime", device="cpu", threads=threads)
        t = timing(sessions, x, args.reps, reuse_runner(eng, stream, 31))
        eng.close()
        for name, (med, p90) in t.items():
            rows.setdefault(name, {})[f"t{threads}"] = (med, p90)
    load1 = os.getloadavg()
    print(f"timing done ({time.time() - t0:.0f} s)", flush=True)

    def cell(r, key, fmt):
        return fmt.format(r[key]) if key in r else ""

    lines = [
        "# int8 on CPU (onnxruntime static quantization) against fp32: `musicnn_att.mtat`", "",
        f"`python bench/bench_int8.py {' '.join(sys.argv[1:])}` ({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, "
        f"{time.time() - t0:.0f} s)", "",
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores "
        f"({_cpu_name()}); onnxruntime {onnxruntime.__version__}; load average "
        f"{load0[0]:.2f} at the start, {load1[0]:.2f} at the end (the cores are shared with other "
        "work: compare rows, which ran in turn, not absolute values).", "",
        f"Accuracy: {owner.max() + 1} of the {n_test} held-out real-music files (kinds music/stem) "
        f"of the test split, seed 0, {args.chunks} evenly spaced chunks each ({x.shape[0]} chunks); "
        "a file's vector is the mean of its chunk probabilities. Candidates calibrated on "
        f"{args.calib} chunks of the train split; the shipped graph on 512 chunks of 128 "
        "train-split files (its provenance, rt_tagger/weights/README.md).", "",
        "| graph | ms/chunk 1 thread (median / p90) | ms/chunk 2 threads | file top-5 overlap "
        "with fp32 | file mean abs Δ | file max abs Δ | chunk top-5 / mean abs Δ | file top-5 "
        "with teacher musicnn.mtat | MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        t1 = "{:.1f} / {:.1f}".format(*r["t1"]) if "t1" in r else ""
        t2 = "{:.1f} / {:.1f}".format(*r["t2"]) if "t2" in r else ""
        lines.append(f"| {name} | {t1} | {t2} | {cell(r, 'file_top5', '{:.3f}')} | "
                     f"{cell(r, 'file_mad', '{:.4f}')} | {cell(r, 'file_maxd', '{:.3f}')} | "
                     + (f"{r['chunk_top5']:.3f} / {r['chunk_mad']:.4f}" if "chunk_top5" in r else "")
                     + f" | {cell(r, 'teacher_top5', '{:.3f}')} | {cell(r, 'size_mb', '{:.1f}')} |")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


if __name__ == "__main__":
    main()
