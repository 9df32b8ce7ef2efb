"""Many paired tests at once: Holm's correction for multiple comparisons, and how a p-value is printed.

`nmt eval` tests every pair of systems in every length bucket and overall: with 3 systems and 8 slices that is
24 tests per metric, and at alpha = 0.05 about one of them is expected to come out "significant" by chance
when no system differs from another. Holm's step-down procedure keeps the chance of any false call at most
alpha over the whole family, whatever the dependence between the tests, and is never less powerful than
Bonferroni's (Holm 1979).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def holm_adjusted(p_values: Sequence[float]) -> list[float]:
    """Holm 1979's adjusted p-values, in the order given.

    With the m p-values sorted, p_(1) <= ... <= p_(m), the i-th smallest becomes
    min(1, max over j <= i of (m - j + 1) p_(j)). Rejecting each hypothesis whose adjusted p-value is at most
    alpha is Holm's sequentially rejective test: reject H_(1), H_(2), ... while p_(i) <= alpha / (m - i + 1),
    and stop at the first that is not. The running maximum keeps the adjusted values in the order of the raw
    ones (a smaller raw p-value never gets a larger adjusted one), so the two readings agree.
    """
    raw = np.asarray(p_values, dtype=np.float64)  # (m,)
    m = len(raw)
    if not m:
        return []
    order = np.argsort(raw, kind="stable")  # ties keep their given order
    scaled = (m - np.arange(m)) * raw[order]  # (m - i + 1) p_(i), i = 1..m
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return [float(p) for p in adjusted]


def format_p_value(p: float) -> str:
    """'p=0.042', or 'p<0.001' below a thousandth (a bootstrap p-value is never 0: never 'p=0.000')."""
    return "p<0.001" if p < 0.001 else f"p={p:.3f}"


def smallest_p_value(resamples: int, holm_family: int = 1) -> float:
    """The smallest p-value n resamples can give, 2 / (n + 1), times m after Holm over m tests (at most 1):
    a test whose smallest p-value is above alpha cannot call anything significant."""
    return min(1.0, 2 * holm_family / (resamples + 1))


def resamples_needed(alpha: float, holm_family: int = 1) -> int:
    """The fewest resamples whose smallest p-value (`smallest_p_value`) is at most alpha: 2 m / alpha - 1."""
    # - 1e-9: float rounding can leave a whole number a hair above itself, and ceil would add one
    return max(1, math.ceil(2 * holm_family / alpha - 1 - 1e-9))
