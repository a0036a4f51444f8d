"""``python -m rt_tagger.training {prepare,train,distill,teacher-cache,body-cache,distill-body,report,card,evaluate,compare,curves,export,corpus,teachers,quantize,synthetic} ...``"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rt_tagger.errors import RtTaggerError


def _parser() -> argparse.ArgumentParser:
    from .config import TrainConfig
    from .data import DATASETS

    p = argparse.ArgumentParser(prog="python -m rt_tagger.training",
                                description="Prepare datasets, train, evaluate and export taggers.")
    sub = p.add_subparsers(dest="command", required=True)

    prep = sub.add_parser("prepare", help="decode a dataset into memory-mapped features")
    prep.add_argument("--dataset", required=True, choices=list(DATASETS))
    prep.add_argument("--root", required=True, help="the dataset's directory")
    prep.add_argument("--split", default=None, help="dataset split (mtat: refined | folder)")
    prep.add_argument("--out", required=True, help="prepared directory to write")
    prep.add_argument("--features", nargs="+", default=["spec_att"],
                      help="models whose log-mel to compute (spec_att, musicnn.mtat, ...) "
                           "and/or 'raw' for 16 kHz audio")
    prep.add_argument("--workers", type=int, default=2)

    for name, hlp in (("train", "train a tagger"),
                      ("distill", "train a student on a teacher's outputs (needs --teacher)")):
        t = sub.add_parser(name, help=hlp)
        TrainConfig.add_arguments(t)

    tc = sub.add_parser("teacher-cache", help="compute a teacher's outputs once on the grid "
                                              "a student's chunks start on (distill reuses them)")
    tc.add_argument("--teacher", required=True, help="registry name or checkpoint")
    tc.add_argument("--data", required=True, help="prepared directory")
    tc.add_argument("--model", default="spec_att", help="the student architecture")
    tc.add_argument("--model-args", type=json.loads, default={},
                    help="the student's arguments (JSON), as given to distill")
    tc.add_argument("--threads", type=int, default=0)

    bc = sub.add_parser("body-cache", help="a musicnn teacher's body outputs and logits on "
                                           "clean, augmented and probe chunks (musicnn_att students)")
    bc.add_argument("--teacher", default="musicnn.mtat", help="a musicnn registry name or checkpoint")
    bc.add_argument("--data", required=True, help="prepared directory with the teacher's log-mel "
                                                  "and raw audio")
    bc.add_argument("--out", required=True, help="cache directory")
    bc.add_argument("--workers", type=int, default=2, help="processes, one thread each")
    bc.add_argument("--aug-fraction", type=float, default=0.5,
                    help="augmented chunks per clean training chunk")
    bc.add_argument("--probes", type=int, default=480, help="synthetic non-music chunks")
    bc.add_argument("--seed", type=int, default=0)
    bc.add_argument("--parts", nargs="+", default=None, choices=["train", "valid", "aug", "probes"],
                    help="build only these parts (default: all)")

    db = sub.add_parser("distill-body", help="train a musicnn_att student's attention back-end "
                                             "on a body cache")
    from .body_distill import add_arguments as _body_args

    _body_args(db)

    rp = sub.add_parser("report", help="a student against its teacher as users meet it: held-out "
                                       "real music, instruments, singing, events, probes")
    rp.add_argument("--teacher", default="musicnn.mtat")
    rp.add_argument("--model", required=True, nargs="+", help="student checkpoint(s) or names")
    rp.add_argument("--data", required=True, help="prepared corpus (test split)")
    rp.add_argument("--corpus", required=True, help="corpus root (manifest.csv)")
    rp.add_argument("--work", required=True, help="folder for clip sets, probes and excerpts")
    rp.add_argument("--threads", type=int, default=1)
    rp.add_argument("--skip", nargs="*", default=[], choices=["songs", "sung", "instruments", "cli"])
    rp.add_argument("--limit", type=int, default=0, help="about this many clips per set (quick look)")
    rp.add_argument("--json", default=None)
    rp.add_argument("--markdown", default=None)

    mc = sub.add_parser("card", help="write a checkpoint again with its model card and extra "
                                     "provenance")
    mc.add_argument("--model", required=True, help="checkpoint (.safetensors)")
    mc.add_argument("--card", required=True, help="model card (markdown file)")
    mc.add_argument("--provenance", default=None, help="JSON file merged into the provenance")
    mc.add_argument("--corpus", default=None, help="corpus root: its per-source record goes into "
                                                   "provenance.corpus")
    mc.add_argument("--out", required=True)

    ev = sub.add_parser("evaluate", help="song-level metrics of a model on a prepared dataset")
    ev.add_argument("--model", required=True, help="registry name or checkpoint path")
    ev.add_argument("--data", required=True, help="prepared directory")
    ev.add_argument("--split", default="test", choices=["train", "valid", "test"])
    ev.add_argument("--chunks", type=int, default=16, help="chunks per clip (0: all)")
    ev.add_argument("--device", default="cpu")
    ev.add_argument("--json", default=None, help="also write the results to this file")

    cm = sub.add_parser("compare", help="distilled students against their teacher on a "
                                        "held-out split: agreement, instruments, latency")
    cm.add_argument("--teacher", required=True, help="registry name or checkpoint")
    cm.add_argument("--model", required=True, nargs="+", help="student checkpoint(s)")
    cm.add_argument("--data", required=True, help="prepared directory")
    cm.add_argument("--split", default="test", choices=["train", "valid", "test"])
    cm.add_argument("--corpus", default=None,
                    help="corpus root (manifest.csv): adds instrument ROC-AUC on the renders")
    cm.add_argument("--top-k", type=int, default=5, help="teacher decisions: its top-k tags")
    cm.add_argument("--threads", type=int, default=2)
    cm.add_argument("--json", default=None, help="write the full result to this file")
    cm.add_argument("--markdown", default=None, help="write the report tables to this file")

    cv = sub.add_parser("curves", help="training curves of runs: markdown table, PNG")
    cv.add_argument("--run", required=True, nargs="+", help="training run directories")
    cv.add_argument("--png", default=None, help="also plot them into this PNG")

    ex = sub.add_parser("export", help="write a run's best epoch as a registry checkpoint")
    ex.add_argument("--run", required=True, help="training run directory")
    ex.add_argument("--out", default=None, help="output .safetensors (default RUN/model.safetensors)")
    ex.add_argument("--card", default=None, help="a text file: the model card stored in the file")
    ex.add_argument("--provenance", default=None,
                    help="a JSON file whose object is merged into the stored provenance")

    co = sub.add_parser("corpus", help="build (or resume) the distillation corpus from Debian "
                                       "packages, FluidSynth and TiMidity++ renders, recorded "
                                       "drum kits, singing and speech")
    co.add_argument("dest", help="corpus folder (manifest.csv, summary.txt, licenses/, wav)")
    co.add_argument("--jobs", type=int, default=1, help="parallel work items")
    co.add_argument("--max-track-sec", type=float, default=160,
                    help="keep the first S seconds of each real track (0: whole tracks)")
    co.add_argument("--midi-n", type=int, default=1800, help="score renders (30 s each)")
    co.add_argument("--sung-n", type=int, default=150, help="sung clips (30 s each)")
    co.add_argument("--sampled-n", type=int, default=120,
                    help="scores played by freepats' sampled instruments (a solo and a duo each)")
    co.add_argument("--only", nargs="+", default=None, metavar="SOURCE",
                    help="only these sources (keys or Debian packages) and/or stages: music "
                         "game_midi renders drum_loops sung speech sampled")
    co.add_argument("--packages", nargs="+", default=(), metavar="PKG",
                    help="more Debian packages to take music from (reserved ones are refused)")
    co.add_argument("--skip-apt", action="store_true",
                    help="don't apt-get install the tools (sox, ffmpeg, fluidsynth, soundfonts)")
    co.add_argument("--cache", default=None, help=".deb and unpack cache (default DEST/.cache)")

    te = sub.add_parser("teachers", help="MTT teachers and their ensemble on renders and real "
                                         "recordings of known instruments: top-3, ROC-AUC")
    te.add_argument("--work", required=True, help="folder for the renders and unpacked packages")
    te.add_argument("--teacher", nargs="+", default=["musicnn.mtat", "musicnn_vgg.mtat"])
    te.add_argument("--threads", type=int, default=2)
    te.add_argument("--json", default=None, help="write the full result to this file")
    te.add_argument("--markdown", default=None, help="write the table to this file")

    qz = sub.add_parser("quantize", help="an int8 graph of a model for onnxruntime on a CPU "
                                          "(--precision int8), calibrated on audio files")
    from .quantize import add_arguments as _quant_args

    _quant_args(qz)

    sy = sub.add_parser("synthetic", help="write a small synthetic MTAT to try the pipeline")
    sy.add_argument("--out", required=True)
    sy.add_argument("--seed", type=int, default=0)
    return p


def _read(path: str, option: str) -> str:
    if not Path(path).is_file():
        raise RtTaggerError(f"{option}: no such file: {path}")
    return Path(path).read_text()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "prepare":
            from .data import load_dataset
            from .data.prepare import prepare

            index = load_dataset(args.dataset, args.root, args.split)
            out = prepare(index, args.out, args.features, workers=args.workers)
            from .data.dataset import Prepared

            failed = Prepared(out).meta["failed"]
            print(f"prepared {len(index.clips)} clips into {out}; {len(failed)} skipped"
                  + (f" (listed in {out}/failed.tsv)" if failed else ""))
        elif args.command in ("train", "distill"):
            from .config import TrainConfig
            from .train import train

            cfg = TrainConfig.from_args(args)
            if args.command == "distill" and not cfg.teacher:
                raise RtTaggerError("distill needs --teacher (e.g. --teacher musicnn.mtat)")
            print(f"run directory: {train(cfg)}")
        elif args.command == "teacher-cache":
            from .teacher_cache import build_for

            cache = build_for(args.teacher, args.data, args.model, args.model_args,
                              threads=args.threads)
            print(f"teacher outputs on a {cache.stride}-frame grid: {cache.dir}")
        elif args.command == "body-cache":
            from .body_cache import build_body_cache

            counts = build_body_cache(args.data, args.out, teacher=args.teacher,
                                      workers=args.workers, aug_fraction=args.aug_fraction,
                                      n_probes=args.probes, seed=args.seed,
                                      **({"parts": tuple(args.parts)} if args.parts else {}))
            print(f"body cache in {args.out}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
        elif args.command == "distill-body":
            from .body_distill import distill_body, from_args

            print(f"wrote {distill_body(from_args(args))}")
        elif args.command == "report":
            from .report import format_report, report

            result = report(args.teacher, args.model, args.data, args.corpus, args.work,
                            threads=args.threads, skip=tuple(args.skip), limit=args.limit)
            text = format_report(result)
            print(text)
            if args.json:
                Path(args.json).write_text(json.dumps(result, indent=1))
            if args.markdown:
                Path(args.markdown).write_text(text + "\n")
        elif args.command == "card":
            from .model_card import write_card

            from .model_card import corpus_record

            extra = json.loads(_read(args.provenance, "--provenance")) if args.provenance else {}
            if args.corpus:
                extra["corpus"] = corpus_record(args.corpus)
            print(f"wrote {write_card(args.model, args.out, _read(args.card, '--card'), extra)}")
        elif args.command == "evaluate":
            from .evaluate import evaluate, format_table, public

            result = evaluate(args.model, args.data, split=args.split, n_chunks=args.chunks,
                              device=args.device)
            print(format_table(result))
            if args.json:
                with open(args.json, "w") as f:
                    json.dump(public(result), f, indent=1)
        elif args.command == "compare":
            from .compare import compare, format_report

            result = compare(args.teacher, args.model, args.data, split=args.split,
                             corpus=args.corpus, top_k=args.top_k, threads=args.threads)
            report = format_report(result)
            print(report)
            if args.json:
                with open(args.json, "w") as f:
                    json.dump(result, f, indent=1)
            if args.markdown:
                with open(args.markdown, "w") as f:
                    f.write(report + "\n")
        elif args.command == "curves":
            from .curves import curves_table, plot_curves

            print(curves_table(args.run))
            if args.png:
                print(f"wrote {plot_curves(args.run, args.png)}")
        elif args.command == "export":
            from .export import export_run

            card = _read(args.card, "--card") if args.card else None
            extra = json.loads(_read(args.provenance, "--provenance")) if args.provenance else None
            print(f"wrote {export_run(args.run, args.out, model_card=card, extra_provenance=extra)}")
        elif args.command == "corpus":
            from .corpus.build import build_corpus

            path = build_corpus(args.dest, jobs_n=args.jobs, max_track_sec=args.max_track_sec,
                                midi_n=args.midi_n, sung_n=args.sung_n, sampled_n=args.sampled_n,
                                only=args.only,
                                extra_packages=args.packages, skip_apt=args.skip_apt,
                                cache=args.cache,
                                log=lambda *a: print(*a, flush=True))
            print(f"wrote {path}")
        elif args.command == "quantize":
            from .quantize import run as quantize

            print(f"wrote {quantize(args)}")
        elif args.command == "teachers":
            from .teachers import evaluate_teachers, format_table

            result = evaluate_teachers(args.work, tuple(args.teacher), threads=args.threads)
            print(format_table(result))
            if args.json:
                with open(args.json, "w") as f:
                    json.dump(result, f, indent=1)
            if args.markdown:
                Path(args.markdown).write_text(format_table(result) + "\n")
        elif args.command == "synthetic":
            from .data.synthetic import make_mtat

            print(f"wrote a synthetic MagnaTagATune into {make_mtat(args.out, seed=args.seed)}")
    except RtTaggerError as exc:
        print(f"rt-tagger training: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rt-tagger training: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
