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
