#!/usr/bin/env bash
# The checks session 20 left for a GPU (benchmarks/NOTES-gemm.md, twentieth section, "Next"), numbered so that a
# 10-minute device call runs a few; the tuned table lands in $OUT/tuned.json after each merging step (copy it back
# into repack/kernels/ after the call):
#   bash benchmarks/flushed_check.sh 1 3    (~5 min: the wave probe, M = 1024 stream-K past the slot budget, the
#                                            encoded-launch GPU test)
#   bash benchmarks/flushed_check.sh 4 4    (~4 min: M = 1 re-tuned under the flush)
#   bash benchmarks/flushed_check.sh 5 6    (~4 min: 4096² M = 16 and 64 swept under the flush)
set -o pipefail
source "$(dirname "$0")/device_env.sh"
T=repack/kernels/tuned.json
FIRST=${1:-1}; LAST=${2:-6}
for i in $(seq "$FIRST" "$LAST"); do
  echo "== $i"
  case $i in
    1) timeout 120 python3 benchmarks/wave_probe.py --m 1024 --k 4096 --ref-n 14336 2>&1 | tee -a "$OUT/wave-probe.log" ;;
    2) timeout 130 python3 benchmarks/diag_rs.py --m 1024 --shapes 4096x14336 --ws --stream 1,2 --stream-only \
           --k-stages 64:4,64:6 --slot-values 33554432 --jobs 14 --budget-s 95 --top 5 2>&1 | grep -v "^  .*failed" \
           | tee -a "$OUT/stream-1024.log" ;;
    3) timeout 60 python3 -m pytest -q -p no:cacheprovider tests/test_kernels.py -k encoded 2>&1 | tail -3 ;;
    4) timeout 260 python3 benchmarks/tune_gemm.py --buckets 1 --out "$OUT/tuned.json" --merge $T --budget-s 200 \
           2>"$OUT/tune.err" | tee -a "$OUT/tune-flushed.log" && cp "$OUT/tuned.json" $T ;;
    5|6) M=$([ "$i" = 5 ] && echo 16 || echo 64)
       timeout 125 python3 benchmarks/diag_rs.py --flushed --budget-s 95 --quick --ws --post 32 --lean-regs \
           --k-stages 128:3,128:4 --jobs 14 --m "$M" --shapes 4096x4096 --top 5 --merge-into $T 2>&1 \
           | grep -v "^  .*failed" | tee -a "$OUT/diag-flushed.log"
       cp $T "$OUT/tuned.json" ;;
  esac
done
