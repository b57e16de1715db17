"""Shared by the kernel tests: running a check on the GPU or through Triton's interpreter on the CPU (for
kernel paths with no inline PTX on their way), and a random 4-bit GPTQ layer with its float64 weight."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cuda_and_triton() -> bool:
    import torch
    return torch.cuda.is_available() and importlib.util.find_spec("triton") is not None


def has_triton() -> bool:
    return importlib.util.find_spec("triton") is not None


def run_in_interpreter(module: str, folder: Path, done: str) -> None:
    """``module``.check(folder) in a subprocess with TRITON_INTERPRET=1 (the variable must be set before
    Triton is imported); it must exit 0 and print ``done``."""
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    code = f"from tests.triton_checks import fix_interpreter_index; fix_interpreter_index(); " \
           f"from {module} import check; check({str(folder)!r})"
    r = subprocess.run([sys.executable, "-c", code],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0 and done in r.stdout, r.stdout[-3000:] + r.stderr[-3000:]


def fix_interpreter_index() -> None:
    """Triton 3.6's interpreter turns a scalar into a Python int (a loop bound, ``range(0, tl.minimum(..))``)
    with ``int()`` of a one-element 1-d array, which NumPy 2.4 refuses ("only 0-dimensional arrays can be
    converted"); take the element instead. Called in the interpreter's subprocess only."""
    from triton.runtime import interpreter

    patch = interpreter._patch_lang_tensor

    def patched(tensor, scope):
        patch(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.reshape(-1)[0]))

    interpreter._patch_lang_tensor = patched


def random_gptq_words(K: int, N: int, gs: int, seed: int, device: str = "cuda"):
    """A 4-bit GPTQ v1 layer from random words (on ``device``), and its float64 weight [N, K] unpacked
    here from the layout (field f of word row r is input 8r + f, LSB first; zeros packed along N,
    stored as z - 1)."""
    import torch

    from repack.kernels.packed import CODES_ALONG_K, ZEROS_ALONG_N, PackedWeight

    g = torch.Generator(device=device).manual_seed(seed)
    qweight = torch.randint(-2**31, 2**31 - 1, (K // 8, N), dtype=torch.int32, device=device, generator=g)
    qzeros = torch.randint(-2**31, 2**31 - 1, (K // gs, N // 8), dtype=torch.int32, device=device, generator=g)
    scales = (torch.rand(K // gs, N, device=device, generator=g) * 0.01 + 0.001).half()
    w = PackedWeight(CODES_ALONG_K, ZEROS_ALONG_N, 4, K, N, gs, qweight, scales, qzeros, 1, None, "test/gptq")
    q = torch.stack([(qweight >> (4 * f)) & 15 for f in range(8)], 1).reshape(K, N).double()
    z = torch.stack([(qzeros >> (4 * f)) & 15 for f in range(8)], 2).reshape(K // gs, N).double() + 1
    grp = torch.arange(K, device=device) // gs
    return w, ((q - z[grp]) * scales.double()[grp]).t()


def random_awq_words(K: int, N: int, gs: int, seed: int, device: str = "cuda"):
    """A 4-bit AutoAWQ gemm layer from random words (on ``device``), and its float64 weight [N, K] unpacked here
    from the layout (nibble i of word c of a row holds column 8c + AWQ_ORDER[i], LSB first; zeros packed the
    same way along N, stored as they are)."""
    import torch

    from repack.kernels.packed import CODES_ALONG_N_AWQ, ZEROS_ALONG_N_AWQ, PackedWeight
    from tests.reference_packers import AWQ_ORDER

    g = torch.Generator(device=device).manual_seed(seed)
    qweight = torch.randint(-2**31, 2**31 - 1, (K, N // 8), dtype=torch.int32, device=device, generator=g)
    qzeros = torch.randint(-2**31, 2**31 - 1, (K // gs, N // 8), dtype=torch.int32, device=device, generator=g)
    scales = (torch.rand(K // gs, N, device=device, generator=g) * 0.01 + 0.001).half()
    w = PackedWeight(CODES_ALONG_N_AWQ, ZEROS_ALONG_N_AWQ, 4, K, N, gs, qweight, scales, qzeros, 0, None, "test/awq")

    def columns(words):  # [R, N / 8] words -> [R, N] fields, column 8c + AWQ_ORDER[i] from nibble i
        fields = torch.stack([(words >> (4 * i)) & 15 for i in range(8)], 2)
        out = torch.empty_like(fields)
        out[:, :, AWQ_ORDER] = fields
        return out.reshape(words.shape[0], N).double()

    grp = torch.arange(K, device=device) // gs
    return w, ((columns(qweight) - columns(qzeros)[grp]) * scales.double()[grp]).t()


def awq_layer(folder: Path, seed: int, gs: int, K: int, N: int, device: str):
    """A random 4-bit AutoAWQ gemm layer written by the reference packer (fixtures.write_awq) and read back
    by repack (on ``device``), and its float64 weight [K, N] from the fixture's own codes, zeros and scales."""
    import torch

    from fixtures.checkpoints import random_model, write_awq
    from repack.source import open_source

    name = "model.layers.0.mlp.up_proj"
    layers = random_model(seed=seed, bits=4, group_size=gs, shapes={name: (K, N)})
    L = layers[name]
    W = torch.from_numpy((L.q - L.z[L.groups()]) * L.s[L.groups()].astype("float64")).double()
    return open_source(write_awq(folder, layers, "gemm")).packed(name).to(device), W


def gemm_within_tolerance(x, w, W, config, path, what: str):
    """triton_gemm(x, w) with this tile and path into NaN-poisoned outputs: every output written and within
    the kernel tolerance of x @ W in float64. Returns that expectation."""
    import torch

    from repack.kernels import TOLERANCE
    from repack.kernels.triton_gemm import triton_gemm

    want = x.double().cpu() @ W
    out = torch.full((x.shape[0], W.shape[1]), float("nan"), dtype=x.dtype, device=x.device)
    y = triton_gemm(x, w, config=config, out=out, path_override=path).double().cpu()
    assert torch.isfinite(y).all(), f"{what}: outputs left unwritten"
    rel = float((y - want).norm() / want.norm())
    assert rel <= TOLERANCE[x.dtype], f"{what}: rel {rel:.2e}"
    return want
