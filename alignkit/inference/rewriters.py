"""Small models that work around an unchanged policy: a prompt optimizer in front of it (BPO, Cheng et al.
2023, "Black-Box Prompt Optimization") and a response corrector after it (Aligner, Ji et al. 2024,
"Aligner: Efficient Alignment by Learning to Correct"). Both are causal LMs fine-tuned with SFT on the
requests below (``alignkit bpo``, ``alignkit aligner``); this module holds the one wording of each request,
used by training and by use alike, and the loaders behind ``--prompt-optimizer`` / ``--aligner``.

A model is accepted only when its ``alignkit.json`` records that it was trained for the job
(``"trained_as": "bpo"`` / ``"aligner"``, written by those commands).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

BPO = "bpo"
ALIGNER = "aligner"

BPO_REQUEST = ("Rewrite the instruction below so that an assistant can answer it well: make it clearer and more "
               "specific, and spell out what a good answer needs. Keep every requirement of the original. Reply "
               "with the rewritten instruction only.\n\nInstruction: {prompt}")
ALIGNER_REQUEST = ("Below are a question and an answer to it. Rewrite the answer so that it is more helpful, "
                   "correct and harmless; if it is already good, repeat it unchanged. Reply with the improved "
                   "answer only.\n\nQuestion: {question}\n\nAnswer: {answer}")


class AidError(ValueError):
    """A prompt optimizer / corrector / ICL setting that cannot be used (one line, names the path)."""


def bpo_request(prompt: str) -> str:
    return BPO_REQUEST.format(prompt=prompt)


def aligner_request(question: str, answer: str) -> str:
    return ALIGNER_REQUEST.format(question=question, answer=answer)


def user_text(prompt: Any) -> str:
    """The text of a prompt: a string itself, or the content of a message list's last user turn."""
    if isinstance(prompt, str):
        return prompt
    users = [m["content"] for m in prompt if m.get("role") == "user"]
    return users[-1] if users else "\n".join(m["content"] for m in prompt)


def replace_user_text(prompt: Any, text: str) -> Any:
    """``prompt`` with its (last) user text replaced by ``text``."""
    if isinstance(prompt, str):
        return text
    out = [dict(m) for m in prompt]
    for m in reversed(out):
        if m.get("role") == "user":
            m["content"] = text
            break
    return out


def check_trained_as(path: str | Path, expected: str, flag: str) -> Path:
    """The model directory (``final/`` of a run directory) when its ``alignkit.json`` says ``expected``."""
    root = Path(path)
    model_dir = root / "final" if (root / "final").is_dir() else root
    meta = model_dir / "alignkit.json"
    if not model_dir.is_dir():
        raise AidError(f"{flag} {path}: no such model directory")
    try:
        trained_as = json.loads(meta.read_text()).get("trained_as") if meta.is_file() else None
    except (OSError, ValueError, AttributeError):
        trained_as = None
    if trained_as != expected:
        what = f"was trained as '{trained_as}'" if trained_as else "does not say what it was trained for"
        raise AidError(f"{flag} {path}: {meta} {what}; expected a model trained with `alignkit {expected}`")
    return model_dir


class Rewriter:
    """A loaded BPO or Aligner model that answers its request greedily."""

    def __init__(self, path: str | Path, expected: str, flag: str, *, max_new_tokens: int = 256,
                 batch_size: int = 8, device: Any = None) -> None:
        from alignkit.models import ModelNotFoundError, load_trained

        model_dir = check_trained_as(path, expected, flag)
        try:
            self.model, self.tokenizer = load_trained(str(model_dir))
        except ModelNotFoundError as e:
            raise AidError(f"{flag} {path}: {e}") from None
        if device is not None:
            self.model.to(device)
        self.max_new_tokens, self.batch_size = max_new_tokens, batch_size

    def ask(self, requests: Sequence[str]) -> tuple[list[str], list[int]]:
        """Greedy replies to ``requests`` (user turns) and the number of tokens generated for each."""
        from alignkit.data.render import request_prompt
        from alignkit.generation import generate_with_ids

        asked = [request_prompt(self.tokenizer, r) for r in requests]
        gens = generate_with_ids(self.model, self.tokenizer, asked, max_new_tokens=self.max_new_tokens,
                                 batch_size=self.batch_size, temperature=0.0)
        return [t.strip() for t in gens.texts], [len(c) for c in gens.completion_ids]


class PromptOptimizer(Rewriter):
    def __init__(self, path: str | Path, **kwargs: Any) -> None:
        super().__init__(path, BPO, "--prompt-optimizer", **kwargs)

    def rewrite(self, prompts: Sequence[Any]) -> tuple[list[Any], list[int]]:
        """Each prompt with its user text rewritten (kept as it was when the rewrite comes back empty)."""
        texts, tokens = self.ask([bpo_request(user_text(p)) for p in prompts])
        return [replace_user_text(p, t) if t else p for p, t in zip(prompts, texts)], tokens


class Aligner(Rewriter):
    def __init__(self, path: str | Path, **kwargs: Any) -> None:
        super().__init__(path, ALIGNER, "--aligner", **kwargs)

    def correct(self, prompts: Sequence[Any], answers: Sequence[str]) -> tuple[list[str], list[int]]:
        """The corrected answers (the original where the correction comes back empty)."""
        texts, tokens = self.ask([aligner_request(user_text(p), a) for p, a in zip(prompts, answers)])
        return [t if t else a for t, a in zip(texts, answers)], tokens
