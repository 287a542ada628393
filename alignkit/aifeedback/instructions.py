"""New prompts from seed prompts by few-shot prompting a model (the first step of each self-rewarding
iteration), with cleaning, de-duplication and filtering.

Filters, applied in this order (each drop is counted under its reason):

* ``truncated`` -- the generation hit its length limit (the generator returns ``None`` for it): a
  request cut off mid-sentence;
* ``empty`` -- nothing left after cleaning (labels such as ``Request:``, list numbers and quotes are
  stripped, and only the first item is kept when the model wrote a list);
* ``too_short`` / ``too_long`` -- fewer than ``min_words`` or more than ``max_words`` words;
* ``seed_copy`` -- the same text as a seed prompt, or a seed prompt followed by more text (an answer
  the model went on to write), compared case- and punctuation-insensitively;
* ``duplicate`` -- the same text as a prompt kept earlier;
* ``near_duplicate`` -- word-sequence similarity of ``near_duplicate`` or more (difflib ratio) with a
  seed or a kept prompt.
"""

from __future__ import annotations

import difflib
import random
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from alignkit.aifeedback.prompts import new_request_prompt

DROP_REASONS = ("truncated", "empty", "too_short", "too_long", "seed_copy", "duplicate", "near_duplicate")

_LABEL = re.compile(r"^\s*(?:\*\*)?\s*(?:new\s+)?(?:request|instruction|task|question|prompt)\s*\d*\s*[:.-]\s*(?:\*\*)?\s*",
                    re.IGNORECASE)
_NUMBER = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s+")
_NEXT_ITEM = re.compile(r"\n\s*(?:\d+[.)]|(?:new\s+)?(?:request|instruction|task|question)\s*\d*\s*:)", re.IGNORECASE)


def prompt_text(prompt) -> str:
    """The text of a prompt: the string itself, or the content of the last user message."""
    if isinstance(prompt, str):
        return prompt
    users = [m.get("content", "") for m in prompt if m.get("role") == "user"]
    return users[-1] if users else (prompt[-1].get("content", "") if prompt else "")


def clean_generated_prompt(text: str) -> str:
    """Strip labels, numbering and quotes from a generated request; keep the first item of a list."""
    text = (text or "").strip()
    m = _NEXT_ITEM.search(text)
    if m and m.start() > 0:
        text = text[:m.start()]
    text = _LABEL.sub("", text.strip(), count=1)
    text = _NUMBER.sub("", text, count=1).strip()
    for q in ('"', "'", "“", "”", "`"):
        if len(text) >= 2 and text.startswith(q) and text.endswith(q if q != "“" else "”"):
            text = text[1:-1].strip()
    if text.startswith("“") and text.endswith("”"):
        text = text[1:-1].strip()
    return text.strip()


def normalise(text: str) -> str:
    """Lower-case words only: the comparison key for duplicates."""
    return " ".join(re.findall(r"\w+", text.lower()))


@dataclass
class PromptFilter:
    seeds: Sequence[str]
    min_words: int = 3
    max_words: int = 200
    near_duplicate: float = 0.9
    kept: list[str] = field(default_factory=list)
    dropped: Counter = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._seed_keys = {normalise(s) for s in self.seeds}
        self._keys: set[str] = set()
        self._compare = [normalise(s).split() for s in self.seeds]

    def offer(self, raw: str | None) -> bool:
        """Clean ``raw`` and keep it if it passes every filter; returns whether it was kept (``None``
        stands for a truncated generation)."""
        if raw is None:
            self.dropped["truncated"] += 1
            return False
        text = clean_generated_prompt(raw)
        reason = self._reason(text)
        if reason:
            self.dropped[reason] += 1
            return False
        key = normalise(text)
        self.kept.append(text)
        self._keys.add(key)
        self._compare.append(key.split())
        return True

    def _reason(self, text: str) -> str | None:
        if not text:
            return "empty"
        n = len(text.split())
        if n < self.min_words:
            return "too_short"
        if n > self.max_words:
            return "too_long"
        key = normalise(text)
        if key in self._seed_keys or any(key.startswith(s + " ") for s in self._seed_keys if s):
            return "seed_copy"
        if key in self._keys:
            return "duplicate"
        words = key.split()
        if self.near_duplicate < 1.0:
            matcher = difflib.SequenceMatcher(autojunk=False)
            matcher.set_seq2(words)
            for other in self._compare:
                matcher.set_seq1(other)
                if matcher.real_quick_ratio() >= self.near_duplicate and matcher.ratio() >= self.near_duplicate:
                    return "near_duplicate"
        return None


@dataclass
class Synthesis:
    prompts: list[str]
    requested: int
    generated: int
    dropped: dict[str, int]

    def as_dict(self) -> dict:
        return {"requested": self.requested, "generated": self.generated, "kept": len(self.prompts),
                "dropped": {r: self.dropped.get(r, 0) for r in DROP_REASONS}}


def synthesize_prompts(generate: Callable[[list[str], int], list[str | None]], seeds: Sequence[str], n: int, *,
                       few_shot: int = 8, seed: int = 0, min_words: int = 3, max_words: int = 200,
                       near_duplicate: float = 0.9, max_rounds: int = 4) -> Synthesis:
    """Generate up to ``n`` new prompts.

    ``generate(few_shot_prompts, round_seed)`` returns one completion per few-shot prompt (``None`` for
    one that hit the length limit). Each round
    asks for twice the number still missing (at least 4), every request showing a fresh random sample of
    ``few_shot`` seeds; rounds stop when ``n`` prompts are kept or after ``max_rounds``.
    """
    if not seeds:
        raise ValueError("synthesize_prompts needs at least one seed prompt")
    rng = random.Random(seed)
    flt = PromptFilter(list(seeds), min_words=min_words, max_words=max_words, near_duplicate=near_duplicate)
    generated = 0
    k = min(few_shot, len(seeds))
    for round_no in range(max_rounds):
        missing = n - len(flt.kept)
        if missing <= 0:
            break
        requests = [new_request_prompt(rng.sample(list(seeds), k)) for _ in range(max(4, 2 * missing))]
        outputs = generate(requests, seed * 100 + round_no)
        generated += len(outputs)
        for out in outputs:
            flt.offer(out)
            if len(flt.kept) >= n:
                break
    return Synthesis(prompts=flt.kept[:n], requested=n, generated=generated, dropped=dict(flt.dropped))
