"""Paired statistics for one metric measured twice on the same samples (baseline run vs this run).

Both runs classify the same evaluation samples, so the comparison is paired: only the samples whose
outcome flipped carry information. With ``regressions`` = correct before, wrong now and
``improvements`` = wrong before, correct now:

- McNemar's exact test: under "no change", each flipped sample is equally likely to flip either way, so
  ``regressions ~ Binomial(regressions + improvements, 1/2)``; the two-sided p-value doubles the
  smaller tail (capped at 1).
- The confidence interval of the difference in accuracy (now minus before) is Newcombe's hybrid score
  interval for paired proportions (Newcombe 1998, method 10): Wilson intervals of the two accuracies,
  combined with the correlation of the paired outcomes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist


@dataclass(frozen=True)
class PairedChange:
    samples: int
    before_correct: int
    after_correct: int
    regressions: int  # correct before, wrong now
    improvements: int  # wrong before, correct now
    p_value: float  # McNemar's exact test, two-sided
    difference: float  # accuracy now minus before, in points
    ci_low: float  # confidence interval of ``difference``, in points
    ci_high: float
    confidence: float


def mcnemar_exact(regressions: int, improvements: int) -> float:
    """Two-sided exact McNemar p-value: 2 * P(X <= min(b, c)) for X ~ Binomial(b + c, 1/2), capped at 1."""
    flipped = regressions + improvements
    if flipped == 0:
        return 1.0
    smaller = min(regressions, improvements)
    # Exact integer arithmetic: the tail is a ratio of integers, no float underflow for large counts.
    tail = sum(math.comb(flipped, k) for k in range(smaller + 1))
    return min(1.0, 2 * tail / (1 << flipped))


def wilson_interval(successes: int, total: int, z: float) -> tuple[float, float]:
    """Wilson score interval of a proportion (as fractions)."""
    if total == 0:
        return 0.0, 1.0
    p = successes / total
    denominator = 1 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe_paired_interval(
    both: int, regressions: int, improvements: int, neither: int, confidence: float = 0.95
) -> tuple[float, float]:
    """Newcombe's method 10 interval for (after accuracy - before accuracy), as fractions.

    Cells of the 2x2 table: ``both`` correct before and now, ``regressions`` correct only before,
    ``improvements`` correct only now, ``neither`` correct in neither.
    """
    n = both + regressions + improvements + neither
    if n == 0:
        return -1.0, 1.0
    z = NormalDist().inv_cdf(1 - (1 - confidence) / 2)
    after_p, before_p = (both + improvements) / n, (both + regressions) / n
    after_low, after_high = wilson_interval(both + improvements, n, z)
    before_low, before_high = wilson_interval(both + regressions, n, z)
    marginals = (both + improvements) * (regressions + neither) * (both + regressions) * (improvements + neither)
    if marginals == 0:
        phi = 0.0
    else:
        cross = both * neither - regressions * improvements
        # Newcombe's continuity correction of the correlation: shrink a positive one by n / 2.
        cross_corrected = max(cross - n / 2, 0.0) if cross > 0 else float(cross)
        phi = cross_corrected / math.sqrt(marginals)
    difference = after_p - before_p
    delta = math.sqrt(
        max(
            0.0,
            (after_p - after_low) ** 2
            - 2 * phi * (after_p - after_low) * (before_high - before_p)
            + (before_high - before_p) ** 2,
        )
    )
    epsilon = math.sqrt(
        max(
            0.0,
            (after_high - after_p) ** 2
            - 2 * phi * (after_high - after_p) * (before_p - before_low)
            + (before_p - before_low) ** 2,
        )
    )
    return max(-1.0, difference - delta), min(1.0, difference + epsilon)


def paired_change(before: Sequence[bool], after: Sequence[bool], confidence: float = 0.95) -> PairedChange:
    """Compare per-sample correctness of the same samples in two runs."""
    if len(before) != len(after):
        raise ValueError(f"Paired outcomes need the same samples: {len(before)} before, {len(after)} now.")
    both = sum(1 for b, a in zip(before, after, strict=True) if b and a)
    regressions = sum(1 for b, a in zip(before, after, strict=True) if b and not a)
    improvements = sum(1 for b, a in zip(before, after, strict=True) if not b and a)
    neither = len(before) - both - regressions - improvements
    low, high = newcombe_paired_interval(both, regressions, improvements, neither, confidence)
    n = len(before)
    return PairedChange(
        samples=n,
        before_correct=both + regressions,
        after_correct=both + improvements,
        regressions=regressions,
        improvements=improvements,
        p_value=mcnemar_exact(regressions, improvements),
        difference=0.0 if n == 0 else 100.0 * (improvements - regressions) / n,
        ci_low=100.0 * low,
        ci_high=100.0 * high,
        confidence=confidence,
    )
