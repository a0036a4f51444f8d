# What every recipe starts with, sourced by it with its arguments:
#   . "$(dirname "${BASH_SOURCE[0]}")/common.sh" "$@"
# CORPUS and WORK from the arguments (usage named after the recipe), $T the training CLI
# under $PYTHON (default: python), WORK created, and step 0 as `build_corpus`.
CORPUS=${1:?usage: $(basename "$0") CORPUS WORK}
WORK=${2:?usage: $(basename "$0") CORPUS WORK}
PY=${PYTHON:-python}
T="$PY -m rt_tagger.training"
mkdir -p "$WORK"

# The corpus: Debian soundtracks, FluidSynth and TiMidity++ renders, recorded drum kits,
# singing, speech (resumable); skipped once it is complete in this version (the first line of
# CORPUS/.built; a corpus built before a stage was added gets that stage).
build_corpus() {
    local want
    want=$($PY -c "from rt_tagger.training.corpus.build import CORPUS_VERSION as v; print(v)")
    [ "$(head -n 1 "$CORPUS/.built" 2>/dev/null)" = "$want" ] || $T corpus "$CORPUS" --jobs 2
}
