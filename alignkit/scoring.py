"""The one place a ``reward=`` / ``judge=`` / ``cost=`` spec is parsed and turned into a reward source
or a judge. :mod:`alignkit.rewards` (functions, reward models, weighted sets) and :mod:`alignkit.judges`
(LLM judges, backends, prompts, score parsing) are the leaves under it; neither parses a spec.

Specs: ``FILE.py:FUNC``, ``package.module:FUNC``, ``rm:PATH``, ``math:answer`` / ``math:format`` (the
verifiable math rewards of :mod:`alignkit.reasoning.verify`), ``prm:PATH?agg=min|prod`` (a process reward
model of ``alignkit prm``, :mod:`alignkit.reasoning.prm`), ``costmodel:PATH`` (a cost model trained with
``alignkit cost``; its score is the cost), ``safety:compliance|helpful|refusal`` (the string-pattern safety
signals of :mod:`alignkit.safety.rewards`), ``judge:self``, ``judge:PATH_OR_NAME``,
``judge:http(s)://HOST:PORT/v1`` (options on a query string: ``judge:self?samples=5&temperature=0.5``),
and for ``reward=`` a list ``[a, b]`` with ``reward_weights``.

An LLM judge spec picks its judging method with ``?method=`` (see :data:`JUDGE_METHODS`):

* pointwise (``reward=``, :func:`load_judge`): ``additive`` (default, the 0-5 rubric), ``geval``
  (probability-weighted 1-5 score), ``flask`` (per-skill 1-5 scores, ``skills=a,b,c``,
  ``aggregate=mean|min``);
* pairwise (:func:`load_pairwise_judge`): the default A-vs-B prompt, ``critique`` (critique first,
  then the verdict), ``debate`` (``personas=N``, ``rounds=R``); a pointwise method there compares
  its scores. Example: ``judge:self?method=flask&skills=comprehension,readability&force_score=1``.
"""

from __future__ import annotations

import difflib
import urllib.parse
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from alignkit.judges.backends import HTTPBackend, JudgeError, LocalBackend
from alignkit.judges.core import (
    FunctionJudge,
    JudgeReward,
    LLMJudge,
    PairwiseLLMJudge,
    PointwiseJudge,
    RewardModelJudge,
    ScorePairwiseJudge,
)
from alignkit.judges.critique import CritiquePairwiseJudge
from alignkit.judges.debate import DebateJudge
from alignkit.judges.geval import GEvalJudge
from alignkit.judges.rubric import RubricJudge
from alignkit.rewards import FunctionReward, ModelReward, RewardError, RewardSet, RewardSource, load_function

__all__ = ["JUDGE_METHODS", "JudgeSpec", "bind_policy", "load_judge", "load_pairwise_judge", "load_reward_functions",
           "load_reward_source", "load_text_backend", "parse_judge_spec", "parse_reward_spec", "reward_from_spec"]


def _flag(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(text)


_flag.__name__ = "boolean"

#: options a judge spec may carry in its query string (``judge:self?samples=5&temperature=0.5``)
SPEC_OPTIONS = {
    "samples": int, "judge_samples": int, "temperature": float, "top_p": float, "max_new_tokens": int,
    "model": str, "judge_model": str, "timeout": float, "seed": int, "unparsable": float, "batch_size": int,
    "retries": int, "concurrency": int, "force_score": _flag,
    "method": str, "skills": str, "aggregate": str, "personas": int, "rounds": int, "force_verdict": _flag,
}

#: judging methods of ``?method=``: pointwise ones score an answer, pairwise ones compare two
JUDGE_METHODS = {"additive": "pointwise", "geval": "pointwise", "flask": "pointwise",
                 "critique": "pairwise", "debate": "pairwise"}
#: options that only one method reads
_METHOD_OPTIONS = {"skills": "flask", "aggregate": "flask", "personas": "debate", "rounds": "debate"}
_ALIASES = {"judge_samples": "samples", "judge_model": "model"}


class JudgeSpec:
    """A parsed judge spec: ``kind`` (``self``, ``local``, ``http``, ``rm``, ``function``), ``target`` (model
    path/name, URL or function spec) and the query-string ``options``."""

    def __init__(self, kind: str, target: str, options: dict[str, Any]) -> None:
        self.kind, self.target, self.options = kind, target, options

    def __repr__(self) -> str:
        return f"JudgeSpec({self.kind}, {self.target!r}, {self.options})"


def _split_options(text: str, spec: str) -> tuple[str, dict[str, Any]]:
    base, sep, query = text.partition("?")
    if not sep or "=" not in query:
        return text, {}
    options: dict[str, Any] = {}
    for key, value in urllib.parse.parse_qsl(query, keep_blank_values=True, strict_parsing=False):
        if key not in SPEC_OPTIONS:
            close = difflib.get_close_matches(key, list(SPEC_OPTIONS), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise JudgeError(f"judge spec '{spec}': unknown option '{key}'{hint}; options: "
                             f"{', '.join(sorted(SPEC_OPTIONS))}")
        try:
            options[_ALIASES.get(key, key)] = SPEC_OPTIONS[key](value)
        except ValueError:
            raise JudgeError(f"judge spec '{spec}': option {key}={value!r} is not a "
                             f"{SPEC_OPTIONS[key].__name__}") from None
    return base, options


def _looks_like_function(text: str) -> bool:
    target, sep, func = text.rpartition(":")
    if not sep or not target or not func or not func.isidentifier():
        return False
    if len(target) == 1 and target.isalpha():  # a Windows drive letter
        return False
    return target.endswith(".py") or all(part.isidentifier() for part in target.split("."))


def parse_judge_spec(spec: str) -> JudgeSpec:
    """Parse a judge spec (see :func:`load_judge`)."""
    if not isinstance(spec, str) or not spec.strip():
        raise JudgeError("empty judge spec: give judge:self, judge:PATH_OR_NAME, judge:http://HOST:PORT/v1, rm:PATH "
                         "or FILE.py:FUNC")
    text = spec.strip()
    if text.startswith("rm:"):
        path = text[3:].strip()
        if not path:
            raise JudgeError("rm:PATH needs the path of a reward model trained with `alignkit rm`")
        return JudgeSpec("rm", path, {})
    explicit = text.startswith("judge:")
    if explicit:
        text = text[len("judge:"):].strip()
        if not text:
            raise JudgeError("judge: needs a model: judge:self, judge:PATH_OR_NAME or judge:http://HOST:PORT/v1")
    elif _looks_like_function(text) and not Path(text).exists():
        return JudgeSpec("function", text, {})
    target, options = _split_options(text, spec)
    _check_method(options, spec)
    if target == "self":
        return JudgeSpec("self", target, options)
    if target.startswith(("http://", "https://")):
        return JudgeSpec("http", target, options)
    if "://" in target:
        raise JudgeError(f"judge spec '{spec}': only http:// and https:// endpoints are supported")
    return JudgeSpec("local", target, options)


def _check_method(options: dict[str, Any], spec: str) -> None:
    method = options.get("method")
    if method is not None:
        method = method.strip().lower().replace("-", "")
        if method not in JUDGE_METHODS:
            close = difflib.get_close_matches(method, list(JUDGE_METHODS), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise JudgeError(f"judge spec '{spec}': unknown method '{options['method']}'{hint}; methods: "
                             f"{', '.join(JUDGE_METHODS)}")
        options["method"] = method
    for key, owner in _METHOD_OPTIONS.items():
        if key in options and method != owner:
            raise JudgeError(f"judge spec '{spec}': option '{key}' belongs to method={owner}")
    if options.get("aggregate", "mean") not in ("mean", "min"):
        raise JudgeError(f"judge spec '{spec}': aggregate must be mean or min")


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _backend(parsed: JudgeSpec, spec: str, *, policy: Any, tokenizer: Any, temperature: float, top_p: float,
             max_new_tokens: int, judge_model: str | None, timeout: float, batch_size: int, retries: int,
             concurrency: int) -> Any:
    o = parsed.options
    temperature = o.get("temperature", temperature)
    top_p = o.get("top_p", top_p)
    max_new_tokens = o.get("max_new_tokens", max_new_tokens)
    batch_size = o.get("batch_size", batch_size)
    if parsed.kind == "self":
        backend = LocalBackend(policy, tokenizer, name="self", temperature=temperature, top_p=top_p,
                               max_new_tokens=max_new_tokens, batch_size=batch_size)
        backend.is_policy = True
        return backend
    if parsed.kind == "http":
        return HTTPBackend(parsed.target, model=o.get("model", judge_model), temperature=temperature, top_p=top_p,
                           max_new_tokens=max_new_tokens, timeout=o.get("timeout", timeout),
                           retries=o.get("retries", retries), concurrency=o.get("concurrency", concurrency))
    from alignkit.models import ModelNotFoundError, load_trained

    try:
        model, tok = load_trained(parsed.target)
    except ModelNotFoundError as e:
        raise JudgeError(f"judge spec '{spec}': {e}") from None
    model = model.to(_device()).eval()
    model.requires_grad_(False)
    return LocalBackend(model, tok, name=Path(parsed.target).name or parsed.target, temperature=temperature,
                        top_p=top_p, max_new_tokens=max_new_tokens, batch_size=batch_size)


def load_text_backend(spec: str, *, temperature: float = 0.0, max_new_tokens: int = 256, batch_size: int = 8,
                      timeout: float = 60.0, retries: int = 2, concurrency: int = 4) -> Any:
    """A model that writes text for a data builder (``complete(texts, n, seed) -> [[reply, ...], ...]``, each
    text asked as a user turn): a model name or directory, or an OpenAI-compatible ``http(s)://HOST:PORT/v1``
    endpoint, spelled as for judges (options such as ``?temperature=`` apply)."""
    parsed = parse_judge_spec(spec)
    if parsed.kind not in ("local", "http"):
        raise JudgeError(f"'{spec}' is not a model: give a model name or directory, or http(s)://HOST:PORT/v1")
    return _backend(parsed, spec, policy=None, tokenizer=None, temperature=temperature, top_p=1.0,
                    max_new_tokens=max_new_tokens, judge_model=None, timeout=timeout, batch_size=batch_size,
                    retries=retries, concurrency=concurrency)


def _function_rewards(spec: Any, weights: Sequence[float] | None = None) -> RewardSet:
    """The rewards of a function judge, with a spec error reported as a :class:`JudgeError`."""
    try:
        return load_reward_functions(spec, weights)
    except JudgeError:
        raise
    except RewardError as e:
        raise JudgeError(str(e)) from None


def load_judge(spec: str | Callable[..., Any], *, policy: Any = None, tokenizer: Any = None, judge_samples: int = 3,
               temperature: float = 0.7, max_new_tokens: int = 256, seed: int = 0, top_p: float = 1.0,
               judge_model: str | None = None, timeout: float = 60.0, batch_size: int = 8, retries: int = 2,
               concurrency: int = 8, template: str | None = None, force_score: bool = False,
               score_range: tuple[int, int] | None = None) -> PointwiseJudge:
    """A pointwise judge from a spec.

    ``judge:self`` (or ``self``)
        the policy being trained: pass ``policy=MODEL, tokenizer=TOKENIZER`` (or bind them later with
        :func:`bind_policy`).
    ``judge:PATH_OR_NAME``
        another local model (anything :func:`alignkit.models.load_trained` loads: ``smollm2-135m``,
        ``tiny-random``, a model directory, a run directory, a ``.gguf`` file), on the GPU when there is one.
    ``judge:http://HOST:PORT/v1`` (or https)
        an OpenAI-compatible chat-completions endpoint; the model name comes from ``judge_model`` or
        ``?model=NAME`` (default: the first model the server lists); the API key from the environment
        variable ``ALIGNKIT_JUDGE_API_KEY``.
    ``rm:PATH``
        a reward model trained with ``alignkit rm`` (score = its reward).
    ``FILE.py:FUNC`` / ``package.module:FUNC`` / a callable
        a rule/function reward (score = its value).

    The LLM judges read ``judge_samples`` samples at ``temperature`` (nucleus ``top_p``), at most
    ``max_new_tokens`` each, seeded from ``seed`` and the judged texts. A query string on the spec
    overrides these: ``judge:self?samples=5&temperature=0.5&max_new_tokens=128``, and also takes
    ``model``, ``timeout``, ``seed``, ``batch_size``, ``retries``, ``concurrency``, ``force_score``.

    ``force_score`` (local models): a sample without a valid ``Score: N`` line is completed with
    ``"Score:"`` and the judge's most likely value (see :class:`~alignkit.judges.LLMJudge`).
    ``?method=`` picks the judging method: ``additive`` (default, :class:`~alignkit.judges.LLMJudge`),
    ``geval`` (:class:`~alignkit.judges.GEvalJudge`, expected 1-5 score from the score-token
    probabilities) or ``flask`` (:class:`~alignkit.judges.RubricJudge`, ``skills=a,b,c``,
    ``aggregate=mean|min``). The pairwise methods (``critique``, ``debate``) are refused here.
    ``score_range=(low, high)`` with a ``template`` of that scale changes the range the additive and
    G-Eval judges parse (e.g. ``(0, 1)`` for a yes/no judgement).
    """
    if callable(spec) and not isinstance(spec, str):
        return FunctionJudge(_function_rewards(spec))
    parsed = parse_judge_spec(str(spec))
    if parsed.kind == "rm":
        return RewardModelJudge(parsed.target)
    if parsed.kind == "function":
        return FunctionJudge(_function_rewards(parsed.target))
    backend = _backend(parsed, str(spec), policy=policy, tokenizer=tokenizer, temperature=temperature, top_p=top_p,
                       max_new_tokens=max_new_tokens, judge_model=judge_model, timeout=timeout,
                       batch_size=batch_size, retries=retries, concurrency=concurrency)
    return _pointwise_llm(parsed, str(spec), backend, judge_samples=judge_samples, seed=seed, template=template,
                          force_score=force_score, score_range=score_range)


def _pointwise_llm(parsed: JudgeSpec, spec: str, backend: Any, *, judge_samples: int, seed: int,
                   template: str | None, force_score: bool,
                   score_range: tuple[int, int] | None = None) -> PointwiseJudge:
    o = parsed.options
    method = o.get("method", "additive")
    if JUDGE_METHODS[method] != "pointwise":
        raise JudgeError(f"judge spec '{spec}': method={method} compares two answers (a pairwise judge); a "
                         "reward or score needs a pointwise method: additive, geval or flask")
    samples, seed = o.get("samples", judge_samples), o.get("seed", seed)
    suffix = backend.name if parsed.kind != "self" else "self"
    kwargs: dict[str, Any] = {"template": template} if template else {}
    if score_range is not None:
        if method == "flask":
            raise JudgeError(f"judge spec '{spec}': method=flask has its own 1-5 scale; use additive or geval here")
        kwargs["low"], kwargs["high"] = int(score_range[0]), int(score_range[1])
    if method == "geval":
        return GEvalJudge(backend, judge_samples=samples, seed=seed, name=f"geval_{suffix}", **kwargs)
    if method == "flask":
        return RubricJudge(backend, skills=o.get("skills"), judge_samples=samples, seed=seed,
                           aggregate=o.get("aggregate", "mean"), force_score=o.get("force_score", force_score),
                           name=f"flask_{suffix}", **kwargs)
    return LLMJudge(backend, judge_samples=samples, seed=seed, name=f"judge_{suffix}",
                    force_score=o.get("force_score", force_score), **kwargs)


def load_pairwise_judge(spec: str | Callable[..., Any], *, policy: Any = None, tokenizer: Any = None,
                        judge_samples: int = 1, temperature: float = 0.7, max_new_tokens: int = 256, seed: int = 0,
                        top_p: float = 1.0, judge_model: str | None = None, timeout: float = 60.0,
                        batch_size: int = 8, retries: int = 2, concurrency: int = 8,
                        template: str | None = None, force_verdict: bool = False):
    """A pairwise judge from a spec (the same specs as :func:`load_judge`).

    LLM specs give a :class:`~alignkit.judges.PairwiseLLMJudge` (both orders asked, ``judge_samples``
    samples per order, position-inconsistent verdicts count as ties); ``rm:`` and function specs compare
    their scores (:class:`~alignkit.judges.ScorePairwiseJudge`). ``?method=critique`` and
    ``?method=debate&personas=N&rounds=R`` give the critique-first and debate judges; a pointwise method
    compares that judge's scores. ``force_verdict`` (local models; ``?force_verdict=1``): a reply without
    a verdict takes the judge's likelier next token of ``A``/``B`` after ``"Winner:"``.
    """
    if callable(spec) and not isinstance(spec, str):
        return ScorePairwiseJudge(FunctionJudge(_function_rewards(spec)))
    parsed = parse_judge_spec(str(spec))
    if parsed.kind == "rm":
        return ScorePairwiseJudge(RewardModelJudge(parsed.target))
    if parsed.kind == "function":
        return ScorePairwiseJudge(FunctionJudge(_function_rewards(parsed.target)))
    o = parsed.options
    backend = _backend(parsed, str(spec), policy=policy, tokenizer=tokenizer, temperature=temperature, top_p=top_p,
                       max_new_tokens=max_new_tokens, judge_model=judge_model, timeout=timeout,
                       batch_size=batch_size, retries=retries, concurrency=concurrency)
    method = o.get("method")
    if method is not None and JUDGE_METHODS[method] == "pointwise":
        return ScorePairwiseJudge(_pointwise_llm(parsed, str(spec), backend, judge_samples=judge_samples,
                                                 seed=seed, template=template, force_score=False))
    kwargs = {"template": template} if template else {}
    samples, seed = o.get("samples", judge_samples), o.get("seed", seed)
    force = o.get("force_verdict", force_verdict)
    if method == "critique":
        return CritiquePairwiseJudge(backend, judge_samples=samples, seed=seed, name=f"critique_{backend.name}",
                                     force_verdict=force, **kwargs)
    if method == "debate":
        return DebateJudge(backend, personas=o.get("personas"), rounds=o.get("rounds", 2), seed=seed,
                           name=f"debate_{backend.name}", force_verdict=force)
    return PairwiseLLMJudge(backend, judge_samples=samples, seed=seed, name=f"pairwise_{backend.name}",
                            force_verdict=force, **kwargs)


def reward_from_spec(spec: str, *, policy: Any = None, tokenizer: Any = None, unparsable: float = 0.0,
                     **kwargs: Any) -> JudgeReward:
    """The reward source of ``reward=judge:MODEL`` (what :func:`alignkit.rewards.load_reward_source` returns
    for a ``judge:`` spec): the judge's score, or ``unparsable`` (default 0; ``?unparsable=X`` on the spec
    wins) where no sample parsed. ``judge:self`` is unbound until :func:`bind_policy` hands it the policy.
    Other keyword arguments go to :func:`load_judge`."""
    parsed = parse_judge_spec(spec)
    judge = load_judge(spec, policy=policy, tokenizer=tokenizer, **kwargs)
    return JudgeReward(judge, parsed.options.get("unparsable", unparsable))


def bind_policy(rewards: Any, model: Any, tokenizer: Any) -> int:
    """Hand the policy (and its tokenizer) to every ``judge:self`` source of ``rewards`` (a
    :class:`~alignkit.rewards.RewardSet`, a list of sources, or one source). Returns how many were bound.
    Training methods call this in ``setup``; it is harmless when there is no such judge."""
    sources: Sequence[Any] = getattr(rewards, "sources", None) or (rewards if isinstance(rewards, (list, tuple))
                                                                    else [rewards])
    bound = 0
    for s in sources:
        backend = getattr(getattr(s, "judge", None), "backend", None)
        if backend is not None and getattr(backend, "is_policy", False):
            backend.bind(model, tokenizer)
            bound += 1
    return bound


# ----------------------------------------------------------------------------- reward= specs


def parse_reward_spec(spec: str | Sequence[str]) -> list[str]:
    """The list of single source specs in ``reward=`` (a string, a YAML-style ``[a, b]`` string, or a
    list); empty entries are errors."""
    if isinstance(spec, str):
        text = spec.strip()
        if text.startswith("[") and text.endswith("]"):
            items = [s.strip().strip("'\"") for s in text[1:-1].split(",")]
        else:
            items = [text]
    elif isinstance(spec, Sequence):
        items = [str(s).strip() for s in spec]
    else:
        raise RewardError(f"reward must be a string or a list of strings, got {type(spec).__name__}")
    if not items or any(not s for s in items):
        raise RewardError("reward is empty: give FILE.py:FUNC, package.module:FUNC, rm:PATH or a list of them")
    return items


def load_reward_source(spec: str | Callable[..., Any]) -> RewardSource:
    """One reward source from one spec (see the module docstring), or a callable wrapped as a source."""
    if callable(spec) and not isinstance(spec, str):
        return spec if isinstance(spec, (FunctionReward, ModelReward)) else FunctionReward(spec)
    spec = str(spec).strip()
    if spec.startswith("rm:"):
        path = spec[3:].strip()
        if not path:
            raise RewardError("reward=rm:PATH needs the path of a reward model trained with `alignkit rm`")
        return ModelReward(path)
    if spec.startswith("judge:"):
        return reward_from_spec(spec)
    if spec.startswith("math:"):
        from alignkit.reasoning.verify import MATH_REWARDS

        return _named_reward(spec, "math", MATH_REWARDS)
    if spec.startswith("costmodel:"):
        return _cost_model(spec[len("costmodel:"):].strip())
    if spec.startswith("safety:"):
        from alignkit.safety.rewards import SAFETY_REWARDS

        return _named_reward(spec, "safety", SAFETY_REWARDS)
    if spec.startswith("prm:"):
        return _prm_reward(spec)
    return load_function(spec)


def _prm_reward(spec: str) -> ModelReward:
    """``prm:PATH[?agg=min|prod]``: a process reward model trained with ``alignkit prm``; the reward is the
    min (default) or product of its step probabilities (:mod:`alignkit.reasoning.prm`)."""
    from alignkit.reasoning.prm import AGGREGATES, load_process_reward_model

    path, _, query = spec[len("prm:"):].strip().partition("?")
    options = dict(urllib.parse.parse_qsl(query, keep_blank_values=True))
    unknown = sorted(set(options) - {"agg"})
    if unknown:
        raise RewardError(f"reward={spec}: unknown option '{unknown[0]}'; prm: takes ?agg=min|prod")
    agg = options.get("agg", "min")
    if agg not in AGGREGATES:
        raise RewardError(f"reward={spec}: agg must be one of {', '.join(AGGREGATES)}, got {agg!r}")
    if not path:
        raise RewardError("reward=prm:PATH needs the path of a process reward model trained with `alignkit prm`")
    if not Path(path).exists():
        raise RewardError(f"reward={spec}: no such process reward model directory: {path}")
    try:
        scorer = load_process_reward_model(path, agg)
    except Exception as e:  # noqa: BLE001 - a directory that is not a PRM
        raise RewardError(f"reward={spec}: cannot load the process reward model: {type(e).__name__}: {e}") from e
    return ModelReward(path, scorer=scorer, name=f"prm_{agg}")


def _cost_model(path: str) -> ModelReward:
    """``costmodel:PATH``: a scalar-head model scoring cost (``alignkit cost``); a directory whose
    ``alignkit.json`` says it was trained as something else is refused (reward models say nothing: they load)."""
    import json

    if not path:
        raise RewardError("costmodel:PATH needs the path of a cost model trained with `alignkit cost`")
    root = Path(path)
    meta = (root / "final" if (root / "final").is_dir() else root) / "alignkit.json"
    try:
        info = json.loads(meta.read_text()) if meta.is_file() else {}
    except (OSError, ValueError):
        info = {}
    if not (root.is_dir()):
        raise RewardError(f"costmodel:{path}: no such directory (train a cost model with `alignkit cost`)")
    trained_as = info.get("trained_as") if isinstance(info, dict) else None
    if trained_as is not None and trained_as != "cost":
        raise RewardError(f"costmodel:{path}: {meta} says it was trained as '{trained_as}', not as a cost model "
                          "(train one with `alignkit cost`)")
    return ModelReward(path, name="cost_model")


def _named_reward(spec: str, kind: str, table: dict[str, Callable[..., Any]]) -> FunctionReward:
    """``KIND:NAME``: one of the shipped functions of ``table`` (``math:`` :data:`alignkit.reasoning.verify.
    MATH_REWARDS`, ``safety:`` :data:`alignkit.safety.rewards.SAFETY_REWARDS`)."""
    name = spec[len(kind) + 1:].strip()
    if name not in table:
        valid = ", ".join(f"{kind}:{k}" for k in table)
        raise RewardError(f"unknown {kind} reward '{spec}'; valid: {valid}")
    return FunctionReward(table[name], name=f"{kind}_{name}", origin=spec)


def load_reward_functions(spec: str | Sequence[str] | Callable[..., Any] | Sequence[Callable[..., Any]],
                          weights: Sequence[float] | None = None) -> RewardSet:
    """The :class:`RewardSet` for a ``reward=`` value (one spec, a list of specs, or callables) and
    optional ``reward_weights``. Raises :class:`RewardError` (a ``ConfigError``) with the offending
    spec in the message when something cannot be loaded."""
    if spec is None:
        raise RewardError("no reward given: set reward=FILE.py:FUNC (or package.module:FUNC, rm:PATH, or a "
                          "list of them with reward_weights)")
    if callable(spec) and not isinstance(spec, str):
        items: list[Any] = [spec]
    elif isinstance(spec, str):
        items = parse_reward_spec(spec)
    else:
        items = [s if callable(s) else str(s) for s in spec]
        if not items:
            raise RewardError("reward is an empty list")
        for s in items:
            if isinstance(s, str) and not s.strip():
                raise RewardError("reward list holds an empty entry")
    if weights is not None and len(weights) != len(items):
        raise RewardError(f"reward_weights has {len(weights)} entries for {len(items)} reward sources")
    return RewardSet([load_reward_source(s) for s in items], weights)
