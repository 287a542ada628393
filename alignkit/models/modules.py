"""What a model object is underneath its wrappers: the one place for unwrapping DDP/accelerate and
peft, and for running a module in eval mode."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside a DDP/accelerate wrapper (peft wrappers are kept)."""
    return getattr(model, "module", model)


def is_peft(model: torch.nn.Module) -> bool:
    """True when ``model`` (possibly DDP-wrapped) is a peft model whose adapters can be disabled."""
    inner = unwrap(model)
    return hasattr(inner, "disable_adapter") and hasattr(inner, "get_base_model")


def base_module(model: torch.nn.Module) -> torch.nn.Module:
    """The transformers model under every wrapper (DDP/accelerate, then peft)."""
    inner = unwrap(model)
    get_base = getattr(inner, "get_base_model", None)
    return get_base() if callable(get_base) else inner


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Put ``model`` in eval mode for the block and restore its previous training flag afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def effective_weight(module: torch.nn.Module) -> torch.Tensor:
    """The weight ``module`` computes with right now (detached): a peft LoRA layer's base weight plus
    (α/r)·BA of each active adapter (nothing added while adapters are disabled or already merged);
    any other module's own ``weight``."""
    base = module.get_base_layer() if hasattr(module, "get_base_layer") else module
    weight = base.weight.detach()
    deltas = [module.get_delta_weight(a) for a in active_lora_adapters(module)]
    return weight + sum(deltas) if deltas else weight


def active_lora_adapters(module: torch.nn.Module) -> list[str]:
    """The LoRA adapters a peft layer adds to its base output now: its active adapters that it holds,
    none while adapters are disabled or already merged into the base weight (or for a plain module)."""
    if getattr(module, "disable_adapters", False) or getattr(module, "merged", False):
        return []
    lora_a = getattr(module, "lora_A", None) or getattr(module, "lora_embedding_A", None) or {}
    return [a for a in getattr(module, "active_adapters", ()) if a in lora_a]


def adapter_state(model: torch.nn.Module) -> tuple:
    """Which adapters each peft layer of ``model`` applies now (disabled, merged, active names): a
    weight fingerprint must change when ``disable_adapter()`` switches them off."""
    return tuple((bool(getattr(m, "disable_adapters", False)), bool(getattr(m, "merged", False)),
                  tuple(getattr(m, "active_adapters", ())))
                 for m in model.modules() if hasattr(m, "disable_adapters") and hasattr(m, "get_base_layer"))
