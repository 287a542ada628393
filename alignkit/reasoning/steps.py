"""The one step rule that the process reward model, Step-DPO, the Monte-Carlo labellers and MCTS share.

**A step** is a non-empty line of a solution (leading/trailing spaces dropped): ``Step 1: ...`` lines and
the final ``Answer: N`` line are steps; so is any other line a model writes. :func:`split_steps` turns a
completion into steps, :func:`join_steps` puts them back.

**Tokens.** A prompt is rendered by the chat rule (:func:`alignkit.data.render.render_prompt`); each step is
then tokenised on its own as ``step + "\\n"`` (:data:`STEP_SEPARATOR`) without special tokens and the pieces
are concatenated (:func:`encode_steps`). The *separator position* of a step is the index of its last token
(the one that holds its newline): that is where a process reward model reads its score. Tokenising each
step separately makes the positions exact whatever the tokenizer merges; it equals tokenising the joined
text whenever the tokenizer splits after a newline (byte-level BPE as in SmolLM2 does: a newline before a
letter is its own pre-token).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from alignkit.data.render import encode_text

__all__ = ["STEP_SEPARATOR", "encode_steps", "is_final_step", "join_steps", "prefix_text", "solution_steps",
           "split_steps"]

STEP_SEPARATOR = "\n"
_FINAL = re.compile(r"^\W*answer\s*[:：]", re.IGNORECASE)


def is_final_step(step: str) -> bool:
    """Whether a step is the final answer line (``Answer: N``, markdown marks allowed)."""
    return bool(_FINAL.match(step.strip()))


def split_steps(text: str) -> list[str]:
    """The steps of a solution: its non-empty lines, stripped."""
    return [line.strip() for line in str(text).splitlines() if line.strip()]


def solution_steps(text: str, max_steps: int | None = None) -> list[str]:
    """The steps of a sampled solution up to and including its first answer line (what a model writes
    after its answer is not part of the solution), at most ``max_steps``."""
    steps = split_steps(text)
    end = next((i + 1 for i, s in enumerate(steps) if is_final_step(s)), len(steps))
    return steps[:end][:max_steps] if max_steps else steps[:end]


def join_steps(steps: Sequence[str]) -> str:
    """Steps back into a solution text (one per line, no trailing newline)."""
    return STEP_SEPARATOR.join(s.strip() for s in steps)


def prefix_text(steps: Sequence[str]) -> str:
    """The text a continuation starts after: every step followed by the separator ("" for no steps)."""
    return "".join(s.strip() + STEP_SEPARATOR for s in steps)


def encode_steps(tokenizer: Any, steps: Sequence[str]) -> tuple[list[int], list[int]]:
    """Token ids of ``steps`` (each ``step + "\\n"``, no special tokens) and, per step, the index of its
    last token within those ids (its separator position)."""
    ids: list[int] = []
    ends: list[int] = []
    for step in steps:
        piece = encode_text(tokenizer, step.strip() + STEP_SEPARATOR, special=False)
        if not piece:
            raise ValueError(f"step {step!r} has no tokens")
        ids.extend(piece)
        ends.append(len(ids) - 1)
    return ids, ends
