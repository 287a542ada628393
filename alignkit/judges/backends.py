"""Where a judge's text comes from: a local model (the policy itself or another model) or an
OpenAI-compatible chat-completions endpoint.

A backend has one method, ``complete(texts, n, seed) -> list[list[str]]``: ``n`` sampled replies to each
judge prompt (sent as one user chat message). Sampling is reproducible: the same prompts and ``seed``
give the same replies (local models: seeded generation; HTTP: the ``seed`` field, which servers such as
vLLM honour).
"""

from __future__ import annotations

import hashlib
import json
import os
import urllib.parse
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from alignkit.httpjson import request_json
from alignkit.rewards import RewardError

__all__ = ["API_KEY_ENV", "JudgeError", "CallableBackend", "LocalBackend", "HTTPBackend", "content_seed"]

#: environment variable holding the API key sent to an HTTP judge (``Authorization: Bearer KEY``)
API_KEY_ENV = "ALIGNKIT_JUDGE_API_KEY"


class JudgeError(RewardError):
    """A judge cannot be built or called (bad spec, unreachable endpoint, unbound ``judge:self``...).
    A :class:`~alignkit.config.ConfigError`: the command line prints it and exits with status 2."""


def content_seed(seed: int, texts: Sequence[str], salt: str = "") -> int:
    """A sampling seed that depends only on ``seed`` and the judged texts, so that re-judging the same
    inputs (a resumed run) draws the same samples whatever happened before."""
    h = hashlib.sha256(f"{int(seed)}|{salt}".encode())
    for t in texts:
        h.update(b"\x00")
        h.update(t.encode("utf-8", "replace"))
    return int.from_bytes(h.digest()[:7], "big")


class CallableBackend:
    """A Python function as the judge model: ``fn(judge_prompt, sample_index) -> str`` (tests, or any
    custom client).

    ``probabilities`` (optional) stands in for a local model's next-token distribution:
    ``probabilities(judge_prompt, reply, label) -> {value: weight}`` for the value written after
    ``"{label}:"`` (weights are normalised over ``low..high``; missing values weigh 0). It backs
    :meth:`score_probabilities` (G-Eval) and :meth:`force_scores`; without it both give ``None``."""

    def __init__(self, fn: Callable[[str, int], str], name: str = "function",
                 probabilities: Callable[[str, str, str], dict[int, float]] | None = None) -> None:
        self.fn = fn
        self.name = name
        self.probabilities = probabilities

    def complete(self, texts: Sequence[str], n: int, seed: int) -> list[list[str]]:
        return [[str(self.fn(t, i)) for i in range(n)] for t in texts]

    def score_probabilities(self, texts: Sequence[str], replies: Sequence[str], low: int, high: int,
                            label: str = "Score") -> list[dict[int, float] | None]:
        if self.probabilities is None:
            return [None] * len(texts)
        out: list[dict[int, float] | None] = []
        for t, r in zip(texts, replies):
            raw = self.probabilities(t, r, label) or {}
            weights = {v: max(0.0, float(raw.get(v, 0.0))) for v in range(low, high + 1)}
            total = sum(weights.values())
            out.append({v: w / total for v, w in weights.items()} if total > 0 else None)
        return out

    def force_scores(self, texts: Sequence[str], replies: Sequence[str], low: int, high: int,
                     label: str = "Score") -> list[int | None]:
        probs = self.score_probabilities(texts, replies, low, high, label)
        return [None if p is None else max(p, key=lambda v: (p[v], -v)) for p in probs]

    def force_choices(self, texts: Sequence[str], replies: Sequence[str], label: str,
                      choices: Sequence[str]) -> list[str | None]:
        """The heaviest of ``choices`` under ``probabilities(text, reply, label)`` (keyed by the choice
        strings); None without ``probabilities`` or when all weigh 0."""
        if self.probabilities is None:
            return [None] * len(texts)
        out: list[str | None] = []
        for t, r in zip(texts, replies):
            raw = self.probabilities(t, r, label) or {}
            w = [float(raw.get(c, 0.0)) for c in choices]
            out.append(choices[w.index(max(w))] if max(w) > 0 else None)
        return out


class LocalBackend:
    """A causal LM with its tokenizer, generating with :func:`alignkit.generation.sample_completions`.

    ``model=None`` is the unbound policy of ``judge:self``: :meth:`bind` sets it (the training method
    does that in its set-up, see :func:`alignkit.judges.bind_policy`). Judge prompts go through the
    tokenizer's chat template; a prompt longer than ``max_input_tokens`` (default: the model's
    context minus ``max_new_tokens``) keeps its first and last halves.
    """

    #: True for ``judge:self`` (the training method binds the policy, see :func:`alignkit.judges.bind_policy`)
    is_policy = False

    def __init__(self, model: Any = None, tokenizer: Any = None, *, name: str = "self", temperature: float = 0.7,
                 top_p: float = 1.0, max_new_tokens: int = 256, batch_size: int = 8,
                 max_input_tokens: int | None = None) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.temperature = float(temperature)
        self.top_p = float(top_p)
        self.max_new_tokens = int(max_new_tokens)
        self.batch_size = max(1, int(batch_size))
        self.max_input_tokens = max_input_tokens

    def bind(self, model: Any, tokenizer: Any) -> None:
        self.model = model
        self.tokenizer = tokenizer

    def _limit(self, model: Any) -> int:
        if self.max_input_tokens:
            return int(self.max_input_tokens)
        ctx = getattr(getattr(model, "config", None), "max_position_embeddings", None) or 2048
        return max(16, int(ctx) - self.max_new_tokens)

    def complete(self, texts: Sequence[str], n: int, seed: int) -> list[list[str]]:
        if self.model is None or self.tokenizer is None:
            raise JudgeError(f"judge:{self.name} has no model bound: judge:self judges with the policy being "
                             "trained, which the training method must hand over (alignkit.judges.bind_policy); "
                             "outside training pass policy=MODEL, tokenizer=TOKENIZER to load_judge")
        from alignkit.data.render import request_prompt
        from alignkit.generation.backends import stop_token_ids
        from alignkit.generation.sampling import encode_prompt, sample_completions
        from alignkit.models.modules import unwrap

        model = unwrap(self.model)
        tok = self.tokenizer
        limit = self._limit(model)
        encoded = []
        for t in texts:
            ids = encode_prompt(tok, request_prompt(tok, t))
            if len(ids) > limit:
                head = limit // 2
                ids = ids[:head] + ids[len(ids) - (limit - head):]
            encoded.append(ids)
        eos = list(stop_token_ids(tok, model))
        pad = tok.pad_token_id if tok.pad_token_id is not None else eos[0]
        greedy = self.temperature <= 0
        draws = 1 if greedy else n
        out: list[list[str]] = [[] for _ in texts]
        order = sorted(range(len(texts)), key=lambda i: -len(encoded[i]))
        for b, start in enumerate(range(0, len(order), self.batch_size)):
            idx = order[start:start + self.batch_size]
            ro = sample_completions(model, [encoded[i] for i in idx], pad_id=pad, eos_id=eos,
                                    max_new_tokens=self.max_new_tokens, temperature=max(self.temperature, 0.0),
                                    top_p=self.top_p, num_generations=draws,
                                    generator_seed=(seed + b) % (2**63 - 1))
            for j, i in enumerate(idx):
                replies = [tok.decode(ro.completion_ids[j * draws + k], skip_special_tokens=True)
                           for k in range(draws)]
                out[i] = replies * n if greedy else replies
        return out


    def _score_tokens(self, low: int, high: int, label: str = "Score") -> tuple[str, dict[int, int]] | None:
        """How this tokenizer continues ``"\n{label}:"`` with each value low..high as one token: the
        separator (``" "`` or ``""``) and value -> token id; None when some value is not one token."""
        spec = self._choice_tokens([str(v) for v in range(low, high + 1)], label)
        return None if spec is None else (spec[0], {int(k): t for k, t in spec[1].items()})

    def _choice_tokens(self, choices: Sequence[str], label: str) -> tuple[str, dict[str, int]] | None:
        tok = self.tokenizer
        for sep in (" ", ""):
            prefix = list(tok(f"\n{label}:" + sep, add_special_tokens=False)["input_ids"])
            cands: dict[str, int] = {}
            for v in choices:
                full = list(tok(f"\n{label}:{sep}{v}", add_special_tokens=False)["input_ids"])
                if full[:len(prefix)] != prefix or len(full) != len(prefix) + 1:
                    break
                cands[v] = full[-1]
            if len(cands) == len(choices):
                return sep, cands
        return None

    def force_scores(self, texts: Sequence[str], replies: Sequence[str], low: int, high: int,
                     label: str = "Score") -> list[int | None]:
        """For replies without a valid score: append ``"\nScore:"`` (``"\n{label}:"``) to the judge's reply
        and take the most likely value low..high as the next token (one forward, no sampling). None where
        the tokenizer cannot spell every value as one token."""
        logits = self._value_logits(texts, replies, low, high, label)
        if logits is None:
            return [None] * len(texts)
        return [low + int(row.argmax()) for row in logits]

    def score_probabilities(self, texts: Sequence[str], replies: Sequence[str], low: int, high: int,
                            label: str = "Score") -> list[dict[int, float] | None]:
        """G-Eval's hook: the judge's next-token probabilities of the values low..high after its reply and
        ``"\n{label}:"``, renormalised over those values (they sum to 1). None where the tokenizer cannot
        spell every value as one token."""
        logits = self._value_logits(texts, replies, low, high, label)
        if logits is None:
            return [None] * len(texts)
        probs = logits.double().softmax(-1)
        return [{low + j: float(row[j]) for j in range(row.shape[0])} for row in probs]

    def force_choices(self, texts: Sequence[str], replies: Sequence[str], label: str,
                      choices: Sequence[str]) -> list[str | None]:
        """The most likely of ``choices`` (each one token, e.g. ``["A", "B"]``) as the next token after the
        reply and ``"\n{label}:"``; None where the tokenizer cannot spell a choice as one token."""
        logits = self._choice_logits(texts, replies, label, list(choices))
        if logits is None:
            return [None] * len(texts)
        return [choices[int(row.argmax())] for row in logits]

    def _value_logits(self, texts: Sequence[str], replies: Sequence[str], low: int, high: int, label: str):
        """[len(texts), high-low+1] next-token logits of the values after reply + ``"\n{label}:"``."""
        return self._choice_logits(texts, replies, label, [str(v) for v in range(low, high + 1)])

    def _choice_logits(self, texts: Sequence[str], replies: Sequence[str], label: str, choices: list[str]):
        """[len(texts), len(choices)] next-token logits of the choices after reply + ``"\n{label}:"``."""
        import torch

        from alignkit.data.render import request_prompt
        from alignkit.generation.sampling import encode_prompt, eval_mode
        from alignkit.models.modules import unwrap

        if self.model is None or self.tokenizer is None or not texts:
            return None
        spec = self._choice_tokens(choices, label)
        if spec is None:
            return None
        sep, cands = spec
        model = unwrap(self.model)
        tok = self.tokenizer
        limit = self._limit(model) + self.max_new_tokens
        seqs = []
        for text, reply in zip(texts, replies):
            head = encode_prompt(tok, request_prompt(tok, text))
            tail = list(tok(reply.rstrip() + f"\n{label}:" + sep, add_special_tokens=False)["input_ids"])
            ids = head + tail
            if len(ids) > limit:  # keep the reply's end (with "Score:") and the prompt's start
                keep_tail = min(len(tail), limit // 2)
                ids = head[:limit - keep_tail] + tail[len(tail) - keep_tail:]
            seqs.append(ids)
        token_ids = torch.tensor([cands[v] for v in choices])
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        device = next(model.parameters()).device
        out = []
        with eval_mode(model), torch.no_grad():
            for start in range(0, len(seqs), self.batch_size):
                chunk = seqs[start:start + self.batch_size]
                width = max(len(x) for x in chunk)
                ids = torch.full((len(chunk), width), pad, dtype=torch.long)
                mask = torch.zeros((len(chunk), width), dtype=torch.long)
                for i, x in enumerate(chunk):
                    ids[i, width - len(x):] = torch.tensor(x, dtype=torch.long)
                    mask[i, width - len(x):] = 1
                pos = (mask.cumsum(-1) - 1).clamp(min=0)
                logits = model(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=pos.to(device),
                               use_cache=False).logits[:, -1].float()
                out.append(logits[:, token_ids.to(device)].cpu())
        return torch.cat(out)


class HTTPBackend:
    """An OpenAI-compatible ``/chat/completions`` endpoint (vLLM, llama.cpp server, TGI, OpenAI...).

    ``base_url`` is the API root (``http://HOST:PORT/v1``). ``model`` is sent as the request's model
    name; when not given, the first model listed by ``GET {base_url}/models`` is used. The API key comes
    from the environment variable ``ALIGNKIT_JUDGE_API_KEY`` (sent as ``Authorization: Bearer ...``;
    unset: no header). Each sample is one request (``n`` is not used: many servers ignore it) with
    ``temperature``, ``max_tokens`` and a per-sample ``seed``; requests run ``concurrency`` at a time,
    each with a ``timeout`` in seconds, and are retried ``retries`` times on timeouts, HTTP 429 and 5xx.
    Failures raise :class:`JudgeError` naming the endpoint (never the key).
    """

    def __init__(self, base_url: str, *, model: str | None = None, temperature: float = 0.7, top_p: float = 1.0,
                 max_new_tokens: int = 256, timeout: float = 60.0, retries: int = 2, concurrency: int = 8,
                 api_key: str | None = None) -> None:
        parsed = urllib.parse.urlsplit(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise JudgeError(f"judge endpoint '{base_url}' is not an http(s)://HOST[:PORT]/PATH address")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.temperature = float(temperature)
        self.top_p = float(top_p)
        self.max_new_tokens = int(max_new_tokens)
        self.timeout = float(timeout)
        self.retries = max(0, int(retries))
        self.concurrency = max(1, int(concurrency))
        self.api_key = api_key if api_key is not None else os.environ.get(API_KEY_ENV) or None
        self.name = parsed.netloc

    # -- plumbing ------------------------------------------------------------------------------
    def _request(self, method: str, path: str, body: dict | None = None) -> Any:
        return request_json(self.base_url + path, body, method=method, timeout=self.timeout, retries=self.retries,
                            api_key=self.api_key, what="judge endpoint", error=JudgeError,
                            auth_hint=f"; set the API key in the environment variable {API_KEY_ENV}")

    def resolve_model(self) -> str:
        if self.model:
            return self.model
        listing = self._request("GET", "/models")
        try:
            self.model = str(listing["data"][0]["id"])
        except (KeyError, IndexError, TypeError):
            raise JudgeError(f"judge endpoint {self.base_url}: no model name given and GET /models lists none; "
                             "set judge_model=NAME (or ?model=NAME in the judge address)") from None
        return self.model

    def _one(self, text: str, seed: int) -> str:
        body = {"model": self.resolve_model(), "messages": [{"role": "user", "content": text}],
                "temperature": self.temperature, "top_p": self.top_p, "max_tokens": self.max_new_tokens,
                "seed": int(seed % (2**31 - 1))}
        out = self._request("POST", "/chat/completions", body)
        try:
            content = out["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            raise JudgeError(f"judge endpoint {self.base_url}/chat/completions answered without "
                             f"choices[0].message.content: {json.dumps(out)[:200]}") from None
        return "" if content is None else str(content)

    def complete(self, texts: Sequence[str], n: int, seed: int) -> list[list[str]]:
        self.resolve_model()
        jobs = [(i, k) for i in range(len(texts)) for k in range(n)]
        out: list[list[str]] = [[""] * n for _ in texts]
        if not jobs:
            return out
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(jobs))) as pool:
            futures = {pool.submit(self._one, texts[i], seed + i * 1009 + k): (i, k) for i, k in jobs}
            for fut, (i, k) in futures.items():
                out[i][k] = fut.result()
        return out

