#!/usr/bin/env bash
# One device call (~6 min on the H200): the gluon_rs / gluon_gemm kernel tests (integer zeros, the fp32-reciprocal
# group index and POST, on by default since session 17), then the M = 16 / 64 benchmark with gluon_rs's POST off
# and on (triton_gemm.RS_POST_MAX_BLOCK_M; the tuned 16/32-token tiles were swept with it on, so off is slower).
#   bash benchmarks/post_check.sh            (logs in $OUT)
set -o pipefail
source "$(dirname "$0")/device_env.sh"
timeout 300 python3 -m pytest -q -p no:cacheprovider tests/test_kernels.py -k "transposed or gluon" \
    2>&1 | tee "$OUT/post-tests.log" | tail -5
for post in 0 32; do
  timeout 100 python3 benchmarks/gemm.py --m 16,64 --rs-post $post 2>"$OUT/gemm-post$post.err" | tee "$OUT/gemm-post$post.log"
done
