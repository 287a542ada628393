"""The bridge to :mod:`alignkit.judges` (imported lazily, only when a judge is actually needed).

The judges package provides ``load_judge`` (pointwise, 0-5 additive rubric, ``JudgeScore`` results),
``load_pairwise_judge`` ("A" | "B" | "tie" verdicts, position-swapped) and ``parse_score``. The
builders and the self-rewarding loop call the functions below, which tests replace with deterministic
stub judges (anything with ``name`` and ``score(prompts, completions) -> list[JudgeScore-like]`` or
``compare(prompts, answers_a, answers_b) -> list[str]``).
"""

from __future__ import annotations

from typing import Any

from alignkit.config import ConfigError


def load_pointwise(spec: str, *, policy: Any = None, tokenizer: Any = None, judge_samples: int = 3,
                   temperature: float = 0.7, max_new_tokens: int = 256, seed: int = 0,
                   force_score: bool = False) -> Any:
    """A pointwise judge for ``spec`` (``self`` = ``policy``, a model path, or an http(s) URL).
    ``force_score`` (local judges): a sample without a ``Score: N`` line gets the judge's most likely
    score token after ``Score:`` (see ``alignkit.judges.LLMJudge``)."""
    try:
        from alignkit.scoring import load_judge
    except ImportError as e:  # pragma: no cover - the judges package ships with alignkit
        raise ConfigError(f"LLM judges are not available in this installation: {e}") from None
    extra = {"force_score": True} if force_score else {}
    return load_judge(spec, policy=policy, tokenizer=tokenizer, judge_samples=judge_samples,
                      temperature=temperature, max_new_tokens=max_new_tokens, seed=seed, **extra)


def load_pairwise(spec: str, *, policy: Any = None, tokenizer: Any = None, temperature: float = 0.7,
                  max_new_tokens: int = 256, seed: int = 0) -> Any:
    """A pairwise (A vs B) judge for ``spec``."""
    try:
        from alignkit.scoring import load_pairwise_judge
    except ImportError as e:  # pragma: no cover
        raise ConfigError(f"LLM judges are not available in this installation: {e}") from None
    return load_pairwise_judge(spec, policy=policy, tokenizer=tokenizer, temperature=temperature,
                               max_new_tokens=max_new_tokens, seed=seed)


def parse_score(text: str, low: float = 0, high: float = 5) -> float | None:
    """``alignkit.judges.parse_score``: the score of a final ``Score: N`` line, None when unparsable."""
    from alignkit.judges import parse_score as judges_parse_score

    return judges_parse_score(text, low=low, high=high)


def check_scores(judge: Any, scores: list, expected: int) -> list:
    """A judge must return one result per completion."""
    if not isinstance(scores, list) or len(scores) != expected:
        got = len(scores) if isinstance(scores, list) else type(scores).__name__
        raise ConfigError(f"judge {getattr(judge, 'name', judge)!r} returned {got} scores for {expected} completions")
    return scores


def judge_candidates(judge: Any, prompts: list, candidates: list[list[str]]) -> list[list[dict]]:
    """Score every non-empty candidate with a pointwise judge (one batched ``score`` call).

    Returns, per prompt and candidate, ``{"score": float | None, "samples": [...], "raw": [...]}``; an
    empty candidate is not sent to the judge and gets ``score=None``.
    """
    flat_p, flat_c, where = [], [], []
    for i, (p, cands) in enumerate(zip(prompts, candidates)):
        for j, c in enumerate(cands):
            if c.strip():
                flat_p.append(p)
                flat_c.append(c)
                where.append((i, j))
    out = [[{"score": None, "samples": [], "raw": []} for _ in cands] for cands in candidates]
    if not flat_c:
        return out
    scores = check_scores(judge, list(judge.score(flat_p, flat_c)), len(flat_c))
    for (i, j), s in zip(where, scores):
        value = getattr(s, "score", None)
        out[i][j] = {"score": None if value is None else float(value),
                     "samples": [None if v is None else float(v) for v in getattr(s, "samples", [])],
                     "raw": [str(r) for r in getattr(s, "raw", [])]}
    return out


VERDICTS = ("A", "B", "tie")


def pairwise_wins(judge: Any, prompts: list, candidates: list[list[str]]) -> list[list[float | None]]:
    """Round-robin a pairwise judge over each prompt's non-empty candidates (one batched ``compare``
    call): a win counts 1, a tie 0.5 for each side. Empty candidates get ``None``."""
    flat_p, a, b, where = [], [], [], []
    for i, (p, cands) in enumerate(zip(prompts, candidates)):
        idx = [j for j, c in enumerate(cands) if c.strip()]
        for x in range(len(idx)):
            for y in range(x + 1, len(idx)):
                flat_p.append(p)
                a.append(cands[idx[x]])
                b.append(cands[idx[y]])
                where.append((i, idx[x], idx[y]))
    wins: list[list[float | None]] = [[0.0 if c.strip() else None for c in cands] for cands in candidates]
    if not where:
        return wins
    verdicts = list(judge.compare(flat_p, a, b))
    if len(verdicts) != len(where):
        raise ConfigError(f"pairwise judge {getattr(judge, 'name', judge)!r} returned {len(verdicts)} verdicts "
                          f"for {len(where)} comparisons")
    for (i, x, y), v in zip(where, verdicts):
        if v not in VERDICTS:
            raise ConfigError(f"pairwise judge {getattr(judge, 'name', judge)!r} returned {v!r}; expected one "
                              "of 'A', 'B', 'tie'")
        if v == "A":
            wins[i][x] += 1.0
        elif v == "B":
            wins[i][y] += 1.0
        else:
            wins[i][x] += 0.5
            wins[i][y] += 0.5
    return wins
