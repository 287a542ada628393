"""Format rewards: checkable properties of the answer's shape, no model needed.

Use as ``reward=format.py:word_limit`` (the bare file name finds this shipped file) or
``reward=alignkit.assets.rewards.format:word_limit``. Optional dataset columns tune them per prompt.
"""

from __future__ import annotations

import re

from alignkit.rewards import completion_text

DEFAULT_MAX_WORDS = 20
DEFAULT_PHRASE = "Done."


def _per_row(values, n: int, default):
    if values is None:
        return [default] * n
    return [default if v is None else v for v in values]


def word_limit(prompts, completions, max_words=None, **kwargs) -> list[float]:
    """1.0 for a non-empty answer of at most ``max_words`` words (column ``max_words``, default 20);
    a longer answer scores ``max_words / words`` (so shortening always helps); an empty one 0.0."""
    limits = _per_row(max_words, len(completions), DEFAULT_MAX_WORDS)
    scores = []
    for c, limit in zip(completions, limits):
        n = len(completion_text(c).split())
        limit = max(1, int(limit))
        scores.append(0.0 if n == 0 else (1.0 if n <= limit else limit / n))
    return scores


def ends_with_phrase(prompts, completions, phrase=None, **kwargs) -> list[float]:
    """1.0 when the answer ends with ``phrase`` (column ``phrase``, default "Done."; trailing spaces
    ignored), else 0.0."""
    phrases = _per_row(phrase, len(completions), DEFAULT_PHRASE)
    return [1.0 if completion_text(c).rstrip().endswith(str(p)) else 0.0 for c, p in zip(completions, phrases)]


def one_sentence(prompts, completions, **kwargs) -> list[float]:
    """1.0 for a non-empty answer that is a single sentence (at most one sentence-ending mark, and only
    at the end, no line breaks), else 0.0."""
    out = []
    for c in completions:
        t = completion_text(c).strip()
        marks = re.findall(r"[.!?](?:\s|$)", t + " ")
        out.append(1.0 if t and "\n" not in t and len(marks) <= 1 else 0.0)
    return out
