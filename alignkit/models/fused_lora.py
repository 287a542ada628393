"""A LoRA linear layer whose scaling and sum run inside the matrix product.

peft computes a LoRA linear as ``base(x) + lora_B(lora_A(dropout(x))) * s``: two elementwise passes
over the ``[tokens, out]`` output (the ``* s`` and the ``+``) in the forward, and the ``* s`` again in
the backward. On a CPU those passes read and write the largest tensors of the layer; in a DPO step on
SmolLM2-135M (LoRA r=16 on all linear layers) the profiler put ``aten::mul`` and ``aten::add`` at 11.5 %
of the step. Here the same layer is

    y = addmm(x Wᵀ, x Aᵀ, Bᵀ, alpha=s)  =  x Wᵀ + s · (x Aᵀ) Bᵀ

one GEMM that accumulates into the base output (BLAS's beta = 1, alpha = s), with the same parameters,
names and gradients (the sums run in a different order: equal to float32 rounding, tested to 1e-5).

:func:`fuse_lora_linears` swaps the class of each plain peft ``lora.Linear`` to a subclass with this
forward; the module's state is untouched. The fused path runs only in the plain case (one active
adapter, no dropout, no DoRA or other variant, no bias on the base or the adapter, matching dtypes, no
extra forward arguments); anything else takes peft's own forward.

**Base weights in bfloat16** (``lora.base_dtype=bfloat16``, :func:`store_base_in`): the frozen base weight of
each LoRA linear is stored in bfloat16 and the layer computes in bfloat16: ``x`` and the adapters' float32
weights are cast (the adapters stay float32 master weights; their gradients come back through the casts),
the output is cast back to ``x``'s dtype. Everything else (embeddings, norms, attention, the LM head, the
loss) stays float32. On a CPU with AMX a bfloat16 product is ~4x a float32 one (821 vs 182 GFLOP/s at
1024x576x1536 on 2 cores, 2026-12-06); half the memory for those weights. Rounding as under bf16 mixed
precision (autocast), without autocast's per-call cast of every frozen weight.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from alignkit.models.modules import active_lora_adapters

__all__ = ["fuse_lora_linears", "store_base_in"]

_FUSED: dict[type, type] = {}


def _plain_adapter(layer: Any, x: torch.Tensor) -> str | None:
    """The one adapter the fused forward can compute for ``layer`` on input ``x``, or None."""
    adapters = active_lora_adapters(layer)
    if len(adapters) != 1:
        return None
    name = adapters[0]
    if name in layer.lora_variant or not isinstance(layer.lora_dropout[name], nn.Identity):
        return None
    base, a, b = layer.base_layer, layer.lora_A[name], layer.lora_B[name]
    if type(base) is not nn.Linear or base.bias is not None or b.bias is not None:
        return None
    if not (x.dtype == base.weight.dtype == a.weight.dtype == b.weight.dtype) or torch.is_autocast_enabled():
        return None
    return name


def _forward_in_base_dtype(self: Any, x: torch.Tensor) -> torch.Tensor:
    """The layer in its (lower-precision) base weight's dtype; see the module docstring."""
    base = self.base_layer
    dtype = base.weight.dtype
    xl = x.to(dtype)
    out = F.linear(xl, base.weight, None if base.bias is None else base.bias.to(dtype))
    for name in active_lora_adapters(self):
        if name in self.lora_variant:
            raise NotImplementedError("lora.base_dtype=bfloat16 supports plain LoRA adapters (no DoRA or other "
                                      "variant)")
        low = F.linear(self.lora_dropout[name](xl), self.lora_A[name].weight.to(dtype))
        b = self.lora_B[name]
        out2 = torch.addmm(out.reshape(-1, out.shape[-1]), low.reshape(-1, low.shape[-1]), b.weight.to(dtype).t(),
                           alpha=self.scaling[name]).view(out.shape)
        out = out2 if b.bias is None else out2 + self.scaling[name] * b.bias.to(dtype)
    return out.to(x.dtype)


def _forward(self: Any, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
    if self.base_layer.weight.dtype != x.dtype and not (args or kwargs) and not torch.is_autocast_enabled():
        return _forward_in_base_dtype(self, x)
    name = None if args or kwargs else _plain_adapter(self, x)
    if name is None:
        return self._peft_forward(x, *args, **kwargs)
    out = F.linear(x, self.base_layer.weight)
    low = F.linear(x, self.lora_A[name].weight)
    fused = torch.addmm(out.reshape(-1, out.shape[-1]), low.reshape(-1, low.shape[-1]),
                        self.lora_B[name].weight.t(), alpha=self.scaling[name])
    return fused.view(out.shape)


def _fused_class(cls: type) -> type:
    if cls not in _FUSED:
        # _peft_forward: peft's own forward for the cases the fused one leaves alone (named, not found through
        # super(), so that a wrapper class that subclasses this one again cannot send it back here)
        _FUSED[cls] = type(f"Fused{cls.__name__}", (cls,),
                           {"forward": _forward, "_peft_forward": cls.forward, "__module__": __name__})
    return _FUSED[cls]


def fuse_lora_linears(model: nn.Module) -> int:
    """Give every plain peft ``lora.Linear`` in ``model`` the fused forward; returns how many. Layers of
    other LoRA classes (bitsandbytes, embeddings, convolutions) keep peft's forward."""
    from peft.tuners.lora.layer import Linear as LoraLinear

    count = 0
    for module in model.modules():
        if type(module) is LoraLinear:
            module.__class__ = _fused_class(LoraLinear)
            count += 1
    return count


def store_base_in(model: nn.Module, dtype: torch.dtype) -> int:
    """Store the frozen base weight (and bias) of every fused LoRA linear of ``model`` in ``dtype``; those
    layers then compute in ``dtype`` (module docstring). Returns how many layers. Call after
    :func:`fuse_lora_linears`; a base weight that requires grad is left alone (it is trained)."""
    count = 0
    for module in model.modules():
        if type(module) in _FUSED.values():
            base = module.base_layer
            if base.weight.requires_grad:
                continue
            base.weight.data = base.weight.data.to(dtype)
            if base.bias is not None and not base.bias.requires_grad:
                base.bias.data = base.bias.data.to(dtype)
            count += 1
    return count
