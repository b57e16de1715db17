"""What one engine's rules say about a profile."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Failure:
    rule: str  # short id, e.g. "marlin-sym-label"
    module: str | None  # None: the whole checkpoint
    reason: str

    def __str__(self) -> str:
        return f"{self.module}: {self.reason}" if self.module else self.reason


@dataclass
class Verdict:
    kernels: Counter = field(default_factory=Counter)  # kernel -> modules that use it
    failures: list[Failure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def fail(self, rule: str, module: str | None, reason: str) -> None:
        self.failures.append(Failure(rule, module, reason))

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    @property
    def kernel(self) -> str | None:
        """The kernel most modules use, with the others counted: ``gptq_marlin (exllama: 2 modules)``."""
        if not self.kernels:
            return None
        (main, _), *rest = self.kernels.most_common()
        return main + (" (" + ", ".join(f"{k}: {n} module{'s' if n > 1 else ''}" for k, n in rest) + ")" if rest else "")
