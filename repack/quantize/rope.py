"""Rotary position frequencies, with the scalings checkpoints declare in ``rope_scaling`` (or, as
transformers 5 writes it, ``rope_parameters``): linear, dynamic NTK, Llama 3, YaRN and Phi-3's
longrope. Each is a function of the base frequencies ``theta ** (-2i / dim)``; the formulas are
the published ones (Llama 3.1's wavelength bands; YaRN, Peng et al. 2023, §3.2-3.4; Phi-3's
per-dimension factors), as transformers applies them, and the parity tests compare against it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..errors import UnsupportedError

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Rope:
    """Inverse frequencies of the rotating dimensions (float32 values as tuples, so a Spec stays
    hashable) and the factor cos and sin are multiplied by. longrope has a second set for
    sequences longer than ``original_max``, chosen per forward pass from its last position."""

    inv_freq: tuple[float, ...]
    attention_factor: float = 1.0
    long_inv_freq: tuple[float, ...] | None = None
    original_max: int = 0
    kind: str = "default"
    where: str = field(default="", compare=False)

    def frequencies(self, end: int) -> torch.Tensor:
        """Inverse frequencies for a forward pass whose last position is ``end - 1``."""
        import torch

        if self.kind == "dynamic" and end > self.original_max:
            # dynamic NTK grows the base past max_position_embeddings; repack does not follow it
            raise UnsupportedError(f"{self.where}: {end} positions pass max_position_embeddings {self.original_max}, "
                                   f"where dynamic rope scaling changes the frequencies (use a shorter --seqlen)")
        use_long = self.long_inv_freq is not None and end > self.original_max
        return torch.tensor(self.long_inv_freq if use_long else self.inv_freq, dtype=torch.float32)


def _base(theta: float, dim: int) -> torch.Tensor:
    import torch

    return 1.0 / theta ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim)


def _num(params: dict, key: str, where: str, kind: str) -> float:
    try:
        return float(params[key])
    except (KeyError, TypeError, ValueError):
        raise UnsupportedError(f"{where}: rope scaling {kind!r} needs a numeric {key!r}") from None


def rope_from_config(config: dict, dim: int, where: str = "") -> Rope:
    """The rotary frequencies of ``dim`` rotating dimensions per head. Scaling parameters come from
    ``rope_scaling`` (transformers 4) or ``rope_parameters`` (5); unknown kinds are refused, and so
    is a parameter that is not a number (one line naming the file)."""
    try:
        return _rope_from_config(config, dim, where)
    except (TypeError, ValueError, ZeroDivisionError) as e:
        raise UnsupportedError(f"{where}: unusable rope parameters ({e})") from None


def rope_params(config: dict, where: str = "") -> dict:
    """The rotary parameters: ``rope_scaling`` (transformers 4 configs) or ``rope_parameters`` (5)."""
    params = config.get("rope_scaling") or config.get("rope_parameters") or {}
    if not isinstance(params, dict):
        raise UnsupportedError(f"{where}: rope_scaling must be an object, got {params!r}")
    return params


def rope_theta(config: dict, where: str = "") -> float:
    """The base: top-level ``rope_theta``, else the one inside the rotary parameters, else 10000."""
    return float(config.get("rope_theta") or rope_params(config, where).get("rope_theta") or 10000.0)


def divisors(config: dict, dim: int, where: str = "") -> np.ndarray:
    """Plain frequencies over the config's scaled ones, per rotating pair: llama.cpp's ``rope_freqs``."""
    plain = rope_from_config({"rope_theta": rope_theta(config, where)}, dim, where).inv_freq
    scaled = rope_from_config(config, dim, where).inv_freq
    return np.array(plain, np.float64) / np.array(scaled, np.float64)


def _rope_from_config(config: dict, dim: int, where: str) -> Rope:
    import torch  # the quantizer's math (transformers computes rope in torch fp32); GGUF needs it only for llama3

    params = rope_params(config, where)
    kind = str(params.get("rope_type") or params.get("type") or "default")
    theta = rope_theta(config, where)
    base = _base(theta, dim)
    max_pos = config.get("max_position_embeddings")
    if kind == "default":
        return Rope(tuple(base.tolist()))
    if kind == "linear":
        return Rope(tuple((base / _num(params, "factor", where, kind)).tolist()), kind=kind)
    if kind == "dynamic":
        # NTK-aware scaling grows the base only past max_position_embeddings; below it (every
        # window repack runs, which is checked) the frequencies are the plain ones
        if not max_pos:
            raise UnsupportedError(f"{where}: rope scaling 'dynamic' needs max_position_embeddings")
        return Rope(tuple(base.tolist()), original_max=int(max_pos), kind=kind, where=where)
    if kind == "llama3":
        factor = _num(params, "factor", where, kind)
        low, high = _num(params, "low_freq_factor", where, kind), _num(params, "high_freq_factor", where, kind)
        old = _num(params, "original_max_position_embeddings", where, kind)
        if not (0 < low < high) or factor <= 0 or old <= 0:
            raise UnsupportedError(f"{where}: rope scaling 'llama3' needs 0 < low_freq_factor < high_freq_factor and a "
                                   f"positive factor and context, got {low}, {high}, {factor}, {old}")
        wavelen = 2 * math.pi / base
        # long wavelengths (beyond old / low) are slowed by the factor, short ones (under old / high)
        # kept, the band between blended linearly in old / wavelen
        scaled = torch.where(wavelen > old / low, base / factor, base)
        smooth = (old / wavelen - low) / (high - low)
        blended = (1 - smooth) * scaled / factor + smooth * scaled
        middle = ~(wavelen < old / high) * ~(wavelen > old / low)
        return Rope(tuple(torch.where(middle, blended, scaled).tolist()), kind=kind)
    if kind == "yarn":
        return _yarn(params, theta, dim, base, max_pos, where)
    if kind in ("longrope", "su"):
        return _longrope(params, theta, dim, max_pos, config.get("original_max_position_embeddings"), where)
    raise UnsupportedError(f"{where}: rope scaling {kind!r} is not implemented (known: linear, dynamic, "
                           f"llama3, yarn, longrope)")


def _yarn(params: dict, theta: float, dim: int, base: torch.Tensor, max_pos, where: str) -> Rope:
    import torch

    old = _num(params, "original_max_position_embeddings", where, "yarn")
    factor = _num(params, "factor", where, "yarn") if params.get("factor") is not None or not max_pos else float(max_pos) / old
    if factor <= 0 or old <= 0:
        raise UnsupportedError(f"{where}: rope scaling 'yarn' needs a positive factor and context, got {factor}, {old}")

    def mscale(scale: float, m: float = 1.0) -> float:
        return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0
    attention = params.get("attention_factor")
    if attention is None:
        m, m_all = params.get("mscale"), params.get("mscale_all_dim")
        attention = mscale(factor, float(m)) / mscale(factor, float(m_all)) if m and m_all else mscale(factor)
    fast, slow = float(params.get("beta_fast") or 32), float(params.get("beta_slow") or 1)

    def correction_dim(rotations: float) -> float:  # the dimension that turns `rotations` times in `old` positions
        return dim * math.log(old / (rotations * 2 * math.pi)) / (2 * math.log(theta))
    lo, hi = correction_dim(fast), correction_dim(slow)
    if params.get("truncate", True):
        lo, hi = math.floor(lo), math.ceil(hi)
    lo, hi = max(lo, 0), min(hi, dim - 1)
    if lo == hi:
        hi += 0.001
    ramp = torch.clamp((torch.arange(dim // 2, dtype=torch.float32) - lo) / (hi - lo), 0, 1)
    keep = 1 - ramp  # 1: the dimension keeps its frequency (extrapolates); 0: interpolated by the factor
    pos = theta ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim)
    inv = (1.0 / (factor * pos)) * (1 - keep) + (1.0 / pos) * keep
    return Rope(tuple(inv.tolist()), float(attention), kind="yarn")


def _longrope(params: dict, theta: float, dim: int, max_pos, top_old, where: str) -> Rope:
    import torch

    try:
        short = torch.tensor([float(f) for f in params["short_factor"]], dtype=torch.float32)
        long = torch.tensor([float(f) for f in params["long_factor"]], dtype=torch.float32)
    except (KeyError, TypeError, ValueError):
        raise UnsupportedError(f"{where}: rope scaling 'longrope' needs short_factor and long_factor lists") from None
    if short.numel() != dim // 2 or long.numel() != dim // 2:
        raise UnsupportedError(f"{where}: longrope factors have {short.numel()}/{long.numel()} entries, "
                               f"{dim // 2} rotating frequency pairs need one each")
    old = int(params.get("original_max_position_embeddings") or top_old or 0)  # Phi-3 keeps it at the top level
    if not old:
        raise UnsupportedError(f"{where}: rope scaling 'longrope' needs original_max_position_embeddings")
    factor = _num(params, "factor", where, "longrope") if params.get("factor") is not None else (
        float(max_pos) / old if max_pos else 1.0)
    attention = params.get("attention_factor")
    if attention is None:
        attention = 1.0 if factor <= 1.0 else math.sqrt(1 + math.log(factor) / math.log(old))
    shape = torch.arange(0, dim, 2, dtype=torch.int64).float() / dim
    return Rope(tuple((1.0 / (short * theta ** shape)).tolist()), float(attention),
                tuple((1.0 / (long * theta ** shape)).tolist()), old, "longrope")
