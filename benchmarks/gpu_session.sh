#!/usr/bin/env bash
# One device call: kernel tests, tile tuning for the given M buckets, then the GEMM benchmark.
#   bash benchmarks/gpu_session.sh "1,16" 240      (buckets, tuning budget in seconds)
#   bash benchmarks/gpu_session.sh 1 0 1/3 0        (kernel tests only, a third of them: the whole suite took more
#   bash benchmarks/gpu_session.sh 1 0 2/3 0         than a 10-minute call in session 19, and half of it more than
#   bash benchmarks/gpu_session.sh 1 0 3/3 0         560 s in session 25 (278 tests, ~6.5 min a half), so it runs in
#                                                    three shards; "1" runs all of it; the benchmark goes in a call
#                                                    of its own:)
#   bash benchmarks/gpu_session.sh 1 0 0            (the benchmark only)
# Logs and the tuned table land in $OUT (the device tool brings them back).
set -o pipefail
source "$(dirname "$0")/device_env.sh"
BUCKETS=${1:-1,16,64,256,1024}; BUDGET=${2:-300}; TESTS=${3:-1}; GEMM=${4:-1}
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,clocks.mem,temperature.gpu --format=csv
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
if [ "$TESTS" != 0 ]; then
  # (the interpreter tests run on any machine with triton; here they would take a minute of device time)
  timeout 560 python3 -m pytest -q -x -p no:cacheprovider tests/test_kernels.py tests/test_tuned.py tests/test_shipped_tiles.py tests/test_launch_plans.py \
      tests/test_awq_dot.py tests/test_awq_gemv.py tests/test_marlin_triton.py -k "not interpreter" \
      $([ "$TESTS" != 1 ] && echo --shard "$TESTS") 2>&1 | tee "$OUT/tests.log" | tail -15
fi
if [ "$BUDGET" != 0 ]; then
  timeout $((BUDGET + 60)) python3 benchmarks/tune_gemm.py --buckets "$BUCKETS" --out "$OUT/tuned.json" \
      --merge repack/kernels/tuned.json --budget-s "$BUDGET" 2>"$OUT/tune.err" | tee "$OUT/tune.log"
  cp "$OUT/tuned.json" repack/kernels/tuned.json
fi
if [ "$GEMM" = 1 ]; then
  timeout 260 python3 benchmarks/gemm.py --json "$OUT/gemm.json" 2>"$OUT/gemm.err" | tee "$OUT/gemm.log"
fi
