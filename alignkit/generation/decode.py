"""alignkit's own decode loop: the fast path behind :func:`alignkit.generation.sampling.sample_completions`.

Why not ``model.generate``: on a CPU, HF's ``DynamicCache`` grows every layer's keys and values with
``torch.cat`` at each step, which copies the whole cache per token (measured on SmolLM2-135M, batch 64,
2 cores: 65 % of a decode step's time), and its multinomial draw over a 49k vocabulary costs about as
much as the model step. This loop

- keeps keys/values in buffers allocated once for the longest sequence (:class:`PreallocatedCache`;
  a step writes one column in place and attention reads a view),
- prefills each distinct prompt once and copies its cache to its ``num_generations`` rows (in float32
  through the lean forward, in chunks of prompts of similar length, so padding costs no products),
- drops finished rows from the batch (the cache rows too) once a quarter of the batch has finished,
- samples by inverse CDF (one uniform number per row, ``searchsorted`` in the cumulative softmax),
  an exact draw from softmax(logits / T) restricted to the nucleus ``top_p``.

Greedy decoding gives the tokens ``model.generate`` gives (tested); sampled draws follow the same
distribution but not the same random stream as HF's ``torch.multinomial`` for a given seed.

Models it does not support (sliding-window or non-attention cache layers, encoder-decoders, models
without a ``past_key_values`` forward) fall back to ``model.generate`` (:func:`supports_fast_decode`).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import torch
from transformers.cache_utils import Cache, DynamicLayer

from alignkit.models.modules import unwrap

__all__ = ["PreallocatedCache", "decode", "sample_next", "supports_fast_decode"]

COMPACT_FRACTION = 0.25  # drop finished rows once this fraction of the live batch has finished


class PreallocatedLayer(DynamicLayer):
    """One layer's keys and values in ``[B, H, capacity, D]`` buffers; ``length`` columns are filled.

    ``update`` writes the new columns in place and returns views of the filled part, so a decode step
    copies one column per layer instead of the whole cache.
    """

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = capacity
        self.length = 0
        self._k: torch.Tensor | None = None
        self._v: torch.Tensor | None = None

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        b, h, _, d = key_states.shape
        self.device = key_states.device
        self._k = key_states.new_empty((b, h, self.capacity, d))
        self._v = value_states.new_empty((b, h, self.capacity, value_states.shape[-1]))
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        n = key_states.shape[-2]
        if self.length + n > self.capacity:
            raise RuntimeError(f"decode cache overflow: {self.length + n} > capacity {self.capacity}")
        self._k[:, :, self.length:self.length + n] = key_states
        self._v[:, :, self.length:self.length + n] = value_states
        self.length += n
        self.keys, self.values = self._k[:, :, :self.length], self._v[:, :, :self.length]
        return self.keys, self.values

    def write_rows(self, rows: torch.Tensor, column: int, keys: torch.Tensor, values: torch.Tensor, *,
                   total: int, batch: int) -> None:
        """Write ``keys``/``values`` [len(rows), H, W, D] at ``rows``, columns ``column`` to ``column + W``,
        of a ``batch``-row cache that is then ``total`` columns long (a chunked prefill; the buffers start
        as zeros so the unwritten columns left of a short prompt hold no stale values)."""
        if not self.is_initialized:
            b, h, _, d = keys.shape
            self.device = keys.device
            self._k = keys.new_zeros((batch, h, self.capacity, d))
            self._v = values.new_zeros((batch, h, self.capacity, values.shape[-1]))
            self.is_initialized = True
        self._k[rows, :, column:column + keys.shape[2]] = keys
        self._v[rows, :, column:column + values.shape[2]] = values
        self.length = total
        self.keys, self.values = self._k[:, :, :total], self._v[:, :, :total]

    def get_seq_length(self) -> int:
        return self.length

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self.is_initialized:
            self._k = self._k.repeat_interleave(repeats, dim=0)
            self._v = self._v.repeat_interleave(repeats, dim=0)
            self.keys, self.values = self._k[:, :, :self.length], self._v[:, :, :self.length]

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.is_initialized:
            self._k = self._k[indices]
            self._v = self._v[indices]
            self.keys, self.values = self._k[:, :, :self.length], self._v[:, :, :self.length]


class PreallocatedCache(Cache):
    """A KV cache of :class:`PreallocatedLayer` for ``num_layers`` layers, each holding ``capacity``
    positions (prompt + new tokens)."""

    def __init__(self, num_layers: int, capacity: int) -> None:
        super().__init__(layers=[PreallocatedLayer(capacity) for _ in range(num_layers)])

    def repeat_rows(self, repeats: int) -> None:
        for layer in self.layers:
            layer.batch_repeat_interleave(repeats)

    def keep_rows(self, indices: torch.Tensor) -> None:
        for layer in self.layers:
            layer.batch_select_indices(indices)


def text_config(model: torch.nn.Module):
    """The (text) decoder config of ``model`` under its wrappers, or None."""
    config = getattr(unwrap(model), "config", None)
    if config is None:
        return None
    get = getattr(config, "get_text_config", None)
    return get(decoder=True) if callable(get) else config


def _cache_keyword(model: torch.nn.Module) -> str:
    """``cache`` for transformers versions whose forward takes it, else the older ``past_key_values``."""
    inner = unwrap(model)
    get_base = getattr(inner, "get_base_model", None)  # a peft wrapper passes keywords through
    inner = get_base() if callable(get_base) else inner
    try:
        names = inspect.signature(inner.forward).parameters
    except (TypeError, ValueError):  # pragma: no cover
        return "past_key_values"
    return "cache" if "cache" in names else "past_key_values"


def supports_fast_decode(model: torch.nn.Module) -> bool:
    """Whether :func:`decode` can run ``model``: a decoder-only model whose layers are all full
    attention (no sliding window, no linear-attention or state-space layers)."""
    config = text_config(model)
    if config is None or getattr(config, "is_encoder_decoder", False):
        return False
    if not isinstance(getattr(config, "num_hidden_layers", None), int):
        return False
    layer_types = getattr(config, "layer_types", None)
    if layer_types and any(t != "full_attention" for t in layer_types):
        return False
    if getattr(config, "sliding_window", None) and getattr(config, "use_sliding_window", True):
        return False
    return True


SAMPLE_ROWS = 16  # rows drawn together: a [16, V] float32 chunk stays in cache (a [256, V] one is 50 MB)
CDF_BLOCK = 256  # vocabulary block of the two-level inverse CDF


def sample_next(logits: torch.Tensor, temperature: float, top_p: float,
                generator: torch.Generator | None = None, uniforms: torch.Tensor | None = None) -> torch.Tensor:
    """Next token per row from ``logits`` [B, V]: argmax when ``temperature == 0``, else a draw from
    softmax(logits / temperature) restricted to the smallest set of most likely tokens whose
    probability reaches ``top_p`` (the most likely token is always kept).

    The draw is by inverse CDF: with ``u ~ U(0, 1)`` per row, the token is the first index whose
    cumulative probability exceeds ``u · total``; ``uniforms`` [B] gives the ``u`` (else drawn from
    ``generator``, one number per row). Rows are drawn :data:`SAMPLE_ROWS` at a time: a softmax and a
    cumulative sum over a whole [256, 49k] batch allocate fresh 50 MB tensors at every step, which took
    76 ms per step on a 2-core CPU against 9 ms in chunks. Returns LongTensor [B].
    """
    if temperature == 0:
        return logits.argmax(dim=-1)
    if uniforms is None:
        uniforms = torch.rand(logits.shape[0], generator=generator, device=logits.device)
    out = torch.empty(logits.shape[0], dtype=torch.long, device=logits.device)
    for s in range(0, logits.shape[0], SAMPLE_ROWS):
        rows = slice(s, s + SAMPLE_ROWS)
        out[rows] = (_draw_full(logits[rows], temperature, uniforms[rows]) if top_p >= 1.0
                     else _draw_nucleus(logits[rows], temperature, top_p, uniforms[rows]))
    return out


def _draw_full(logits: torch.Tensor, temperature: float, u: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF draw from the whole softmax in two levels: find the vocabulary block of
    :data:`CDF_BLOCK` tokens whose cumulative mass first exceeds ``u · total`` (one sum per block), then
    the token inside that block (one cumulative sum of 256 numbers), instead of a cumulative sum over
    the whole vocabulary. Unnormalised probabilities exp((l − max) / T) throughout."""
    b, v = logits.shape
    nb = -(-v // CDF_BLOCK)
    p = torch.full((b, nb * CDF_BLOCK), float("-inf"), dtype=torch.float32, device=logits.device)
    p[:, :v] = logits
    p.sub_(p.amax(dim=-1, keepdim=True)).div_(temperature).exp_()  # padding: exp(-inf) = 0
    blocks = p.view(b, nb, CDF_BLOCK)
    cum = blocks.sum(dim=-1).cumsum(dim=-1)  # [b, nb]
    target = u.reshape(-1, 1).to(cum.dtype) * cum[:, -1:]
    blk = torch.searchsorted(cum, target, right=True).clamp_(max=nb - 1)  # [b, 1]
    before = cum.gather(-1, (blk - 1).clamp(min=0)).masked_fill_(blk == 0, 0.0)
    inner = blocks.gather(1, blk.unsqueeze(-1).expand(b, 1, CDF_BLOCK)).squeeze(1).cumsum(dim=-1)
    # rounding can put the target past the block's own running sum: never step onto a zero-mass token
    last = (inner < inner[:, -1:]).sum(dim=-1, keepdim=True)
    j = torch.minimum(torch.searchsorted(inner, target - before, right=True), last)
    return (blk * CDF_BLOCK + j).squeeze(-1)


def _draw_nucleus(logits: torch.Tensor, temperature: float, top_p: float, u: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF draw from the nucleus ``top_p`` of softmax(logits / T) (tokens sorted by probability)."""
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    probs, order = probs.sort(dim=-1, descending=True)
    before = probs.cumsum(dim=-1) - probs  # probability mass strictly ahead of each token
    probs = probs.masked_fill(before >= top_p, 0.0)
    cdf = probs.cumsum(dim=-1)
    index = torch.searchsorted(cdf, u.reshape(-1, 1).to(cdf.dtype) * cdf[:, -1:], right=True)
    # A zero-probability token cannot be drawn; searchsorted lands on the next token with mass.
    return order.gather(-1, index.clamp_(max=logits.shape[-1] - 1)).squeeze(-1)


PREFILL_ROWS = 32  # prompts per prefill chunk (sorted by length, so a chunk pads to its own longest)


def _prefill_by_length(forward, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor,
                       cache: PreallocatedCache) -> torch.Tensor:
    """Prefill left-padded prompts ``ids``/``mask`` [N, P] into ``cache`` (every layer then holds P
    columns) and return the last position's logits [N, V]. The prompts are run in chunks of
    :data:`PREFILL_ROWS` sorted by length, each chunk cut to its own longest prompt, so padding costs no
    matrix products (the demo's prompts: 65 tokens on average, 96-100 at most, a third of a single
    padded batch is padding). A chunk's keys/values land right-aligned in the cache; the columns left of
    a prompt are zeros, masked out like padding."""
    n, p = ids.shape
    lengths = mask.sum(dim=1)
    order = torch.argsort(lengths, descending=True, stable=True)
    logits = None
    for start in range(0, n, PREFILL_ROWS):
        rows = order[start:start + PREFILL_ROWS]
        width = max(1, int(lengths[rows].max()))
        part = PreallocatedCache(len(cache.layers), width)
        out = forward(input_ids=ids[rows, p - width:], attention_mask=mask[rows, p - width:],
                      position_ids=positions[rows, p - width:], logits_to_keep=1, cache=part)
        last = out.logits[:, -1]
        if logits is None:
            logits = last.new_empty((n, last.shape[-1]))
        logits[rows] = last
        for whole, piece in zip(cache.layers, part.layers):
            whole.write_rows(rows, p - width, piece.keys, piece.values, total=p, batch=n)
    return logits


@torch.no_grad()
def decode(
    model: torch.nn.Module,
    ids: torch.Tensor,
    mask: torch.Tensor,
    *,
    num_generations: int,
    max_new_tokens: int,
    eos_ids: Sequence[int],
    pad_id: int,
    temperature: float,
    top_p: float,
    generator: torch.Generator | None,
    lean: bool = False,
) -> torch.Tensor:
    """Completions [N·G, C] (C ≤ ``max_new_tokens``) for left-padded prompts ``ids``/``mask`` [N, P];
    rows grouped per prompt (``repeat_interleave`` order). A row is ``pad_id`` after its first EOS
    token (which is kept); C is the longest completion. ``model`` must be in eval mode. ``lean``: run
    the steps through :func:`alignkit.generation.lean.lean_decoder` (the model must support it).
    """
    config = text_config(model)
    forward = model
    if lean:
        from alignkit.generation.lean import lean_decoder

        forward = lean_decoder(model)
    n, p = ids.shape
    rows = n * num_generations
    device = ids.device
    cache = PreallocatedCache(int(config.num_hidden_layers), p + max_new_tokens)
    with_cache = {"cache": cache} if lean else {_cache_keyword(model): cache, "use_cache": True}
    positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
    if lean and (forward.embed.dtype == torch.float32 or not forward.amx):
        # The chunks' logits differ from one padded batch's by rounding: in float32 <= 7e-5 on the demo's
        # prompts (the same greedy answers); in bfloat16 more (227 of 256 sampled answers changed), so
        # bfloat16 keeps the padded batch where the demo's answers were measured with it (AMX); without
        # AMX the chunks took 256 of the demo's prompts from 20-23 s to 14-16 s (AMD EPYC, 2026-12-07).
        logits = _prefill_by_length(forward, ids, mask, positions, cache)
    else:
        out = forward(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=1, **with_cache)
        logits = out.logits[:, -1]
    if num_generations > 1:
        cache.repeat_rows(num_generations)
        logits = logits.repeat_interleave(num_generations, dim=0)
        mask = mask.repeat_interleave(num_generations, dim=0)
        positions = positions.repeat_interleave(num_generations, dim=0)

    full_mask = torch.ones((rows, p + max_new_tokens), dtype=mask.dtype, device=device)
    full_mask[:, :p] = mask
    next_pos = positions[:, -1] + 1
    tokens = torch.full((rows, max_new_tokens), pad_id, dtype=torch.long, device=device)
    live = torch.arange(rows, device=device)  # original row index of each batch row
    finished = torch.zeros(rows, dtype=torch.bool, device=device)
    eos = torch.tensor(list(eos_ids), device=device)
    steps = 0
    for step in range(max_new_tokens):
        token = sample_next(logits, temperature, top_p, generator)
        tokens[live, step] = token
        steps = step + 1
        finished = finished | torch.isin(token, eos)
        if bool(finished.all()) or step == max_new_tokens - 1:
            break
        if int(finished.sum()) >= max(1, int(COMPACT_FRACTION * live.numel())):
            keep = (~finished).nonzero().squeeze(1)
            cache.keep_rows(keep)
            live, token, next_pos, full_mask = live[keep], token[keep], next_pos[keep], full_mask[keep]
            finished = finished[keep]
        out = forward(input_ids=token[:, None], attention_mask=full_mask[:, :p + step + 1],
                    position_ids=next_pos[:, None], **with_cache)
        logits = out.logits[:, -1]
        next_pos = next_pos + 1
    return tokens[:, :steps]
