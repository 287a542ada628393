"""Pairwise win rates with position swapping.

A judge is any callable ``judge(prompt, answer_a, answer_b) -> "A" | "B" | "tie"`` saying which of
two answers to ``prompt`` is better. Judges prefer one position more often than they should, so each
pair is judged twice, once in each order:

* first call ``judge(prompt, a, b)``; second call ``judge(prompt, b, a)`` (its verdict is mapped back:
  "A" there means *b* won);
* both calls agree on a winner -> a win (or loss) for model A; both say "tie" -> a tie;
* any disagreement (a different winner, or a winner in one order and "tie" in the other) is
  *position-inconsistent* and counts as a tie.

``win_rate = (wins + ties / 2) / n``, so a judge that always answers "A" gives 50 % made only of
ties, and 100 % means every pair was won in both orders. The result also counts the inconsistent
pairs and how often the first position was picked (``first_position_rate``, 0.5 for an unbiased judge
among decisive verdicts).

``--judge`` takes a Python function (``FILE.py:FUNC`` or ``package.module:FUNC``) with that signature,
or a model judge spec, parsed by :func:`alignkit.scoring.parse_judge_spec` (the parser behind
``reward=judge:...``; this module parses none): ``judge:PATH_OR_NAME``, ``judge:http(s)://HOST:PORT/v1``
(or the bare address), ``rm:PATH``, with the same ``?method=&samples=&temperature=...`` options.
:func:`alignkit.scoring.load_pairwise_judge` builds it and :class:`ModelPairwise` puts it under the
protocol above:

* pairwise methods (the default A-vs-B prompt, ``critique``, ``debate``) already ask both orders; their
  per-order verdicts are taken as the two calls (an order without a parsable verdict counts as "tie"),
  so the win rate, the inconsistent pairs and ``first_position_rate`` mean what they mean for a function;
* pointwise methods (``additive``, ``geval``, ``flask``) and ``rm:PATH`` score each answer on its own
  and the higher score wins (equal scores, or a side without a score: "tie"); the order cannot matter,
  so such a judge is never inconsistent and its ``first_position_rate`` is 0.5 by construction.

``judge:self`` is refused: ``alignkit eval`` trains no policy to judge with; name the model.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

__all__ = ["Judge", "JudgeError", "ModelPairwise", "WinRate", "is_model_judge", "load_function", "load_judge",
           "normalise_verdict", "pairwise_winrate", "prepare_judge"]

VERDICTS = ("A", "B", "tie")
_SWAP = {"A": "B", "B": "A", "tie": "tie"}
#: ``--judge`` specs that name a model judge (everything else is a Python function)
MODEL_JUDGE_PREFIXES = ("judge:", "rm:", "http://", "https://")


class Judge(Protocol):
    def __call__(self, prompt: Any, answer_a: str, answer_b: str) -> str: ...


class JudgeError(ValueError):
    """A judge spec that cannot be loaded, or a verdict that is not "A", "B" or "tie"."""


@dataclass
class WinRate:
    n: int
    wins: int
    losses: int
    ties: int  # including the position-inconsistent pairs
    inconsistent: int
    win_rate: float | None
    first_position_rate: float | None
    outcomes: list[str] = field(default_factory=list)  # per pair: "win" | "loss" | "tie"
    judge_stats: dict[str, Any] | None = None  # a model judge's counters (pairs, unparsable, forced, ...)

    def as_dict(self, with_outcomes: bool = False) -> dict[str, Any]:
        d = asdict(self)
        if not with_outcomes:
            d.pop("outcomes")
        return d


def normalise_verdict(verdict: Any) -> str:
    """"A"/"B"/"tie" in any case and surrounding whitespace -> "A", "B" or "tie"; anything else raises."""
    if isinstance(verdict, str):
        v = verdict.strip()
        if v.upper() in ("A", "B"):
            return v.upper()
        if v.lower() == "tie":
            return "tie"
    raise JudgeError(f"the judge returned {verdict!r}; expected \"A\", \"B\" or \"tie\"")


def _verdict_pairs(prompts: Sequence[Any], answers_a: Sequence[str], answers_b: Sequence[str],
                   judge: Callable[[Any, str, str], str]) -> list[tuple[str, str]]:
    """``(judge(p, a, b), judge(p, b, a))`` per pair, normalised; a judge with ``both_orders`` (a
    :class:`ModelPairwise`) gives them for all pairs in one batched call."""
    if hasattr(judge, "both_orders"):
        raw = judge.both_orders(list(prompts), list(answers_a), list(answers_b))
    else:
        raw = ((judge(p, a, b), judge(p, b, a)) for p, a, b in zip(prompts, answers_a, answers_b))
    out = []
    for i, (v1, v2) in enumerate(raw):
        try:
            out.append((normalise_verdict(v1), normalise_verdict(v2)))
        except JudgeError as e:
            raise JudgeError(f"pair {i + 1}: {e}") from None
    return out


def pairwise_winrate(prompts: Sequence[Any], answers_a: Sequence[str], answers_b: Sequence[str],
                     judge: Callable[[Any, str, str], str]) -> WinRate:
    """Win rate of the A answers over the B answers, each pair judged in both orders (see module doc)."""
    if not len(prompts) == len(answers_a) == len(answers_b):
        raise ValueError(f"lengths differ: {len(prompts)} prompts, {len(answers_a)} A answers, "
                         f"{len(answers_b)} B answers")
    wins = losses = ties = inconsistent = first = decisive = 0
    outcomes = []
    stats_before = _counters(judge)
    for v1, v2 in _verdict_pairs(prompts, answers_a, answers_b, judge):
        for v in (v1, v2):
            if v != "tie":
                decisive += 1
                first += v == "A"
        if v1 != _SWAP[v2]:  # the second verdict from A's point of view
            inconsistent += 1
            outcome = "tie"
        else:
            outcome = {"A": "win", "B": "loss", "tie": "tie"}[v1]
        wins += outcome == "win"
        losses += outcome == "loss"
        ties += outcome == "tie"
        outcomes.append(outcome)
    n = len(outcomes)
    stats = _counters(judge)
    return WinRate(
        n=n, wins=wins, losses=losses, ties=ties, inconsistent=inconsistent,
        win_rate=(wins + ties / 2) / n if n else None,
        first_position_rate=first / decisive if decisive else None,
        outcomes=outcomes,
        judge_stats=None if stats is None else {k: v - stats_before.get(k, 0) for k, v in stats.items()},
    )


def _counters(judge: Any) -> dict[str, Any] | None:
    """A copy of a model judge's numeric ``stats`` counters (None for a judge without them)."""
    stats = getattr(judge, "stats", None)
    if not isinstance(stats, dict):
        return None
    return {k: v for k, v in stats.items() if isinstance(v, (int, float))}


def load_function(spec: str, what: str = "function") -> Callable[..., Any]:
    """``FILE.py:FUNC`` or ``package.module:FUNC`` -> the callable. Raises :class:`JudgeError`
    (a ``ValueError``) with a message naming the spec."""
    target, sep, name = spec.rpartition(":")
    if not sep or not target or not name:
        raise JudgeError(f"{what} '{spec}': expected FILE.py:FUNC or package.module:FUNC")
    if target.endswith(".py"):
        path = Path(target).expanduser()
        if not path.is_file():
            raise JudgeError(f"{what} '{spec}': file not found: {path}")
        mod_name = f"_alignkit_user_{abs(hash(str(path.resolve())))}"
        module_spec = importlib.util.spec_from_file_location(mod_name, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[mod_name] = module
        try:
            module_spec.loader.exec_module(module)
        except Exception as e:  # noqa: BLE001 - user code: report whatever it raised
            sys.modules.pop(mod_name, None)
            raise JudgeError(f"{what} '{spec}': importing {path} failed: {type(e).__name__}: {e}") from None
    else:
        try:
            module = importlib.import_module(target)
        except ImportError as e:
            raise JudgeError(f"{what} '{spec}': cannot import module '{target}': {e}") from None
    fn = getattr(module, name, None)
    if fn is None or not callable(fn):
        raise JudgeError(f"{what} '{spec}': no function '{name}' in {target}")
    return fn


class ModelPairwise:
    """A pairwise judge of :func:`alignkit.scoring.load_pairwise_judge` as a win-rate judge.

    :meth:`both_orders` gives, per pair, the verdict with ``a`` shown first and the verdict with ``b``
    shown first, each in the labels of its own order (what ``judge(p, a, b)`` and ``judge(p, b, a)``
    would say): from ``compare_detailed`` (its ``forward`` verdict, and its ``backward`` one swapped
    back; an order with no parsable verdict is "tie"), or, for a score-comparing judge without it, the
    one verdict of ``compare`` and its mirror. Calling the object judges one pair (both orders are
    asked; the first is returned).
    """

    def __init__(self, judge: Any) -> None:
        self.judge = judge
        self.name = getattr(judge, "name", "judge")

    @property
    def stats(self) -> dict[str, Any] | None:
        return getattr(self.judge, "stats", None)

    def both_orders(self, prompts: list, answers_a: list, answers_b: list) -> list[tuple[str, str]]:
        if hasattr(self.judge, "compare_detailed"):
            out = []
            for d in self.judge.compare_detailed(prompts, answers_a, answers_b):
                forward = d.forward if d.forward is not None else "tie"
                backward = d.backward if d.backward is not None else "tie"
                out.append((forward, _SWAP[backward]))
            return out
        return [(v, _SWAP[v]) for v in self.judge.compare(prompts, answers_a, answers_b)]

    def __call__(self, prompt: Any, answer_a: str, answer_b: str) -> str:
        return self.both_orders([prompt], [answer_a], [answer_b])[0][0]

    def __repr__(self) -> str:
        return f"ModelPairwise({self.judge!r})"


def is_model_judge(spec: str) -> bool:
    """Whether ``--judge SPEC`` names a model judge (``judge:``, ``rm:``, ``http(s)://``) rather than a
    Python function."""
    return str(spec).strip().startswith(MODEL_JUDGE_PREFIXES)


def _check_model_judge(spec: str) -> None:
    """Parse a model judge spec (:func:`alignkit.scoring.parse_judge_spec`) and check that its model
    exists, loading nothing. Raises :class:`JudgeError`."""
    from alignkit.models import ModelNotFoundError, resolve_model
    from alignkit.rewards import RewardError
    from alignkit.scoring import parse_judge_spec

    try:
        parsed = parse_judge_spec(spec)
    except RewardError as e:  # the judges' JudgeError is a RewardError
        raise JudgeError(str(e)) from None
    if parsed.kind == "self":
        raise JudgeError(f"judge '{spec}': judge:self means the policy being trained, and eval trains none; name "
                         "the judge model: judge:PATH_OR_NAME or judge:http://HOST:PORT/v1")
    if parsed.kind == "local":
        try:
            resolve_model(parsed.target)
        except ModelNotFoundError as e:
            raise JudgeError(f"judge spec '{spec}': {e}") from None


def prepare_judge(spec: str, *, seed: int = 0, batch_size: int = 8, temperature: float = 0.0,
                  max_new_tokens: int = 512) -> Callable[[], Callable[[Any, str, str], str]]:
    """Check ``--judge SPEC`` now and return a loader of the judge, so that a bad spec fails before any
    model loads and a judge model loads only when it is needed.

    A Python function (``FILE.py:FUNC`` / ``package.module:FUNC``) is imported now. A model judge spec
    (:func:`is_model_judge`) is parsed and its model looked up now, and loaded by the returned
    function with :func:`alignkit.scoring.load_pairwise_judge` as a :class:`ModelPairwise`: greedy
    (``temperature`` 0) by default, at most ``max_new_tokens`` per reply (512: ``critique`` and
    ``debate`` write an argument first), ``seed`` and ``batch_size`` as given; options on the spec's
    query string win (``judge:NAME?temperature=0.7&samples=3&max_new_tokens=256``).
    """
    text = str(spec).strip()
    if not is_model_judge(text):
        fn = load_function(text, "judge")
        return lambda: fn
    _check_model_judge(text)

    def load() -> Callable[[Any, str, str], str]:
        from alignkit.models import ModelNotFoundError
        from alignkit.rewards import RewardError
        from alignkit.scoring import load_pairwise_judge

        try:
            judge = load_pairwise_judge(text, seed=seed, batch_size=batch_size, temperature=temperature,
                                        max_new_tokens=max_new_tokens)
        except (RewardError, ModelNotFoundError) as e:
            raise JudgeError(str(e)) from None
        return ModelPairwise(judge)

    return load


def load_judge(spec: str, **options: Any) -> Callable[[Any, str, str], str]:
    """A pairwise judge ``judge(prompt, answer_a, answer_b) -> "A" | "B" | "tie"`` from ``--judge``:
    a Python function ``FILE.py:FUNC`` / ``package.module:FUNC``, or a model judge spec (``judge:MODEL``,
    ``judge:http(s)://HOST:PORT/v1``, ``rm:PATH``, ``?method=...``) as a :class:`ModelPairwise`.
    ``options`` go to :func:`prepare_judge`."""
    return prepare_judge(spec, **options)()
