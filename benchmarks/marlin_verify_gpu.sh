#!/usr/bin/env bash
# Issue 4 on the GPU: `repack verify` of GPTQ/AWQ checkpoints against their Marlin conversions,
# run through the Triton kernel on each side's own layout (the Marlin side reads the tile order).
#   bash benchmarks/marlin_verify_gpu.sh OUTDIR
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD
D=${1:-/tmp/marlin-gpu}; rm -rf "$D"; mkdir -p "$D"
python3 - "$D" <<'PY'
import sys
from pathlib import Path
from fixtures.checkpoints import random_model, write_awq, write_gptq
d = Path(sys.argv[1])
shapes = {f"model.layers.0.{m}": kn for m, kn in (("self_attn.q_proj", (4096, 4096)), ("mlp.up_proj", (4096, 11008)),
                                                   ("mlp.down_proj", (11008, 4096)))}
write_gptq(d / "gptq-act", random_model(1, 4, 128, sym=True, act_order=True, shapes=shapes), "v1", sym=True, act_order=True)
write_gptq(d / "gptq8", random_model(2, 8, 64, sym=True, shapes=shapes), "v1", sym=True)
write_awq(d / "awq", random_model(3, 4, 128, zero_range=(0, 15), shapes=shapes))
PY
run() { echo "\$ repack $*"; python3 -m cli.main "$@"; }
run convert "$D/gptq-act" "$D/marlin-act" --to marlin --variant gptq --quiet
run convert "$D/gptq8" "$D/marlin8" --to marlin --variant gptq --quiet
run convert "$D/awq" "$D/marlin-awq" --to marlin --variant awq --quiet
for pair in "gptq-act marlin-act" "gptq8 marlin8" "awq marlin-awq"; do
  set -- $pair
  run verify "$D/$1" "$D/$2" --backend ${BACKEND:-triton} --m 1,16,128,1000
  run verify "$D/$1" "$D/$2" --backend ${BACKEND:-triton} --dtype bf16 --quiet
done
# one flipped nibble in the Marlin copy must be caught, with the layer named
cp -r "$D/marlin-act" "$D/marlin-bad"
python3 - "$D/marlin-bad" <<'PY'
import sys
from pathlib import Path
from safetensors.torch import load_file, save_file
f = next(Path(sys.argv[1]).glob("*.safetensors"))
t = load_file(f)
t["model.layers.0.mlp.up_proj.qweight"][3, 5] ^= 0x10
save_file(t, f, metadata={"format": "pt"})
PY
if run verify "$D/gptq-act" "$D/marlin-bad" --backend ${BACKEND:-triton} --quiet; then echo "FAIL: a flipped nibble went unnoticed"; exit 1; fi
echo "marlin verify on ${BACKEND:-triton}: all checks as expected"
