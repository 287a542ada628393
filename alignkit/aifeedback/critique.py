"""Critique and revise (in the spirit of Bai et al. 2022, Constitutional AI, supervised stage).

For each prompt: the model answers; it is then shown one principle (drawn at random from the list, with
a fixed seed) and asked to critique its answer against it; finally it is asked to revise the answer.
The revision is ``chosen`` and the original answer ``rejected``. Rows whose answer or revision is empty,
or whose revision does not change the answer, are dropped.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignkit.aifeedback.instructions import normalise
from alignkit.aifeedback.pairs import as_chat
from alignkit.aifeedback.principles import DEFAULT_PRINCIPLES
from alignkit.aifeedback.prompts import critique_request, revision_request
from alignkit.generation import texts as generation


class PrinciplesError(ValueError):
    pass


def load_principles(path: str | Path | None) -> list[str]:
    """The shipped list, or a user file: ``.txt`` one principle per line (blank lines and ``#`` comments
    skipped), ``.json`` a list of strings, ``.jsonl`` rows ``{"principle": ...}``."""
    if path is None:
        return list(DEFAULT_PRINCIPLES)
    p = Path(path)
    if not p.is_file():
        raise PrinciplesError(f"principles file not found: {p}")
    text = p.read_text(encoding="utf-8")
    try:
        if p.suffix.lower() == ".json":
            items = json.loads(text)
            if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
                raise PrinciplesError(f"{p}: expected a JSON list of strings")
        elif p.suffix.lower() == ".jsonl":
            items = []
            for n, line in enumerate(text.splitlines(), start=1):
                if not line.strip():
                    continue
                row = json.loads(line)
                if not isinstance(row, dict) or not isinstance(row.get("principle"), str):
                    raise PrinciplesError(f"{p}: row {n}: field 'principle': expected a string")
                items.append(row["principle"])
        else:
            items = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    except json.JSONDecodeError as e:
        raise PrinciplesError(f"{p}: not valid JSON: {e}") from None
    items = [x.strip() for x in items if x.strip()]
    if not items:
        raise PrinciplesError(f"{p}: no principles in the file")
    return items


@dataclass
class CritiqueOptions:
    max_new_tokens: int = 256
    critique_max_new_tokens: int = 128
    temperature: float = 0.0
    seed: int = 0
    batch_size: int = 8
    chat_template: str = "auto"


_PREFACE = re.compile(r"^\s*(?:\*\*)?\s*(?:here(?:'s| is) (?:an? |the |my )?)?(?:improved|revised|rewritten|updated)"
                      r"(?: version of (?:my|the) (?:previous )?answer| answer| response| version)?\s*[:.]\s*(?:\*\*)?\s*",
                      re.IGNORECASE)


def clean_revision(text: str) -> str:
    return _PREFACE.sub("", (text or "").strip(), count=1).strip()


def _turns(prompt: Any, turns: list[tuple[str, str]], chat_template: str) -> Any:
    """The conversation so far: chat messages, or a plain transcript under ``chat_template="never"``."""
    if chat_template == "never":
        parts = [f"User: {prompt if isinstance(prompt, str) else prompt[-1]['content']}"]
        parts += [f"{'Assistant' if r == 'assistant' else 'User'}: {c}" for r, c in turns]
        return "\n\n".join(parts) + "\n\nAssistant:"
    msgs = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    return msgs + [{"role": r, "content": c} for r, c in turns]


def critique_revise(prompts: list, model: Any, tokenizer: Any, principles: list[str],
                    options: CritiqueOptions) -> tuple[list[dict], dict]:
    o = options
    gen = dict(temperature=o.temperature, batch_size=o.batch_size, chat_template=o.chat_template)
    answers = [a.strip() for a in generation.generate_texts(model, tokenizer, prompts, max_new_tokens=o.max_new_tokens,
                                                            seed=o.seed, **gen)]
    rng = random.Random(o.seed)
    chosen_principles = [rng.choice(principles) for _ in prompts]
    todo = [i for i, a in enumerate(answers) if a]
    crit_convs = [_turns(prompts[i], [("assistant", answers[i]), ("user", critique_request(chosen_principles[i]))],
                         o.chat_template) for i in todo]
    critiques = [c.strip() for c in generation.generate_texts(
        model, tokenizer, crit_convs, max_new_tokens=o.critique_max_new_tokens, seed=o.seed + 1, **gen)]
    rev_convs = [_turns(prompts[i], [("assistant", answers[i]), ("user", critique_request(chosen_principles[i])),
                                     ("assistant", c), ("user", revision_request())], o.chat_template)
                 for i, c in zip(todo, critiques)]
    revisions = [clean_revision(r) for r in generation.generate_texts(
        model, tokenizer, rev_convs, max_new_tokens=o.max_new_tokens, seed=o.seed + 2, **gen)]
    rows = []
    stats = {"prompts": len(prompts), "empty_answer": len(prompts) - len(todo), "empty_revision": 0,
             "unchanged": 0, "kept": 0}
    for i, crit, rev in zip(todo, critiques, revisions):
        if not rev:
            stats["empty_revision"] += 1
            continue
        if normalise(rev) == normalise(answers[i]):
            stats["unchanged"] += 1
            continue
        prompt, chosen = as_chat(prompts[i], rev, o.chat_template)
        _, rejected = as_chat(prompts[i], answers[i], o.chat_template)
        rows.append({"prompt": prompt, "chosen": chosen, "rejected": rejected,
                     "principle": chosen_principles[i], "critique": crit})
    stats["kept"] = len(rows)
    return rows, stats
