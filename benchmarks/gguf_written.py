"""Does a GGUF *written* by repack load elsewhere and compute the same model? Checked with transformers
and (when installed) llama.cpp through llama-cpp-python.

    python benchmarks/gguf_written.py --tokenizer-from DIR [--work DIR] [--group-size 128]

DIR holds a Hugging Face ``tokenizer.json`` (+ ``tokenizer_config.json``); the tiny synthetic Llama
gets that tokenizer's vocabulary size so the GGUF carries a real tokenizer (llama.cpp refuses a
file without one). Steps: float model -> RTN symmetric 4-bit (GPTQ v1) -> ``repack convert --to
gguf`` (Q4_0, exact) and ``--to dense fp32`` (the reference). Logits for a fixed token sequence:
transformers on the dense folder (reference) vs transformers loading the GGUF vs llama.cpp on the
GGUF. llama.cpp also quantizes activations to 8 bits inside Q4_0 matmuls (gguf.md §2.10), so its
difference is not expected to be zero.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from repack.checkpoint import Checkpoint  # noqa: E402
from repack.convert import convert  # noqa: E402
from repack.source import RtnSource  # noqa: E402
from repack.synthetic import llama_config, write_float_model  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer-from", type=Path, required=True)
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--group-size", type=int, default=128)
    args = ap.parse_args()
    from transformers import AutoModelForCausalLM

    work = args.work or Path(tempfile.mkdtemp(prefix="repack-gguf-written-"))
    shutil.rmtree(work, ignore_errors=True)
    vocab = len(json.loads((args.tokenizer_from / "tokenizer.json").read_text())["model"]["vocab"])
    cfg = llama_config(hidden=256, intermediate=512, layers=2, heads=4, kv_heads=2, vocab=vocab)
    fl = write_float_model(work / "float", cfg)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(args.tokenizer_from / name, fl / name)
    convert(RtnSource(Checkpoint.open(fl), 4, args.group_size, True), work / "gptq", "auto_gptq", "v1")
    plan = convert(work / "gptq", work / "gguf", "gguf")
    convert(work / "gptq", work / "dense", "dense", "fp32")
    ids = [int(i) for i in np.random.default_rng(0).integers(100, vocab - 100, size=16)]

    ref_model = AutoModelForCausalLM.from_pretrained(str(work / "dense"), dtype=torch.float32).eval()
    with torch.no_grad():
        ref = ref_model(torch.tensor([ids])).logits[0].numpy()
    out = {"gguf_exact": plan.exact, "gguf_types": sorted({r for l in plan.layers for r in l.reasons}),
           "gguf_bytes": (work / "gguf" / "model.gguf").stat().st_size, "tokens": len(ids),
           "reference_max_abs_logit": float(np.abs(ref).max())}
    hf = AutoModelForCausalLM.from_pretrained(str(work / "gguf"), gguf_file="model.gguf", dtype=torch.float32).eval()
    with torch.no_grad():
        got = hf(torch.tensor([ids])).logits[0].numpy()
    out["transformers_gguf_max_abs_logit_diff"] = float(np.abs(got - ref).max())
    try:
        from llama_cpp import Llama
    except ImportError:
        out["llama_cpp"] = "llama-cpp-python not installed"
    else:
        llm = Llama(model_path=str(work / "gguf" / "model.gguf"), n_ctx=64, logits_all=True, verbose=False, n_threads=2)
        llm.eval(ids)
        lc = np.array(llm.scores[:len(ids)], dtype=np.float32)
        diff = np.abs(lc - ref)
        out["llama_cpp_max_abs_logit_diff"] = float(diff.max())
        out["llama_cpp_mean_abs_logit_diff"] = float(diff.mean())
        out["llama_cpp_same_argmax"] = float((lc.argmax(-1) == ref.argmax(-1)).mean())
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
