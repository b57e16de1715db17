"""A launch plan's call to a Gluon kernel whose leading arguments are TMA tensor descriptors, with the
descriptors encoded ahead instead of on every call.

Triton 3.6 hands a descriptor argument to its C launcher as ``[CUtensorMap, *shape, *strides]``, made per call
(triton/backends/nvidia/driver.py: ``wrap_handle_tensordesc`` wraps the launcher, ``make_tensordesc_arg`` calls
``fill_tma_descriptor``, i.e. cuTensorMapEncodeTiled), after the descriptor's own dataclass validation when it
is built. A plan (triton_gemm._planned) knows all of it ahead but x's address: the weight's map is encoded once,
x's from its pointer alone, and the flat arguments go straight to the launcher under the wrapper.
Measured on the H200's host (benchmarks/host_time.py): see benchmarks/NOTES-gemm.md, twentieth session.

Anything unexpected in Triton's objects (another version's launcher, scratch memory, no descriptor metadata)
gives ``None`` from :func:`encoded_launch`, and the plan launches the usual way."""

from __future__ import annotations

from typing import Any, Callable, Sequence


def raw_launcher(run: Any) -> Callable | None:
    """The C launcher under Triton's descriptor wrapper (the ``launcher`` its ``inner`` closes over), or None."""
    launch = getattr(run, "launch", None)
    code = getattr(launch, "__code__", None)
    if code is None or "launcher" not in code.co_freevars or launch.__closure__ is None:
        return None
    return launch.__closure__[code.co_freevars.index("launcher")].cell_contents


class DescriptorEncoder:
    """One descriptor argument in the launcher's flat form, for any base address of the same shape, strides
    and box: what make_tensordesc_arg builds from the descriptor and its compiled metadata."""

    def __init__(self, desc: Any, meta: dict):
        from triton.backends.nvidia.driver import TMA_DTYPE_DEVICE_TO_HOST, make_tensordesc_arg
        from triton.runtime import driver
        if meta is None or meta.get("fp4_padded") or list(desc.strides)[-1] != 1:
            raise ValueError("a descriptor this encoder does not reproduce")
        self.shape, self.strides = [int(v) for v in desc.shape], [int(v) for v in desc.strides]
        self.fixed = (meta["swizzle"], meta["elem_size"], TMA_DTYPE_DEVICE_TO_HOST[meta["elem_type"]],
                      meta["block_size"], self.shape, self.strides, 1 if desc.padding == "nan" else 0)
        self.fill = driver.active.utils.fill_tma_descriptor
        # Triton's own form of this descriptor must be [map, *shape, *strides], as here (another version's: refuse)
        theirs = make_tensordesc_arg(desc, meta)
        if len(theirs) != 1 + 2 * len(self.shape) or list(theirs[1:]) != self.shape + self.strides:
            raise ValueError("Triton encodes descriptor arguments in another form")

    def __call__(self, ptr: int) -> list:
        return [self.fill(ptr, *self.fixed), *self.shape, *self.strides]


class EncodedLaunch:
    """Launches ``compiled`` with its descriptors pre-encoded: the second (the weight's) once, here; the first
    (x's) per call from x's pointer. Other arguments follow as the plan gives them."""

    def __init__(self, compiled: Any, descs: Sequence[Any]):
        from triton.backends.nvidia.driver import _BASE_ARGS_FORMAT_LEN
        if _BASE_ARGS_FORMAT_LEN != 13:  # the launcher's head, as __call__ below passes it
            raise ValueError("another launcher argument format")
        run = compiled.run
        metas = getattr(compiled.metadata, "tensordesc_meta", None)
        self.raw = raw_launcher(run)
        if self.raw is None or not metas or len(metas) != 2 or len(descs) != 2:
            raise ValueError("not a two-descriptor launch of Triton 3.6's form")
        if getattr(run, "global_scratch_size", 1) or getattr(run, "profile_scratch_size", 1):
            raise ValueError("the kernel takes scratch memory that the launcher allocates per call")
        self.x = DescriptorEncoder(descs[0], metas[0])
        self.q = DescriptorEncoder(descs[1], metas[1])(descs[1].base.data_ptr())
        self.flags = (run.launch_cooperative_grid, run.launch_pdl)
        self.function = compiled.function

    def __call__(self, grid: tuple, stream: int, meta: Any, x_ptr: int, rest: Sequence) -> None:
        # the launcher's fixed head (driver._BASE_ARGS_FORMAT): grid, stream, function, cooperative, pdl, global and
        # profile scratch, packed metadata, launch metadata, enter and exit hooks
        self.raw(grid[0], grid[1], grid[2], stream, self.function, *self.flags, None, None, meta, None, None, None,
                 *self.x(x_ptr), *self.q, *rest)


def encoded_launch(compiled: Any, descs: Sequence[Any]) -> EncodedLaunch | None:
    try:
        return EncodedLaunch(compiled, descs)
    except Exception:  # noqa: BLE001  (Triton internals not as expected: the plan's usual launch)
        return None
