"""Evaluation fine-tuning (EFT) examples: teach a model the judge format from ranked data.

Input rows (any data file type): ``prompt`` (string or chat messages), ``completion`` (the answer,
a string), ``score`` (an integer 0-5 on the additive rubric, e.g. mapped from human rankings) and
optionally ``justification`` (a short explanation; without one, a rubric-based explanation is written
for the score). Each row becomes a prompt-completion example whose prompt is the judge's grading
request for (prompt, completion) and whose completion is the justification plus a final
``Score: N`` line.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from alignkit.aifeedback.pairs import as_chat
from alignkit.aifeedback.prompts import eft_justification, judge_prompt
from alignkit.data.io import DataError, read_rows


def _score(value: Any, path, row_no: int) -> int:
    if isinstance(value, bool) or value is None:
        raise DataError("expected an integer score from 0 to 5", path=path, row=row_no, field="score")
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise DataError(f"expected an integer score from 0 to 5, got {value!r}", path=path, row=row_no,
                        field="score") from None
    if not math.isfinite(f) or f != int(f) or not 0 <= f <= 5:
        raise DataError(f"expected an integer score from 0 to 5, got {value!r}", path=path, row=row_no,
                        field="score")
    return int(f)


def eft_rows(path: str | Path) -> list[dict]:
    """Validated ``{"prompt", "completion", "score", "justification"}`` rows of a ranked-data file."""
    out = []
    for row_no, row in read_rows(path):
        prompt = row.get("prompt")
        if not (isinstance(prompt, str) and prompt.strip()) and not (isinstance(prompt, list) and prompt):
            raise DataError("expected a non-empty string or a list of chat messages", path=path, row=row_no,
                            field="prompt")
        completion = row.get("completion")
        if not isinstance(completion, str) or not completion.strip():
            raise DataError("expected a non-empty string (the answer being graded)", path=path, row=row_no,
                            field="completion")
        score = _score(row.get("score"), path, row_no)
        just = row.get("justification")
        if just is not None and not isinstance(just, str):
            raise DataError("expected a string", path=path, row=row_no, field="justification")
        out.append({"prompt": prompt, "completion": completion, "score": score, "justification": just})
    if not out:
        raise DataError("no rows", path=path)
    return out


def eft_completion(score: int, justification: str | None = None) -> str:
    if justification and justification.strip():
        text = justification.strip()
        return f"{text}\nScore: {score}"
    return eft_justification(score)


def build_eft_examples(rows: list[dict], chat_template: str = "auto") -> list[dict]:
    """Prompt-completion examples in the judge format (chat messages unless ``chat_template == "never"``)."""
    examples = []
    for r in rows:
        prompt, completion = as_chat(judge_prompt(r["prompt"], r["completion"]),
                                     eft_completion(r["score"], r.get("justification")), chat_template)
        examples.append({"prompt": prompt, "completion": completion})
    return examples
