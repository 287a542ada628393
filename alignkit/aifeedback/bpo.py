"""BPO training data (``alignkit data bpo``; Cheng et al. 2023, "Black-Box Prompt Optimization").

From preference pairs, a writer model (any model, or an OpenAI-compatible endpoint) is asked twice per
pair, greedily by default:

1. :data:`CRITIQUE_REQUEST`: why the chosen answer is better than the rejected one;
2. :data:`REWRITE_REQUEST`: rewrite the user's prompt so that an assistant would give the better answer,
   keeping the request and adding the guidance the critique names.

Rows ``{prompt, optimized_prompt, critique}`` train ``alignkit bpo``. A rewrite is dropped when it is
empty, equal to the prompt, or **drops the original request**: fewer than ``min_overlap`` (default 0.5)
of the prompt's content words (letters/digits, longer than 3 characters, not in :data:`STOP`) occur in
the rewrite.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

CRITIQUE_REQUEST = ("Question: {prompt}\n\nAnswer A: {chosen}\n\nAnswer B: {rejected}\n\nAnswer A is better than "
                    "answer B. In two or three sentences, say why: what does answer A do that answer B does not?")
REWRITE_REQUEST = ("Here is a user's instruction and a note on what a good answer to it does.\n\nInstruction: "
                   "{prompt}\n\nWhat a good answer does: {critique}\n\nRewrite the instruction so that an "
                   "assistant would give such an answer: keep everything the user asks for and add the guidance "
                   "from the note. Reply with the rewritten instruction only.")
STOP = frozenset("that this with from have what which about there their would could should your into more "
                 "some than then them they were been when where while also just only very make does".split())
_WORD = re.compile(r"[a-z0-9]+")


@dataclass
class BPOOptions:
    max_new_tokens: int = 256
    min_overlap: float = 0.5
    seed: int = 0


def content_words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if len(w) > 3 and w not in STOP}


def keeps_request(prompt: str, rewrite: str, min_overlap: float = 0.5) -> bool:
    """Whether ``rewrite`` still holds at least ``min_overlap`` of ``prompt``'s content words."""
    words = content_words(prompt)
    if not words:
        return True
    return len(words & content_words(rewrite)) / len(words) >= min_overlap


def _reply(text: str) -> str:
    text = text.strip()
    text = re.sub(r"^(?:rewritten instruction|instruction)\s*:\s*", "", text, flags=re.IGNORECASE).strip()
    return text.strip('"\u201c\u201d').strip()


def bpo_rows(pairs: Sequence[tuple[str, str, str]], writer: Any, opts: BPOOptions
             ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Rows for ``(prompt, chosen, rejected)`` texts; ``writer.complete(texts, n, seed)`` writes the replies."""
    critiques = [c[0].strip() for c in writer.complete(
        [CRITIQUE_REQUEST.format(prompt=p, chosen=c, rejected=r) for p, c, r in pairs], 1, opts.seed)]
    rewrites = [_reply(c[0]) for c in writer.complete(
        [REWRITE_REQUEST.format(prompt=p, critique=k) for (p, _, _), k in zip(pairs, critiques)], 1, opts.seed + 1)]
    rows, dropped = [], {"empty": 0, "unchanged": 0, "drops_request": 0}
    for (prompt, _, _), critique, rewrite in zip(pairs, critiques, rewrites):
        if not rewrite or not critique:
            dropped["empty"] += 1
        elif rewrite.strip().lower() == prompt.strip().lower():
            dropped["unchanged"] += 1
        elif not keeps_request(prompt, rewrite, opts.min_overlap):
            dropped["drops_request"] += 1
        else:
            rows.append({"prompt": prompt, "optimized_prompt": rewrite, "critique": critique})
    return rows, {"pairs": len(pairs), "kept": len(rows), "dropped": dropped}
