"""Triton round trip vs the local engine: latency per chunk and chunks/s at several concurrencies.

    python bench/bench_triton.py [--model spec_att.w256] [--seconds 10] [--concurrency 1 8 32] \
        [--threads 1] [--attention] [--out bench/results/triton.md]

Targets, measured in the same run on the same chunks:

* ``onnxruntime``: the local engine (``create_engine(model, "onnxruntime")``), one engine shared
  by the client threads (onnxruntime sessions run concurrent calls);
* ``triton http`` / ``triton grpc``: one :class:`~rt_tagger.engines.triton_engine.TritonEngine`
  shared by the client threads (one client per thread) against a PyTriton server on 127.0.0.1
  serving the same ONNX graph with the project's onnxruntime engine (``--threads`` intra-op
  threads there too), Triton's dynamic batcher at 2 ms ``max_queue_delay``.

Each of ``c`` client threads sends one chunk (batch 1, logits only unless ``--attention``) at a
time, back to back, for ``--seconds``; latency is per request (send to probabilities back),
chunks/s is all chunks over the wall time of the level. The chunks are seeded random log-mel
arrays of the model's input shape (the dense models' run time does not depend on the values).
"""
from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def measure(engine, chunks: np.ndarray, concurrency: int, seconds: float, attention: bool) -> dict:
    lat: list[list[float]] = [[] for _ in range(concurrency)]
    errors: list[str] = []
    stop = time.perf_counter() + seconds
    start = threading.Barrier(concurrency + 1)

    def client(i: int) -> None:
        start.wait()
        k = i
        while time.perf_counter() < stop:
            x = chunks[k % len(chunks)][None]
            t0 = time.perf_counter()
            try:
                engine.run(x, attention=attention)
            except Exception as exc:  # an overloaded or lost server: counted, not fatal
                errors.append(str(exc))
                continue
            lat[i].append(time.perf_counter() - t0)
            k += concurrency

    threads = [threading.Thread(target=client, args=(i,)) for i in range(concurrency)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    all_lat = np.array([x for per in lat for x in per]) * 1000
    return {"n": int(all_lat.size), "rate": all_lat.size / wall, "errors": len(errors),
            "p50": float(np.percentile(all_lat, 50)) if all_lat.size else float("nan"),
            "p99": float(np.percentile(all_lat, 99)) if all_lat.size else float("nan")}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="spec_att.w256")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads (both)")
    p.add_argument("--attention", action="store_true", help="also fetch the attention maps")
    p.add_argument("--out", default=str(ROOT / "bench" / "results" / "triton.md"))
    args = p.parse_args()

    from rt_tagger.deploy import default_model_name
    from rt_tagger.deploy.pytriton_serve import server_python, start_server
    from rt_tagger.engines import create_engine
    from rt_tagger.engines.ort_engine import cached_onnx

    if server_python()[0] is None:
        sys.exit(f"bench_triton: {server_python()[1]}")
    onnx_path = cached_onnx(args.model)[0]
    local = create_engine(onnx_path, "onnxruntime", threads=args.threads, max_batch=64)
    chunks = np.random.default_rng(0).standard_normal((64, *local.input_shape)).astype(np.float32)
    name = default_model_name(args.model)
    rows = []
    with start_server({name: onnx_path}, threads=args.threads, max_batch=64) as srv:
        targets = [("onnxruntime (local)", "-", local)]
        for proto, port in (("http", srv.http_port), ("grpc", srv.grpc_port)):
            scheme = "triton" if proto == "http" else "triton+grpc"
            eng = create_engine(args.model, f"{scheme}://127.0.0.1:{port}/{name}", max_batch=64)
            targets.append(("triton (PyTriton, CPU)", proto, eng))
        for label, proto, eng in targets:
            eng.run(chunks[:2], attention=args.attention)  # warm up: sessions, connections
            for c in args.concurrency:
                r = measure(eng, chunks, c, args.seconds, args.attention)
                rows.append((label, proto, c, r))
                print(f"{label:24s} {proto:5s} c={c:3d} {r['n']:6d} chunks {r['rate']:8.1f}/s "
                      f"p50 {r['p50']:7.1f} ms p99 {r['p99']:7.1f} ms errors {r['errors']}",
                      flush=True)
        for _, _, eng in targets:
            eng.close()
    write(args, rows)
    return 0


def write(args: argparse.Namespace, rows: list) -> None:
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cmd = "python bench/bench_triton.py " + " ".join(a for a in sys.argv[1:])
    lines = [f"## Triton round trip vs local onnxruntime ({when})", "",
             f"Command: `nice -n 10 {cmd.strip()}`; model {args.model}, batch 1 per request, "
             f"{'logits + attention' if args.attention else 'logits only'}, {args.seconds:g} s "
             f"per level, onnxruntime {args.threads} intra-op thread(s) locally and in the "
             f"server; {os.cpu_count()} cores shared with the client threads (and, here, other "
             "jobs), PyTriton server on 127.0.0.1, dynamic batching 2 ms.", "",
             "| target | protocol | concurrency | chunks | chunks/s | latency p50 ms | "
             "latency p99 ms | errors |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for label, proto, c, r in rows:
        lines.append(f"| {label} | {proto} | {c} | {r['n']} | {r['rate']:.1f} | {r['p50']:.1f} | "
                     f"{r['p99']:.1f} | {r['errors']} |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    sys.exit(main())
