"""The one rule that turns scored candidates into a (chosen, rejected) preference pair.

Used by every producer of pairs: the demo, the self-rewarding loop, RLAIF data and online DPO.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

#: why a prompt's candidates gave no pair
PAIR_DROPS = ("unparsable", "tie", "identical")


def pick_pair(scores: Sequence[float | None], *, usable: Sequence[bool] | None = None,
              chosen_rank: Callable[[int], Any] | None = None, rejected_rank: Callable[[int], Any] | None = None,
              same: Callable[[int, int], bool] | None = None) -> tuple[int, int] | str:
    """``(chosen, rejected)`` candidate indices, or the reason there is no pair.

    Candidates whose score is ``None`` or not finite, or whose ``usable[i]`` is False, take no part;
    fewer than two left -> ``"unparsable"``. Chosen is a highest-scoring candidate, rejected a
    lowest-scoring one; among equals the smallest ``chosen_rank(i)`` (``rejected_rank(i)``) wins, then
    the earliest. Highest equal to lowest -> ``"tie"`` (a tie carries no preference); ``same(c, r)``
    True (the same text or tokens) -> ``"identical"``.
    """
    live = [i for i, s in enumerate(scores) if s is not None and math.isfinite(float(s))
            and (usable is None or usable[i])]
    if len(live) < 2:
        return "unparsable"
    best = max(float(scores[i]) for i in live)
    worst = min(float(scores[i]) for i in live)
    if best == worst:
        return "tie"
    c = min((i for i in live if float(scores[i]) == best), key=lambda i: (chosen_rank(i) if chosen_rank else 0, i))
    r = min((i for i in live if float(scores[i]) == worst),
            key=lambda i: (rejected_rank(i) if rejected_rank else 0, i))
    if same is not None and same(c, r):
        return "identical"
    return c, r


def pick_pairs(scores: Sequence[float | None], k: int, *, usable: Sequence[bool] | None = None,
               chosen_rank: Callable[[int], Any] | None = None, rejected_rank: Callable[[int], Any] | None = None,
               min_margin: float = 0.0) -> list[tuple[int, int]]:
    """Up to ``k`` disjoint ``(chosen, rejected)`` pairs from one prompt's candidates: the j-th best
    against the j-th worst, for j = 0, 1, ... while the j-th best scores more than ``min_margin`` above
    the j-th worst. No candidate is in two pairs. Ordering among equal scores as in :func:`pick_pair`
    (so ``k = 1`` with ``min_margin = 0`` gives :func:`pick_pair`'s pair, when it gives one).
    """
    live = [i for i, s in enumerate(scores) if s is not None and math.isfinite(float(s))
            and (usable is None or usable[i])]
    best = sorted(live, key=lambda i: (-float(scores[i]), chosen_rank(i) if chosen_rank else 0, i))
    worst = sorted(live, key=lambda i: (float(scores[i]), rejected_rank(i) if rejected_rank else 0, i))
    pairs: list[tuple[int, int]] = []
    used: set[int] = set()
    for c, r in zip(best, worst):
        if len(pairs) >= k or c in used or r in used or c == r:
            break
        if not float(scores[c]) - float(scores[r]) > min_margin:
            break
        pairs.append((c, r))
        used.update((c, r))
    return pairs
