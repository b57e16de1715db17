#!/usr/bin/env bash
# One device call (~5 min on the H200) for RS_WS_LEAN_REGS (session 17, written without a GPU): the lean-budget
# kernel tests, then the M = 16 sweep of warp-specialized POST tiles at ws_maxnreg's budget and at
# gluon_rs.LEAN_WS_REGS on the two wide shapes, GPTQ and AWQ, nothing merged (compare the "rs best" columns).
#   bash benchmarks/lean_check.sh            (logs in $OUT)
set -o pipefail
source "$(dirname "$0")/device_env.sh"
timeout 120 python3 -m pytest -q -p no:cacheprovider tests/test_kernels.py -k lean 2>&1 | tee "$OUT/lean-tests.log" | tail -3
for layout in "" --awq; do
  for lean in "" --lean-regs; do
    echo "== ${layout:-gptq} ${lean:-ws_maxnreg}"
    timeout 100 python3 benchmarks/diag_rs.py --quick --ws-only --post 32 --k-stages 128:3,128:4 --jobs 14 --m 16 \
        --shapes 4096x14336,8192x28672 $layout $lean 2>&1 | grep -v "^  .*failed" | tee -a "$OUT/lean-sweep.log"
  done
done
