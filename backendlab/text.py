"""Words for counts and lists in what backendlab prints: "1 epoch", "2 epochs", "dropout (x2)"."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable


def plural(n: int, noun: str, nouns: str | None = None) -> str:
    """``n`` and the noun, singular for exactly one: ``plural(1, "epoch")`` is "1 epoch"."""
    return f"{n} {noun if n == 1 else nouns or noun + 's'}"


def counted_names(names: Iterable[str]) -> str:
    """Names in the order first met, each once; a name met more than once carries its count."""
    counts = Counter(names)
    return ", ".join(name if n == 1 else f"{name} (x{n})" for name, n in counts.items())
