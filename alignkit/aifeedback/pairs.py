"""Best-versus-worst preference pairs from judged candidates, and the statistics the loop reports.

For one prompt's candidates with scores (``None`` = unparsable or not judged), :func:`select_pair`
applies the one pairing rule (:func:`alignkit.data.pairs.pick_pair`): fewer than two scored candidates
-> ``unparsable``; highest equal to lowest -> ``tie``; the first best and the first worst with the same
text -> ``identical``; else the pair (chosen, rejected).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

from alignkit.data.pairs import PAIR_DROPS, pick_pair
from alignkit.data.render import as_user_turn, conversational_row


def select_pair(completions: Sequence[str], scores: Sequence[float | None]) -> tuple[int, int] | str:
    """``(chosen_index, rejected_index)``, or the reason the prompt yields no pair."""
    return pick_pair(scores, same=lambda c, r: completions[c].strip() == completions[r].strip())


def as_chat(prompt: Any, completion: str, chat_template: str = "auto") -> tuple[Any, Any]:
    """A (prompt, completion) in the form DPO/SFT train on exactly as it was generated: chat messages
    (a string prompt becomes one user message) unless ``chat_template == "never"``."""
    if chat_template == "never":
        return prompt, completion
    return conversational_row(as_user_turn(prompt), completion)


def histogram(scores: Sequence[float | None], low: int = 0, high: int = 5) -> dict[str, int]:
    """Counts of scores rounded to the nearest integer (halves up), plus ``unparsable``."""
    hist = {str(v): 0 for v in range(low, high + 1)}
    hist["unparsable"] = 0
    for s in scores:
        if s is None or not math.isfinite(float(s)):
            hist["unparsable"] += 1
            continue
        key = str(min(high, max(low, int(math.floor(float(s) + 0.5)))))
        hist[key] += 1
    return hist


def mean(values: Sequence[float | None]) -> float | None:
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    return sum(vals) / len(vals) if vals else None


FORCED_MARK = "[score forced]"  # alignkit.judges.FORCED_MARK: the score was read after "Score:", not written


def parse_rate(samples: Sequence[Sequence[float | None]], raw: Sequence[Sequence[str]] | None = None) -> float | None:
    """Fraction of individual judge samples that gave a score (a forced score, marked in ``raw``, does
    not count as parsed)."""
    flat = [s for row in samples for s in row]
    if not flat:
        return None
    forced = forced_count(raw) if raw is not None else 0
    return (sum(s is not None for s in flat) - forced) / len(flat)


def forced_count(raw: Sequence[Sequence[str]]) -> int:
    return sum(FORCED_MARK in r for row in raw for r in row)


def forced_rate(samples: Sequence[Sequence[float | None]], raw: Sequence[Sequence[str]]) -> float | None:
    n = sum(len(row) for row in samples)
    return forced_count(raw) / n if n else None


def drop_counts(reasons: Sequence[str]) -> dict[str, int]:
    c = Counter(reasons)
    return {r: c.get(r, 0) for r in PAIR_DROPS}
