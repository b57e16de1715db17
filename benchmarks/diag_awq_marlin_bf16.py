import sys, time, torch
sys.path.insert(0, ".")
from pathlib import Path
from fixtures.checkpoints import random_model, write_awq
from repack.convert import convert
from repack.source import open_source
from repack.kernels import gemm
d = Path("/tmp/awqbf16"); import shutil; shutil.rmtree(d, ignore_errors=True)
shapes = {"model.layers.0.mlp.up_proj": (4096, 11008)}
write_awq(d / "awq", random_model(3, 4, 128, zero_range=(0, 15), shapes=shapes)); convert(d / "awq", d / "m", "marlin", "awq")
for path in ("awq", "m"):
    src = open_source(d / path); m = src.modules()[0]; qt = src.read(m); pw = src.packed(m, qt)
    for dt in (torch.float16, torch.bfloat16):
        for M in (1, 16, 128):
            x = torch.randn(M, 4096, dtype=dt, device="cuda")
            t = time.time(); y = gemm(x, qt, pw, "triton"); torch.cuda.synchronize(); t1 = time.time() - t
            t = time.time(); y = gemm(x, qt, pw, "triton"); torch.cuda.synchronize(); t2 = time.time() - t
            ref = gemm(x.float(), qt, None, "reference")
            print(path, dt, M, f"first call {t1:.1f}s, second {t2*1e3:.2f}ms, rel {float((y.float()-ref).norm()/ref.norm()):.2e}", flush=True)
