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

``--judge`` takes a Python function (``FILE.py:FUNC`` or ``package.module:FUNC``). The LLM pairwise
judge (``judge:MODEL``) comes with a later issue of alignkit; until then that spec is refused with a
message saying so.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

__all__ = ["Judge", "JudgeError", "WinRate", "load_function", "load_judge", "normalise_verdict",
           "pairwise_winrate"]

VERDICTS = ("A", "B", "tie")


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


def pairwise_winrate(prompts: Sequence[Any], answers_a: Sequence[str], answers_b: Sequence[str],
                     judge: Callable[[Any, str, str], str]) -> WinRate:
    """Win rate of the A answers over the B answers, each pair judged in both orders (see module doc)."""
    if not len(prompts) == len(answers_a) == len(answers_b):
        raise ValueError(f"lengths differ: {len(prompts)} prompts, {len(answers_a)} A answers, "
                         f"{len(answers_b)} B answers")
    wins = losses = ties = inconsistent = first = decisive = 0
    outcomes = []
    for i, (p, a, b) in enumerate(zip(prompts, answers_a, answers_b)):
        try:
            v1 = normalise_verdict(judge(p, a, b))
            v2 = normalise_verdict(judge(p, b, a))
        except JudgeError as e:
            raise JudgeError(f"pair {i + 1}: {e}") from None
        for v in (v1, v2):
            if v != "tie":
                decisive += 1
                first += v == "A"
        swapped = {"A": "B", "B": "A", "tie": "tie"}[v2]  # the second verdict from A's point of view
        if v1 != swapped:
            inconsistent += 1
            outcome = "tie"
        else:
            outcome = {"A": "win", "B": "loss", "tie": "tie"}[v1]
        wins += outcome == "win"
        losses += outcome == "loss"
        ties += outcome == "tie"
        outcomes.append(outcome)
    n = len(outcomes)
    return WinRate(
        n=n, wins=wins, losses=losses, ties=ties, inconsistent=inconsistent,
        win_rate=(wins + ties / 2) / n if n else None,
        first_position_rate=first / decisive if decisive else None,
        outcomes=outcomes,
    )


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


def load_judge(spec: str) -> Callable[[Any, str, str], str]:
    """A pairwise judge from ``--judge``: a Python function ``FILE.py:FUNC`` / ``package.module:FUNC``.

    LLM judges (``judge:MODEL``) are not available yet: they come with a later issue.
    """
    if spec.startswith(("judge:", "llm:")) or spec in ("self", "judge"):
        raise JudgeError(f"judge '{spec}': the LLM pairwise judge is not available yet in this version of "
                         "alignkit (it comes with a later release); pass a Python function as FILE.py:FUNC "
                         "or package.module:FUNC with the signature judge(prompt, answer_a, answer_b) -> "
                         "\"A\" | \"B\" | \"tie\"")
    return load_function(spec, "judge")
