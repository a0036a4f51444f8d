#!/usr/bin/env bash
# Reproduce rt-tagger's embedded default model, musicnn_att.mtat: musicnn's pretrained body
# (from musicnn.mtat, frozen) with an attention back-end distilled from musicnn.mtat on the
# real-audio corpus.
#
#   bash training/recipes/default_musicnn_att.sh CORPUS WORK
#
# CORPUS: the corpus folder (manifest.csv + 16 kHz wav; see docs/training.md). Step 0 builds
#         it with `python -m rt_tagger.training corpus CORPUS` unless it is complete already
#         (needs root for apt-get, or the tools installed, and the training extra).
# WORK:   prepared data, body cache, the run and the report go here.
# On a 2-core CPU: corpus ~70 min (once), prepare ~1 min, body cache ~25 min (both cores),
# training ~25 min, report ~35 min. Steps 0-2 resume after a stop; step 3 restarts.
set -euo pipefail
# shellcheck source=common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh" "$@"

# 0. the corpus (common.sh)
build_corpus

# 1. decode once: the teacher's log-mel and 16 kHz audio (for the augmented chunks)
$T prepare --dataset corpus --root "$CORPUS" --out "$WORK/prepared" \
    --features musicnn.mtat raw --workers 2

# 2. the teacher's body outputs and logits: clean training and validation chunks, augmented
#    chunks (EQ, room, pitch, stretch, noise, mixes), synthetic non-music probes
$T body-cache --teacher musicnn.mtat --data "$WORK/prepared" --out "$WORK/bcache" \
    --workers 2 --aug-fraction 0.2 --probes 480

# 3. the attention back-end (the body stays musicnn.mtat's); thresholds calibrated so that a
#    tag switches on where the teacher at 0.5 would. Three stages (a warm start on a short
#    schedule, the first 500 steps of a long one, a 4,000-step cosine tail: validation still
#    improved at the end of a 1,500-step one, 2026-12-01); the last one also learns the
#    instrument where the corpus knows it and the teacher misses it (--truth 3: a render's
#    playing instrument the teacher ranks below 3rd is raised into its top 3)
arch=(--width 128 --layers 2 --heads 4 --pool 4 --batch-size 64 --threads 2 --seed 0)
$T distill-body --cache "$WORK/bcache" --out "$WORK/run_a" "${arch[@]}" \
    --steps 500 --lr 1e-3 --warmup 200 --eval-every 500
$T distill-body --cache "$WORK/bcache" --out "$WORK/run_b" "${arch[@]}" \
    --steps 3500 --lr 1e-3 --warmup 100 --eval-every 500 --init "$WORK/run_a/best.pt" --stop-after 500
$T distill-body --cache "$WORK/bcache" --out "$WORK/run" "${arch[@]}" \
    --steps 4000 --lr 7e-4 --warmup 50 --eval-every 500 --init "$WORK/run_b/best.pt" --truth 3

# 4. the report card against the teacher on held-out sources
$T report --teacher musicnn.mtat --model "$WORK/run/model.safetensors" \
    --data "$WORK/prepared" --corpus "$CORPUS" --work "$WORK/report" \
    --json "$WORK/report.json" --markdown "$WORK/report.md"
