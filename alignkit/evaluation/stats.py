"""Confidence intervals for the rates ``alignkit eval`` reports."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Hashable, Sequence

__all__ = ["Z95", "cluster_bootstrap_rate", "paired_bootstrap", "wilson_interval"]

#: the two-sided 95 % quantile of the standard normal distribution
Z95 = 1.959963984540054


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval for a binomial proportion ``successes / n`` (95 % by default).

    With p = k/n: centre (p + z²/2n) / (1 + z²/n), half-width z/(1 + z²/n) · sqrt(p(1−p)/n + z²/4n²).
    Unlike the normal approximation it stays inside [0, 1] and is not empty at k = 0 or k = n.
    ``n = 0`` gives (0, 1)."""
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got {successes} of {n}")
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def _quantile(sorted_values: Sequence[float], q: float) -> float:
    """The smallest value whose empirical CDF reaches ``q`` (the inverted-CDF quantile)."""
    k = max(0, math.ceil(q * len(sorted_values) - 1e-12) - 1)
    return sorted_values[min(k, len(sorted_values) - 1)]


def paired_bootstrap(before: Sequence[float], after: Sequence[float], n_boot: int = 10_000, seed: int = 0,
                     level: float = 0.95) -> tuple[float, float, float]:
    """``(mean(after - before), low, high)``: the change of a per-item score (1/0 for pass/fail) and its
    percentile bootstrap interval, resampling items (prompts) with replacement so that each item's
    before and after stay paired.

    With at most 7 items the bootstrap distribution is enumerated exactly (every one of the n^n
    resamples, each equally likely); otherwise ``n_boot`` resamples drawn with ``seed``. The bounds are
    the inverted-CDF quantiles at (1 - level)/2 and (1 + level)/2."""
    if len(before) != len(after):
        raise ValueError(f"paired_bootstrap: {len(before)} scores before but {len(after)} after")
    n = len(before)
    if n == 0:
        raise ValueError("paired_bootstrap needs at least one item")
    diffs = [float(a) - float(b) for a, b in zip(after, before)]
    if n <= 7:
        means = sorted(sum(diffs[i] for i in idx) / n for idx in itertools.product(range(n), repeat=n))
    else:
        rng = random.Random(seed)
        means = sorted(sum(diffs[rng.randrange(n)] for _ in range(n)) / n for _ in range(n_boot))
    tail = (1 - level) / 2
    return sum(diffs) / n, _quantile(means, tail), _quantile(means, 1 - tail)


def cluster_bootstrap_rate(values: Sequence[float], clusters: Sequence[Hashable], n_boot: int = 10_000, seed: int = 0,
                           level: float = 0.95) -> tuple[float, float, float]:
    """``(rate, low, high)``: the mean of per-prompt scores ``values`` (1/0) and its percentile bootstrap
    interval when prompts come in clusters that are not independent (the wordings of one request):
    whole clusters are resampled with replacement, and each resample's rate is its prompts' total score
    over its prompts' count (the ratio estimator; clusters may differ in size). With every cluster of
    one prompt this is the ordinary bootstrap of a proportion.

    With at most 7 clusters the bootstrap distribution is enumerated exactly (all m^m resamples, each
    equally likely); otherwise ``n_boot`` resamples drawn with ``seed``. Bounds as in
    :func:`paired_bootstrap`."""
    if len(values) != len(clusters):
        raise ValueError(f"cluster_bootstrap_rate: {len(values)} values but {len(clusters)} cluster labels")
    if not values:
        raise ValueError("cluster_bootstrap_rate needs at least one value")
    sums: dict[Hashable, float] = {}
    counts: dict[Hashable, int] = {}
    for v, c in zip(values, clusters):
        sums[c] = sums.get(c, 0.0) + float(v)
        counts[c] = counts.get(c, 0) + 1
    keys = list(sums)
    s, n, m = [sums[k] for k in keys], [counts[k] for k in keys], len(keys)
    if m <= 7:
        draws = itertools.product(range(m), repeat=m)
    else:
        rng = random.Random(seed)
        draws = ([rng.randrange(m) for _ in range(m)] for _ in range(n_boot))
    rates = sorted(sum(s[i] for i in idx) / sum(n[i] for i in idx) for idx in draws)
    tail = (1 - level) / 2
    return sum(s) / sum(n), _quantile(rates, tail), _quantile(rates, 1 - tail)
