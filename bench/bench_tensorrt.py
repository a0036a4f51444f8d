"""Per-chunk latency and batch throughput of the taggers on the tensorrt backend (fp32 and fp16).

The same measurement as ``bench_models.py`` (batch-1 latency median/p99, batch-16 throughput),
on a CUDA GPU through torch-tensorrt, with torch eager on the same GPU (interleaved) as the
baseline. Engines
are compiled for static batch sizes 1 and 16 and cached in ``--cache`` (default: a temporary
directory, so compile time is not part of the numbers either way).

    PYTHONPATH=. python bench/bench_tensorrt.py --out bench/results/tensorrt.md

Exits with status 2 and a one-line reason when there is no GPU or torch-tensorrt is missing.
"""
from __future__ import annotations

import sys

from bench_models import machine, measure, parse, publish

NOTES = """\
Latency: `engine.run` on one chunk (batch 1), including the host-to-device copy of the input and
the copy of logits (and attention maps, for attention models) back to the host. TensorRT programs
are compiled ahead of time for batch 1 and 16 (`torch_tensorrt.compile(ir="dynamo")`); fp16
compiles a half-precision copy of the model. torch eager on the same GPU (`model.half()` for
fp16) is the baseline, measured interleaved with TensorRT.
"""


def main(argv: list[str] | None = None) -> int:
    args = parse(argv, backends="tensorrt,torch")
    from rt_tagger.engines.trt_engine import trt_unavailable

    why = trt_unavailable()
    if why:
        print(f"bench_tensorrt: cannot run here: {why}", file=sys.stderr)
        return 2
    import torch

    env = f"{machine()}; GPU {torch.cuda.get_device_name(0)}"
    print(env, flush=True)
    backends = [b for b in args.backends.split(",") if b]
    rows = []
    for precision in ("fp32", "fp16"):
        rows += measure(args, backends, precision=precision, device="cuda")
    publish("Model latency and throughput: tensorrt backend (GPU)", rows, args, env, NOTES)
    return 0


if __name__ == "__main__":
    sys.exit(main())
