"""Per-chunk latency and batch throughput of the taggers on torch eager vs onnxruntime.

Latency: one chunk (batch 1), one intra-op thread, ``engine.run`` as the streaming pipeline
calls it (input validation, inference, sigmoid; attention maps fetched when the model has them),
median and p99 over ``--runs`` calls after ``--warmup`` calls. Throughput: batches of 16 with
``--threads`` threads (default: all cores), chunks per second over ``--batch-runs`` batches.
All backends are measured in the same process, one after the other, on the same random input.

    PYTHONPATH=. python bench/bench_models.py --out bench/results/models.md
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# name -> how to get a checkpoint: ("arch", arch_args) for random weights, ("pretrained", name)
MODELS = {
    "spec_att_w512": ("arch", "spec_att", {"width": 512}),
    "spec_att_w256": ("arch", "spec_att", {"width": 256}),
    "musicnn": ("pretrained", "musicnn.mtat", {}),
}


def checkpoint_for(name: str, workdir: Path):
    """A checkpoint for ``name``: shipped weights, or random weights (latency does not care)."""
    import torch

    from rt_tagger.checkpoint import load_checkpoint, save_checkpoint
    from rt_tagger.factory import pretrained_path
    from rt_tagger.models import get_arch

    kind, what, args = MODELS[name]
    if kind == "pretrained":
        return load_checkpoint(pretrained_path(what))
    torch.manual_seed(0)
    model = get_arch(what).factory(**args).eval()
    logmel = get_arch(what).logmel
    path = workdir / f"{name}.safetensors"
    save_checkpoint(path, model, arch=what, arch_args=args,
                    tags=[f"tag{i}" for i in range(model.n_tags)], sample_rate=logmel.sample_rate,
                    input_kind=model.input_kind, input_length=model.input_length, logmel=logmel,
                    provenance={"source": "bench/bench_models.py random init"})
    return load_checkpoint(path)


def chunks(engine, batch: int) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((batch, *engine.input_shape)).astype(np.float32)


def interleaved(cases: dict, runs: int, warmup: int, batch: int = 1,
                block: int = 10) -> dict[object, tuple[np.ndarray, np.ndarray]]:
    """Time ``engine.run`` for each case ``key -> (engine, attention)``, in alternating blocks
    of ``block`` calls so that load from other processes hits every case alike.

    Returns ``key -> (wall seconds, CPU seconds of the calling thread)`` per call. With one
    intra-op thread both backends compute on the calling thread, so its CPU time is what the
    call costs on an idle core, whatever else the machine is doing.
    """
    xs = {k: chunks(e, batch) for k, (e, _) in cases.items()}
    for k, (e, att) in cases.items():
        for _ in range(warmup):
            e.run(xs[k], attention=att)
    wall: dict[object, list[float]] = {k: [] for k in cases}
    cpu: dict[object, list[float]] = {k: [] for k in cases}
    while any(len(t) < runs for t in wall.values()):
        for k, (e, att) in cases.items():
            for _ in range(min(block, runs - len(wall[k]))):
                c0, t0 = time.thread_time(), time.perf_counter()
                e.run(xs[k], attention=att)
                wall[k].append(time.perf_counter() - t0)
                cpu[k].append(time.thread_time() - c0)
    return {k: (np.asarray(wall[k]), np.asarray(cpu[k])) for k in cases}


def compare_exporters(args: argparse.Namespace) -> str:
    """Markdown table: graph size, export time and onnxruntime latency per ONNX exporter."""
    import onnx

    from rt_tagger.engines import create_engine
    from rt_tagger.export import EXPORTERS, export_onnx

    lines = ["| model | exporter | ONNX nodes | export time (s) | ORT CPU time per chunk, "
             "median (ms) |", "|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            ckpt = checkpoint_for(name, Path(tmp))
            cases, info = {}, {}
            for exporter in EXPORTERS:
                path = Path(tmp) / f"{name}-{exporter}.onnx"
                t0 = time.perf_counter()
                export_onnx(ckpt, path, exporter=exporter)
                info[exporter] = (len(onnx.load(str(path)).graph.node), time.perf_counter() - t0)
                cases[exporter] = (create_engine(path, "onnxruntime", threads=1, device="cpu"),
                                   None)
            lat = interleaved(cases, args.runs, args.warmup)
            for exporter, (nodes, secs) in info.items():
                lines.append(f"| {name} | {exporter} | {nodes} | {secs:.1f} "
                             f"| {np.median(lat[exporter][1]) * 1e3:.1f} |")
                print(lines[-1], flush=True)
    return "\n".join(lines)


def machine() -> str:
    import onnx
    import onnxruntime
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = " / ".join(f"{v:.1f}" for v in os.getloadavg())
    return (f"{cpu}, {os.cpu_count()} logical cores, {platform.system()} {platform.release()}; "
            f"Python {platform.python_version()}, torch {torch.__version__}, onnxruntime "
            f"{onnxruntime.__version__}, onnx {onnx.__version__}, numpy {np.__version__}; "
            f"load average at start {load}")


def measure(args: argparse.Namespace, backends: list[str], precision: str = "fp32",
            device: str | None = "cpu") -> list[dict]:
    """One row per (model, backend); backends of a model are measured interleaved."""
    from rt_tagger.engines import create_engine

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            ckpt = checkpoint_for(name, Path(tmp))
            opts = dict(cache=args.cache or tmp, precision=precision, max_batch=16, device=device)
            # Latency: 1 thread. torch's thread count is process-wide, so set it for both phases.
            engines = {b: create_engine(ckpt, b, threads=1, **opts) for b in backends}
            first = next(iter(engines.values()))
            cases = {(b, None): (e, None) for b, e in engines.items()}
            if first.supports_attention:  # logits only, interleaved with the full calls
                cases.update({(b, False): (e, False) for b, e in engines.items()})
            lat = interleaved(cases, args.runs, args.warmup)
            for e in engines.values():
                e.close()
            engines = {b: create_engine(ckpt, b, threads=args.threads, **opts) for b in backends}
            thr = interleaved({b: (e, None) for b, e in engines.items()}, args.batch_runs, 2,
                              batch=16, block=1)
            for b, e in engines.items():
                e.close()
                wall, cpu = lat[(b, None)]
                row = dict(model=name, backend=b, precision=precision, frames=first.input_length,
                           med=float(np.median(wall) * 1e3),
                           p99=float(np.percentile(wall, 99) * 1e3),
                           cpu=float(np.median(cpu) * 1e3),
                           thr=16 / float(np.mean(thr[b][0])))
                if (b, False) in lat:
                    row["med_noatt"] = float(np.median(lat[(b, False)][1]) * 1e3)
                print(_line(row), flush=True)
                rows.append(row)
    return rows


def _line(r: dict) -> str:
    noatt = f"{r['med_noatt']:.1f}" if "med_noatt" in r else "n/a"
    return (f"| {r['model']} | {r['frames']} | {r['backend']} | {r['precision']} | {r['med']:.1f} "
            f"| {r['p99']:.1f} | {r['cpu']:.1f} | {noatt} | {r['thr']:.1f} |")


def table(rows: list[dict], threads: int) -> str:
    head = ("| model | frames | backend | precision | latency median (ms) | latency p99 (ms) "
            "| CPU time per chunk, median (ms) | CPU time, logits only (ms) "
            f"| throughput batch 16, {threads} threads (chunks/s) |\n"
            "|---|---|---|---|---|---|---|---|---|")
    return "\n".join([head, *(_line(r) for r in rows)])


def parse(argv: list[str] | None = None, backends: str = "torch,onnxruntime") -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated: " + ", ".join(MODELS))
    p.add_argument("--backends", default=backends)
    p.add_argument("--runs", type=int, default=200, help="latency calls per model/backend")
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--batch-runs", type=int, default=10, help="batches of 16 for throughput")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--cache", default=None, help="engine cache dir (default: a temporary one)")
    p.add_argument("--out", default=None, help="write the markdown report here")
    p.add_argument("--compare-exporters", action="store_true",
                   help="instead: ONNX graph size / export time / latency per exporter")
    args = p.parse_args(argv)
    args.models = [m for m in args.models.split(",") if m]
    unknown = [m for m in args.models if m not in MODELS]
    if unknown:
        p.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    return args


def report(title: str, rows: list[dict], args: argparse.Namespace, env: str, notes: str) -> str:
    cmd = "PYTHONPATH=. python " + " ".join([os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]])
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load = " / ".join(f"{v:.1f}" for v in os.getloadavg())
    return (f"# {title}\n\nDate: {stamp}  \nCommand: `{cmd}`  \nMachine: {env}; "
            f"load average at end {load}\n\n"
            f"{table(rows, args.threads) + chr(10) * 2 if rows else ''}{notes}\n")


def publish(title: str, rows: list[dict], args: argparse.Namespace, env: str, notes: str) -> None:
    """The report, printed and written to ``--out`` when given."""
    text = report(title, rows, args, env, notes)
    print(text)
    if args.out:
        Path(args.out).write_text(text)


NOTES = """\
Latency: `engine.run` on one chunk (batch 1) with 1 intra-op thread, median and p99 wall time
over the runs after warm-up; the backends of one model (and, for attention models, the calls
with and without attention output) are measured in alternating blocks of 10 calls. A call
includes input validation, inference and the sigmoid, and for attention models the attention
maps (the GUI needs them). CPU time is that of the calling thread, which does all the work with
1 intra-op thread: it is what a call costs on an idle core, so it stays meaningful while other
processes load the machine (wall-time p99 does not). "Logits only" asks for no attention output.
Throughput: batches of 16 chunks through `engine.run`, wall time. spec_att runs with random
weights (speed does not depend on them); musicnn with the converted MTAT weights. ONNX graphs
come from `rt_tagger.export` (torch.export-based exporter, opset 18); onnxruntime runs with all
graph optimisations, sequential execution, no thread spinning.
"""


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    env = machine()
    print(env, flush=True)
    if args.compare_exporters:  # a section appended to --out
        text = report("ONNX exporters: torch.export-based (dynamo) vs legacy TorchScript-based",
                      [], args, env, compare_exporters(args)).replace("# ", "## ", 1)
        print(text)
        if args.out:
            with open(args.out, "a") as f:
                f.write("\n" + text)
        return 0
    rows = measure(args, [b for b in args.backends.split(",") if b])
    publish("Model latency and throughput: torch eager vs onnxruntime (CPU)", rows, args, env,
            NOTES)
    return 0


if __name__ == "__main__":
    sys.exit(main())
