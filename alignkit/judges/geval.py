"""G-Eval style probability-weighted scoring (Liu et al. 2023, "G-Eval: NLG Evaluation using GPT-4 with
Better Human Alignment").

The judge reads criteria and evaluation steps, and is asked for a 1-5 score only. Instead of taking the
score it writes, the score is the expectation under the judge's own distribution over the score
tokens right after ``"Score:"``: ``sum_v v * p(v)``, with ``p`` renormalised over the values
``low..high``. That turns a handful of integer levels into a continuous score and breaks the ties a
small judge produces all the time.

Local judges (:class:`~alignkit.judges.LocalBackend`, and a :class:`~alignkit.judges.CallableBackend`
given ``probabilities=``) supply the distribution through ``score_probabilities``. Backends without it
(an HTTP endpoint) fall back to what the G-Eval paper did with GPT-4: sample ``judge_samples`` replies
and average the parsed scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from alignkit.judges.backends import JudgeError, content_seed
from alignkit.judges.core import JudgeScore, _check_lengths, init_pointwise
from alignkit.judges.parsing import parse_score
from alignkit.judges.prompts import ANSWER_BLOCK, pointwise_prompt

__all__ = ["GEVAL_TEMPLATE", "GEvalJudge", "expected_score"]

GEVAL_TEMPLATE = """\
You will be shown a user's request to an AI assistant and the assistant's answer. Rate the answer's \
overall quality on a scale from 1 (worst) to 5 (best).

Criteria: the answer does what the request asks, including every explicit instruction about its form \
(length, format, words to use or avoid, case, punctuation), is correct, and is clear.

Evaluation steps:
1. Read the request and list, to yourself, each thing it asks for, including instructions about form.
2. Read the answer and check each item: is it done, and done correctly?
3. Judge the clarity and correctness of the content.
4. Give 5 when everything is done well, 1 when the answer ignores the request, and a level in between \
for partial success.

""" + ANSWER_BLOCK + """
Reply with the score only, as "Score: N" with N from 1 to 5."""


def expected_score(probs: dict[int, float]) -> float:
    """``sum_v v * p(v)`` with ``p`` renormalised to sum to 1 (negative weights count as 0)."""
    weights = {int(v): max(0.0, float(p)) for v, p in probs.items()}
    total = sum(weights.values())
    if total <= 0:
        raise ValueError("score probabilities sum to 0")
    return sum(v * w for v, w in weights.items()) / total


def _fmt_probs(probs: dict[int, float]) -> str:
    return " ".join(f"p({v})={p:.3f}" for v, p in sorted(probs.items()))


class GEvalJudge:
    """G-Eval pointwise judge: ``score`` = the expected value of the judge's score-token distribution.

    ``raw`` holds a line ``[g-eval] p(1)=... p(5)=... -> E`` per item; ``last_probs`` the distributions of
    the latest call. With a backend that has no ``score_probabilities`` (or returns None for an item,
    e.g. a tokenizer that cannot spell every value as one token) the item is judged by sampling
    ``judge_samples`` replies and averaging their parsed ``Score: N`` lines (``stats["sampled"]``).
    """

    def __init__(self, backend: Any, *, judge_samples: int = 3, seed: int = 0, name: str | None = None,
                 template: str = GEVAL_TEMPLATE, low: int = 1, high: int = 5, max_chars: int = 6000) -> None:
        init_pointwise(self, backend, judge_samples=judge_samples, seed=seed, template=template, low=low,
                       high=high, max_chars=max_chars)
        if high <= low:
            raise JudgeError(f"G-Eval needs low < high, got {low}..{high}")
        self.name = name or f"geval_{getattr(backend, 'name', 'llm')}"
        self.last_probs: list[dict[int, float] | None] = []
        self.stats = {"items": 0, "weighted": 0, "sampled": 0, "unparsable": 0}

    def prompts_for(self, prompts: Sequence[Any], completions: Sequence[Any]) -> list[str]:
        return [pointwise_prompt(p, c, self.template, self.max_chars) for p, c in zip(prompts, completions)]

    def score(self, prompts: list, completions: list, **columns: Any) -> list[JudgeScore]:
        _check_lengths("judge.score", prompts, completions)
        if not prompts:
            return []
        texts = self.prompts_for(prompts, completions)
        hook = getattr(self.backend, "score_probabilities", None)
        probs = hook(texts, [""] * len(texts), self.low, self.high) if hook else [None] * len(texts)
        self.last_probs = list(probs)
        out: list[JudgeScore | None] = [None] * len(texts)
        for i, p in enumerate(probs):
            if p is not None:
                e = expected_score(p)
                out[i] = JudgeScore(score=e, samples=[e], raw=[f"[g-eval] {_fmt_probs(p)} -> {e:.4f}"])
                self.stats["weighted"] += 1
        missing = [i for i, s in enumerate(out) if s is None]
        if missing:
            asked = [texts[i] for i in missing]
            replies = self.backend.complete(asked, self.judge_samples, content_seed(self.seed, asked, "geval"))
            for i, raw in zip(missing, replies):
                parsed = [parse_score(r, self.low, self.high) for r in raw]
                self.stats["unparsable"] += sum(v is None for v in parsed)
                out[i] = JudgeScore.from_samples(parsed, raw)
                self.stats["sampled"] += 1
        self.stats["items"] += len(texts)
        return [s for s in out if s is not None]

    def __repr__(self) -> str:
        return f"GEvalJudge({self.name}, {self.low}..{self.high})"
