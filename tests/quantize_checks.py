"""Shared by the quantizer tests: a checkpoint's model spec and weights, and a block's error under RTN and AWQ."""

from __future__ import annotations

import torch

from repack.quantize.driver import quantize
from repack.quantize.model import Spec, block_forward, plain_linear
from repack.quantize.weights import ModelWeights
from repack.source import open_source


def model_of(path):
    """(the model spec, the weights) of the checkpoint at ``path``."""
    src = open_source(path)
    return Spec.from_config(src.ckpt.config), ModelWeights(src)


def rtn_and_awq_block_errors(float_dir, tmp_path, spec, wf, x) -> dict[str, float]:
    """Block 0's output error (norm against the float block on ``x``) after 8-bit RTN and after 8-bit AWQ of the
    float model, each quantized through the driver into ``tmp_path / method``."""
    err = {}
    with torch.no_grad():
        ref = block_forward(spec, 0, x, wf.get, plain_linear(wf.get, wf.bias))
        for method in ("rtn", "awq"):
            quantize(float_dir, tmp_path / method, method, 8, 64, False, nsamples=4, seqlen=32)
            wq = model_of(tmp_path / method)[1]
            err[method] = float((block_forward(spec, 0, x, wq.get, plain_linear(wq.get, wq.bias)) - ref).norm())
    return err
