"""Judges: the common interface and its implementations (LLM pointwise and pairwise, reward model,
rule/function), plus the adapter that turns a pointwise judge into a reward source."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from alignkit.judges.backends import JudgeError, content_seed
from alignkit.judges.parsing import parse_score, parse_verdict
from alignkit.judges.prompts import PAIRWISE_TEMPLATE, POINTWISE_TEMPLATE, pairwise_prompt, pointwise_prompt

__all__ = [
    "FORCED_MARK",
    "is_forced",
    "JudgeScore",
    "PointwiseJudge",
    "PairwiseJudge",
    "LLMJudge",
    "PairwiseLLMJudge",
    "RewardModelJudge",
    "FunctionJudge",
    "ScorePairwiseJudge",
    "JudgeReward",
    "judge_reward",
]


#: marks a sample whose score was read from the judge's next-token choice after "Score:" (``force_score``)
FORCED_MARK = "[score forced]"


def is_forced(raw: str) -> bool:
    """Whether a judge output's score was forced (see :class:`LLMJudge`'s ``force_score``)."""
    return FORCED_MARK in raw


@dataclass
class JudgeScore:
    """One prompt/answer judged ``judge_samples`` times: ``samples`` holds each sample's parsed score
    (``None`` where the output had no valid score), ``raw`` the judge's raw outputs, and ``score`` the
    mean of the parsable samples (``None`` if none parsed)."""

    score: float | None
    samples: list[float | None] = field(default_factory=list)
    raw: list[str] = field(default_factory=list)

    @property
    def parsed(self) -> int:
        """How many samples gave a valid score."""
        return sum(s is not None for s in self.samples)

    @classmethod
    def from_samples(cls, samples: Sequence[float | None], raw: Sequence[str]) -> JudgeScore:
        ok = [float(s) for s in samples if s is not None]
        return cls(score=sum(ok) / len(ok) if ok else None, samples=list(samples), raw=list(raw))

    @classmethod
    def exact(cls, value: float) -> JudgeScore:
        """A deterministic score (reward model, rule): one sample, no text."""
        return cls(score=float(value), samples=[float(value)], raw=[""])


@runtime_checkable
class PointwiseJudge(Protocol):
    """Scores each (prompt, completion) on its own."""

    name: str

    def score(self, prompts: list, completions: list) -> list[JudgeScore]: ...


@runtime_checkable
class PairwiseJudge(Protocol):
    """Says which of two answers to the same prompt is better: ``"A"``, ``"B"`` or ``"tie"`` each."""

    name: str

    def compare(self, prompts: list, answers_a: list, answers_b: list) -> list[str]: ...


def _check_lengths(what: str, *lists: Sequence[Any]) -> None:
    n = len(lists[0])
    if any(len(x) != n for x in lists):
        raise ValueError(f"{what}: {', '.join(str(len(x)) for x in lists)} items; the lists must be equally long")


def init_pointwise(judge: Any, backend: Any, *, judge_samples: int, seed: int, template: str, low: int, high: int,
                   max_chars: int) -> None:
    """Check and set what every sampled pointwise judge holds (backend, samples, seed, template with
    ``{request}`` and ``{answer}``, score range, prompt length limit)."""
    if judge_samples < 1:
        raise JudgeError(f"judge_samples must be at least 1, got {judge_samples}")
    for key in ("{request}", "{answer}"):
        if key not in template:
            raise JudgeError(f"a pointwise judge template must contain {key}")
    judge.backend = backend
    judge.judge_samples = int(judge_samples)
    judge.seed = int(seed)
    judge.template = template
    judge.low, judge.high = int(low), int(high)
    judge.max_chars = max_chars


class LLMJudge:
    """LLM-as-a-judge on the additive 0-5 rubric (:data:`~alignkit.judges.prompts.POINTWISE_TEMPLATE`).

    Each (prompt, completion) is rendered into the template and sent ``judge_samples`` times to the
    ``backend`` (sampled at the backend's temperature); each reply's final ``Score: N`` line is parsed
    with :func:`~alignkit.judges.parse_score` and the parsable samples are averaged. Sampling is seeded
    from ``seed`` and the judged texts (the same inputs are judged the same way, whatever the order of
    calls, which keeps resumed runs exact). ``stats`` counts samples, parse failures and forced scores
    over the judge's lifetime.

    ``force_score`` (local models only; off by default): a sample without a valid score line gets one
    anyway - the judge's reply is continued with ``"Score:"`` and the most likely value from ``low`` to
    ``high`` as the next token is taken (greedy, one forward). Small models that do not keep the output
    format (SmolLM2-135M as its own judge parses close to 0 %) then still give scores. Such samples'
    ``raw`` end with ``"[score forced] Score: N"`` (:func:`is_forced`).
    """

    def __init__(self, backend: Any, *, judge_samples: int = 3, seed: int = 0, name: str | None = None,
                 template: str = POINTWISE_TEMPLATE, low: int = 0, high: int = 5, max_chars: int = 6000,
                 force_score: bool = False) -> None:
        init_pointwise(self, backend, judge_samples=judge_samples, seed=seed, template=template, low=low,
                       high=high, max_chars=max_chars)
        self.name = name or f"judge_{getattr(backend, 'name', 'llm')}"
        self.force_score = bool(force_score)
        self.stats = {"samples": 0, "unparsable": 0, "forced": 0}

    def prompts_for(self, prompts: Sequence[Any], completions: Sequence[Any]) -> list[str]:
        """The judge prompts that :meth:`score` sends."""
        return [pointwise_prompt(p, c, self.template, self.max_chars) for p, c in zip(prompts, completions)]

    def score(self, prompts: list, completions: list, **columns: Any) -> list[JudgeScore]:
        _check_lengths("judge.score", prompts, completions)
        if not prompts:
            return []
        texts = self.prompts_for(prompts, completions)
        replies = self.backend.complete(texts, self.judge_samples, content_seed(self.seed, texts, "pointwise"))
        parsed = [[parse_score(r, self.low, self.high) for r in raw] for raw in replies]
        replies = [list(raw) for raw in replies]
        self.stats["samples"] += sum(len(p) for p in parsed)
        self.stats["unparsable"] += sum(v is None for p in parsed for v in p)
        if self.force_score and hasattr(self.backend, "force_scores"):
            missing = [(i, k) for i, p in enumerate(parsed) for k, v in enumerate(p) if v is None]
            if missing:
                forced = self.backend.force_scores([texts[i] for i, _ in missing],
                                                   [replies[i][k] for i, k in missing], self.low, self.high)
                for (i, k), v in zip(missing, forced):
                    if v is not None:
                        parsed[i][k] = float(v)
                        replies[i][k] = f"{replies[i][k].rstrip()}\n{FORCED_MARK} Score: {v}"
                        self.stats["forced"] += 1
        return [JudgeScore.from_samples(p, raw) for p, raw in zip(parsed, replies)]

    def __repr__(self) -> str:
        return f"LLMJudge({self.name}, samples={self.judge_samples})"


@dataclass
class PairVerdict:
    """A pairwise comparison in detail: the final ``verdict`` and the verdict of each order
    (``forward``: A shown first; ``backward``: B shown first, mapped back to the original labels)."""

    verdict: str
    forward: str | None
    backward: str | None
    raw: list[str] = field(default_factory=list)


def _majority(votes: Sequence[str | None]) -> str | None:
    counts: dict[str, int] = {}
    for v in votes:
        if v is not None:
            counts[v] = counts.get(v, 0) + 1
    if not counts:
        return None
    best = max(counts.values())
    winners = [v for v, c in counts.items() if c == best]
    return winners[0] if len(winners) == 1 else "tie"


class PairwiseLLMJudge:
    """LLM pairwise judge (:data:`~alignkit.judges.prompts.PAIRWISE_TEMPLATE`), asked in both orders.

    For each pair the judge sees (A, B) and then (B, A), ``judge_samples`` samples each; each order's
    verdict is the majority of its parsable samples (an even split is a tie). The final verdict is the
    winner only when both orders name the same answer; a verdict that flips with the order (position
    bias), a tie in either order, or an order without any parsable verdict gives ``"tie"``.
    Subclasses change the prompt (``template``) and how a reply is read (:meth:`parse`).

    ``force_verdict`` (local models only; off by default): a reply without a verdict gets one anyway -
    the reply is continued with ``"Winner:"`` (:attr:`verdict_label`) and the likelier of ``A`` / ``B``
    as the next token is taken (one forward, no sampling; its raw reply ends with
    ``"[score forced] Winner: X"``). SmolLM2-135M judging itself writes no verdict line at all.
    """

    #: salt of the sampling seed (subclasses use their own, so their samples differ)
    seed_salt = "pairwise"
    #: the label a forced verdict is read after
    verdict_label = "Winner"

    def __init__(self, backend: Any, *, judge_samples: int = 1, seed: int = 0, name: str | None = None,
                 template: str = PAIRWISE_TEMPLATE, max_chars: int = 6000, force_verdict: bool = False) -> None:
        if judge_samples < 1:
            raise JudgeError(f"judge_samples must be at least 1, got {judge_samples}")
        for key in ("{request}", "{answer_a}", "{answer_b}"):
            if key not in template:
                raise JudgeError(f"a pairwise judge template must contain {key}")
        self.backend = backend
        self.judge_samples = int(judge_samples)
        self.seed = int(seed)
        self.template = template
        self.max_chars = max_chars
        self.name = name or f"pairwise_{getattr(backend, 'name', 'llm')}"
        self.force_verdict = bool(force_verdict)
        self.stats = {"pairs": 0, "inconsistent": 0, "unparsable": 0, "samples": 0, "forced": 0}

    def compare_detailed(self, prompts: list, answers_a: list, answers_b: list) -> list[PairVerdict]:
        _check_lengths("judge.compare", prompts, answers_a, answers_b)
        n = len(prompts)
        if n == 0:
            return []
        forward = [pairwise_prompt(p, a, b, self.template, self.max_chars)
                   for p, a, b in zip(prompts, answers_a, answers_b)]
        backward = [pairwise_prompt(p, b, a, self.template, self.max_chars)
                    for p, a, b in zip(prompts, answers_a, answers_b)]
        texts = forward + backward
        replies = [list(r) for r in
                   self.backend.complete(texts, self.judge_samples, content_seed(self.seed, texts, self.seed_salt))]
        votes = [[self.parse(r) for r in raw] for raw in replies]
        self.stats["samples"] += sum(len(v) for v in votes)
        self.stats["unparsable"] += sum(x is None for v in votes for x in v)
        if self.force_verdict:
            force_missing_verdicts(self.backend, texts, replies, votes, self.verdict_label, self.stats)
        swap = {"A": "B", "B": "A", "tie": "tie"}
        out = []
        for i in range(n):
            f_votes, b_votes = votes[i], votes[n + i]
            f = _majority(f_votes)
            b = _majority(b_votes)
            b = swap[b] if b is not None else None
            verdict = f if (f is not None and f == b) else "tie"
            if f is not None and b is not None and f != b:
                self.stats["inconsistent"] += 1
            self.stats["pairs"] += 1
            out.append(PairVerdict(verdict=verdict, forward=f, backward=b, raw=list(replies[i]) + list(replies[n + i])))
        return out

    def parse(self, reply: str) -> str | None:
        """The verdict of one reply: ``"A"``, ``"B"``, ``"tie"`` or None."""
        return parse_verdict(reply)

    def compare(self, prompts: list, answers_a: list, answers_b: list) -> list[str]:
        return [v.verdict for v in self.compare_detailed(prompts, answers_a, answers_b)]

    def __repr__(self) -> str:
        return f"PairwiseLLMJudge({self.name}, samples={self.judge_samples})"


def force_missing_verdicts(backend: Any, texts: Sequence[str], replies: list[list[str]], votes: list[list[Any]],
                           label: str, stats: dict[str, int]) -> None:
    """Fill the ``None`` entries of ``votes`` (and mark their ``replies``) with the backend's likelier of
    ``A``/``B`` after ``"{label}:"`` (``backend.force_choices``; a backend without it forces nothing)."""
    if not hasattr(backend, "force_choices"):
        return
    missing = [(i, k) for i, v in enumerate(votes) for k, x in enumerate(v) if x is None]
    if not missing:
        return
    forced = backend.force_choices([texts[i] for i, _ in missing], [replies[i][k] for i, k in missing], label,
                                   ["A", "B"])
    for (i, k), v in zip(missing, forced):
        if v is not None:
            votes[i][k] = v
            replies[i][k] = f"{replies[i][k].rstrip()}\n{FORCED_MARK} {label}: {v}"
            stats["forced"] = stats.get("forced", 0) + 1


class RewardModelJudge:
    """A reward model trained with ``alignkit rm`` as a judge: ``scorer.score(prompts, texts)`` (one
    deterministic sample each). ``scorer`` defaults to ``load_reward_model(path)``."""

    def __init__(self, path: str, scorer: Any = None, name: str | None = None) -> None:
        from alignkit.rewards import ModelReward, RewardError

        self.path = path
        try:
            self._reward = ModelReward(path, scorer=scorer, name=name)  # loads and checks like reward=rm:PATH
        except JudgeError:
            raise
        except RewardError as e:
            raise JudgeError(str(e)) from None
        self.scorer = self._reward.scorer
        self.name = self._reward.name

    def score(self, prompts: list, completions: list, **columns: Any) -> list[JudgeScore]:
        _check_lengths("judge.score", prompts, completions)
        if not prompts:
            return []
        return [JudgeScore.exact(v) for v in self._reward(list(prompts), list(completions))]

    def __repr__(self) -> str:
        return f"RewardModelJudge({self.path})"


class FunctionJudge:
    """Rule/function rewards as a judge (``FILE.py:FUNC``, ``package.module:FUNC``, a list of them or a
    callable, loaded by :func:`alignkit.scoring.load_judge`): the score is the rewards' weighted total.
    ``rewards``: a :class:`~alignkit.rewards.RewardSet`, or one callable
    ``f(prompts, completions, **columns) -> list[float]``."""

    def __init__(self, rewards: Any, name: str | None = None) -> None:
        from alignkit.rewards import FunctionReward, RewardSet

        self.rewards = rewards if isinstance(rewards, RewardSet) else RewardSet([FunctionReward(rewards)])
        self.name = name or "+".join(self.rewards.names)

    def score(self, prompts: list, completions: list, **columns: Any) -> list[JudgeScore]:
        _check_lengths("judge.score", prompts, completions)
        if not prompts:
            return []
        total, _ = self.rewards(list(prompts), list(completions), columns or None)
        return [JudgeScore.exact(v) for v in total.tolist()]

    def __repr__(self) -> str:
        return f"FunctionJudge({self.rewards!r})"


class ScorePairwiseJudge:
    """Pairwise verdicts from a pointwise judge: the higher score wins; equal scores, or a side without a
    score, give ``"tie"`` (position plays no part, so no swapping is needed)."""

    def __init__(self, judge: PointwiseJudge, name: str | None = None) -> None:
        self.judge = judge
        self.name = name or f"pairwise_{judge.name}"

    def compare(self, prompts: list, answers_a: list, answers_b: list) -> list[str]:
        _check_lengths("judge.compare", prompts, answers_a, answers_b)
        n = len(prompts)
        if n == 0:
            return []
        scores = self.judge.score(list(prompts) + list(prompts), list(answers_a) + list(answers_b))
        out = []
        for a, b in zip(scores[:n], scores[n:]):
            if a.score is None or b.score is None or a.score == b.score:
                out.append("tie")
            else:
                out.append("A" if a.score > b.score else "B")
        return out


class JudgeReward:
    """A pointwise judge as a reward source (:class:`alignkit.rewards.RewardSource`): the reward of a
    completion is its judged score, or ``unparsable`` where no sample gave a valid score. ``last`` holds
    the :class:`JudgeScore` objects of the latest call and ``stats`` counts completions and unparsable
    ones over all calls."""

    def __init__(self, judge: PointwiseJudge, unparsable: float = 0.0, name: str | None = None) -> None:
        self.judge = judge
        self.unparsable = float(unparsable)
        self.name = name or judge.name
        self.last: list[JudgeScore] = []
        self.stats = {"completions": 0, "unparsable": 0}

    def __call__(self, prompts: list, completions: list, **columns: Any) -> list[float]:
        if columns and isinstance(self.judge, FunctionJudge):  # rule judges may read dataset columns
            scores = self.judge.score(list(prompts), list(completions), **columns)
        else:
            scores = self.judge.score(list(prompts), list(completions))
        self.last = scores
        self.stats["completions"] += len(scores)
        self.stats["unparsable"] += sum(s.score is None for s in scores)
        return [self.unparsable if s.score is None else float(s.score) for s in scores]

    def bind_policy(self, model: Any, tokenizer: Any) -> None:
        """Hand the policy to a ``judge:self`` judge (no-op for other judges)."""
        backend = getattr(self.judge, "backend", None)
        if backend is not None and getattr(backend, "is_policy", False):
            backend.bind(model, tokenizer)

    def __repr__(self) -> str:
        return f"JudgeReward({self.judge!r})"


def judge_reward(judge: PointwiseJudge, unparsable: float = 0.0) -> JudgeReward:
    """A pointwise judge as a reward source ``(prompts, completions, **columns) -> list[float]`` with a
    ``.name``; completions without a parsable score get ``unparsable``."""
    return JudgeReward(judge, unparsable)
