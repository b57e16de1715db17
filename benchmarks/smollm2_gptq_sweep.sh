#!/usr/bin/env bash
# GPTQ settings on SmolLM2-135M (issue 7): calibration size, Hessian damping, act-order with static
# groups; held-out perplexity of each. Same model and held-out text as smollm2_quantize.sh.
#   bash benchmarks/smollm2_gptq_sweep.sh GGUF HELDOUT WORKDIR [DEVICE] CALIB
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD
GGUF=$1; HELDOUT=$2; W=$3; DEV=${4:-auto}; CALIB=$5
mkdir -p "$W"
R="python3 -m cli.main"
t() { local s=$EPOCHREALTIME; "$@"; local rc=$?; echo "time $(awk "BEGIN{printf \"%.1f\", $EPOCHREALTIME - $s}") s rc=$rc"; }
[ -e "$W/dense" ] || t $R convert "$GGUF" "$W/dense" --to dense --variant fp32 --quiet
run() {  # name, then quantize options
  local name=$1; shift
  t $R quantize "$W/dense" "$W/$name" --method gptq --bits 4 --group-size 64 --asym --calib "$CALIB" --device $DEV --force --quiet "$@"
  echo -n "ppl $name: "; $R eval "$W/$name" --text "$HELDOUT" --seqlen 512 --max-windows 16 --device $DEV --quiet
}
for v in ${VARIANTS:-n64x256 n128x512 damp05 damp10 static}; do
  case $v in
    n64x256) run gptq-64x256 --nsamples 64 --seqlen 256 ;;
    n128x512) run gptq-128x512 --nsamples 128 --seqlen 512 ;;
    damp05) run gptq-damp05 --nsamples 128 --seqlen 512 --damp 0.05 ;;
    damp10) run gptq-damp10 --nsamples 128 --seqlen 512 --damp 0.1 ;;
    static) run gptq-act-static --nsamples 128 --seqlen 512 --act-order --static-groups ;;
  esac
done
