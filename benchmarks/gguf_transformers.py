"""A GGUF read by repack (-> dense fp32) against transformers loading the same GGUF: weights and logits.

    python benchmarks/gguf_transformers.py MODEL.gguf [--work DIR] [--prompt TEXT]

Needs transformers (and accelerate) in the environment; repack is imported from this checkout.
Prints one JSON object: repack's read and convert times, the max abs difference of every weight
and of the logits for the prompt (both models in float32; transformers dequantizes with gguf-py
and undoes the q/k permutation itself, gguf.md §6.1).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from repack.convert import convert  # noqa: E402
from repack.source import open_source  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("gguf_file", type=Path)
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--prompt", default="The capital of France is Paris. The capital of Germany is")
    args = ap.parse_args()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    work = args.work or Path(tempfile.mkdtemp(prefix="repack-gguf-"))
    dense = work / "dense"
    shutil.rmtree(dense, ignore_errors=True)
    t0 = time.perf_counter()
    source = open_source(args.gguf_file)
    t_open = time.perf_counter() - t0
    t0 = time.perf_counter()
    for m in source.modules():
        source.read(m)
    t_read = time.perf_counter() - t0
    t0 = time.perf_counter()
    convert(source, dense, "dense", "fp32")
    t_convert = time.perf_counter() - t0

    tok = AutoTokenizer.from_pretrained(str(args.gguf_file.parent), gguf_file=args.gguf_file.name)
    ids = tok(args.prompt, return_tensors="pt").input_ids
    ours = AutoModelForCausalLM.from_pretrained(str(dense), dtype=torch.float32).eval()
    theirs = AutoModelForCausalLM.from_pretrained(str(args.gguf_file.parent), gguf_file=args.gguf_file.name,
                                                  dtype=torch.float32).eval()
    sa, sb = ours.state_dict(), theirs.state_dict()
    weight_diff = max(float((sa[k] - sb[k]).abs().max()) for k in sa if k in sb)
    with torch.no_grad():
        la, lb = ours(ids).logits, theirs(ids).logits
    out = {"file": str(args.gguf_file), "tensors_compared": sum(k in sb for k in sa), "open_s": round(t_open, 2),
           "read_all_modules_s": round(t_read, 2), "convert_dense_fp32_s": round(t_convert, 2),
           "max_abs_weight_diff": weight_diff, "prompt_tokens": int(ids.shape[1]),
           "max_abs_logit_diff": float((la - lb).abs().max()), "max_abs_logit": float(lb.abs().max()),
           "same_argmax": bool(torch.equal(la.argmax(-1), lb.argmax(-1))),
           "tokenizer_files_from_repack": sorted(p.name for p in dense.iterdir() if "token" in p.name)}
    try:  # llama.cpp on the same file, against repack's dense model (llama.cpp also quantizes activations)
        from llama_cpp import Llama
    except ImportError:
        out["llama_cpp"] = "llama-cpp-python not installed"
    else:
        llm = Llama(model_path=str(args.gguf_file), n_ctx=64, logits_all=True, verbose=False, n_threads=2)
        llm.eval(ids[0].tolist())
        lc = torch.tensor(llm.scores[:ids.shape[1]], dtype=torch.float32)
        out["llama_cpp_max_abs_logit_diff"] = float((lc - la[0]).abs().max())
        out["llama_cpp_same_argmax"] = float((lc.argmax(-1) == la[0].argmax(-1)).float().mean())
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
