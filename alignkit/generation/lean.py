"""A lean inference forward for Llama-architecture decoders: what the decode loop runs by default.

Why: a decode step multiplies a few rows by every weight matrix. Through a peft LoRA model and HF's
Llama forward that is 7 base products, 14 low-rank products and their adds per layer, plus the
forward's own Python (mask building, cache bookkeeping, peft dispatch). This module keeps a
generation-only copy of each layer's weights with any LoRA adapters merged in (W + (α/r)·BA) and the
projections that share an input fused into one matrix (q|k|v and gate|up), stored [in, out] (float32
on a CPU without AMX: [out, in], see :meth:`LeanDecoder._mm`): 4 products per layer. Measured
(SmolLM2-135M, LoRA r=16, 2 prompts x 4 samples x 32 tokens, float32, 2 cores, 2026-12-06, five
interleaved runs): HF forward 3.48 s median, this forward 2.81 s. What is left is the
matrix products themselves: at 8 rows MKL streams the weights at ~11-14 GB/s on that Intel machine whatever
their layout (on an AMD EPYC without AMX the layout mattered: :meth:`LeanDecoder._mm`).

The arithmetic is the model's own: RMSNorm in float32 (``w · x / sqrt(mean(x²) + ε)``), rotary
embeddings from the model's rotary module, grouped-query attention (``scaled_dot_product_attention``;
a float32 decode step as two batched products, :meth:`LeanDecoder._attend`), SiLU MLP,
the tied or untied head on the kept positions only. Only the order of floating-point additions inside a
product differs from HF's forward (fused, merged matrices): logits agree to ~1e-5 in float32, and
greedy tokens agree except at near-ties.

The copy is refreshed in place when the model's weights change (a fingerprint of every parameter's
storage and autograd version counter, which every optimizer step and ``load_state_dict`` bump, plus
which adapters are active), so a training loop that samples after each step gets the current weights
and an eval that samples many batches from one model builds it once. A write through ``param.data``
bypasses the version counter: code that does so must call :meth:`LeanDecoder.refresh` itself or
sample with ``sampler="fast"``. It costs one more copy of the decoder layers' weights (the embedding
and a tied head are shared, not copied); ``ALIGNKIT_SAMPLER=fast`` turns it off.
"""

from __future__ import annotations

import os
import weakref
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from alignkit.hardware import has_amx
from alignkit.models.modules import active_lora_adapters, adapter_state, base_module, effective_weight

__all__ = ["LeanDecoder", "lean_decoder", "supports_lean"]

OUT_IN_ROWS = 64
"""Most rows for which :meth:`LeanDecoder._mm` takes a float32 product as (W xᵀ)ᵀ on a CPU without AMX."""


def _llama(model: nn.Module) -> nn.Module | None:
    """The ``LlamaForCausalLM`` under the wrappers, or None."""
    inner = base_module(model)
    config = getattr(inner, "config", None)
    if getattr(config, "model_type", None) != "llama" or not hasattr(inner, "model"):
        return None
    return inner


def supports_lean(model: nn.Module) -> bool:
    """Whether :class:`LeanDecoder` reproduces ``model``'s forward: a Llama causal LM with SiLU MLP, no
    biases, one tensor-parallel slice, floating-point weights that are neither quantized nor sharded
    (FSDP), and no forward hooks on any module (the lean forward calls no module, so a hook would
    silently not run)."""
    inner = _llama(model)
    if inner is None:
        return False
    c = inner.config
    if getattr(c, "hidden_act", None) != "silu" or getattr(c, "attention_bias", False) or getattr(c, "mlp_bias", False):
        return False
    if getattr(c, "pretraining_tp", 1) != 1:
        return False
    if any(m._forward_hooks or m._forward_pre_hooks for m in inner.modules()):
        return False
    # sharded (FSDP2 DTensor) or quantized parameters: the model's own forward knows how to use them
    return all(p.dtype.is_floating_point and type(p.data).__name__ != "DTensor" for p in inner.parameters())


@dataclass
class _Layer:
    qkv: torch.Tensor      # [hidden, (H + 2·KVH)·D]
    o: torch.Tensor        # [H·D, hidden]
    gate_up: torch.Tensor  # [hidden, 2·intermediate]
    down: torch.Tensor     # [intermediate, hidden]
    norm_attn: torch.Tensor
    norm_mlp: torch.Tensor


def _base_weight(module: nn.Module) -> torch.Tensor:
    return (module.get_base_layer() if hasattr(module, "get_base_layer") else module).weight


def _write_transposed(out: torch.Tensor, module: nn.Module) -> None:
    """``out`` [in, out] = the transpose of ``module``'s effective weight: the base weight, plus
    (α/r)·AᵀBᵀ per active plain LoRA adapter added in place (no [out, in] temporary); any other
    adapter kind through :func:`effective_weight`."""
    adapters = active_lora_adapters(module)
    plain = not getattr(module, "fan_in_fan_out", False) and not any(
        getattr(module, "use_dora", {}).get(a, False) for a in adapters)
    if not plain:
        out.copy_(effective_weight(module).t())
        return
    out.copy_(_base_weight(module).detach().t())
    for a in adapters:
        out.addmm_(module.lora_A[a].weight.detach().t(), module.lora_B[a].weight.detach().t(),
                   alpha=module.scaling[a])


def _fingerprint(model: nn.Module) -> tuple:
    return tuple((p.data_ptr(), p._version) for p in model.parameters()), adapter_state(model)


class LeanDecoder:
    """Generation-only weights of a Llama causal LM and a forward over them (see the module docstring).

    ``__call__(input_ids [B, T], attention_mask [B, S], position_ids [B, T], cache, logits_to_keep)``
    has the keyword interface of the HF forward that :func:`alignkit.generation.decode.decode` uses:
    ``attention_mask`` covers the cached positions and the new ones (S = cached + T, 1 = attend),
    ``cache`` is a :class:`~alignkit.generation.decode.PreallocatedCache`; it returns an object whose
    ``logits`` are [B, logits_to_keep or T, V].
    """

    def __init__(self, model: nn.Module) -> None:
        inner = _llama(model)
        if inner is None or not supports_lean(model):
            raise ValueError("LeanDecoder needs a Llama causal LM (see supports_lean)")
        c = inner.config
        self.heads = int(c.num_attention_heads)
        self.kv_heads = int(getattr(c, "num_key_value_heads", None) or self.heads)
        self.head_dim = int(getattr(c, "head_dim", None) or c.hidden_size // self.heads)
        self.eps = float(c.rms_norm_eps)
        self.rotary = inner.model.rotary_emb
        self.amx = has_amx()
        self.bf16_by_matmul = not self.amx  # see _attend
        self.out_in = False  # float32 without AMX, set with the weights' dtype (refresh; see _mm)
        self.onednn = False  # out_in products through oneDNN (see _mm)
        self.fingerprint: tuple = ()
        self.layers: list[_Layer] = []
        self.refresh(model)

    @torch.no_grad()
    def refresh(self, model: nn.Module) -> LeanDecoder:
        """Bring the weights up to date with ``model`` if they changed since the last refresh. The
        buffers are allocated once and overwritten in place (no second copy while refreshing)."""
        inner = _llama(model)
        fingerprint = _fingerprint(inner)
        if fingerprint == self.fingerprint:
            return self
        body = inner.model
        groups = [((a.q_proj, a.k_proj, a.v_proj), (a.o_proj,), (layer.mlp.gate_proj, layer.mlp.up_proj),
                   (layer.mlp.down_proj,)) for layer in body.layers for a in [layer.self_attn]]
        if not self.layers:
            dtype = body.embed_tokens.weight.dtype  # the model's compute dtype (lora.base_dtype may store less)

            self.out_in = dtype == torch.float32 and not self.amx
            self.onednn = self.out_in and onednn_linear_works()

            def empty(modules: tuple) -> torch.Tensor:
                w = [_base_weight(m) for m in modules]
                shape = (w[0].shape[1], sum(x.shape[0] for x in w))  # [in, out]
                if self.out_in:  # stored [out, in]; the [in, out] view is what the rest of the code sees
                    return w[0].new_empty(shape[::-1], dtype=dtype).t()
                return w[0].new_empty(shape, dtype=dtype)

            self.layers = [_Layer(*(empty(g) for g in layer_groups), norm_attn=layer.input_layernorm.weight,
                                  norm_mlp=layer.post_attention_layernorm.weight)
                           for layer_groups, layer in zip(groups, body.layers)]
        for layer, layer_groups, module in zip(self.layers, groups, body.layers):
            for buffer, modules in zip((layer.qkv, layer.o, layer.gate_up, layer.down), layer_groups):
                column = 0
                for m in modules:
                    width = _base_weight(m).shape[0]
                    _write_transposed(buffer[:, column:column + width], m)
                    column += width
            layer.norm_attn = module.input_layernorm.weight.detach()
            layer.norm_mlp = module.post_attention_layernorm.weight.detach()
        self.embed = effective_weight(body.embed_tokens)
        self.norm = body.norm.weight.detach()
        self.head = effective_weight(inner.lm_head)
        self.fingerprint = fingerprint
        return self

    def _mm(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """``x [..., in] @ weight [in, out]``. With ``out_in`` (float32 on a CPU without AMX) the weight is
        stored [out, in] and the product is oneDNN's linear (:func:`_onednn_linear`) where torch has it:
        on an AMD EPYC (AVX-512, no AMX; 2026-12-07) MKL's float32 GEMM, which ``@`` calls, ran the model's
        products at 73-190 GFLOP/s and oneDNN's at 118-211 (8 rows x [576, 3072]: 0.39 -> 0.24 ms; 128
        rows: 2.55 -> 2.19 ms; the 49k-row head at 64 rows 35.5 -> 22.8 ms, at 128 rows 60 -> 37 ms;
        2,048 rows 39.0 -> 36.4 ms). Without it, up to :data:`OUT_IN_ROWS` rows the product is taken as
        (W xᵀ)ᵀ, the big matrix as MKL's left operand (measured the same way: the 30 layers' four products
        56 -> 35 ms at 8 rows, 155 -> 114 at 64; the head 18-23 -> 7 ms at 8 rows), and ``x @ Wᵀ`` on the
        same storage above it. Float32 sums in another order: logits agree to ~1e-5."""
        if not self.out_in:
            return x @ weight
        rows = x.reshape(-1, x.shape[-1])
        if self.onednn:
            return _onednn_linear(rows, weight.t()).view(*x.shape[:-1], weight.shape[1])
        if rows.shape[0] > OUT_IN_ROWS:
            return x @ weight
        return (weight.t() @ rows.t()).t().contiguous().view(*x.shape[:-1], weight.shape[1])

    def _rms(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        if x.dtype == torch.float32 and weight.dtype == torch.float32:
            # one fused kernel, the same float32 values as the three-op form below (measured equal)
            return F.rms_norm(x, (x.shape[-1],), weight, self.eps)
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + self.eps)
        return weight * h.to(x.dtype)

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """softmax(q kᵀ / √D + mask) v, [B, H, T, D]. A decode step (T = 1) multiplies the G = H / KVH query
        heads of each key/value head as one [G, D] block, in float32 (the CPU flash kernel spends ~40 %
        longer on these one-row queries, measured at 72-256 rows, 120-200 cached positions) and, without
        AMX, in bfloat16 too (there the flash kernel's bf16 path took 8-12x longer: 11.6 vs 1.4 ms at 128
        rows x 150 positions on an AMD EPYC with AVX-512 BF16). bfloat16 scores are rounded as Hugging
        Face's eager attention rounds them (product in bf16, softmax in float32, probabilities back to
        bf16); with AMX the flash kernel stays, so bf16 answers there are what they were."""
        b, h, t, d = q.shape
        kvh = k.shape[1]
        if t != 1 or not (q.dtype == torch.float32 or (q.dtype == torch.bfloat16 and self.bf16_by_matmul)):
            return F.scaled_dot_product_attention(q, k, v, attn_mask=keys, enable_gqa=kvh != h)
        scores = torch.matmul(q.reshape(b, kvh, h // kvh, d), k.transpose(-1, -2)).float().mul_(d ** -0.5)
        scores = scores.masked_fill_(~keys, float("-inf")).softmax(-1).to(v.dtype)
        return torch.matmul(scores, v).reshape(b, h, 1, d)

    @staticmethod
    def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        half = x.shape[-1] // 2
        rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
        return x * cos + rotated * sin

    @torch.no_grad()
    def __call__(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, position_ids: torch.Tensor,
                 cache, logits_to_keep: int = 0, **_: object):
        b, t = input_ids.shape
        x = F.embedding(input_ids, self.embed)
        cos, sin = self.rotary(x, position_ids)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # [B, 1, T, D]: broadcast over heads
        keys = attention_mask.bool()[:, None, None, :]  # [B, 1, 1, S]
        if t > 1:  # prefill: causal within the new tokens; a padding query attends to itself (no NaN row)
            s = attention_mask.shape[1]
            causal = torch.ones(t, s, dtype=torch.bool, device=x.device).tril(s - t)
            eye = torch.zeros(t, s, dtype=torch.bool, device=x.device)
            eye[:, s - t:] = torch.eye(t, dtype=torch.bool, device=x.device)
            keys = (keys & causal) | eye
        h, kvh, d = self.heads, self.kv_heads, self.head_dim
        for i, layer in enumerate(self.layers):
            qkv = self._mm(self._rms(x, layer.norm_attn), layer.qkv)
            q, k, v = qkv.split((h * d, kvh * d, kvh * d), dim=-1)
            q = self._rope(q.view(b, t, h, d).transpose(1, 2), cos, sin)
            k = self._rope(k.view(b, t, kvh, d).transpose(1, 2), cos, sin)
            k, v = cache.layers[i].update(k, v.view(b, t, kvh, d).transpose(1, 2))
            a = self._attend(q, k, v, keys)
            x = x + self._mm(a.transpose(1, 2).reshape(b, t, h * d), layer.o)
            gate, up = self._mm(self._rms(x, layer.norm_mlp), layer.gate_up).chunk(2, dim=-1)
            x = x + self._mm(F.silu(gate).mul_(up), layer.down)
        kept = x[:, -logits_to_keep:] if logits_to_keep else x
        return _Output(self._mm(self._rms(kept, self.norm), self.head.t()))


def _onednn_linear(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``x [N, in] @ weight [out, in]ᵀ`` through oneDNN's linear (inference only: no autograd)."""
    return torch.ops.mkldnn._linear_pointwise(x, weight, None, "none", [], "")


_ONEDNN_WORKS: bool | None = None


def onednn_linear_works() -> bool:
    """Whether this torch build has oneDNN's float32 linear and it gives ``x Wᵀ`` (checked once on a small
    product; ``ALIGNKIT_ONEDNN=0`` turns it off)."""
    global _ONEDNN_WORKS
    if _ONEDNN_WORKS is None:
        _ONEDNN_WORKS = False
        if os.environ.get("ALIGNKIT_ONEDNN", "1") != "0" and torch.backends.mkldnn.is_available():
            x, w = torch.randn(3, 8), torch.randn(5, 8)
            try:
                _ONEDNN_WORKS = torch.allclose(_onednn_linear(x, w), x @ w.t(), atol=1e-5, rtol=1e-5)
            except (RuntimeError, AttributeError):  # an op this build does not have
                _ONEDNN_WORKS = False
    return _ONEDNN_WORKS


@dataclass
class _Output:
    logits: torch.Tensor


_DECODERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def lean_decoder(model: nn.Module) -> LeanDecoder:
    """The :class:`LeanDecoder` of ``model``, built once per model and refreshed when its weights change."""
    inner = _llama(model)
    decoder = _DECODERS.get(inner)
    if decoder is None:
        decoder = _DECODERS[inner] = LeanDecoder(model)
    return decoder.refresh(model)
