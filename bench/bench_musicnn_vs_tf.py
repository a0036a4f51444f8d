"""musicnn speed: the original TensorFlow musicnn vs rt-tagger's PyTorch port (torch eager and
onnxruntime), on the same 187-frame log-mel patches of a synthetic clip, CPU only.

    PYTHONPATH=. /work/venv/bin/python bench/bench_musicnn_vs_tf.py --tf-python /work/tfref/bin/python

``--tf-python`` is a Python with ``musicnn==0.1.0`` and tensorflow-cpu (build it with
``tools/musicnn_ref/setup_venv.sh``). The TF side runs in that interpreter as a subprocess: the
graph is built with musicnn's own ``models.define_model`` (as ``extractor.extractor`` builds it),
restored once, and only ``session.run`` is timed, fetching the taggram (sigmoid), the least the
original computes. Our side times ``model(x)`` under ``torch.inference_mode`` and
``InferenceSession.run``. All engines get the same patches; the script checks their outputs agree.

Per configuration (threads x batch): median / p90 latency per call and per patch, and the
offline real-time factor (time to tag the whole clip / its duration; lower is faster).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SR, N_FRAMES, N_MELS = 16000, 187, 96

TF_SERVER = r"""
# Runs in the TensorFlow venv. stdin: one JSON request per line {"threads": n, "batch": b};
# stdout: one JSON line per request with the session.run times of one pass over all patches.
import json, os, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np
import tensorflow as tf
from musicnn import configuration as config, models
args = json.loads(sys.argv[1])
patches = np.load(args["patches"])
labels = config.MTT_LABELS if "MTT" in args["model"] else config.MSD_LABELS
sessions = {}

def session(threads):
    if threads not in sessions:
        graph = tf.Graph()
        with graph.as_default():
            with tf.name_scope("model"):  # as musicnn.extractor builds it
                x = tf.compat.v1.placeholder(tf.float32, [None, 187, config.N_MELS])
                is_training = tf.compat.v1.placeholder(tf.bool)
                sig = tf.nn.sigmoid(models.define_model(x, is_training, args["model"], len(labels))[0])
            cfg = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=threads,
                                           inter_op_parallelism_threads=threads)
            sess = tf.compat.v1.Session(graph=graph, config=cfg)
            tf.compat.v1.train.Saver().restore(sess, os.path.join(os.path.dirname(models.__file__), args["model"]) + "/")
        run = lambda c: sess.run(sig, feed_dict={x: c, is_training: False})
        for b in (1, 16):
            run(patches[:b])  # warm-up (grappler optimises on the first call)
        sessions[threads] = run
    return sessions[threads]

print(json.dumps({"ready": True, "tensorflow": tf.__version__}), flush=True)
for line in sys.stdin:
    req = json.loads(line)
    run = session(req["threads"])
    times, cpu, probs = [], [], []
    for i in range(0, len(patches), req["batch"]):
        t, c = time.perf_counter(), time.process_time()
        probs.append(run(patches[i:i + req["batch"]]))
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    print(json.dumps({"times": times, "cpu": cpu, "probs": np.concatenate(probs).tolist()}), flush=True)
"""


class TFServer:
    """The original musicnn in the TensorFlow venv, as a subprocess answering timing requests."""

    def __init__(self, python: str, patches_path: str, model: str):
        env = dict(os.environ, PYTHONPATH="")  # threads: set per session by ConfigProto
        args = json.dumps({"patches": patches_path, "model": model})
        self.log = tempfile.TemporaryFile(mode="w+")  # TF's deprecation chatter; shown on failure
        self.proc = subprocess.Popen([python, "-c", TF_SERVER, args], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.log, text=True, env=env)
        self.version = self._read()["tensorflow"]

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            code = self.proc.wait()
            self.log.seek(0)
            sys.exit(f"TensorFlow worker died (exit code {code}):\n{self.log.read()[-3000:]}")
        return json.loads(line)

    def run(self, threads: int, batch: int) -> dict:
        self.proc.stdin.write(json.dumps({"threads": threads, "batch": batch}) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()
        self.log.close()


def make_clip(seconds: float, seed: int = 0) -> np.ndarray:
    """A seeded, music-like test signal: chords of decaying harmonic notes plus noise-burst drums."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    t = np.arange(n) / SR
    y = np.zeros(n)
    beat = 0.5
    for start in np.arange(0, seconds, beat):
        i = int(start * SR)
        m = min(n - i, int(0.3 * SR))
        env = np.exp(-np.arange(m) / (0.05 * SR))
        y[i:i + m] += 0.3 * env * rng.standard_normal(m)  # drum hit
        if rng.random() < 0.6:
            f0 = 110 * 2 ** (rng.integers(0, 24) / 12)
            m = min(n - i, int(1.0 * SR))
            env = np.exp(-np.arange(m) / (0.4 * SR))
            y[i:i + m] += 0.2 * env * sum(np.sin(2 * np.pi * k * f0 * t[:m]) / k for k in range(1, 6))
    return (y / np.abs(y).max() * 0.9).astype(np.float32)


def patches_of(y: np.ndarray) -> np.ndarray:
    from rt_tagger.features import MUSICNN, logmel

    lm = logmel(y, MUSICNN, backend="numpy")
    p = lm.shape[0] // N_FRAMES  # trailing frames dropped, as musicnn does
    return np.ascontiguousarray(lm[:p * N_FRAMES].reshape(p, N_FRAMES, N_MELS), dtype=np.float32)


def our_engines(model: str, tmp: str) -> tuple[dict, dict]:
    """``{engine: make(threads) -> fn(patches) -> probs}`` for torch eager and onnxruntime."""
    import onnxruntime as ort
    import torch

    from rt_tagger.export import export_onnx
    from rt_tagger.factory import create_model

    net = create_model(model)
    onnx_path = str(export_onnx(net, os.path.join(tmp, "musicnn.onnx")))
    sessions: dict[int, ort.InferenceSession] = {}

    def torch_fn(threads: int):
        torch.set_num_threads(threads)

        def run(c: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return torch.sigmoid(net(torch.from_numpy(c))).numpy()
        return run

    def ort_fn(threads: int):
        if threads not in sessions:
            opts = ort.SessionOptions()
            opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
            # idle pool threads must not spin: they would steal the core from the next engine
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
            sessions[threads] = ort.InferenceSession(onnx_path, opts, providers=["CPUExecutionProvider"])
        sess = sessions[threads]
        return lambda c: 1 / (1 + np.exp(-sess.run(None, {"features": c})[0]))

    versions = {"torch": torch.__version__, "onnxruntime": ort.__version__}
    return {"torch eager (port)": torch_fn, "onnxruntime (port)": ort_fn}, versions


def one_pass(fn, patches: np.ndarray, batch: int) -> tuple[list[float], list[float], np.ndarray]:
    """Wall-clock and process CPU seconds of each call over all patches, and the outputs."""
    times, cpu, probs = [], [], []
    for i in range(0, len(patches), batch):
        c = patches[i:i + batch]
        t, u = time.perf_counter(), time.process_time()
        probs.append(fn(c))
        times.append(time.perf_counter() - t)
        cpu.append(time.process_time() - u)
    return times, cpu, np.concatenate(probs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tf-python", required=True, help="python of the musicnn/TensorFlow reference venv")
    ap.add_argument("--model", default="MTT_musicnn", choices=["MTT_musicnn", "MSD_musicnn"])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--rounds", type=int, default=5, help="passes over the clip per engine and configuration")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--batches", default="1,16")
    ap.add_argument("--out", default="bench/results/musicnn_vs_tf.md")
    a = ap.parse_args()
    configs = [(int(n), int(b)) for n in a.threads.split(",") for b in a.batches.split(",")]
    ours_name = {"MTT_musicnn": "musicnn.mtat", "MSD_musicnn": "musicnn.msd"}[a.model]

    patches = patches_of(make_clip(a.seconds))
    n_patches = len(patches)
    duration = n_patches * N_FRAMES * 256 / SR  # audio actually tagged
    print(f"{n_patches} patches ({duration:.1f} s of audio)", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        np.save(os.path.join(tmp, "patches.npy"), patches)
        tf = TFServer(a.tf_python, os.path.join(tmp, "patches.npy"), a.model)
        makers, versions = our_engines(ours_name, tmp)
        engines = {"TF musicnn (original)":
                   lambda n: (lambda b: (lambda r: (r["times"], r["cpu"], np.asarray(r["probs"])))(tf.run(n, b)))}
        engines.update({k: (lambda mk: (lambda n: (lambda b: one_pass(mk(n), patches, b))))(mk) for k, mk in makers.items()})
        passes: dict[tuple, list[list[float]]] = {}
        cpu_passes: dict[tuple, list[list[float]]] = {}
        probs: dict[str, np.ndarray] = {}
        for r in range(a.rounds + 1):  # round 0 is a warm-up; engines interleaved so load hits all alike
            for n, b in configs:
                for name, make in engines.items():
                    times, cpu, p = make(n)(b)
                    probs.setdefault(name, p)
                    if r:
                        passes.setdefault((name, n, b), []).append(times)
                        cpu_passes.setdefault((name, n, b), []).append(cpu)
            print(f"round {r} done", flush=True)
        tf.close()

    ref = probs["TF musicnn (original)"]
    agree = {k: float(np.abs(v - ref).max()) for k, v in probs.items() if k != "TF musicnn (original)"}
    rows = []
    tf_name = "TF musicnn (original)"
    for name in engines:
        for n, b in configs:
            calls = np.concatenate(passes[(name, n, b)])
            walls = np.array([sum(p) for p in passes[(name, n, b)]])
            tf_walls = np.array([sum(p) for p in passes[(tf_name, n, b)]])
            cpu = np.median([sum(p) for p in cpu_passes[(name, n, b)]])
            tf_cpu = np.median([sum(p) for p in cpu_passes[(tf_name, n, b)]])
            wall = np.median(walls)
            rows.append(
                f"| {name} | {n} | {b} | {1e3 * np.median(calls):.1f} | {1e3 * np.percentile(calls, 90):.1f} | "
                f"{1e3 * wall / n_patches:.1f} | {1e3 * walls.min() / n_patches:.1f} | {1e3 * cpu / n_patches:.1f} | "
                f"{wall / duration:.4f} | {np.median(tf_walls) / wall:.2f}x | {tf_walls.min() / walls.min():.2f}x | "
                f"{tf_cpu / cpu:.2f}x |")
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")),
               platform.processor())
    text = f"""# musicnn: original TensorFlow vs rt-tagger port (CPU)

Date: {datetime.datetime.now(datetime.UTC).strftime('%Y-%m-%d %H:%M UTC')}. Machine: {cpu}, {os.cpu_count()} cores, shared with
other jobs (1-min load average {os.getloadavg()[0]:.1f} at the end of the run). Model {a.model} / `{ours_name}`.
Input: {n_patches} log-mel patches of 187 frames ({duration:.1f} s of audio) of a seeded synthetic {a.seconds:g} s clip,
the same for all engines. {a.rounds} timed passes over the clip per row after a warm-up pass; engines and
configurations interleaved pass by pass, so background load affects all of them alike.
TensorFlow {tf.version} runs musicnn 0.1.0's own graph (`models.define_model` as `extractor` builds it) in its
own venv; only `session.run` (fetching the taggram) is timed. torch {versions['torch']} eager under
`inference_mode`; onnxruntime {versions['onnxruntime']} (CPU provider) on the ONNX from `rt_tagger.export.export_onnx`.
Max |taggram difference| vs TF on these patches: {', '.join(f'{k} {v:.1e}' for k, v in agree.items())}.

Command: `PYTHONPATH=. /work/venv/bin/python bench/bench_musicnn_vs_tf.py --tf-python {a.tf_python} --model {a.model} --seconds {a.seconds:g} --rounds {a.rounds} --threads {a.threads} --batches {a.batches}`

| engine | threads | batch | median ms / call | p90 ms / call | wall ms / patch (median) | wall ms / patch (best) | CPU ms / patch | offline RTF | speed-up vs TF: wall median | wall best | CPU |
|---|---|---|---|---|---|---|---|---|---|---|---|
""" + "\n".join(rows) + """

wall ms / patch = wall-clock time to tag the whole clip / number of patches (1 patch = 187 frames =
2.99 s of audio), median and fastest of the passes (the fastest is the least disturbed by other jobs);
CPU ms / patch = the same with the process CPU time (all threads; insensitive to other jobs taking the
cores, so the fairer single-thread comparison on a shared machine). offline RTF = median wall time /
audio duration (lower is faster). Speed-up = TF's time over the row's, same threads
and batch. onnxruntime runs with `session.intra_op.allow_spinning=0`.
"""
    Path(a.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
