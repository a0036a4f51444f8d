"""How far the default model moves if its body sees a stream's real past instead of zeros at
each chunk's left edge: the accuracy side of sharing more than the frame stage between
overlapping chunks.

    python bench/bench_left_context.py --corpus /work/corpus [--files 24] [--seconds 60] \\
        [--out bench/results/left_context.md]

Today every chunk runs musicnn's temporal (128/64/32-frame) convolutions and mid-end on its own
3 s, zero-padded at both edges, so only the timbral front-end is shared (exactly). If instead the
body ran on the stream with its real past (the chunk plus the 72 frames its receptive field
reaches back; the right edge stays zero-padded, so no latency is added), every row but the last
~73 of a chunk would be the stream's and could be computed once. This measures what that does to
the shipped default, not retrained: its chunk probabilities both ways at hop 0.5 s, on the first
``--seconds`` of ``--files`` real-music files of the corpus' **validation** sources (never the
test split), in PyTorch.
"""
from __future__ import annotations

import argparse
import csv
import datetime as dt
import sys
from pathlib import Path

import numpy as np

VALID_SOURCES = ("hedgewars", "singularity", "marsshooter", "xmoto")
LEFT = 72  # frames the body's output at a frame depends on before it (3 + 63 + 3 x 3)


def top5(p: np.ndarray) -> set[int]:
    return set(np.argsort(-p)[:5].tolist())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, required=True, help="corpus folder (manifest.csv)")
    ap.add_argument("--files", type=int, default=24)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    import soundfile as sf
    import torch

    from rt_tagger.factory import DEFAULT_MODEL, create_model
    from rt_tagger.features import logmel

    model = create_model(DEFAULT_MODEL).eval()
    cfg, length = model.checkpoint.logmel_config, model.input_length
    hop = int(round(0.5 * cfg.sample_rate / cfg.hop_length))
    with open(args.corpus / "manifest.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["source"] in VALID_SOURCES and r["kind"] == "music"]
    rows = rows[: args.files]
    if not rows:
        print("rt-tagger: no validation-source music in the manifest", file=sys.stderr)
        return 1
    chunk_mad, chunk_top5, song_top5, song_mad = [], [], [], []
    torch.set_num_threads(1)
    with torch.no_grad():
        for r in rows:
            y, sr = sf.read(args.corpus / r["path"], dtype="float32", always_2d=True)
            if sr != cfg.sample_rate:
                print(f"rt-tagger: {r['path']} is {sr} Hz, not the model's rate", file=sys.stderr)
                return 1
            x = torch.from_numpy(logmel(y.mean(axis=1)[: int(args.seconds * sr)], cfg))
            starts = range(0, len(x) - length + 1, hop)
            plain = torch.sigmoid(model(torch.stack([x[s:s + length] for s in starts]))).numpy()
            past = []
            for s in starts:
                a = max(0, s - LEFT)
                feats = model.body_features(x[a:s + length][None])[:, s - a:]
                past.append(torch.sigmoid(model.head(feats))[0].numpy())
            past = np.stack(past)
            chunk_mad.append(float(np.abs(past - plain).mean()))
            chunk_top5.append(np.mean([len(top5(p) & top5(q)) / 5 for p, q in zip(past, plain)]))
            song_top5.append(len(top5(past.mean(0)) & top5(plain.mean(0))) / 5)
            song_mad.append(float(np.abs(past.mean(0) - plain.mean(0)).mean()))
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = "\n".join([
        f"## The default model with its body on the stream's real past ({now})",
        "",
        f"Command: `python bench/bench_left_context.py --corpus CORPUS --files {args.files} "
        f"--seconds {args.seconds:g}`. `{DEFAULT_MODEL}` (not retrained), PyTorch, hop 0.5 s: each "
        f"chunk's probabilities with the body run on the chunk alone (as shipped: zeros before "
        f"and after) against the body run on the chunk plus the {LEFT} frames before it (the "
        "stream's real past; still zeros after, so no latency is added), rows cropped to the "
        f"chunk. {len(rows)} real-music files of the corpus' validation sources "
        f"({', '.join(VALID_SOURCES)}), first {args.seconds:g} s of each.",
        "",
        "| | chunk mean abs Δp | chunk top-5 overlap | song mean abs Δp | song top-5 overlap |",
        "|---|---:|---:|---:|---:|",
        f"| real past vs zeros | {np.mean(chunk_mad):.4f} | {np.mean(chunk_top5):.3f} | "
        f"{np.mean(song_mad):.4f} | {np.mean(song_top5):.3f} |",
        "",
    ])
    if args.out:
        args.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
