"""Opt-in progress bars: the library prints nothing unless asked (the CLI asks on a terminal)."""

from __future__ import annotations

import sys
from typing import Iterable, TypeVar

T = TypeVar("T")


def progress_bar(items: Iterable[T], desc: str, enabled: bool, total: int | None = None) -> Iterable[T]:
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc=desc, unit="tensor", file=sys.stderr, leave=False, dynamic_ncols=True, total=total)
