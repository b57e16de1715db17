#!/usr/bin/env bash
# One device call for POST_LAG (gluon_rs.POST_LAG, TileConfig.lag; written without a GPU in session 23):
# the GPU oracle test of the lagged tiles, then benchmarks/lag_probe.py at M = 16 (each tile without and with
# lag, graph µs) on the four benchmark shapes, GPTQ, and two AWQ shapes.
#   bash benchmarks/lag_check.sh            (test, then probes; under 10 min)
#   bash benchmarks/lag_check.sh 0          (probes only)
# Merging a winner is a separate step: diag_rs.py --m 16 --shapes KxN --ws --lag --merge-into repack/kernels/tuned.json
set -o pipefail
source "$(dirname "$0")/device_env.sh"
TESTS=${1:-1}
if [ "$TESTS" != 0 ]; then
  timeout 150 python3 -m pytest -q -x -p no:cacheprovider tests/test_kernels.py -k adding_each_wgmma 2>&1 \
      | tee "$OUT/lag-tests.log" | tail -8 || exit 1
fi
timeout 280 python3 benchmarks/lag_probe.py --m 16 2>"$OUT/lag-probe.err" | tee "$OUT/lag-probe.log"
timeout 150 python3 benchmarks/lag_probe.py --m 16 --awq --shapes 4096x14336,8192x28672 2>"$OUT/lag-probe-awq.err" \
    | tee "$OUT/lag-probe-awq.log"
