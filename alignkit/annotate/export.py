"""Judgements -> SPEC preference rows ``{"prompt", "chosen", "rejected"}`` by majority vote.

Every judgement of a task is read as a vote on a pair of its candidates (i, j): the winner's index,
``"tie"`` or ``"both_bad"`` (skips are no votes). A pairwise task has one pair, (0, 1). A ranking task
gives either its best-against-worst pair (``ranking_pairs="best-worst"``: best and worst by Borda
score over the rankings) or every pair (``"all"``). A pair becomes a row when its majority label (a
unique plurality) is a winner whose share of the votes is at least ``min_agreement``; a tie majority
is dropped or, with ``ties="keep"``, written with ``"tie": true``. Rows keep the prompt and answers in
the form they were stored (chat messages stay messages), so ``alignkit dpo``/``rm``/``kto`` train on
exactly the judged text.
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from collections.abc import Hashable, Iterable
from typing import Any

from alignkit.annotate.agreement import borda, majority


def pair_vote(judgement: dict[str, Any], i: int, j: int) -> Hashable | None:
    """One judgement's vote on candidates (i, j): the winner's index, ``"tie"``, ``"both_bad"``, or None
    (a skip, or a pairwise verdict on another pair)."""
    choice = judgement["choice"]
    if choice in ("tie", "both_bad"):
        return choice
    if choice in ("A", "B"):
        if {i, j} != {0, 1}:
            return None
        return 0 if choice == "A" else 1
    if choice == "rank":
        ranking = judgement["ranking"]
        return i if ranking.index(i) < ranking.index(j) else j
    return None


def task_pairs(judged: list[dict[str, Any]], n: int, ranking_pairs: str = "best-worst") -> list[tuple[int, int]]:
    """The candidate pairs of a task that become rows (see the module docstring)."""
    if n == 2:
        return [(0, 1)]
    if ranking_pairs == "all":
        return list(itertools.combinations(range(n), 2))
    scores = borda([j["ranking"] for j in judged if j["choice"] == "rank"], n)
    best = max(range(n), key=lambda c: (scores[c], -c))
    worst = min(range(n), key=lambda c: (scores[c], -c))
    if scores[best] == scores[worst]:
        return []
    return [(best, worst)]


def preference_rows(judgements: Iterable[dict[str, Any]], min_agreement: float = 0.0, ties: str = "drop",
                    ranking_pairs: str = "best-worst") -> tuple[list[dict[str, Any]], dict[str, int]]:
    """(rows, counts) from judgements (dicts with ``task_id``, ``prompt``, ``candidates``, ``choice``,
    ``ranking``, as :meth:`~alignkit.annotate.db.Store.iter_judgements` yields them). ``counts`` says how
    many pairs became rows and why the others did not."""
    if ties not in ("drop", "keep"):
        raise ValueError(f"ties must be drop or keep, got {ties!r}")
    if ranking_pairs not in ("best-worst", "all"):
        raise ValueError(f"ranking_pairs must be best-worst or all, got {ranking_pairs!r}")
    by_task: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for j in judgements:
        by_task[j["task_id"]].append(j)
    rows: list[dict[str, Any]] = []
    counts: Counter = Counter()
    for task_id in sorted(by_task):
        judged = by_task[task_id]
        task = judged[0]
        n = len(task["candidates"])
        pairs = task_pairs(judged, n, ranking_pairs)
        if not pairs and any(j["choice"] == "rank" for j in judged):
            counts["dropped_no_majority"] += 1
        for i, k in pairs:
            votes = [v for v in (pair_vote(j, i, k) for j in judged) if v is not None]
            if not votes:
                counts["skipped_only"] += 1
                continue
            label, share = majority(votes)
            if label is None:
                counts["dropped_no_majority"] += 1
            elif label == "both_bad":
                counts["dropped_both_bad"] += 1
            elif share < min_agreement:
                counts["dropped_low_agreement"] += 1
            elif label == "tie":
                if ties == "keep":
                    rows.append(_row(task, i, k, share, len(votes), tie=True))
                counts["kept_tie" if ties == "keep" else "dropped_tie"] += 1
            else:
                loser = k if label == i else i
                rows.append(_row(task, int(label), loser, share, len(votes), tie=False if ties == "keep" else None))
                counts["rows"] += 1
    counts["tasks"] = len(by_task)
    return rows, dict(counts)


def _row(task: dict[str, Any], chosen: int, rejected: int, share: float, votes: int,
         tie: bool | None) -> dict[str, Any]:
    cands = task["candidates"]
    row = {"prompt": task["prompt"], "chosen": cands[chosen], "rejected": cands[rejected],
           "agreement": round(share, 4), "votes": votes, "task_id": task["task_id"]}
    if tie is not None:
        row["tie"] = tie
    return row
