"""Pure functions over labels: majority vote, Cohen's kappa, Fleiss' kappa, Borda ranking.

Labels are any hashable values (``"A"``, ``"B"``, ``"tie"``, ``"both_bad"``, a candidate index ...).
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Hashable, Sequence


def majority(labels: Sequence[Hashable]) -> tuple[Hashable | None, float]:
    """The most frequent label and its share of the votes, ``(label, count / len(labels))``.
    A tie for the top (or no votes) has no majority: ``(None, share of the top count)``."""
    if not labels:
        return None, 0.0
    ranked = Counter(labels).most_common()
    top, count = ranked[0]
    if len(ranked) > 1 and ranked[1][1] == count:
        return None, count / len(labels)
    return top, count / len(labels)


def cohen_kappa(a: Sequence[Hashable], b: Sequence[Hashable]) -> float | None:
    """Cohen's kappa of two raters over the same items: κ = (p_o − p_e) / (1 − p_e), with p_o the
    share of items they label alike and p_e = Σ_k p_a(k)·p_b(k) the agreement expected by chance from
    each rater's label frequencies. None when undefined (no items, or p_e = 1: both use one label)."""
    if len(a) != len(b):
        raise ValueError(f"cohen_kappa: {len(a)} and {len(b)} labels; the lists must be equally long")
    n = len(a)
    if n == 0:
        return None
    p_o = sum(x == y for x, y in zip(a, b)) / n
    ca, cb = Counter(a), Counter(b)
    p_e = sum(ca[k] * cb[k] for k in ca) / (n * n)
    if p_e >= 1.0:
        return None
    return (p_o - p_e) / (1 - p_e)


def fleiss_kappa(items: Sequence[Sequence[Hashable]]) -> float | None:
    """Fleiss' kappa over items each labelled by two or more raters (items with fewer are ignored;
    the number of raters may vary per item).

    For item i with n_i labels, n_ij of them category j: P_i = Σ_j n_ij(n_ij − 1) / (n_i(n_i − 1));
    P̄ = mean_i P_i; p_j = Σ_i n_ij / Σ_i n_i; P_e = Σ_j p_j²; κ = (P̄ − P_e) / (1 − P_e).
    None when undefined (no item with two labels, or P_e = 1)."""
    rated = [Counter(labels) for labels in items if len(labels) >= 2]
    if not rated:
        return None
    p_bar = sum(sum(c * (c - 1) for c in counts.values()) / (sum(counts.values()) * (sum(counts.values()) - 1))
                for counts in rated) / len(rated)
    totals: Counter = Counter()
    for counts in rated:
        totals.update(counts)
    n_all = sum(totals.values())
    p_e = sum((c / n_all) ** 2 for c in totals.values())
    if p_e >= 1.0:
        return None
    return (p_bar - p_e) / (1 - p_e)


def mean_pairwise_cohen(labels_by_rater: dict[Hashable, dict[Hashable, Hashable]]) -> tuple[float | None, int]:
    """Mean Cohen's kappa over every pair of raters with items in common (``labels_by_rater``:
    rater -> item -> label); returns (mean, number of pairs with a defined kappa)."""
    values = []
    for r1, r2 in itertools.combinations(sorted(labels_by_rater, key=str), 2):
        shared = sorted(set(labels_by_rater[r1]) & set(labels_by_rater[r2]), key=str)
        kappa = cohen_kappa([labels_by_rater[r1][i] for i in shared], [labels_by_rater[r2][i] for i in shared])
        if kappa is not None:
            values.append(kappa)
    return (sum(values) / len(values) if values else None), len(values)


def borda(rankings: Sequence[Sequence[int]], n: int) -> list[int]:
    """Borda scores of candidates 0..n-1: each ranking (best first) gives n−1−position points."""
    scores = [0] * n
    for ranking in rankings:
        for pos, cand in enumerate(ranking):
            scores[cand] += n - 1 - pos
    return scores
