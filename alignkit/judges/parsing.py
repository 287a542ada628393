"""Reading a judge's verdict out of its free-form output, robustly and without ever raising.

Pointwise (:func:`parse_score`): the judge ends with a line ``Score: N``. Accepted spellings of that
line (case-insensitive): ``Score: 4``, ``score:4``, ``SCORE = 4``, ``**Score:** 4``, ``Final score: 4``,
``Total score is 4``, ``Score: 4/5``, ``Score: 4 out of 5``, ``Score: 4.`` and ``Score: 4 - solid answer``
(text after the number is ignored), ``Score: four``. Decimal scores in range (``Score: 3.5``) are kept
as they are.

Rules, in order:

1. Score *lines* (a line that begins with the score label, after markdown decoration such as ``#``,
   ``*``, ``>`` or ``-``) are collected. When there are none, ``score: N`` written anywhere inside a
   sentence is used instead.
2. No score found -> ``None``.
3. Several score statements that disagree (``Score: 3`` ... ``Score: 4``) -> ``None``: the judge
   contradicted itself. Repeating the same value is fine.
4. A value outside ``[low, high]`` (``Score: 7``, ``Score: -1``) or a fraction whose denominator is not
   ``high`` (``Score: 8/10`` on a 0-5 scale) -> ``None``.

Pairwise (:func:`parse_verdict`): the final ``Winner: A`` / ``Winner: B`` / ``Winner: tie`` line
(also ``Better: A``, ``Verdict: Answer B``, ``Winner: [[A]]``, ``Winner: none``/``neither``/``equal``
for a tie), with the same collection and disagreement rules.
"""

from __future__ import annotations

import math
import re

__all__ = ["parse_score", "parse_verdict"]

_WORDS = {"zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
          "eight": 8, "nine": 9, "ten": 10}
_NUMBER = r"([+-]?\s?(?:\d+(?:\.\d+)?|\.\d+)|(?:" + "|".join(_WORDS) + r")\b)"
_DENOM = r"(?:\s*(?:/|out\s+of|of)\s*(\d+(?:\.\d+)?))?"
_LABEL = r"(?:(?:final|total|overall)\s+)?score(?:\s*\([^()\n]{0,20}\))?"
_SEP = r"\W{0,4}?(?:\s*(?::|=|is|of)\s*)[\s*_`\"'\[\(]*"

# a line that starts with the label: markdown decoration, the label, a separator, the number
_LINE_RE = re.compile(r"^[\s#>*_`\-|]*" + _LABEL + r"[\s*_`]*" + _SEP + _NUMBER + _DENOM + r"(?![\d.]*\d)",
                      re.IGNORECASE)
# anywhere in a sentence, but the label must be followed directly by ':' or '='
_INLINE_RE = re.compile(r"\b" + _LABEL + r"[\s*_`]*[:=][\s*_`\"'\[\(]*" + _NUMBER + _DENOM + r"(?![\d.]*\d)",
                        re.IGNORECASE)


def _to_number(token: str) -> float | None:
    token = token.replace(" ", "").lower()
    if token in _WORDS:
        return float(_WORDS[token])
    try:
        value = float(token)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _score_values(text: str) -> list[tuple[float | None, str | None]]:
    found = []
    for line in text.splitlines():
        m = _LINE_RE.match(line)
        if m:
            found.append((_to_number(m.group(1)), m.group(2)))
    if not found:
        found = [(_to_number(m.group(1)), m.group(2)) for m in _INLINE_RE.finditer(text)]
    return found


def parse_score(text: str, low: int = 0, high: int = 5) -> float | None:
    """The judge's final score in ``text`` (see the module docstring), or ``None`` when there is no
    score, the judge gave several different scores, or the score is out of ``[low, high]``. Never
    raises: anything that is not a string gives ``None``."""
    try:
        if not isinstance(text, str) or not text.strip():
            return None
        found = _score_values(text)
        if not found:
            return None
        values = set()
        for value, denom in found:
            if value is None:
                return None
            if denom is not None:
                d = _to_number(denom)
                if d is None or d != float(high):
                    return None
            values.add(value)
        if len(values) != 1:
            return None
        value = values.pop()
        if not (low <= value <= high):
            return None
        return float(value)
    except Exception:  # noqa: BLE001 - a parser of model output must never crash a run
        return None


_VERDICT_LABEL = r"(?:(?:final|overall)\s+)?(?:winner|verdict|better(?:\s+answer)?|preferred(?:\s+answer)?|choice)"
_VERDICT_VALUE = (r"[\s*_`\"'\[\(]*(?:answer\s+|response\s+|assistant\s+)?"
                  r"(a|b|tie|draw|none|neither|equal|both)\b")
_VERDICT_LINE_RE = re.compile(r"^[\s#>*_`\-|]*" + _VERDICT_LABEL + r"[\s*_`]*(?::|=|is)" + _VERDICT_VALUE,
                              re.IGNORECASE)
_VERDICT_INLINE_RE = re.compile(r"\b" + _VERDICT_LABEL + r"[\s*_`]*[:=]" + _VERDICT_VALUE, re.IGNORECASE)
_TIES = {"tie", "draw", "none", "neither", "equal", "both"}


def parse_verdict(text: str) -> str | None:
    """``"A"``, ``"B"`` or ``"tie"`` from a pairwise judge's final ``Winner: X`` line; ``None`` when there
    is none or the judge named different winners. Never raises."""
    try:
        if not isinstance(text, str) or not text.strip():
            return None
        found = [m.group(1) for line in text.splitlines() if (m := _VERDICT_LINE_RE.match(line))]
        if not found:
            found = [m.group(1) for m in _VERDICT_INLINE_RE.finditer(text)]
        verdicts = {"tie" if v.lower() in _TIES else v.upper() for v in found}
        return verdicts.pop() if len(verdicts) == 1 else None
    except Exception:  # noqa: BLE001
        return None
