"""In-context learning with dynamic example selection (``--icl-examples FILE --icl-k K --icl-selector S``).

Per query, the K training examples most like it become few-shot turns before it (user: example prompt,
assistant: example answer; the most similar example last, next to the query). Selectors:

``jaccard``    |A ∩ B| / |A ∪ B| of the lower-cased word sets of the query and each example prompt
``bm25``       BM25 over the example prompts (the ``bm25s`` package, English stop words removed)
``embedding``  cosine similarity of mean-pooled final hidden states of the *answering model itself*
               (no second model to install); prompts embedded as plain text
``random``     K examples drawn at random (seeded by ``--seed`` and the query's position)
``fixed``      the first K examples of the file, for every query

Ties keep file order. ``--icl-max-tokens`` bounds the whole rendered prompt (examples + query, chat
template included): examples are dropped from the least similar on until it fits; the query is never
cut (if the query alone is over the budget it goes in without examples).

Example files: prompt-completion rows, preference rows (the ``chosen`` answer), or ``messages`` rows
(the last user turn and the assistant turn after it); message-list fields are read as their text.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SELECTORS = ("jaccard", "bm25", "embedding", "random", "fixed")
_WORD = re.compile(r"[a-z0-9]+")


class ICLError(ValueError):
    """A problem with the ICL examples or settings (one line, names the file)."""


@dataclass(frozen=True)
class Example:
    prompt: str
    answer: str


def words(text: str) -> set[str]:
    return set(_WORD.findall(text.lower()))


def jaccard(a: set[str], b: set[str]) -> float:
    union = a | b
    return len(a & b) / len(union) if union else 0.0


def _text(value: Any, role: str | None = None) -> str:
    if isinstance(value, str):
        return value
    contents = [m["content"] for m in value if role is None or m.get("role") == role]
    return "\n".join(contents) if contents else "\n".join(m["content"] for m in value)


def load_icl_examples(path: str | Path) -> list[Example]:
    """The usable (prompt, answer) examples of a data file (see the module docstring)."""
    from alignkit.data import DataError, load_examples

    try:
        loaded = load_examples(path, ("prompt_completion", "preference", "lm"), skip_invalid=True)
    except DataError as e:
        raise ICLError(f"--icl-examples: {e}") from None
    out = []
    for _, row, kind in loaded.with_kinds():
        if kind == "lm":
            msgs = row.get("messages")
            if not isinstance(msgs, list):
                continue
            last_user = max((i for i, m in enumerate(msgs) if m["role"] == "user"), default=None)
            if last_user is None or last_user + 1 >= len(msgs) or msgs[last_user + 1]["role"] != "assistant":
                continue
            prompt, answer = msgs[last_user]["content"], msgs[last_user + 1]["content"]
        else:
            prompt = _text(row["prompt"], "user")
            answer = _text(row["completion" if kind == "prompt_completion" else "chosen"], "assistant")
        if prompt.strip() and answer.strip():
            out.append(Example(prompt.strip(), answer.strip()))
    if not out:
        raise ICLError(f"--icl-examples {path}: no usable examples (need prompt-completion, preference or "
                       "messages rows with a user turn and an answer)")
    return out


class Selector:
    """Ranks the examples for a query: :meth:`rank` returns example indices, most similar first."""

    def __init__(self, examples: Sequence[Example]) -> None:
        self.examples = list(examples)

    def rank(self, query: str, position: int = 0) -> list[int]:
        raise NotImplementedError


class JaccardSelector(Selector):
    def __init__(self, examples: Sequence[Example]) -> None:
        super().__init__(examples)
        self._sets = [words(e.prompt) for e in self.examples]

    def rank(self, query: str, position: int = 0) -> list[int]:
        q = words(query)
        scores = [jaccard(q, s) for s in self._sets]
        return sorted(range(len(scores)), key=lambda i: (-scores[i], i))


class BM25Selector(Selector):
    def __init__(self, examples: Sequence[Example]) -> None:
        super().__init__(examples)
        try:
            import bm25s
        except ImportError:
            raise ICLError("--icl-selector bm25 needs the bm25s package (pip install 'alignkit[icl]')") from None
        self._bm25s = bm25s
        self._index = bm25s.BM25()
        self._index.index(bm25s.tokenize([e.prompt for e in self.examples], stopwords="en", show_progress=False),
                          show_progress=False)

    def rank(self, query: str, position: int = 0) -> list[int]:
        n = len(self.examples)
        tokens = self._bm25s.tokenize([query], stopwords="en", show_progress=False)
        docs, scores = self._index.retrieve(tokens, k=n, show_progress=False)
        score_of = {int(d): float(s) for d, s in zip(docs[0], scores[0])}
        return sorted(range(n), key=lambda i: (-score_of.get(i, 0.0), i))


class EmbeddingSelector(Selector):
    """Cosine similarity of mean-pooled final hidden states of ``model`` (its own embedding of the text)."""

    def __init__(self, examples: Sequence[Example], model: Any, tokenizer: Any, batch_size: int = 16) -> None:
        super().__init__(examples)
        self.model, self.tokenizer, self.batch_size = model, tokenizer, batch_size
        self._matrix = self.embed([e.prompt for e in self.examples])

    def embed(self, texts: Sequence[str]):
        import torch

        from alignkit.data import pad

        device = next(self.model.parameters()).device
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        out = []
        with torch.no_grad():
            for start in range(0, len(texts), self.batch_size):
                ids = [self.tokenizer(t, add_special_tokens=False)["input_ids"][:512] or [pad_id]
                       for t in texts[start:start + self.batch_size]]
                input_ids = pad(ids, pad_id).to(device)
                mask = pad([[1] * len(i) for i in ids], 0).to(device)
                hidden = self.model(input_ids=input_ids, attention_mask=mask, output_hidden_states=True,
                                    use_cache=False).hidden_states[-1].float()
                m = mask.unsqueeze(-1).float()
                mean = (hidden * m).sum(1) / m.sum(1).clamp(min=1)
                out.append(torch.nn.functional.normalize(mean, dim=-1).cpu())
        return torch.cat(out)

    def rank(self, query: str, position: int = 0) -> list[int]:
        sims = (self._matrix @ self.embed([query])[0]).tolist()
        return sorted(range(len(sims)), key=lambda i: (-sims[i], i))


class RandomSelector(Selector):
    def __init__(self, examples: Sequence[Example], seed: int = 0) -> None:
        super().__init__(examples)
        self.seed = seed

    def rank(self, query: str, position: int = 0) -> list[int]:
        order = list(range(len(self.examples)))
        random.Random(self.seed * 1_000_003 + position).shuffle(order)
        return order


class FixedSelector(Selector):
    def rank(self, query: str, position: int = 0) -> list[int]:
        return list(range(len(self.examples)))


def build_selector(name: str, examples: Sequence[Example], *, model: Any = None, tokenizer: Any = None,
                   seed: int = 0) -> Selector:
    if name == "jaccard":
        return JaccardSelector(examples)
    if name == "bm25":
        return BM25Selector(examples)
    if name == "embedding":
        if model is None:
            raise ICLError("--icl-selector embedding needs the answering model")
        return EmbeddingSelector(examples, model, tokenizer)
    if name == "random":
        return RandomSelector(examples, seed)
    if name == "fixed":
        return FixedSelector(examples)
    raise ICLError(f"unknown --icl-selector '{name}'; valid: {', '.join(SELECTORS)}")


def _query_text(query: Any) -> str:
    return query if isinstance(query, str) else _text(query, "user")


def _turns(query: Any) -> list[dict[str, str]]:
    return [{"role": "user", "content": query}] if isinstance(query, str) else list(query)


def with_examples(query: Any, shots: Sequence[Example], chat: bool) -> Any:
    """The query with ``shots`` (least similar first) in front: as chat turns (after a leading system
    message), or as plain text blocks ``Question: ...\\nAnswer: ...`` when not rendered as chat."""
    if not shots:
        return query
    if chat:
        turns = _turns(query)
        head = turns[:1] if turns and turns[0]["role"] == "system" else []
        shot_turns = [t for e in shots for t in ({"role": "user", "content": e.prompt},
                                                  {"role": "assistant", "content": e.answer})]
        return head + shot_turns + turns[len(head):]
    blocks = "".join(f"Question: {e.prompt}\nAnswer: {e.answer}\n\n" for e in shots)
    return f"{blocks}Question: {_query_text(query)}\nAnswer:"


@dataclass
class FewShot:
    """Puts up to ``k`` selected examples in front of each query within ``max_tokens`` (see the module
    docstring). ``count(prompt)`` gives the prompt's token length as the model will see it; ``chat(query)``
    whether the query is rendered as a conversation (examples as turns) or as plain text (text blocks)."""

    selector: Selector
    k: int
    max_tokens: int | None
    chat: Any
    count: Any

    def apply(self, queries: Sequence[Any]) -> tuple[list[Any], list[int]]:
        """The augmented queries and the number of examples each received."""
        out, used = [], []
        for pos, q in enumerate(queries):
            ranked = self.selector.rank(_query_text(q), pos)[: self.k]
            shots = [self.selector.examples[i] for i in reversed(ranked)]  # most similar last
            chat = self.chat(q)
            while shots and self.max_tokens is not None and self.count(with_examples(q, shots, chat)) > self.max_tokens:
                shots = shots[1:]  # drop the least similar
            out.append(with_examples(q, shots, chat))
            used.append(len(shots))
        return out, used
