"""Per-module settings in each format's own vocabulary (mixed precision and skip lists).

- GPTQModel ``dynamic``: ``{pattern: overrides}``; ``-:pattern`` leaves matching modules
  unquantized, ``+:pattern`` (or no prefix) applies the overrides; ``re.match`` on the module
  name, first match wins (GPTQModel quantization/config.py ``dynamic_get``; hf.md §1.7).
- AutoRound ``extra_config``: ``{module name or regex: keys that differ}``; ``bits`` > 8 means the
  module stays float (auto-round export.py; hf.md §3.1).
- compressed-tensors ``config_groups`` + ``ignore``: each group's ``targets`` are class names
  (``Linear``), ``re:`` regexes or module names; ``ignore`` lists modules left float (hf.md §4.3).
"""

from __future__ import annotations

import re

SKIP = "skip"


def clean_settings(values, where: str) -> dict:
    """bits / group_size / sym of one override, type-checked (other keys are kept as they are)."""
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ValueError(f"{where}: expected an object, got {values!r}")
    out = dict(values)
    for key, ok in (("bits", lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 < v <= 32),
                    ("group_size", lambda v: isinstance(v, int) and not isinstance(v, bool) and (v == -1 or v > 0)),
                    ("sym", lambda v: isinstance(v, bool))):
        if key in out and out[key] is not None and not ok(out[key]):
            raise ValueError(f"{where}: invalid {key} {out[key]!r}")
    return out


def gptq_rules(dynamic) -> list[tuple[bool, re.Pattern, dict]]:
    if dynamic is None:
        return []
    if not isinstance(dynamic, dict):
        raise ValueError(f"expected an object of pattern -> overrides, got {dynamic!r}")
    rules = []
    for pattern, values in dynamic.items():
        values = clean_settings(values, f"pattern {pattern!r}")
        positive = not pattern.startswith("-:")
        body = pattern[2:] if pattern[:2] in ("+:", "-:") else pattern
        try:
            rules.append((positive, re.compile(body), values))
        except re.error as e:
            raise ValueError(f"dynamic pattern {pattern!r} is not a regular expression: {e}") from None
    return rules


def gptq_lookup(rules, module: str):
    """The first matching rule's overrides, SKIP for a negative match, None when nothing matches."""
    for positive, rx, values in rules:
        if rx.match(module):
            return values if positive else SKIP
    return None


def _exact(module: str) -> str:
    return "^" + re.escape(module) + "$"


def gptq_dynamic(overrides: dict[str, dict], skipped) -> dict:
    out = {f"-:{_exact(m)}": {} for m in skipped}
    out |= {f"+:{_exact(m)}": d for m, d in overrides.items()}
    return out


def round_lookup(extra: dict, module: str):
    """AutoRound extra_config entry for a module (exact name first, then names used as regexes)."""
    extra = extra or {}
    entry = extra.get(module)
    if entry is None:
        for key, values in extra.items():
            try:
                if re.fullmatch(key, module):
                    entry = values
                    break
            except re.error:
                continue
    if entry is None:
        return None
    entry = clean_settings(entry, f"extra_config entry for {module!r}")
    if (entry.get("bits") or 4) > 8 or entry.get("data_type") == "float":
        return SKIP
    return entry


def ct_targets_match(targets, module: str) -> int:
    """How specifically ``targets`` name this linear module: 2 by name or regex, 1 by class, 0 not."""
    best = 0
    if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
        raise ValueError(f"targets must be a list of names, got {targets!r}")
    for t in targets:
        if t.startswith("re:"):
            if re.match(t[3:], module):
                best = max(best, 2)
        elif t == module:
            best = max(best, 2)
        elif t == "Linear":
            best = max(best, 1)
    return best

