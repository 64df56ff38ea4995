"""The report's shared wording: numbers turned into words and rounded for CSVs, so that every
section says "5 members", "93.1%" or "gains 3.2 points" the same way. Pure functions of
numbers (nothing read, nothing drawn)."""

from __future__ import annotations

import math
from typing import Any


def near_one(x: float, digits: int = 3, style: str = "f") -> str:
    """`x` with enough digits that a value just below 1 never prints as 1 (0.99996, not 1.000)."""
    while True:
        text = f"{x:.{digits}{style}}"
        if x == 1.0 or float(text) != 1.0 or digits >= 8:
            return text
        digits += 1


def count(n: int, noun: str) -> str:
    """'1 member', '5 members'."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def frac(x: Any, digits: int = 4) -> float | None:
    """A fraction (accuracy, disagreement, cosine, ECE) rounded to `digits` decimals for a CSV:
    0.3 not 0.30000001192 (float32 noise); None for a missing or non-finite value."""
    v = _finite(x)
    return None if v is None else round(v, digits)


def sig(x: Any, digits: int = 4) -> float | None:
    """A value on an open scale (loss, distance, JS diversity, t-SNE coordinate) rounded to
    `digits` significant digits; None for a missing or non-finite value."""
    v = _finite(x)
    if v is None or v == 0:
        return v
    return round(v, digits - 1 - math.floor(math.log10(abs(v))))


def _finite(x: Any) -> float | None:
    if x is None:
        return None
    v = float(x)
    return v if math.isfinite(v) else None


def pct(x: float, digits: int = 1) -> str:
    return f"{100 * x:.{digits}f}%"


def points(delta: float) -> str:
    """An accuracy difference (fractions) in words: 'gains 3.2 points' / 'loses ...'."""
    p = 100 * delta
    if abs(p) < 0.05:
        return "changes accuracy by less than 0.1 points"
    return f"{'gains' if p > 0 else 'loses'} {abs(p):.1f} points"


def num(x: Any) -> float:
    """A JSON number, with null (written for NaN) back as NaN."""
    return math.nan if x is None else float(x)


def span(values: list[float], fmt: str = "{:.2f}") -> str:
    """'0.12' or '0.12–0.34' (min–max)."""
    lo, hi = min(values), max(values)
    return (
        fmt.format(lo) if fmt.format(lo) == fmt.format(hi) else f"{fmt.format(lo)}–{fmt.format(hi)}"
    )


def ratio(x: float) -> str:
    return f"{x:.0f}" if x >= 10 else f"{x:.2g}"


def join(words: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} and {words[-1]}"


def severity_name(s: int) -> str:
    return "clean" if s == 0 else str(s)


def warned(warnings: list[str]) -> list[str]:
    """A study's window warnings as reading paragraphs, printed next to its figures."""
    return [f"Note: {w}." for w in warnings]


def where(flags: list[bool], severities: list[int]) -> str:
    """'at every severity' / 'at no severity' / 'at severities clean and 1 but not at 2, 3'."""
    yes = [severity_name(s) for s, f in zip(severities, flags) if f]
    no = [severity_name(s) for s, f in zip(severities, flags) if not f]
    if not no:
        return "at every severity"
    if not yes:
        return "at no severity"
    return f"at severities {join(yes)} but not at {join(no)}"
