"""Token- and character-level rewards (useful for quick learning checks on small or random models).

``reward=tokens.py:even_token_fraction`` (or ``alignkit.assets.rewards.tokens:even_token_fraction``).
"""

from __future__ import annotations

from alignkit.rewards import completion_text

DEFAULT_CHAR = "e"


def even_token_fraction(prompts, completions, completion_ids=None, **kwargs) -> list[float]:
    """Fraction of generated token ids that are even (EOS included when generated). Under a
    near-uniform random policy this is about 0.5 with real spread between completions, so it is a
    good learning signal for tests on ``tiny-random``."""
    if completion_ids is None:
        raise ValueError("even_token_fraction needs the completion_ids keyword (alignkit passes it)")
    return [sum(1 for t in ids if t % 2 == 0) / len(ids) if ids else 0.0 for ids in completion_ids]


def token_fraction(prompts, completions, completion_ids=None, token_id=None, **kwargs) -> list[float]:
    """Fraction of generated tokens equal to ``token_id`` (a dataset column, one id per prompt)."""
    if completion_ids is None or token_id is None:
        raise ValueError("token_fraction needs completion_ids and a 'token_id' column in the data")
    return [sum(1 for t in ids if t == int(tok)) / len(ids) if ids else 0.0
            for ids, tok in zip(completion_ids, token_id)]


def char_fraction(prompts, completions, char=None, **kwargs) -> list[float]:
    """Fraction of the answer's non-space characters equal to ``char`` (column ``char``, default "e",
    case-insensitive)."""
    chars = [DEFAULT_CHAR] * len(completions) if char is None else [c or DEFAULT_CHAR for c in char]
    out = []
    for c, ch in zip(completions, chars):
        t = "".join(completion_text(c).lower().split())
        out.append(t.count(str(ch).lower()) / len(t) if t else 0.0)
    return out
