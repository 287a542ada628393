"""Imitation data from a stronger model (``alignkit data distill``): the teacher (a local model or an
OpenAI-compatible endpoint) answers each prompt ``samples`` times; with a filter (any reward spec:
``math:answer``, ``judge:MODEL``, ``rm:PATH``, ``FILE.py:FUNC``) the best-scoring answer is kept when it
scores at least ``min_score``, without one every distinct answer is kept. Rows are SFT data: ``prompt``
(a user turn), ``completion`` (an assistant turn), ``score`` and ``teacher``; the prompt file's other
columns ride along (a filter such as ``math:answer`` reads them).

The imitation caveat (Gudibande et al. 2023, "The False Promise of Imitating Proprietary LLMs"): a student
trained this way copies the teacher's style far better than its knowledge; check with ``alignkit compare``
on gold-checked prompts, not with a judge that rewards style.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def _text(prompt: Any) -> str:
    if isinstance(prompt, str):
        return prompt
    users = [m["content"] for m in prompt if m.get("role") == "user"]
    return users[-1] if users else "\n".join(m["content"] for m in prompt)


def distill_rows(rows: Sequence[dict[str, Any]], teacher: Any, *, samples: int = 1, seed: int = 0,
                 reward: Any = None, min_score: float | None = None, teacher_name: str = "teacher"
                 ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """SFT rows from prompt ``rows``; ``teacher.complete(texts, n, seed)``; ``reward`` a RewardSet or None."""
    texts = [_text(r["prompt"]) for r in rows]
    replies = teacher.complete(texts, samples, seed)
    out, dropped = [], {"empty": 0, "below_min_score": 0}
    for row, text, answers in zip(rows, texts, replies):
        answers = list(dict.fromkeys(a.strip() for a in answers if a.strip()))
        if not answers:
            dropped["empty"] += 1
            continue
        extra = {k: v for k, v in row.items() if k not in ("prompt", "completion")}
        if reward is None:
            picked = [(a, None) for a in answers]
        else:
            columns = {k: [v] * len(answers) for k, v in extra.items()}
            total, _ = reward([text] * len(answers), answers, columns)
            scores = [float(s) for s in total]
            best = max(range(len(answers)), key=lambda i: (scores[i], -i))
            if min_score is not None and scores[best] < min_score:
                dropped["below_min_score"] += 1
                continue
            picked = [(answers[best], scores[best])]
        for answer, score in picked:
            out.append({**extra, "prompt": [{"role": "user", "content": text}],
                        "completion": [{"role": "assistant", "content": answer}], "score": score,
                        "teacher": teacher_name})
    return out, {"prompts": len(rows), "rows": len(out), "dropped": dropped}
