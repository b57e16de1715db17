#!/usr/bin/env bash
# One device call (~3 min on the H200) for TileConfig.lean: the lean-budget kernel tests, then the M = 16 sweep of
# warp-specialized POST tiles with and without gluon_rs.LEAN_WS_REGS' budgets on the two wide shapes, GPTQ and AWQ,
# nothing merged (session 18: lean lost on GPTQ's tiles, won on AWQ's 8192x28672 16x64 one).
#   bash benchmarks/lean_check.sh            (logs in $OUT)
set -o pipefail
source "$(dirname "$0")/device_env.sh"
timeout 120 python3 -m pytest -q -p no:cacheprovider tests/test_kernels.py -k lean 2>&1 | tee "$OUT/lean-tests.log" | tail -3
for layout in "" --awq; do
  echo "== ${layout:-gptq}"
  timeout 150 python3 benchmarks/diag_rs.py --quick --ws-only --post 32 --k-stages 128:3,128:4 --jobs 14 --m 16 \
      --shapes 4096x14336,8192x28672 --lean-regs --top 8 $layout 2>&1 | grep -v "^  .*failed" | tee -a "$OUT/lean-sweep.log"
done
