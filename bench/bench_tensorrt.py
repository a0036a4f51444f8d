"""Per-chunk latency and batch throughput of the taggers on the tensorrt backend (fp32 and fp16).

The same measurement as ``bench_models.py`` (batch-1 latency median/p99, batch-16 throughput),
on a CUDA GPU through torch-tensorrt, with torch eager on the same GPU as the baseline. Engines
are compiled for static batch sizes 1 and 16 and cached in ``--cache`` (default: a temporary
directory, so compile time is not part of the numbers either way).

    PYTHONPATH=. python bench/bench_tensorrt.py --out bench/results/tensorrt.md

Exits with status 2 and a one-line reason when there is no GPU or torch-tensorrt is missing.
"""
from __future__ import annotations

import sys

from bench_models import machine, measure, parse, report

NOTES = """\
Latency: `engine.run` on one chunk (batch 1), including the host-to-device copy of the input and
the copy of logits (and attention maps, for attention models) back to the host. TensorRT programs
are compiled ahead of time for batch 1 and 16 (`torch_tensorrt.compile(ir="dynamo")`); fp16
compiles a half-precision copy of the model. torch eager on the same GPU is the baseline.
"""


def main(argv: list[str] | None = None) -> int:
    args = parse(argv, backends="tensorrt")
    from rt_tagger.engines.trt_engine import trt_unavailable

    why = trt_unavailable()
    if why:
        print(f"bench_tensorrt: cannot run here: {why}", file=sys.stderr)
        return 2
    import torch

    env = f"{machine()}; GPU {torch.cuda.get_device_name(0)}"
    print(env, flush=True)
    rows = []
    for precision in ("fp32", "fp16"):
        rows += measure(args, ["tensorrt"], precision=precision)
    rows += _torch_cuda_baseline(args)
    text = report("Model latency and throughput: tensorrt backend (GPU)", rows, args, env, NOTES)
    print(text)
    if args.out:
        from pathlib import Path

        Path(args.out).write_text(text)
    return 0


def _torch_cuda_baseline(args) -> list[dict]:
    """torch eager on the GPU, measured like the others (measure() pins torch to the CPU)."""
    import tempfile
    from pathlib import Path

    from bench_models import checkpoint_for, latency_ms, throughput

    from rt_tagger.engines import create_engine

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            ckpt = checkpoint_for(name, Path(tmp))
            with create_engine(ckpt, "torch", device="cuda", threads=1) as eng:
                med, p99 = latency_ms(eng, args.runs, args.warmup)
                row = dict(model=name, backend="torch (cuda)", precision="fp32",
                           frames=eng.input_length, med=med, p99=p99, thr=throughput(
                               eng, args.batch_runs))
                if eng.supports_attention:
                    row["med_noatt"], _ = latency_ms(eng, args.runs // 2, args.warmup, False)
            rows.append(row)
    return rows


if __name__ == "__main__":
    sys.exit(main())
