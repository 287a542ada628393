"""A multi-agent debate judge in the style of ChatEval (Chan et al. 2023, "ChatEval: Towards Better
LLM-based Evaluators through Multi-Agent Debate").

``N`` judge personas compare the same two answers. In round 1 each gives its argument and a verdict;
in every later round each persona sees what the *other* personas argued in the previous round
(ChatEval's simultaneous-talk scheme) and argues again. The verdict of one ordering is the majority
of the personas' last-round verdicts (an even split is a tie; unparsable votes are left out). As with
:class:`~alignkit.judges.PairwiseLLMJudge` the debate is held in both orders (A first, then B first)
and a verdict that changes with the order is a tie; ``both_orders=False`` holds one debate, A first.

Cost: ``N x rounds`` judge replies per pair and order, each round one batched backend call.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from alignkit.judges.backends import JudgeError, content_seed
from alignkit.judges.core import PairVerdict, _check_lengths, _majority, force_missing_verdicts
from alignkit.judges.critique import parse_final_verdict
from alignkit.judges.prompts import PAIR_BLOCK, _clip, render_answer, render_request

__all__ = ["DEFAULT_PERSONAS", "DebateJudge", "debate_prompt"]

#: (name, who they are) of the default personas; ``personas=N`` takes the first N
DEFAULT_PERSONAS = (
    ("User", "the person who made the request: you want an answer that gives you what you asked for, "
             "in the form you asked for it"),
    ("Critic", "a strict reviewer: you look for errors, omissions, padding and instructions that were ignored"),
    ("Expert", "a specialist in the request's subject: you check that the content is correct and substantial"),
    ("Editor", "a copy editor: you check the requested form - length, format, wording, case, punctuation"),
)

_ROUND_ONE = """\
You are {persona}, one of several judges comparing two answers that an AI assistant could give to \
the same request. You are {description}.

""" + PAIR_BLOCK + """
{others}Give your argument in at most 80 words, then end with one line: "Winner: A", "Winner: B" or \
"Winner: tie". The order of the answers and their length are no reason to prefer one."""

_OTHERS = """\
In the previous round the other judges argued:
{arguments}

Weigh their arguments: keep your view if they are wrong, change it if they convinced you.

"""


def debate_prompt(prompt: Any, answer_a: Any, answer_b: Any, persona: tuple[str, str],
                  others: Sequence[tuple[str, str]] = (), max_chars: int = 6000, argument_chars: int = 800) -> str:
    """One persona's prompt: the request, the two answers and (after round 1) the other personas'
    previous arguments ``[(name, text), ...]``."""
    block = ""
    if others:
        args = "\n\n".join(f"[{name}]: {_clip(text.strip(), argument_chars)}" for name, text in others)
        block = _OTHERS.format(arguments=args)
    return _ROUND_ONE.format(persona=persona[0], description=persona[1], others=block,
                             request=render_request(prompt, max_chars), answer_a=render_answer(answer_a, max_chars),
                             answer_b=render_answer(answer_b, max_chars))


def _personas(personas: int | Sequence[Any] | None) -> list[tuple[str, str]]:
    if personas is None:
        return list(DEFAULT_PERSONAS[:3])
    if isinstance(personas, int):
        if not 1 <= personas <= len(DEFAULT_PERSONAS):
            raise JudgeError(f"personas={personas}: give 1 to {len(DEFAULT_PERSONAS)} (the default personas) or "
                             "a list of (name, description) pairs")
        return list(DEFAULT_PERSONAS[:personas])
    out = []
    for p in personas:
        if isinstance(p, str):
            out.append((p, f"a judge with the point of view of a {p.lower()}"))
        else:
            name, description = p
            out.append((str(name), str(description)))
    if not out:
        raise JudgeError("the persona list is empty")
    return out


class DebateJudge:
    """ChatEval-style debate: ``personas`` (a count of :data:`DEFAULT_PERSONAS`, default 3, or a list of
    names or ``(name, description)`` pairs), ``rounds`` rounds (default 2), majority vote of the last
    round. ``compare`` gives ``"A" | "B" | "tie"``; ``compare_detailed`` the per-order verdicts and the
    transcripts (``raw``: every reply, forward debate first, round by round, persona by persona)."""

    def __init__(self, backend: Any, *, personas: int | Sequence[Any] | None = None, rounds: int = 2, seed: int = 0,
                 name: str | None = None, both_orders: bool = True, max_chars: int = 6000,
                 force_verdict: bool = False) -> None:
        if rounds < 1:
            raise JudgeError(f"rounds must be at least 1, got {rounds}")
        self.backend = backend
        self.personas = _personas(personas)
        self.rounds = int(rounds)
        self.seed = int(seed)
        self.both_orders = bool(both_orders)
        self.max_chars = max_chars
        self.name = name or f"debate_{getattr(backend, 'name', 'llm')}"
        self.force_verdict = bool(force_verdict)
        self.stats = {"pairs": 0, "inconsistent": 0, "votes": 0, "unparsable": 0, "changed_mind": 0, "forced": 0}

    def debate(self, prompts: Sequence[Any], answers_a: Sequence[Any], answers_b: Sequence[Any]
               ) -> tuple[list[str | None], list[list[list[str]]]]:
        """One debate per pair, A shown first: (verdict per pair, replies[pair][round][persona])."""
        n, k = len(prompts), len(self.personas)
        history: list[list[list[str]]] = [[] for _ in range(n)]
        for r in range(self.rounds):
            texts = []
            for i in range(n):
                for j, persona in enumerate(self.personas):
                    others = ([(self.personas[o][0], history[i][-1][o]) for o in range(k) if o != j]
                              if r > 0 else [])
                    texts.append(debate_prompt(prompts[i], answers_a[i], answers_b[i], persona, others,
                                               self.max_chars))
            replies = [[str(x[0])] for x in self.backend.complete(texts, 1, content_seed(self.seed, texts,
                                                                                          f"debate-{r}"))]
            votes = [[parse_final_verdict(x[0])] for x in replies]
            if self.force_verdict:  # a forced verdict is part of the argument the others see next round
                force_missing_verdicts(self.backend, texts, replies, votes, "Winner", self.stats)
            for i in range(n):
                history[i].append([replies[i * k + j][0] for j in range(k)])
        verdicts = []
        for i in range(n):
            last = [parse_final_verdict(t) for t in history[i][-1]]
            self.stats["votes"] += len(last)
            self.stats["unparsable"] += sum(v is None for v in last)
            if self.rounds > 1:
                before = [parse_final_verdict(t) for t in history[i][-2]]
                self.stats["changed_mind"] += sum(a is not None and b is not None and a != b
                                                  for a, b in zip(before, last))
            verdicts.append(_majority(last))
        return verdicts, history

    def compare_detailed(self, prompts: list, answers_a: list, answers_b: list) -> list[PairVerdict]:
        _check_lengths("judge.compare", prompts, answers_a, answers_b)
        n = len(prompts)
        if n == 0:
            return []
        if self.both_orders:
            verdicts, history = self.debate(list(prompts) * 2, list(answers_a) + list(answers_b),
                                            list(answers_b) + list(answers_a))
        else:
            verdicts, history = self.debate(prompts, answers_a, answers_b)
        swap = {"A": "B", "B": "A", "tie": "tie"}
        out = []
        for i in range(n):
            f = verdicts[i]
            raw = [t for rnd in history[i] for t in rnd]
            if self.both_orders:
                b = verdicts[n + i]
                b = swap[b] if b is not None else None
                raw += [t for rnd in history[n + i] for t in rnd]
                verdict = f if (f is not None and f == b) else "tie"
                if f is not None and b is not None and f != b:
                    self.stats["inconsistent"] += 1
            else:
                b = None
                verdict = f if f is not None else "tie"
            self.stats["pairs"] += 1
            out.append(PairVerdict(verdict=verdict, forward=f, backward=b, raw=raw))
        return out

    def compare(self, prompts: list, answers_a: list, answers_b: list) -> list[str]:
        return [v.verdict for v in self.compare_detailed(prompts, answers_a, answers_b)]

    def __repr__(self) -> str:
        return f"DebateJudge({self.name}, personas={[p[0] for p in self.personas]}, rounds={self.rounds})"
