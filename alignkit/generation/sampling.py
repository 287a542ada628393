"""Sampling from a local model: the rollout primitive (``sample_completions``) and the batched API
(``generate_with_ids`` / ``generate``) that eval, chat, the data builders and the demo use.

Prompts are rendered by the one chat rule, :func:`alignkit.data.render.render_prompt` (``chat_template``
``auto``: messages through the chat template, strings as they are; ``always``: strings as a user turn;
``never``: plain text only). To ask an instruct model something, pass messages (or
:func:`alignkit.data.render.as_user_turn` of the string).

Both functions switch the model to eval mode while generating (dropout off, KV cache on) and restore its
previous mode. Batches are left-padded; ``model.generate`` derives position ids from the attention mask,
so a prompt's completion does not depend on the other prompts in its batch.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from alignkit.generation.decode import decode, supports_fast_decode, text_config
from alignkit.generation.lean import supports_lean
from alignkit.models.modules import eval_mode

SAMPLERS = ("auto", "lean", "fast", "hf")

__all__ = ["SAMPLERS", "Generations", "Rollout", "encode_prompt", "generate", "generate_with_ids", "sample_completions"]


@dataclass
class Rollout:
    """The result of :func:`sample_completions`.

    ``sequences``: LongTensor [N, P+C], left-padded prompt then completion; positions after a
    completion's first EOS hold ``pad_id``. Rows are grouped by prompt: rows
    ``i*num_generations ... (i+1)*num_generations-1`` belong to prompt ``i``.
    ``attention_mask``: [N, P+C], 1 on real prompt tokens and on completion tokens up to and including
    the first EOS. ``completion_mask``: [N, C], 1 on generated tokens up to and including the first EOS.
    ``prompt_length``: P. ``completion_ids``: python lists of the masked completion tokens (EOS included
    when one was generated). ``truncated``: BoolTensor [N], True where no EOS was generated within
    ``max_new_tokens``.
    """

    sequences: torch.Tensor
    attention_mask: torch.Tensor
    completion_mask: torch.Tensor
    prompt_length: int
    completion_ids: list[list[int]]
    truncated: torch.Tensor
    num_generations: int = 1

    @property
    def completions(self) -> torch.Tensor:
        """Completion part of ``sequences``: [N, C]."""
        return self.sequences[:, self.prompt_length:]

    @property
    def completion_lengths(self) -> torch.Tensor:
        return self.completion_mask.sum(dim=1)


def _device_of(model: torch.nn.Module) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:  # pragma: no cover
        return torch.device("cpu")


def left_pad(prompt_ids: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids [N, W] and attention mask [N, W] (1 = token) of prompts padded on the left to the longest."""
    width = max(len(p) for p in prompt_ids)
    ids = torch.full((len(prompt_ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompt_ids), width), dtype=torch.long)
    for i, p in enumerate(prompt_ids):
        if len(p):
            ids[i, width - len(p):] = torch.as_tensor(list(p), dtype=torch.long)
            mask[i, width - len(p):] = 1
    return ids, mask


def _first_eos_mask(completions: torch.Tensor, eos_ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask [N, C] that is 1 up to and including the first EOS of each row; and whether a row has none."""
    is_eos = torch.isin(completions, torch.tensor(eos_ids, device=completions.device))
    eos_before = torch.cumsum(is_eos.long(), dim=1) - is_eos.long()  # EOS tokens strictly before
    mask = (eos_before == 0).long()
    truncated = ~is_eos.any(dim=1)
    return mask, truncated


@torch.no_grad()
def sample_completions(
    model: torch.nn.Module,
    prompt_ids: Sequence[Sequence[int]],
    *,
    pad_id: int,
    eos_id: int | Sequence[int],
    max_new_tokens: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    num_generations: int = 1,
    generator_seed: int | None = None,
    sampler: str = "auto",
) -> Rollout:
    """Generate ``num_generations`` completions per tokenised prompt with the KV cache.

    ``temperature == 0`` is greedy decoding; otherwise sampling from softmax(logits / temperature),
    restricted to the nucleus ``top_p`` (top-k is off, so ``top_p=1`` samples the full distribution,
    which is what on-policy RL needs). ``generator_seed`` makes the draw reproducible without disturbing
    the caller's RNG (its own ``torch.Generator``, or ``torch.random.fork_rng`` for HF's loop).

    ``sampler``: ``fast`` is alignkit's decode loop (:mod:`alignkit.generation.decode`: preallocated
    KV cache, one prefill per distinct prompt, finished rows dropped, inverse-CDF draws; models it
    cannot run use ``model.generate``) over the model's own forward; ``lean`` is the same loop over
    :mod:`alignkit.generation.lean` (merged LoRA, fused projections) where the model supports it, else
    ``fast``; ``hf`` is ``model.generate``; ``auto`` (default) is ``$ALIGNKIT_SAMPLER`` or ``lean``.
    Greedy tokens are the same (``lean``: up to float rounding at near-ties); sampled draws follow the
    same distribution but differ draw by draw for one seed.
    """
    if not prompt_ids:
        raise ValueError("sample_completions needs at least one prompt")
    if any(len(p) == 0 for p in prompt_ids):
        raise ValueError("sample_completions: empty prompt (every prompt needs at least one token)")
    if max_new_tokens < 1:
        raise ValueError("max_new_tokens must be >= 1")
    if num_generations < 1:
        raise ValueError("num_generations must be >= 1")
    if temperature < 0:
        raise ValueError("temperature must be >= 0")
    eos_ids = [int(eos_id)] if isinstance(eos_id, int) else [int(e) for e in eos_id]

    device = _device_of(model)
    ids, mask = left_pad(prompt_ids, pad_id)
    ids, mask = ids.to(device), mask.to(device)

    kwargs: dict[str, Any] = {
        "max_new_tokens": max_new_tokens,
        "pad_token_id": pad_id,
        "eos_token_id": eos_ids,
        "use_cache": True,
        "num_beams": 1,
        "repetition_penalty": 1.0,
        "no_repeat_ngram_size": 0,
        "min_new_tokens": 0,
    }
    if temperature > 0:
        kwargs.update(do_sample=True, temperature=float(temperature), top_p=float(top_p), top_k=0)
    else:
        kwargs.update(do_sample=False)

    if sampler not in SAMPLERS:
        raise ValueError(f"sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
    if sampler == "auto":
        sampler = os.environ.get("ALIGNKIT_SAMPLER", "lean")
    if sampler in ("lean", "fast") and supports_fast_decode(model):
        lean = sampler == "lean" and supports_lean(model)
        generator = None
        if generator_seed is not None:
            generator = torch.Generator(device=device).manual_seed(int(generator_seed))
        with eval_mode(model):
            completions = decode(model, ids, mask, num_generations=num_generations,
                                 max_new_tokens=max_new_tokens, eos_ids=eos_ids, pad_id=pad_id,
                                 temperature=float(temperature), top_p=float(top_p), generator=generator,
                                 lean=lean)
        mask = mask.repeat_interleave(num_generations, dim=0)
        prompts = ids.repeat_interleave(num_generations, dim=0)
        return _rollout(prompts, mask, completions, eos_ids, pad_id, num_generations)
    if num_generations > 1:
        ids = ids.repeat_interleave(num_generations, dim=0)
        mask = mask.repeat_interleave(num_generations, dim=0)

    if generator_seed is not None:
        devices = [device.index or 0] if device.type == "cuda" else []
        rng = torch.random.fork_rng(devices=devices)
    else:
        rng = contextlib.nullcontext()
    with eval_mode(model), rng:
        if generator_seed is not None:
            torch.manual_seed(generator_seed)
        out = model.generate(input_ids=ids, attention_mask=mask, **kwargs)
    if not isinstance(out, torch.Tensor):  # a model whose generation config returns a dict
        out = out.sequences
    prompt_length = ids.shape[1]
    return _rollout(out[:, :prompt_length], mask, out[:, prompt_length:], eos_ids, pad_id, num_generations)


def _rollout(prompts: torch.Tensor, mask: torch.Tensor, completions: torch.Tensor, eos_ids: list[int],
             pad_id: int, num_generations: int) -> Rollout:
    """A :class:`Rollout` from left-padded prompts [N, P] (and their mask) and raw completions [N, C]:
    everything after a row's first EOS becomes ``pad_id``."""
    completion_mask, truncated = _first_eos_mask(completions, eos_ids)
    completions = completions.masked_fill(completion_mask == 0, pad_id)
    completion_ids = [row[m.bool()].tolist() for row, m in zip(completions.cpu(), completion_mask.cpu())]
    return Rollout(
        sequences=torch.cat([prompts, completions], dim=1),
        attention_mask=torch.cat([mask, completion_mask], dim=1),
        completion_mask=completion_mask,
        prompt_length=prompts.shape[1],
        completion_ids=completion_ids,
        truncated=truncated,
        num_generations=num_generations,
    )


def encode_prompt(tokenizer: Any, prompt: str | list[dict], chat_template: str = "auto") -> list[int]:
    """Token ids of one prompt, ready for generation: :func:`alignkit.data.render.render_prompt`, the
    one chat rule that tokenisation, rollouts, judges and eval share."""
    from alignkit.data.render import render_prompt

    return render_prompt(tokenizer, prompt, chat_template).ids


@dataclass
class Generations:
    """What :func:`generate_with_ids` returns, one entry per prompt in input order."""

    texts: list[str]
    prompt_ids: list[list[int]]
    completion_ids: list[list[int]]  # EOS included when one was generated
    truncated: list[bool]


AUTO_BATCH_CAP = 64
"""Most prompts per batch that ``batch_size=None`` picks: the embedded model's decode step is compute-bound
from ~64 rows (a float32 eval of 64 test prompts: 106-111 s at batch 8, 51-53 s at 32, 40-42 s at 64)."""
AUTO_BATCH_KV_BYTES = 2 << 30
"""KV-cache bytes ``batch_size=None`` allows a batch (prompt + new tokens, every layer, keys and values)."""


def auto_batch_size(model: torch.nn.Module, tokens_per_row: int) -> int:
    """Prompts per generation batch for ``tokens_per_row`` (longest prompt + new tokens): as many as keep the
    KV cache within :data:`AUTO_BATCH_KV_BYTES`, at most :data:`AUTO_BATCH_CAP`, at least 1; 8 when the
    model's config does not say its cache size. SmolLM2-135M in float32 (46 KB of cache per token): 64;
    a 1.7B Llama in float32 (393 KB per token) at 260 tokens: 20."""
    config = text_config(model)
    try:
        layers = int(config.num_hidden_layers)
        heads = int(config.num_attention_heads)
        kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
        head_dim = int(getattr(config, "head_dim", None) or config.hidden_size // heads)
    except (AttributeError, TypeError, ValueError, ZeroDivisionError):
        return 8
    itemsize = next((q.element_size() for q in model.parameters() if q.is_floating_point()), 4)
    per_row = layers * 2 * kv_heads * head_dim * itemsize * max(1, tokens_per_row)
    return max(1, min(AUTO_BATCH_CAP, AUTO_BATCH_KV_BYTES // per_row))


def generate_with_ids(
    model: torch.nn.Module,
    tokenizer: Any,
    prompts: Sequence[str | list[dict]],
    *,
    max_new_tokens: int = 128,
    temperature: float = 0.0,
    top_p: float = 1.0,
    batch_size: int | None = 8,
    chat_template: str = "auto",
    seed: int | None = None,
    progress: Any = None,
) -> Generations:
    """Complete each prompt; the new text (decoded without special tokens) and the token ids.

    Greedy when ``temperature == 0``, else sampling (nucleus ``top_p``). Generation stops at the
    tokenizer's EOS (``<|im_end|>`` for SmolLM2) or after ``max_new_tokens``. Prompts are rendered by
    the chat rule (:func:`encode_prompt`) and batched ``batch_size`` at a time, longest first,
    left-padded; ``seed`` makes sampling reproducible (batch ``b`` draws with ``seed + b``).
    ``progress(n)`` is called after each batch with its size. ``batch_size=None``: :func:`auto_batch_size`
    for the longest prompt (greedy answers do not depend on the batch: 64 of 64 equal at 8, 32 and 64).
    """
    if batch_size is not None and batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    encoded = [encode_prompt(tokenizer, p, chat_template) for p in prompts]
    if batch_size is None:
        batch_size = auto_batch_size(model, max(map(len, encoded), default=1) + max_new_tokens)
    eos_id = tokenizer.eos_token_id
    if eos_id is None:
        raise ValueError("the tokenizer has no EOS token; generation would not know where to stop")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_id
    order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i]))
    completions: list[list[int]] = [[] for _ in encoded]
    truncated = [False] * len(encoded)
    for b, start in enumerate(range(0, len(order), batch_size)):
        idx = order[start:start + batch_size]
        rollout = sample_completions(model, [encoded[i] for i in idx], pad_id=pad_id, eos_id=eos_id,
                                     max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                                     generator_seed=None if seed is None else seed + b)
        for j, i in enumerate(idx):
            completions[i] = rollout.completion_ids[j]
            truncated[i] = bool(rollout.truncated[j])
        if progress is not None:
            progress(len(idx))
    texts = [tokenizer.decode(c, skip_special_tokens=True) for c in completions]
    return Generations(texts, encoded, completions, truncated)


def generate(model: torch.nn.Module, tokenizer: Any, prompts: Sequence[str | list[dict]], **kwargs: Any) -> list[str]:
    """The texts of :func:`generate_with_ids` (same arguments)."""
    return generate_with_ids(model, tokenizer, prompts, **kwargs).texts
