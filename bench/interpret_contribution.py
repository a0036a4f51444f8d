"""Speed of the tag-wise contribution map (rt_tagger.interpret.contribution_map) per chunk.

Methods: last_layer (closed form over the last layer), backend (front-end once, back-end on T
one-hot copies, batched), full (whole model on T copies, batched), and the naive loop of T
single manipulated passes (timed on the first --loop-steps steps, scaled to T).

    /work/venv/bin/python bench/interpret_contribution.py --threads 2 --widths 512 256
"""
from __future__ import annotations

import argparse
import datetime
import time

import numpy as np
import torch

from rt_tagger.factory import create_model
from rt_tagger.interpret import contribution_map


def timed(fn, repeat: int) -> float:
    fn()  # warm-up
    best = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        best.append(time.perf_counter() - t)
    return 1000 * float(np.median(best))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--widths", type=int, nargs="+", default=[512, 256])
    ap.add_argument("--tags", type=int, default=5, help="number of tags in the map")
    ap.add_argument("--loop-steps", type=int, default=16)
    ap.add_argument("--batched-repeat", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=64, help="passes per batch (batched)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rows = []
    for width in args.widths:
        model = create_model("spec_att", width=width).eval()
        x = np.random.default_rng(0).standard_normal((256, 96)).astype(np.float32)
        tags = list(range(args.tags))
        T = 256
        res = {"last_layer": timed(lambda: contribution_map(model, x, tags=tags), 5)}
        for method in ("backend", "full"):
            res[method] = timed(lambda: contribution_map(model, x, tags=tags, method=method,
                                                         batch_size=args.batch_size), args.batched_repeat)
        xt = torch.from_numpy(x)[None]

        def loop() -> None:
            with torch.no_grad():
                for t in range(args.loop_steps):
                    model(xt, cls_attention=torch.eye(T)[t:t + 1])

        res["loop"] = timed(loop, 1) * T / args.loop_steps
        with torch.no_grad():
            res["plain forward"] = timed(lambda: model(xt, return_attention=True), 5)
        for k, v in res.items():
            rows.append((width, k, v))
            print(f"width {width:4d}  {k:14s} {v:10.1f} ms/chunk", flush=True)
    print(f"\n{datetime.date.today()}, torch {torch.__version__}, {args.threads} threads, "
          f"chunk 256 frames x 96 mels, {args.tags} tags, batch {args.batch_size}\n")
    print("| width | method | ms per chunk |\n|---|---|---|")
    for w, k, v in rows:
        print(f"| {w} | {k} | {v:.1f} |")


if __name__ == "__main__":
    main()
