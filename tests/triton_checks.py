"""Running a kernel check on the GPU or through Triton's interpreter on the CPU (shared by the tests of
kernel paths that the interpreter can run: no inline PTX on their way)."""

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
    r = subprocess.run([sys.executable, "-c", f"from {module} import check; check({str(folder)!r})"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0 and done in r.stdout, r.stdout[-3000:] + r.stderr[-3000:]
