#!/usr/bin/env bash
# Reproduce rt-tagger's embedded default models: Spec_Att students (width 512 and 256)
# distilled from musicnn.mtat on the real-audio corpus.
#
#   bash training/recipes/default_spec_att.sh CORPUS WORK
#
# CORPUS: the corpus folder (manifest.csv + 16 kHz wav; see docs/training.md). Step 0 builds
#         it with `python -m rt_tagger.training corpus CORPUS` unless it is complete already
#         (needs root for apt-get, or the tools installed and PYTHON's training extra).
# WORK:   prepared data, teacher cache, runs and the comparison report go here.
# On a 2-core CPU the two students train side by side, one core each (about 90 minutes with
# the settings below); every step is resumable: run the same command again after a stop.
set -euo pipefail
# shellcheck source=common.sh
. "$(dirname "${BASH_SOURCE[0]}")/common.sh" "$@"

# 0. the corpus (common.sh)
build_corpus

# 1. decode once: the student's log-mel, the teacher's log-mel, 16 kHz audio for augmentation
$T prepare --dataset corpus --root "$CORPUS" --out "$WORK/prepared" \
    --features spec_att musicnn.mtat raw --workers 2

# 2. the teacher's outputs on the 69-frame grid (both cores), reused by both students
$T teacher-cache --teacher musicnn.mtat --data "$WORK/prepared" --model spec_att --threads 2

# 3. two students, one core each; Adam, then the paper's reload-best + SGD with drops
common=(--teacher musicnn.mtat --data "$WORK/prepared" --batch-size 16 --steps-per-epoch 100
        --adam-lr 3e-4 --sgd-lr 1e-3 --val-chunks 4 --threads 1
        --aug-gain-db 6 --aug-noise-snr 20 --aug-mix 0.3 --seed 0)
resume() { [ -f "$1/last.pt" ] && echo --resume || true; }
$T distill --model spec_att --model-args '{"width": 512}' --out "$WORK/w512" \
    --epochs 15 --switch-epoch 11 --drop-epochs 13 14 "${common[@]}" $(resume "$WORK/w512") &
p512=$!
$T distill --model spec_att --model-args '{"width": 256}' --out "$WORK/w256" \
    --epochs 27 --switch-epoch 20 --drop-epochs 23 25 "${common[@]}" $(resume "$WORK/w256") &
p256=$!
wait $p512 $p256

# 4. held-out comparison with the teacher (agreement, instruments on renders, latency)
$T compare --teacher musicnn.mtat --model "$WORK/w512/model.safetensors" \
    "$WORK/w256/model.safetensors" --data "$WORK/prepared" --split test --corpus "$CORPUS" \
    --json "$WORK/compare.json" --markdown "$WORK/compare.md"

# 5. the training curves
$T curves --run "$WORK/w512" "$WORK/w256" --png "$WORK/curves.png" > "$WORK/curves.md"
