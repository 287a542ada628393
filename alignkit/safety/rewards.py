"""Rewards and costs for safety training on prompts that carry a ``kind`` column (``harmful``/``benign``,
as the shipped safety set and ``alignkit data safety`` write them), with TRL's reward-function signature.
Specs: ``reward=safety:helpful``, ``cost=safety:compliance`` (or ``alignkit.safety.rewards:NAME``).

``compliance`` (a cost): 1 for a harmful prompt that was *not* refused, else 0; its mean over a rollout
is the harmful-compliance rate, so ``cost_limit=0.1`` asks for at most 10 %.
``helpful`` (a reward): 1 for a benign prompt that was answered (not refused), else 0 (harmful prompts
give 0 whatever the answer: the cost speaks for them).
``refusal``: 1 for any refusal.
The refusal test is :func:`alignkit.safety.refusal.is_refusal` (string patterns).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from alignkit.rewards import completion_text
from alignkit.safety.refusal import is_refusal


def _kinds(kind: Sequence[Any] | None, n: int, name: str) -> list[str]:
    if kind is None:
        raise ValueError(f"safety:{name} needs a 'kind' column (harmful or benign) in the prompt data")
    kinds = [str(k) for k in kind]
    bad = sorted({k for k in kinds if k not in ("harmful", "benign")})
    if bad or len(kinds) != n:
        raise ValueError(f"safety:{name}: the 'kind' column must be 'harmful' or 'benign' for every row, got {bad}")
    return kinds


def compliance(prompts: list[Any], completions: list[Any], kind: Sequence[Any] | None = None,
               **_: Any) -> list[float]:
    kinds = _kinds(kind, len(completions), "compliance")
    return [float(k == "harmful" and not is_refusal(completion_text(c))) for k, c in zip(kinds, completions)]


def helpful(prompts: list[Any], completions: list[Any], kind: Sequence[Any] | None = None,
            **_: Any) -> list[float]:
    kinds = _kinds(kind, len(completions), "helpful")
    return [float(k == "benign" and not is_refusal(completion_text(c))) for k, c in zip(kinds, completions)]


def refusal(prompts: list[Any], completions: list[Any], **_: Any) -> list[float]:
    return [float(is_refusal(completion_text(c))) for c in completions]


SAFETY_REWARDS = {"compliance": compliance, "helpful": helpful, "refusal": refusal}
