#!/usr/bin/env bash
# GPU check (issue #17): the gpu-marked tests, then bench/gpu_check.py; no network, under 8 min.
#
#   bash bench/gpu_check.sh          # results in $OUT if set, else bench/results/gpu/
#
# Runs from a fresh copy of the repository: the check feeds random log-mel chunks to the models
# and engines, which import without the native extension (rt_tagger._core), so nothing is built
# unless GPU_CHECK_BUILD=1 (then `pip install --no-index --no-build-isolation --no-deps -e .`,
# which needs scikit-build-core, pybind11 and cmake already installed, as on the lent H200).
# Python: $PYTHON, else .venv/bin/python, else python3. On a machine without CUDA every part
# reports itself skipped with the reason, in seconds. Exit status: 0 when nothing failed.
set -u
cd "$(dirname "$0")/.."
out="${OUT:-bench/results/gpu}"
mkdir -p "$out"
py="${PYTHON:-}"
if [ -z "$py" ]; then
  if [ -x .venv/bin/python ] && .venv/bin/python -c "" 2>/dev/null; then py=.venv/bin/python
  else py=python3; fi
fi
export PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
# Compiled kernels, autotuning results and ONNX exports go to /tmp (shared by the tests and the
# check, so the check reuses what the tests compiled), not to ~/.cache.
export TORCHINDUCTOR_CACHE_DIR="${TORCHINDUCTOR_CACHE_DIR:-/tmp/gpu-check-inductor}"
export RT_TAGGER_CACHE_DIR="${RT_TAGGER_CACHE_DIR:-/tmp/gpu-check-cache}"
log="$out/gpu_check.log"
: >"$log"
say() { echo "gpu_check: $*" | tee -a "$log"; }
start=$SECONDS

if [ "${GPU_CHECK_BUILD:-0}" = 1 ] && ! "$py" -c "import rt_tagger._core" 2>/dev/null; then
  say "native extension: building (GPU_CHECK_BUILD=1), log in $out/build.log"
  timeout 240 "$py" -m pip install --no-index --no-build-isolation --no-deps -e . \
    >"$out/build.log" 2>&1 || say "native extension: build failed (see build.log)"
fi
# (from /: the checkout's root would be on sys.path for `-c` but not for bench/gpu_check.py)
if ! (cd / && "$py" -c "import rt_tagger" 2>/dev/null); then  # not installed: the checkout
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
  say "rt_tagger is not installed for $py; using the checkout ($PWD) on PYTHONPATH"
fi
if "$py" -c "import rt_tagger._core" 2>/dev/null; then
  say "native extension: present"
else
  say "native extension: absent; not needed (random log-mel chunks go straight to the models)"
fi
"$py" - <<'EOF' 2>&1 | tee -a "$log"
import importlib.util as u, platform, torch
print(f"gpu_check: python {platform.python_version()}, torch {torch.__version__}, "
      f"CUDA available: {torch.cuda.is_available()}"
      + (f" ({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else "")
      + "; " + ", ".join(f"{m}: {'yes' if u.find_spec(m) else 'no'}"
                         for m in ("triton", "onnxruntime", "torch_tensorrt")))
EOF

# The gpu-marked tests run from the files that hold them (the other test files need packages,
# Qt and audio I/O, that a bare GPU machine may lack). `-m` on the command line replaces the
# addopts' 'not slow': the fast ones first, then the figures, then the slow ones (autotuning)
# in the time left, so a long compile cannot cost the figures.
files=$(grep -l "pytest.mark.gpu" tests/test_*.py | tr '\n' ' ')
run_tests() {  # $1: marker expression, $2: log name, $3: seconds
  say "pytest -m '$1' $files (limit $3 s)"
  timeout "$3" "$py" -m pytest -m "$1" -q -rs -p no:cacheprovider $files \
    --junitxml="$out/$2.xml" 2>&1 | tee "$out/$2.log"
  local rc=${PIPESTATUS[0]}
  [ "$rc" = 5 ] && rc=0  # no test selected: nothing failed
  [ "$rc" = 124 ] && say "pytest -m '$1' was stopped at its time limit"
  return "$rc"
}
run_tests "gpu and not slow" pytest_gpu 200
tests_rc=$?
say "tests (gpu, not slow): exit status $tests_rc ($((SECONDS - start)) s so far)"

# 2. latency and sources-per-GPU for every GPU path (it rewrites its results after each path).
left=$((420 - (SECONDS - start)))
[ "$left" -gt 300 ] && left=300
deadline=$((left - 40))
[ "$deadline" -lt 10 ] && deadline=10
say "bench/gpu_check.py --deadline $deadline (stopped at $left s)"
timeout "$left" "$py" bench/gpu_check.py --out "$out" --deadline "$deadline" 2>&1 | tee -a "$log"
bench_rc=${PIPESTATUS[0]}
[ "$bench_rc" = 124 ] && say "bench/gpu_check.py was stopped at its time limit; partial results"

# 3. the slow gpu tests, in what is left of the 8 minutes.
left=$((465 - (SECONDS - start)))
slow_rc=0
if [ "$left" -ge 60 ]; then
  run_tests "gpu and slow" pytest_gpu_slow "$left"
  slow_rc=$?
else
  say "slow gpu tests: skipped, only $left s of the 8 minutes left"
fi
say "done in $((SECONDS - start)) s: tests exit $tests_rc, check exit $bench_rc," \
    "slow tests exit $slow_rc; results in $out"
[ "$tests_rc" = 0 ] && [ "$bench_rc" = 0 ] && [ "$slow_rc" = 0 ]
