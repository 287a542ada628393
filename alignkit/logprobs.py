"""Per-token log-probabilities of labels without materialising the full [B, T, V] logits.

With SmolLM2's 49,152-token vocabulary, float32 logits for a batch of 8 x 1,024 tokens take 1.6 GB,
and autograd would keep them (and their log-softmax) alive until backward. Here the final hidden
states are projected by the LM head a chunk of tokens at a time (matmul -> float32 log-softmax ->
gather), only the per-token results are kept, and backward recomputes one chunk's logits at a time
(or, for a frozen head, needs no logits at all). Only positions whose label is not ``-100`` are
projected (prompt and padding tokens cost nothing).

Conventions
-----------
- ``labels`` follow Hugging Face: same shape as ``input_ids``, ``-100`` where no loss is wanted
  (prompt, padding). :func:`sequence_token_logps` shifts them itself (position t predicts token t+1).
- Outputs are float32 and *aligned with the unshifted labels*: ``logps[:, t] = log p(labels[:, t] |
  input_ids[:, :t])``; column 0 and ignored positions are 0, and ``mask = labels != -100`` with
  column 0 False. So a sequence's response log-prob is ``logps.sum(-1)`` and its length ``mask.sum(-1)``
  (see :func:`sum_token_logps`), and a completion mask aligned with ``input_ids`` applies directly.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

IGNORE_INDEX = -100
DEFAULT_CHUNK_SIZE = 1024
"""Tokens per LM-head chunk: 1024 x 49,152 float32 logits = 200 MB."""


# ----------------------------------------------------------------------------------------------
# chunked head
# ----------------------------------------------------------------------------------------------
def _as_linear(lm_head: nn.Module | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None] | None:
    """(weight, bias) when the head is a plain linear map we may use directly, else None."""
    if isinstance(lm_head, torch.Tensor):
        return lm_head, None
    if type(lm_head) is nn.Linear and not any(hasattr(p, "ds_id") for p in lm_head.parameters()):
        # (DeepSpeed ZeRO-3 partitions parameters: those heads must be called as modules)
        return lm_head.weight, lm_head.bias
    return None


def _upcast(x: torch.Tensor) -> torch.Tensor:
    """float16/bfloat16 -> float32; float32 and float64 stay as they are."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def _transform(z: torch.Tensor, temperature: float, softcap: float | None):
    """Logits from the raw projection z (float32 or float64): soft-cap, then / temperature. Returns (logits,
    d logits / d z as a tensor, or None when it is the constant 1 / temperature)."""
    dl_dz = None
    if softcap is not None:
        tz = torch.tanh(z / softcap)
        z = softcap * tz
        dl_dz = (1.0 - tz * tz) / temperature
    if temperature != 1.0:
        z = z / temperature
    return z, dl_dz


def _target_softmax_(logits: torch.Tensor, targets: torch.Tensor, probs: bool
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Overwrites ``logits`` [n, V]: returns (log p[target] [n], log Z [n], softmax p [n, V] -- the same
    storage -- or None). With m the row max and s = sum exp(l - m): log Z = m + log s and
    log p[y] = l_y - log Z. Two passes over the chunk in place (no [n, V] log-softmax or exp buffers)."""
    m = logits.amax(-1, keepdim=True)
    z_y = logits.gather(-1, targets).sub_(m)
    e = logits.sub_(m).exp_()
    s = e.sum(-1, keepdim=True)
    log_s = s.log()
    return (z_y - log_s).squeeze(-1), (m + log_s).squeeze(-1), e.div_(s) if probs else None


def _logp_grad_h(weight: torch.Tensor, targets: torch.Tensor, probs: torch.Tensor, temperature: float) -> torch.Tensor:
    """d log p[y] / d h = (W[y] - p W) / temperature, [n, H] (no soft-cap)."""
    g = _upcast(weight.index_select(0, targets)) - _upcast(probs.to(weight.dtype) @ weight)
    return g / temperature if temperature != 1.0 else g


class _LinearHeadLogps(torch.autograd.Function):
    """Chunked log-probs (and entropies) through a linear head, never keeping [n, V] logits.

    Row i: logits l = f(h_i W^T + b) (f: optional soft-cap, then / temperature), log p = log_softmax(l),
    output log p[y_i] and H_i = -sum p log p. Derivatives w.r.t. l: d logp_y = e_y - p and
    dH = -p * (log p + H). Two backward strategies:

    - head frozen (LoRA, frozen embeddings): d/dh_i = (d/dl * f') W is [n, H]; it is formed in the
      forward pass while the chunk's logits exist, and backward only rescales rows (no recomputation);
    - head trainable: forward saves h and each row's log-normaliser; backward recomputes one chunk's
      logits at a time and forms grad_h = D W and grad_W = D^T h with D the rows' weighted derivatives.
    """

    @staticmethod
    def forward(ctx, h, weight, bias, targets, chunk_size, temperature, softcap, want_entropy, track):
        # ``track``: grad mode was on at the call (needs_input_grad does not see torch.no_grad)
        need_h = track and ctx.needs_input_grad[0]
        need_w = track and (ctx.needs_input_grad[1] or (bias is not None and ctx.needs_input_grad[2]))
        precompute = need_h and not need_w
        lps, ents, logzs, g_lps, g_ents = [], [], [], [], []
        for start in range(0, h.shape[0], chunk_size):
            hc, yc = h[start : start + chunk_size], targets[start : start + chunk_size]
            y1 = yc.unsqueeze(-1)
            logits, dl_dz = _transform(_upcast(F.linear(hc, weight, bias)), temperature, softcap)
            if not want_entropy and dl_dz is None:  # the common case, in place on the chunk's logits
                lp, logz, probs = _target_softmax_(logits, y1, probs=precompute)
                lps.append(lp)
                if need_w:
                    logzs.append(logz)
                if precompute:
                    g_lps.append(_logp_grad_h(weight, yc, probs, temperature))
                del logits, probs
                continue
            if need_w:
                logzs.append(torch.logsumexp(logits, dim=-1))
            logp = torch.log_softmax(logits, dim=-1)
            del logits
            lps.append(logp.gather(-1, y1).squeeze(-1))
            if not (want_entropy or precompute):
                continue
            probs = torch.exp(logp)
            if want_entropy:
                d_ent = probs * logp
                entropy = -d_ent.sum(-1)
                ents.append(entropy)
                if precompute:
                    d_ent.add_(probs * entropy.unsqueeze(-1)).neg_()
                    if dl_dz is not None:
                        d_ent.mul_(dl_dz)
                    elif temperature != 1.0:
                        d_ent.div_(temperature)
                    g_ents.append(_upcast(d_ent.to(weight.dtype) @ weight))
                del d_ent
            del logp
            if precompute:
                if dl_dz is None:
                    g = _logp_grad_h(weight, yc, probs, temperature)
                else:
                    d_lp = probs.neg_().mul_(dl_dz)
                    d_lp.scatter_add_(-1, y1, dl_dz.gather(-1, y1))
                    g = _upcast(d_lp.to(weight.dtype) @ weight)
                    del d_lp
                g_lps.append(g)
            del probs, dl_dz

        lp = torch.cat(lps)
        ent = torch.cat(ents) if want_entropy else lp.new_zeros(lp.shape)
        ctx.mode = "precomputed" if precompute else ("recompute" if need_w else "none")
        ctx.want_entropy = want_entropy
        ctx.n = lp.shape[0]
        if precompute:
            ctx.save_for_backward(torch.cat(g_lps), torch.cat(g_ents) if want_entropy else None)
        elif need_w:
            ctx.save_for_backward(h, weight, bias, targets, torch.cat(logzs), ent if want_entropy else None)
            ctx.chunk_size, ctx.temperature, ctx.softcap = chunk_size, temperature, softcap
        if not want_entropy:
            ctx.mark_non_differentiable(ent)
        return lp, ent

    @staticmethod
    def backward(ctx, grad_lp, grad_ent):
        nones = (None,) * 6
        if grad_lp is None:
            grad_lp = ctx.saved_tensors[0].new_zeros(ctx.n)
        use_ent = ctx.want_entropy and grad_ent is not None
        if ctx.mode == "precomputed":
            g_lp, g_ent = ctx.saved_tensors
            grad_h = grad_lp.to(g_lp.dtype).unsqueeze(-1) * g_lp
            if use_ent:
                grad_h = grad_h + grad_ent.to(g_ent.dtype).unsqueeze(-1) * g_ent
            return (grad_h, None, None, None) + nones
        if ctx.mode == "none":
            return (None,) * 4 + nones

        h, weight, bias, targets, logz, entropy = ctx.saved_tensors
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        need_b = bias is not None and ctx.needs_input_grad[2]
        grad_h = torch.empty_like(h) if need_h else None
        acc = logz.dtype  # float32 (float64 for float64 inputs)
        grad_w = torch.zeros(weight.shape, dtype=acc, device=weight.device) if need_w else None
        grad_b = torch.zeros(bias.shape, dtype=acc, device=bias.device) if need_b else None
        cs = ctx.chunk_size
        for start in range(0, h.shape[0], cs):
            sl = slice(start, start + cs)
            hc, y1 = h[sl], targets[sl].unsqueeze(-1)
            glp = grad_lp[sl].to(logz.dtype).unsqueeze(-1)
            logits, dl_dz = _transform(_upcast(F.linear(hc, weight, bias)), ctx.temperature, ctx.softcap)
            logp = logits.sub_(logz[sl].unsqueeze(-1))
            probs = torch.exp(logp)
            d = probs * -glp
            if use_ent:  # + g_H * (-p * (log p + H))
                t = logp.add_(entropy[sl].unsqueeze(-1)).mul_(grad_ent[sl].to(logz.dtype).unsqueeze(-1))
                d.addcmul_(probs, t, value=-1.0)
                del t
            del logp, probs
            d.scatter_add_(-1, y1, glp)
            if dl_dz is not None:
                d.mul_(dl_dz)
            elif ctx.temperature != 1.0:
                d.div_(ctx.temperature)
            dw = d.to(weight.dtype)
            if need_h:
                grad_h[sl] = (dw @ weight).to(h.dtype)
            if need_w:
                grad_w.add_(dw.t() @ hc.to(weight.dtype))
            if need_b:
                grad_b.add_(d.sum(0))
            del d, dw
        return (
            grad_h,
            grad_w.to(weight.dtype) if need_w else None,
            grad_b.to(bias.dtype) if need_b else None,
            None,
        ) + nones


def _head_callable(lm_head: nn.Module | torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    if isinstance(lm_head, torch.Tensor):
        weight = lm_head
        return lambda h: F.linear(h, weight)
    if isinstance(lm_head, nn.Module):
        return lm_head
    raise TypeError(f"lm_head must be an nn.Module or a weight tensor [V, H], got {type(lm_head).__name__}")


def _needs_grad(hidden: torch.Tensor, lm_head: nn.Module | torch.Tensor) -> bool:
    if not torch.is_grad_enabled():
        return False
    if hidden.requires_grad:
        return True
    if isinstance(lm_head, torch.Tensor):
        return lm_head.requires_grad
    return any(p.requires_grad for p in lm_head.parameters())


def _module_chunk_logps(
    head: Callable[[torch.Tensor], torch.Tensor],
    h: torch.Tensor,
    targets: torch.Tensor,
    temperature: float,
    softcap: float | None,
    want_entropy: bool,
) -> tuple[torch.Tensor, ...]:
    """Any head module: [n, H] hidden, [n] targets -> ([n] logps[, [n] entropy]) via [n, V] logits."""
    logits, _ = _transform(_upcast(head(h)), temperature, softcap)
    logp_all = torch.log_softmax(logits, dim=-1)
    logps = logp_all.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    if not want_entropy:
        return (logps,)
    return logps, -(torch.exp(logp_all) * logp_all).sum(-1)


def token_logps_from_hidden(
    hidden: torch.Tensor,
    lm_head: nn.Module | torch.Tensor,
    labels: torch.Tensor,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    return_entropy: bool = False,
    temperature: float = 1.0,
    softcap: float | None = None,
    ignore_index: int = IGNORE_INDEX,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """log p(labels | hidden) per position, chunked over tokens.

    Args:
        hidden: [B, T, H] final (normed) hidden states.
        lm_head: the output projection: a module mapping [n, H] -> [n, V] (``nn.Linear``, a peft
            wrapper, ...) or a weight tensor [V, H].
        labels: [B, T] target ids *already aligned with* ``hidden`` (hidden[:, t] predicts
            labels[:, t]); ``ignore_index`` marks positions to skip.
        chunk_size: tokens projected at once; peak extra memory is a few chunk_size x V float32
            buffers, independent of B and T.
        return_entropy: also return the entropy of each position's predictive distribution.
        temperature: logits are divided by it (after soft-capping) - the sampling temperature.
        softcap: final-logit soft-capping ``softcap * tanh(logits / softcap)`` (Gemma 2), if any.

    Returns:
        logps [B, T] float32 (float64 for float64 inputs), 0 at ignored positions; with
        ``return_entropy`` also entropy [B, T], 0 at ignored positions. Gradients flow into ``hidden`` and the head's parameters.

    A plain ``nn.Linear`` head (or a weight tensor) goes through a fused autograd function: with the
    head frozen (LoRA, frozen embeddings) d(logp)/d(hidden) is formed while each chunk's logits exist,
    so backward neither keeps nor recomputes logits; with the head trainable backward recomputes one
    chunk at a time. Any other head module (e.g. a peft wrapper around ``lm_head``) runs each chunk
    under ``torch.utils.checkpoint`` (non-reentrant), with the same memory bound.
    """
    if hidden.dim() != 3 or labels.shape != hidden.shape[:2]:
        raise ValueError(
            f"hidden must be [B, T, H] and labels [B, T]; got {list(hidden.shape)} and {list(labels.shape)}"
        )
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    B, T, H = hidden.shape
    flat_labels = labels.reshape(-1)
    idx = (flat_labels != ignore_index).nonzero().squeeze(1)
    h = hidden.reshape(B * T, H).index_select(0, idx)
    targets = flat_labels.index_select(0, idx)
    use_grad = _needs_grad(hidden, lm_head)
    linear = _as_linear(lm_head)

    logps_parts, ent_parts = [], []
    if idx.numel() == 0:
        pass
    elif linear is not None:
        weight, bias = linear
        lp, ent = _LinearHeadLogps.apply(
            h, weight, bias, targets, chunk_size, temperature, softcap, return_entropy, use_grad
        )
        logps_parts.append(lp)
        ent_parts.append(ent)
    else:
        head = _head_callable(lm_head)
        kwargs = dict(temperature=temperature, softcap=softcap, want_entropy=return_entropy)
        for start in range(0, idx.numel(), chunk_size):
            args = (head, h[start : start + chunk_size], targets[start : start + chunk_size])
            if use_grad:
                out = checkpoint(_module_chunk_logps, *args, use_reentrant=False, **kwargs)
            else:
                out = _module_chunk_logps(*args, **kwargs)
            logps_parts.append(out[0])
            if return_entropy:
                ent_parts.append(out[1])

    def scatter(parts: list[torch.Tensor]) -> torch.Tensor:
        full = torch.zeros(B * T, dtype=_upcast(hidden[:0, 0, :1]).dtype, device=hidden.device)
        if parts:
            full = full.index_copy(0, idx, torch.cat(parts))
        elif use_grad:  # nothing to score: keep the result attached to the graph (its gradient is 0)
            full = full + 0.0 * hidden.sum()
        return full.view(B, T)

    logps = scatter(logps_parts)
    if return_entropy:
        return logps, scatter(ent_parts)
    return logps


# ----------------------------------------------------------------------------------------------
# models
# ----------------------------------------------------------------------------------------------
def _is_wrapper(model: nn.Module) -> bool:
    """DDP / DeepSpeed-engine style wrappers whose forward must run (gradient sync, hooks)."""
    return isinstance(getattr(model, "module", None), nn.Module) and not hasattr(
        model, "get_output_embeddings"
    )


def _inner_causal_lm(model: nn.Module) -> nn.Module:
    """The Hugging Face *ForCausalLM under peft / DDP wrappers (peft's LoRA layers live inside it)."""
    while _is_wrapper(model):
        model = model.module
    if hasattr(model, "get_base_model"):  # peft.PeftModel
        model = model.get_base_model()
    return model


def output_head(model: nn.Module) -> nn.Module:
    """The model's LM head module (``get_output_embeddings()``), looking through peft/DDP wrappers."""
    head = _inner_causal_lm(model).get_output_embeddings()
    if head is None:
        raise ValueError(f"{type(model).__name__} has no output embeddings (LM head)")
    return head


def final_hidden_states(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    position_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """[B, T, H] last hidden states (after the final norm) of a causal LM, without the LM head.

    Plain HF models and peft-wrapped ones: runs the decoder body (``get_decoder()``) directly; LoRA
    layers are injected into it, so adapters (and ``disable_adapter()``) apply. A DDP/DeepSpeed
    wrapper instead runs its own forward (so gradient synchronisation hooks fire) with
    ``output_hidden_states=True`` and ``logits_to_keep=1``, so the full logits are not built either.
    """
    if _is_wrapper(model):
        out = model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            output_hidden_states=True,
            logits_to_keep=1,
            use_cache=False,
        )
        return out.hidden_states[-1]
    out = _decoder_body(model)(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                               use_cache=False)
    return out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]


def _decoder_body(model: nn.Module) -> nn.Module:
    """The decoder stack (embeddings, layers, final norm) of a causal LM, under peft wrappers."""
    inner = _inner_causal_lm(model)
    body = inner.get_decoder() if hasattr(inner, "get_decoder") else None
    if body is None or body is inner:
        body = getattr(inner, getattr(inner, "base_model_prefix", "model"), None)
    if body is None:
        raise ValueError(f"cannot find the decoder body of {type(inner).__name__}")
    return body


def _cache_keyword(body: nn.Module) -> str:
    """The decoder's KV-cache argument: ``cache`` (transformers >= 5.2x) or ``past_key_values``."""
    import inspect

    return "cache" if "cache" in inspect.signature(body.forward).parameters else "past_key_values"


def prompt_groups(num_rows: int, group_size: int, tiled: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Which rows share a prompt: ``(sources [N/G], prompt_of_row [N])`` for N rows in groups of
    ``group_size`` = G. Interleaved (GRPO's samples): rows ``g*G .. g*G+G-1`` share prompt g, read from
    row g*G. Tiled (preference pairs, chosen rows then rejected rows): G blocks of N/G rows, row r has
    prompt r mod N/G, read from the first block."""
    n = num_rows // group_size
    if tiled:
        return torch.arange(n), torch.arange(num_rows) % n
    return torch.arange(n) * group_size, torch.arange(num_rows) // group_size


def can_share_prompts(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                      completion_width: int, group_size: int, tiled: bool = False) -> bool:
    """Whether :func:`shared_prompt_token_logps` applies: rows come in groups of ``group_size`` with
    identical, non-empty (left-padded) prompts (grouping: :func:`prompt_groups`), the model is called
    directly (no DDP/DeepSpeed wrapper, whose forward must run) and Hugging Face gradient checkpointing
    is off (it turns the KV cache off)."""
    N, T = input_ids.shape
    P = T - completion_width
    if group_size < 2 or N % group_size or P < 1 or _is_wrapper(model):
        return False
    inner = _inner_causal_lm(model)
    flag = "is_activation_checkpointing" if hasattr(inner, "is_activation_checkpointing") else "is_gradient_checkpointing"
    if getattr(inner, flag, False):
        return False
    sources, index = (t.to(input_ids.device) for t in prompt_groups(N, group_size, tiled))
    ids, mask = input_ids[:, :P], attention_mask[:, :P]
    if not bool(mask[sources].any(-1).all()):
        return False  # an empty prompt: nothing would predict its first completion token
    return bool(torch.equal(ids, ids[sources][index]) and torch.equal(mask, mask[sources][index]))


def shared_prompt_token_logps(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    completion_mask: torch.Tensor,
    group_size: int,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    return_entropy: bool = False,
    temperature: float = 1.0,
    tiled: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-token log-probs [N, C] of the completions of N rows that share one prompt per group of
    ``group_size`` rows (GRPO's G samples of a prompt, or with ``tiled`` a preference batch's chosen and
    rejected rows, see :func:`prompt_groups`), running each prompt through the model once.

    ``input_ids``/``attention_mask`` [N, P + C] are left-padded prompt | right-padded completion;
    ``completion_mask`` [N, C]. The N/G distinct prompts run first with a KV cache; the cache is repeated
    G times (gathered row by row) and the completions run on top of it, so prompt tokens cost 1/G of the full forward (on
    SmolLM2-135M, 8 rows of 30 + 32 tokens: forward + backward 1.1 s instead of 1.8 s). Gradients flow
    through the shared prompt activations exactly as through G separate copies (their sum). The first
    completion token is predicted from the prompt's last hidden state. Returns ``(logps, entropy)``,
    0 where ``completion_mask`` is 0 (entropy None unless ``return_entropy``, detached otherwise as in
    :func:`token_logps_from_hidden`); equal to :func:`sequence_token_logps` on the full rows up to
    float rounding (tested).
    """
    from transformers import DynamicCache

    N, T = input_ids.shape
    C = completion_mask.shape[1]
    P = T - C
    sources, index = (t.to(input_ids.device) for t in prompt_groups(N, group_size, tiled))
    prompt_ids, prompt_mask = input_ids[sources, :P], attention_mask[sources, :P]
    body = _decoder_body(model)
    cache = DynamicCache()
    key = _cache_keyword(body)
    first = body(input_ids=prompt_ids, attention_mask=prompt_mask,
                 position_ids=((prompt_mask.cumsum(-1) - 1).clamp(min=0) * prompt_mask),
                 use_cache=True, **{key: cache})
    last = first.last_hidden_state[:, -1:].index_select(0, index)  # predicts completion token 0
    cache.reorder_cache(index)  # [N/G, ...] -> [N, ...]; autograd sums the copies' gradients
    lengths = prompt_mask.sum(-1, keepdim=True).index_select(0, index)
    positions = lengths + torch.arange(C, device=input_ids.device)[None]
    second = body(input_ids=input_ids[:, P:], attention_mask=attention_mask, position_ids=positions,
                  use_cache=True, **{key: cache})
    hidden = torch.cat([last, second.last_hidden_state[:, :-1]], dim=1)  # hidden[:, t] predicts token P + t
    targets = input_ids[:, P:].masked_fill(completion_mask == 0, IGNORE_INDEX)
    out = token_logps_from_hidden(hidden, output_head(model), targets, chunk_size=chunk_size,
                                  return_entropy=return_entropy, temperature=temperature,
                                  softcap=_softcap_of(model))
    return (out[0], out[1]) if return_entropy else (out, None)


def tree_pair_token_logps(model: nn.Module, batch: dict[str, torch.Tensor], num_sequences: int,
                          chunk_size: int = DEFAULT_CHUNK_SIZE) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed answer log-probs [S] and answer lengths [S] of ``num_sequences`` = S answers laid out as one
    padding-free row (``tree_*`` keys of :func:`alignkit.data.collate_preference_tree`): one forward of
    the decoder body over the row, its attention told the segments (``tree_segments``, which the model's
    attention function must read: :mod:`alignkit.models.segment_attention`), then the LM head on the
    predicting positions only. Equal to the padded and shared-prompt forwards up to float rounding
    (tested)."""
    body = _decoder_body(model)
    out = body(input_ids=batch["tree_input_ids"], position_ids=batch["tree_position_ids"], attention_mask=None,
               use_cache=False, tree_segments=batch["tree_segments"])
    hidden = out.last_hidden_state[:, batch["tree_predictors"]]  # [1, M, H]
    logps = token_logps_from_hidden(hidden, output_head(model), batch["tree_labels"][None], chunk_size=chunk_size,
                                    softcap=_softcap_of(model))[0]
    rows = batch["tree_sequences"]
    sums = logps.new_zeros(num_sequences).index_add(0, rows, logps)
    lengths = logps.new_zeros(num_sequences).index_add(0, rows, torch.ones_like(logps))
    return sums, lengths


def _softcap_of(model: nn.Module) -> float | None:
    config = getattr(_inner_causal_lm(model), "config", None)
    return getattr(config, "final_logit_softcapping", None) if config is not None else None


def sequence_token_logps(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    labels: torch.Tensor,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    return_entropy: bool = False,
    temperature: float = 1.0,
    position_ids: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor] | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-token log-probs of ``labels`` under a causal LM, chunked (never the full [B, T, V] logits).

    Args:
        model: a HF causal LM (e.g. ``LlamaForCausalLM``), a peft-wrapped one, or a DDP wrapper.
        input_ids, attention_mask: [B, T].
        labels: [B, T] aligned with ``input_ids`` (HF convention, unshifted), ``-100`` = no loss.
        chunk_size, temperature: see :func:`token_logps_from_hidden`.

    Returns:
        ``(logps, mask)`` or, with ``return_entropy``, ``(logps, mask, entropy)``; all [B, T]:
        ``logps[:, t] = log p(labels[:, t] | input_ids[:, :t])`` (float32, 0 where masked),
        ``mask`` bool = labels != -100 with column 0 False (nothing predicts the first token),
        ``entropy[:, t]`` the entropy of the distribution that predicted position t (0 where masked).
    """
    hidden = final_hidden_states(model, input_ids, attention_mask, position_ids)
    targets = labels[:, 1:]
    out = token_logps_from_hidden(
        hidden[:, :-1],
        output_head(model),
        targets,
        chunk_size=chunk_size,
        return_entropy=return_entropy,
        temperature=temperature,
        softcap=_softcap_of(model),
    )
    mask = F.pad(targets != IGNORE_INDEX, (1, 0), value=False)
    if return_entropy:
        logps, entropy = out
        return F.pad(logps, (1, 0)), mask, F.pad(entropy, (1, 0))
    return F.pad(out, (1, 0)), mask


def logps_from_logits(
    logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0, ignore_index: int = IGNORE_INDEX
) -> torch.Tensor:
    """Plain gather: logits [B, T, V] and labels [B, T] aligned with them -> float32 (or float64) [B, T], 0 where ignored."""
    logits = _upcast(logits)
    if temperature != 1.0:
        logits = logits / temperature
    valid = labels != ignore_index
    safe = torch.where(valid, labels, torch.zeros_like(labels))
    logps = torch.log_softmax(logits, dim=-1).gather(-1, safe.unsqueeze(-1)).squeeze(-1)
    return torch.where(valid, logps, torch.zeros_like(logps))


def full_logits_token_logps(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor | None,
    labels: torch.Tensor,
    return_entropy: bool = False,
    temperature: float = 1.0,
    position_ids: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor] | tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Reference implementation of :func:`sequence_token_logps` through ``model(...).logits``
    (materialises [B, T, V]); same arguments, outputs and alignment. For tests and small models."""
    logits = model(
        input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
    ).logits
    targets = labels[:, 1:]
    logps = logps_from_logits(logits[:, :-1], targets, temperature)
    mask = F.pad(targets != IGNORE_INDEX, (1, 0), value=False)
    if not return_entropy:
        return F.pad(logps, (1, 0)), mask
    scaled = _upcast(logits[:, :-1]) / temperature
    logz = torch.logsumexp(scaled, dim=-1)
    entropy = logz - (torch.softmax(scaled, dim=-1) * scaled).sum(-1)
    entropy = torch.where(targets != IGNORE_INDEX, entropy, torch.zeros_like(entropy))
    return F.pad(logps, (1, 0)), mask, F.pad(entropy, (1, 0))


def sum_token_logps(token_logps: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, T] per-token log-probs and mask -> (summed log-probs [B], token counts [B]) as the losses take."""
    mask = mask.to(token_logps.dtype)
    return (token_logps * mask).sum(-1), mask.sum(-1)
