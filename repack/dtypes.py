"""Array dtypes, and the one crossing between numpy and torch.

Conversion holds every tensor as a numpy array, so `repack convert` never imports torch (1.1-1.9 s
of every run on a 2-core machine, a large part of a 7B conversion). numpy has no bfloat16 or
float8; ``ml_dtypes`` (the dtypes JAX and TensorFlow use with numpy) adds them as real numpy
dtypes with round-to-nearest-even casts, the rounding torch uses, so bf16 scales keep their bits.
Kernels, quantization and eval work in torch and cross with :func:`to_torch` / :func:`as_array`.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np

F16 = np.dtype(np.float16)
BF16 = np.dtype(ml_dtypes.bfloat16)
F32 = np.dtype(np.float32)
FLOAT_DTYPES = (F16, BF16, F32)
NAMES = {"fp16": F16, "bf16": BF16, "fp32": F32}

# safetensors dtype string -> numpy dtype
ST_DTYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_), "U8": np.dtype(np.uint8), "I8": np.dtype(np.int8),
    "I16": np.dtype(np.int16), "U16": np.dtype(np.uint16), "F16": F16, "BF16": BF16,
    "I32": np.dtype(np.int32), "U32": np.dtype(np.uint32), "F32": F32,
    "I64": np.dtype(np.int64), "U64": np.dtype(np.uint64), "F64": np.dtype(np.float64),
    "F8_E4M3": np.dtype(ml_dtypes.float8_e4m3fn), "F8_E5M2": np.dtype(ml_dtypes.float8_e5m2),
}
NP_TO_ST = {dt: name for name, dt in ST_DTYPES.items()}
# numpy dtypes that only ml_dtypes knows: they cross to and from torch as raw bits (int16 / uint8 views)
BIT_VIEWED = (BF16, ST_DTYPES["F8_E4M3"], ST_DTYPES["F8_E5M2"])


def name(dtype) -> str:
    """'fp16' / 'bf16' / 'fp32' (else numpy's name) of a numpy or torch dtype."""
    d = as_dtype(dtype)
    return next((k for k, v in NAMES.items() if v == d), str(d))


def is_float(dtype) -> bool:
    d = as_dtype(dtype)
    return d.kind == "f" or d in BIT_VIEWED


def _is_torch(x) -> bool:
    return type(x).__module__.split(".")[0] == "torch"  # without importing torch


def is_array(x) -> bool:
    """A numpy array or a torch tensor."""
    return isinstance(x, np.ndarray) or (_is_torch(x) and hasattr(x, "shape"))


def as_dtype(dtype) -> np.dtype:
    """A numpy dtype from a numpy dtype, a torch dtype or a name ('fp16', 'bfloat16', 'F16')."""
    if isinstance(dtype, np.dtype):
        return dtype
    if _is_torch(dtype):
        text = str(dtype).removeprefix("torch.")
        return {"bfloat16": BF16, "float8_e4m3fn": ST_DTYPES["F8_E4M3"], "float8_e5m2": ST_DTYPES["F8_E5M2"],
                "bool": np.dtype(np.bool_)}.get(text) or np.dtype(text)
    if isinstance(dtype, str):
        if dtype in NAMES:
            return NAMES[dtype]
        if dtype in ST_DTYPES:
            return ST_DTYPES[dtype]
        return BF16 if dtype == "bfloat16" else np.dtype(dtype)
    return np.dtype(dtype)


def as_array(x) -> np.ndarray:
    """A numpy array of ``x`` (numpy array, torch tensor on any device, or anything np.asarray takes).
    A CPU torch tensor shares its memory; bf16 and float8 keep their bits."""
    if isinstance(x, np.ndarray):
        return x
    if _is_torch(x):
        t = x.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        target = as_dtype(t.dtype)
        if target in BIT_VIEWED:
            import torch  # the tensor exists, so torch is loaded already

            return t.view(torch.int16 if target.itemsize == 2 else torch.uint8).numpy().view(target)
        return t.numpy()
    return np.asarray(x)


def torch_dtype(dtype):
    import torch

    d = as_dtype(dtype)
    special = {BF16: torch.bfloat16, ST_DTYPES["F8_E4M3"]: torch.float8_e4m3fn, ST_DTYPES["F8_E5M2"]: torch.float8_e5m2,
               np.dtype(np.bool_): torch.bool}
    return special.get(d) or getattr(torch, d.name)


def to_torch(a, device=None):
    """A torch tensor of a numpy array (shared memory on CPU; bf16/float8 bits kept). A torch tensor
    passes through (moved to ``device`` if given)."""
    import torch

    if isinstance(a, torch.Tensor):
        return a if device is None else a.to(device)
    a = np.asarray(a)
    if not a.flags.writeable:
        a = a.copy()  # torch.from_numpy warns on read-only memory
    if a.dtype in BIT_VIEWED:
        raw = torch.from_numpy(np.ascontiguousarray(a).view(np.int16 if a.dtype.itemsize == 2 else np.uint8))
        t = raw.view(torch_dtype(a.dtype))
    else:
        t = torch.from_numpy(a)
    return t if device is None else t.to(device)
