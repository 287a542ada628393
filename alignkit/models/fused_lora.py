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
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from alignkit.models.modules import active_lora_adapters

__all__ = ["fuse_lora_linears"]

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


def _forward(self: Any, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
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
