"""Judges: one interface to score answers, used as rewards for online methods, for evaluation and for
building data with AI feedback.

* :class:`PointwiseJudge` — ``score(prompts, completions) -> list[JudgeScore]``. Implementations:
  :class:`LLMJudge` (an LLM on an additive 0-5 rubric, ``judge_samples`` samples averaged, final
  ``Score: N`` line parsed by :func:`parse_score`), :class:`RewardModelJudge` (``rm:PATH``) and
  :class:`FunctionJudge` (``FILE.py:FUNC``); the last two give ``score=value, samples=[value], raw=[""]``.
* :class:`PairwiseJudge` — ``compare(prompts, answers_a, answers_b) -> ["A" | "B" | "tie", ...]``.
  :class:`PairwiseLLMJudge` asks both orders and counts a verdict that flips with the order as a tie;
  :class:`ScorePairwiseJudge` compares a pointwise judge's scores.
* The judges the survey literature names: :class:`GEvalJudge` (G-Eval, the expected score over the
  judge's score-token probabilities), :class:`RubricJudge` (FLASK, one 1-5 score per named skill and an
  aggregate), :class:`CritiquePairwiseJudge` (Auto-J, critique first, then the verdict) and
  :class:`DebateJudge` (ChatEval, personas debating over rounds, then a majority vote); specs select
  them with ``?method=geval|flask|critique|debate``.
* :func:`alignkit.scoring.load_judge` / :func:`alignkit.scoring.load_pairwise_judge` build them from
  a spec (``judge:self``, ``judge:PATH_OR_NAME``, ``judge:http(s)://HOST:PORT/v1``, ``rm:PATH``,
  ``FILE.py:FUNC``): specs are parsed in :mod:`alignkit.scoring` only, this package parses none.
* :func:`judge_reward` turns a pointwise judge into a reward source; ``reward=judge:MODEL`` in the
  online methods goes through :func:`alignkit.scoring.reward_from_spec`.
"""

from alignkit.judges.backends import API_KEY_ENV, CallableBackend, HTTPBackend, JudgeError, LocalBackend
from alignkit.judges.core import (
    FORCED_MARK,
    FunctionJudge,
    JudgeReward,
    JudgeScore,
    LLMJudge,
    PairVerdict,
    PairwiseJudge,
    PairwiseLLMJudge,
    PointwiseJudge,
    RewardModelJudge,
    ScorePairwiseJudge,
    is_forced,
    judge_reward,
)
from alignkit.judges.critique import (
    CRITIQUE_TEMPLATE,
    CritiquePairwiseJudge,
    parse_final_verdict,
    split_critique,
)
from alignkit.judges.debate import DEFAULT_PERSONAS, DebateJudge
from alignkit.judges.geval import GEVAL_TEMPLATE, GEvalJudge, expected_score
from alignkit.judges.parsing import parse_score, parse_verdict
from alignkit.judges.prompts import PAIRWISE_TEMPLATE, POINTWISE_TEMPLATE, pairwise_prompt, pointwise_prompt
from alignkit.judges.rubric import DEFAULT_SKILLS, SKILL_DESCRIPTIONS, RubricJudge, parse_skill_scores

__all__ = [
    "API_KEY_ENV",
    "CRITIQUE_TEMPLATE",
    "CritiquePairwiseJudge",
    "DEFAULT_PERSONAS",
    "DEFAULT_SKILLS",
    "DebateJudge",
    "GEVAL_TEMPLATE",
    "GEvalJudge",
    "RubricJudge",
    "SKILL_DESCRIPTIONS",
    "expected_score",
    "parse_final_verdict",
    "parse_skill_scores",
    "split_critique",
    "FORCED_MARK",
    "CallableBackend",
    "FunctionJudge",
    "HTTPBackend",
    "JudgeError",
    "JudgeReward",
    "JudgeScore",
    "LLMJudge",
    "LocalBackend",
    "PAIRWISE_TEMPLATE",
    "POINTWISE_TEMPLATE",
    "PairVerdict",
    "PairwiseJudge",
    "PairwiseLLMJudge",
    "PointwiseJudge",
    "RewardModelJudge",
    "ScorePairwiseJudge",
    "is_forced",
    "judge_reward",
    "pairwise_prompt",
    "parse_score",
    "parse_verdict",
    "pointwise_prompt",
]
