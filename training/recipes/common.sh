# What every recipe starts with, sourced by it with its arguments:
#   . "$(dirname "${BASH_SOURCE[0]}")/common.sh" "$@"
# CORPUS and WORK from the arguments (usage named after the recipe), $T the training CLI
# under $PYTHON (default: python), WORK created, and step 0 as `build_corpus`.
CORPUS=${1:?usage: $(basename "$0") CORPUS WORK}
WORK=${2:?usage: $(basename "$0") CORPUS WORK}
PY=${PYTHON:-python}
T="$PY -m rt_tagger.training"
mkdir -p "$WORK"

# The corpus: Debian soundtracks, FluidSynth renders, singing, speech (resumable); skipped once
# it is complete.
build_corpus() {
    [ -f "$CORPUS/.built" ] || $T corpus "$CORPUS" --jobs 2
}
