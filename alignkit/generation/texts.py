"""How the AI-feedback builders and the self-rewarding loop call a model.

Everything goes through :func:`generate_texts` (one place to monkeypatch in tests, or to swap for a
faster backend) and :func:`load_generator`. Call them as attributes of this module
(``generation.generate_texts(...)``), not through ``from ... import``, so that a patched version is
seen everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def load_generator(name: str, *, trust_remote_code: bool = False) -> tuple[Any, Any]:
    """``(model, tokenizer)`` for generation: any name ``alignkit.models.load_model`` accepts (an adapter
    directory is merged into its base), on the GPU when there is one, in eval mode."""
    import torch

    from alignkit import models

    tokenizer = models.load_tokenizer(name, trust_remote_code=trust_remote_code)
    model = models.load_model(name, trust_remote_code=trust_remote_code)
    if torch.cuda.is_available():
        model = model.to("cuda")
    model.eval()
    return model, tokenizer


def release(model: Any) -> None:
    """Drop a generation model's memory (the caller deletes its own references)."""
    from alignkit.hardware import release_memory

    del model
    release_memory()


def generate_texts(model: Any, tokenizer: Any, prompts: Sequence[str | list[dict]], *, max_new_tokens: int,
                   temperature: float = 0.0, top_p: float = 1.0, seed: int | None = None,
                   batch_size: int = 8, chat_template: str = "auto") -> list[str]:
    """One completion per prompt. The builders' prompts are requests to an assistant, so a string is
    sent as a user turn (:func:`alignkit.data.render.request_prompt`) unless ``chat_template="never"``;
    a list of messages is a conversation. Greedy when ``temperature == 0``."""
    from alignkit.data.render import request_prompt
    from alignkit.generation.sampling import generate

    prompts = [request_prompt(tokenizer, p, chat_template) for p in prompts]
    return generate(model, tokenizer, prompts, max_new_tokens=max_new_tokens, temperature=temperature,
                    top_p=top_p, batch_size=batch_size, chat_template=chat_template, seed=seed)


def sample_candidates(model: Any, tokenizer: Any, prompts: Sequence[str | list[dict]], n: int, *,
                      max_new_tokens: int, temperature: float = 0.7, top_p: float = 0.9,
                      seed: int | None = None, batch_size: int = 8, chat_template: str = "auto") -> list[list[str]]:
    """``n`` sampled completions for each prompt (``result[i][j]``: candidate ``j`` of prompt ``i``)."""
    flat = [p for p in prompts for _ in range(n)]
    outs = generate_texts(model, tokenizer, flat, max_new_tokens=max_new_tokens, temperature=temperature,
                          top_p=top_p, seed=seed, batch_size=batch_size, chat_template=chat_template)
    return [[o.strip() for o in outs[i * n:(i + 1) * n]] for i in range(len(prompts))]
