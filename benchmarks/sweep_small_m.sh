#!/usr/bin/env bash
# Re-sweep gluon_rs's tiles at M = 16 and 64 and merge each winner into the tuned table as it is found (the table
# lands in $OUT/tuned.json after every sweep: copy it back into repack/kernels/ after the call). Candidates: the
# warp-specialized POST tiles at gluon_rs.LEAN_WS_REGS' budgets too, with K splits that fill the three or four
# programs an SM those budgets allow (diag_rs --lean-regs; session 18: at one or two programs an SM a lean budget
# only loses), and every split through slots (session 18; AWQ's slots were chosen under atomics). One to two minutes
# a sweep on the H200 (at most 95 s of it compiling and timing: --budget-s; session 19's sweeps 4, 8 and 9 ran past
# their timeout compiling before it), so a 10-minute call runs five of them. At M = 16 the candidates are the
# 16-token 4-warp tiles (no other has won there), split 2-8 ways through slots and 2 or 4 ways inside a cluster
# (session 23: split 8 won on 14336x4096, a 2-CTA cluster on 4096x14336; the default offers splits to two waves):
#   bash benchmarks/sweep_small_m.sh 1 5       (sweeps 1 to 5 of the list below)
set -o pipefail
source "$(dirname "$0")/device_env.sh"
SWEEPS=(
  "16 4096x14336 gptq" "16 14336x4096 gptq" "16 4096x4096 gptq"
  "16 4096x14336 awq" "16 14336x4096 awq" "16 4096x4096 awq" "16 8192x28672 awq"
  "64 4096x4096 gptq" "64 4096x4096 awq" "64 14336x4096 awq" "64 4096x14336 awq" "64 8192x28672 awq"
)
FIRST=${1:-1}; LAST=${2:-${#SWEEPS[@]}}
T=repack/kernels/tuned.json
for i in $(seq "$FIRST" "$LAST"); do
  set -- ${SWEEPS[$((i - 1))]}
  echo "== $i: M=$1 $2 $3"
  timeout 120 python3 benchmarks/diag_rs.py --budget-s 95 --quick --ws --post 32 --lean-regs --k-stages 128:3,128:4 --jobs 14 \
      --m "$1" --shapes "$2" $([ "$3" = awq ] && echo --awq) --top 5 \
      $([ "$1" = 16 ] && echo --block-m 16 --warps 4 --splits 2,3,4,6,8 --clusters 2,4) --merge-into $T 2>&1 \
      | grep -v "^  .*failed" | tee -a "$OUT/sweep-small-m.log"
  cp $T "$OUT/tuned.json"
done
