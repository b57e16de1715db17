# Sourced by the one-call device scripts (gpu_session.sh, post_check.sh, sweep_small_m.sh): the repository root as
# working folder and import path, $OUT for the logs, and the wheels the lent GPU machine cannot download (it has
# no network: click, gguf, tqdm, ml_dtypes carried along in .wheels).
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/repack-out}; mkdir -p "$OUT"
if [ -d .wheels ]; then
  python3 -m pip install -q --no-deps .wheels/click*.whl .wheels/gguf*.whl .wheels/tqdm*.whl >/dev/null 2>&1 || true
  python3 -m pip install -q --no-deps --no-index --find-links .wheels ml_dtypes >/dev/null 2>&1 || true
fi
