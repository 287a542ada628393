"""Activation checkpointing: which activations are dropped after the forward and recomputed in backward.

``gradient_checkpointing`` (a training key) takes:

``false``
    keep every activation (fastest, most memory);
``full`` (or ``true``)
    Hugging Face's checkpointing of every decoder layer: only each layer's input is kept, the whole
    layer runs again in backward (one more forward). It turns the KV cache off, so DPO then runs the
    plain ``[2B, T]`` forward instead of sharing prompts;
``mlp``
    only each layer's MLP block (gate/up projections, activation, down projection) is recomputed: on
    SmolLM2 its [T, 1536] intermediates are the largest activations of a layer. It keeps the KV cache
    (DPO's shared-prompt forward still applies);
``alternate``
    ``mlp`` on every other decoder layer (0, 2, 4, ...): half the recomputation for half the saving.

Counted on SmolLM2-135M (LoRA r=16 all-linear, 4 pairs of ~40-token prompts and ~100-token answers,
policy forward + backward, activations autograd saves outside checkpointed blocks): no checkpointing
1,367 MiB and 571 GFLOP; ``alternate`` 996 MiB, +15 % FLOPs; ``mlp`` 624 MiB, +30 %; ``full`` 84 MiB
(plus the layer inputs it keeps), +60 % (the plain forward plus the recomputation). Full-layer
checkpointing of every other layer was 807 MiB at +37 % with the shared prompt lost, dominated by
``mlp``: so ``alternate`` checkpoints MLP blocks only.
Time and memory figures: not measured yet (see the README).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

MODES = ("full", "alternate", "mlp")
_CHECKPOINTED: dict[type, type] = {}


def checkpoint_mode(value: bool | str | None) -> str | None:
    """The mode of a ``gradient_checkpointing`` value: None (off), ``full``, ``alternate`` or ``mlp``."""
    if value is None or value is False:
        return None
    if value is True:
        return "full"
    if value not in MODES:
        raise ValueError(f"gradient_checkpointing must be false, true or one of {', '.join(MODES)}; got {value!r}")
    return str(value)


def _checkpointed_class(cls: type) -> type:
    """A subclass of module class ``cls`` whose forward runs under non-reentrant checkpointing when
    training with gradients (same parameters and names, so state dicts, LoRA and copies are unchanged)."""
    if cls not in _CHECKPOINTED:
        def forward(self, *args: Any, **kwargs: Any) -> Any:
            run = super(sub, self).forward
            if self.training and torch.is_grad_enabled():
                return checkpoint(run, *args, use_reentrant=False, **kwargs)
            return run(*args, **kwargs)

        sub = type(f"Checkpointed{cls.__name__}", (cls,), {"forward": forward, "__module__": cls.__module__})
        _CHECKPOINTED[cls] = sub
    return _CHECKPOINTED[cls]


def decoder_layers(model: nn.Module) -> list[nn.Module]:
    """The decoder layers of a causal LM (``model.model.layers`` for Llama-like models), looking through
    peft wrappers; those that Hugging Face checkpoints (``GradientCheckpointingLayer``) when present."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    layers = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]
    if not layers:
        raise ValueError(f"{type(model).__name__} has no decoder layers that support checkpointing")
    return layers


def enable_checkpointing(model: nn.Module, value: bool | str | None) -> str | None:
    """Turn on the activation checkpointing of ``value`` (see the module docstring) on a Hugging Face
    causal LM, before LoRA is applied or after. Returns the mode (None: off).

    ``full`` uses Hugging Face's own layer checkpointing (non-reentrant) and sets
    ``config.use_cache = False``. ``mlp`` swaps each decoder layer's ``mlp`` module to a checkpointed
    subclass of its own class (``alternate``: on layers 0, 2, 4, ...)."""
    mode = checkpoint_mode(value)
    if mode is None:
        return None
    if mode == "full":
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
        return mode
    layers = decoder_layers(model)
    for layer in layers[::2] if mode == "alternate" else layers:
        mlp = getattr(layer, "mlp", None)
        if not isinstance(mlp, nn.Module):
            raise ValueError(f"gradient_checkpointing=mlp: {type(layer).__name__} has no mlp block")
        if mlp.__class__ not in _CHECKPOINTED.values():
            mlp.__class__ = _checkpointed_class(mlp.__class__)
    return mode
