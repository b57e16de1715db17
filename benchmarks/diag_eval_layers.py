"""Diagnose a Triton-vs-reference disagreement inside eval: run a checkpoint's blocks on real
activations and, for every quantized linear, compare the Triton kernel (paired dequantization on
and off) with the fp32 reference on the same fp16 input; print NaN counts and relative errors.

    python benchmarks/diag_eval_layers.py CHECKPOINT TEXT [SEQLEN] [WINDOWS]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

import repack.kernels.triton_gemm as tg  # noqa: E402
from repack.kernels.reference import reference_gemm  # noqa: E402
from repack.quantize.model import Spec, block_forward, embed  # noqa: E402
from repack.quantize.tokens import read_text, tokenize  # noqa: E402
from repack.quantize.weights import ModelWeights  # noqa: E402
from repack.source import open_source  # noqa: E402


def main(path: str, text: str, seqlen: int = 128, windows: int = 8) -> None:
    tg.PAIRED_ZEROS = set(tg._ZEROS)  # paired dequantization wherever the kernel has it
    src = open_source(path)
    spec = Spec.from_config(src.ckpt.config, path)
    w = ModelWeights(src)
    ids, _ = tokenize(read_text(text), src.path, spec.vocab)
    n = min(windows, ids.numel() // seqlen)
    x = embed(spec, ids[: n * seqlen].view(n, seqlen).cuda(), lambda t: w.get(t).cuda())
    print(f"{path} ({src.detection.format}/{src.detection.variant}), M={n * seqlen}")
    with torch.no_grad():
        for i in range(spec.layers):
            def linear(name: str, h: torch.Tensor) -> torch.Tensor:
                qt = w.quant(name)
                ref = torch.nn.functional.linear(h, w.get(name + ".weight").cuda())
                if qt is None:
                    return ref
                h16 = h.reshape(-1, h.shape[-1]).to(torch.float16)
                r16 = reference_gemm(h16.float(), qt).float()
                pw = src.packed(name, qt).to("cuda")
                cells = []
                for paired in (True, False):
                    tg.PAIRED_DEQUANT = paired
                    y = tg.triton_gemm(h16, pw).float()
                    rel = float((y - r16).nan_to_num(1e9).norm() / r16.norm())
                    cells.append(f"paired={paired}: nan {int(y.isnan().sum())} inf {int(y.isinf().sum())} rel {rel:.2e}")
                tg.PAIRED_DEQUANT = True
                print(f"  {name}: |h|max {float(h.abs().max()):.3g} |y|max {float(r16.abs().max()):.3g}; " + "; ".join(cells))
                return ref
            x = block_forward(spec, i, x, lambda t: w.get(t).cuda(), linear)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], *(int(a) for a in sys.argv[3:5]))
