"""The format registry. Built-in formats are registered here, so nothing depends on import order."""

from __future__ import annotations

from ..errors import FormatError
from .base import Capabilities, Detection, Format, Scheme

_REGISTRY: dict[str, Format] = {}


def register(fmt: Format) -> Format:
    if not fmt.name:
        raise ValueError("a format needs a name")
    if fmt.name in _REGISTRY:
        raise ValueError(f"format {fmt.name!r} is already registered")
    _REGISTRY[fmt.name] = fmt
    return fmt


def get(name: str) -> Format:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise FormatError(f"unknown format {name!r}; known formats: {', '.join(sorted(_REGISTRY))}") from None


def all_formats() -> list[Format]:
    return list(_REGISTRY.values())


def resolve_variant(fmt: Format, variant: str | None) -> str:
    if variant is None:
        return fmt.default_variant
    if variant not in fmt.variants:
        raise FormatError(f"format {fmt.name!r} has no variant {variant!r}; its variants: {', '.join(fmt.variants)}")
    return variant


from .gptq import GptqFormat  # noqa: E402
from .awq import AwqFormat  # noqa: E402
from .dense import DenseFormat  # noqa: E402
from .auto_round import AutoRoundFormat  # noqa: E402
from .compressed_tensors import CompressedTensorsFormat  # noqa: E402
from .gguf import GgufFormat  # noqa: E402
from .marlin import MarlinFormat  # noqa: E402
from .turbomind import TurbomindFormat  # noqa: E402

register(GptqFormat())
register(AwqFormat())
register(DenseFormat())
register(AutoRoundFormat())
register(CompressedTensorsFormat())
register(GgufFormat())
register(MarlinFormat())
register(TurbomindFormat())

__all__ = ["Capabilities", "Detection", "Format", "Scheme", "all_formats", "get", "register", "resolve_variant"]
