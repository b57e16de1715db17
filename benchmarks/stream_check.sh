#!/usr/bin/env bash
# gluon_rs's stream-K kernels (session 19: written and compiled for sm_90a without a GPU, both waits and the
# warp-specialized tile; session 20: tests passed, sweeps 1-4 and 6 found nothing faster; sweep 5 did not stream, see diag_rs --slot-values): their GPU tests first, then stream-only sweeps of the shapes still short of their target,
# each winner merged into the tuned table as found (copy $OUT/tuned.json back into repack/kernels/ after the call).
# The tests compile ~60 kernels (at most 5 minutes), a sweep takes at most 2, so a 10-minute call runs:
#   bash benchmarks/stream_check.sh 0 2      (the tests, then sweeps 1 and 2; stops if a test fails)
#   bash benchmarks/stream_check.sh 3 6      (no tests: sweeps 3 to 6)
#   bash benchmarks/stream_check.sh 7 8
set -o pipefail
source "$(dirname "$0")/device_env.sh"
SWEEPS=(  # M, shape, layout, the (K tile, ring) pairs swept
  "16 4096x14336 gptq 128:3,128:4" "16 14336x4096 gptq 128:3,128:4" "16 4096x4096 gptq 128:3,128:4"
  "64 4096x4096 gptq 128:3,128:4" "1024 4096x14336 gptq 64:3,64:4" "256 14336x4096 gptq 64:3,64:4"
  "16 4096x4096 awq 128:3,128:4" "64 4096x4096 awq 128:3,128:4"
)
FIRST=${1:-0}; LAST=${2:-${#SWEEPS[@]}}
T=repack/kernels/tuned.json
if [ "$FIRST" = 0 ]; then
  timeout 300 python3 -m pytest -q -x -p no:cacheprovider tests/test_kernels.py -k "stream" 2>&1 \
      | tee "$OUT/stream-tests.log" | tail -15
  grep -q " passed" "$OUT/stream-tests.log" && ! grep -q "failed" "$OUT/stream-tests.log" || exit 1
  FIRST=1
fi
for i in $(seq "$FIRST" "$LAST"); do
  set -- ${SWEEPS[$((i - 1))]}
  echo "== $i: M=$1 $2 $3"
  timeout 120 python3 benchmarks/diag_rs.py --budget-s 95 --quick --post 32 --ws --lean-regs --stream 1,2,3 --stream-only \
      --k-stages "$4" --jobs 14 --m "$1" --shapes "$2" $([ "$3" = awq ] && echo --awq) --top 5 \
      --merge-into $T 2>&1 | grep -v "^  .*failed" | tee -a "$OUT/stream-sweep.log"
  cp $T "$OUT/tuned.json"
done
