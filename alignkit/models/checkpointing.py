"""Activation checkpointing: which activations are dropped after the forward and recomputed in backward.

``gradient_checkpointing`` (a training key) takes:

``false``
    keep every activation (fastest, most memory);
``full`` (or ``true``)
    every decoder layer is checkpointed: only each layer's input is kept, the whole layer runs again in
    backward (one more forward). For models whose attention layers know their cache slot (``layer_idx``:
    Llama and most Hugging Face decoders) this is alignkit's own wrapper, which keeps the KV cache, so
    DPO's and GRPO's shared-prompt forward still applies: a layer called with a cache remembers that
    layer's cache state at the call, and the recomputation in backward starts from it again (the cache
    has grown by then), so it computes exactly what the forward did. Other models get Hugging Face's
    checkpointing, which turns the cache off (DPO then runs the plain ``[2B, T]`` forward);
``mlp``
    only each layer's MLP block (gate/up projections, activation, down projection) is recomputed: on
    SmolLM2 its [T, 1536] intermediates are the largest activations of a layer. It keeps the KV cache
    (DPO's shared-prompt forward still applies);
``alternate``
    ``mlp`` on every other decoder layer (0, 2, 4, ...): half the recomputation for half the saving.

Counted on SmolLM2-135M (LoRA r=16 all-linear, 4 pairs of ~40-token prompts and ~100-token answers,
policy forward + backward, activations autograd saves outside checkpointed blocks): no checkpointing
1,367 MiB and 571 GFLOP; ``alternate`` 996 MiB, +15 % FLOPs; ``mlp`` 624 MiB, +30 %; ``full`` 84 MiB
(plus the layer inputs it keeps), +60 % (the plain forward plus the recomputation) when the cache was
off. Full-layer checkpointing of every other layer was 807 MiB at +37 % with the shared prompt lost,
dominated by ``mlp``: so ``alternate`` checkpoints MLP blocks only. Time and memory of ``alignkit bench
dpo``: README "Benchmarks".
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


def _layer_index(layer: nn.Module) -> int | None:
    """The cache slot of a decoder layer (its attention's ``layer_idx``), or None."""
    idx = getattr(getattr(layer, "self_attn", None), "layer_idx", None)
    return idx if isinstance(idx, int) else None


def _cache_arg(kwargs: dict[str, Any]) -> Any:
    return kwargs.get("cache", kwargs.get("past_key_values"))


def _checkpointed_class(cls: type) -> type:
    """A subclass of module class ``cls`` whose forward runs under non-reentrant checkpointing when training
    with gradients (same parameters and names, so state dicts, LoRA and copies are unchanged). A decoder
    layer called with a KV cache keeps it working: the layer's cache slot's state at the call (its
    ``__dict__``, or "not there yet") is put back before every run, so the recomputation in backward sees
    the cache the forward saw (later layers and calls have grown it since) and returns the same tensors."""
    if cls not in _CHECKPOINTED:
        def forward(self, *args: Any, **kwargs: Any) -> Any:
            run = super(sub, self).forward
            if not (self.training and torch.is_grad_enabled()):
                return run(*args, **kwargs)
            cache, idx = _cache_arg(kwargs), _layer_index(self)
            if cache is None or idx is None:
                return checkpoint(run, *args, use_reentrant=False, **kwargs)
            layers = getattr(cache, "layers", None)
            if layers is None:  # a cache whose state this cannot put back: not checkpointed (correct, more memory)
                return run(*args, **kwargs)
            state = dict(vars(layers[idx])) if idx < len(layers) else None

            def replay(*a: Any, **kw: Any) -> Any:
                if idx < len(layers):
                    if state is None:
                        layers[idx].reset()  # the slot did not exist at the call: start it empty again
                    else:
                        vars(layers[idx]).update(state)
                return run(*a, **kw)

            return checkpoint(replay, *args, use_reentrant=False, **kwargs)

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

    ``full`` swaps each decoder layer to a checkpointed subclass of its own class (where every
    layer knows its cache slot; else Hugging Face's own layer checkpointing, non-reentrant) and sets
    ``config.use_cache = False`` (nothing in training needs a cache unless it passes one). ``mlp`` swaps
    each decoder layer's ``mlp`` module to a checkpointed subclass of its own class (``alternate``: on
    layers 0, 2, 4, ...)."""
    mode = checkpoint_mode(value)
    if mode is None:
        return None
    layers = decoder_layers(model)
    if mode == "full":
        if all(_layer_index(layer) is not None for layer in layers):
            for layer in layers:
                if layer.__class__ not in _CHECKPOINTED.values():
                    layer.__class__ = _checkpointed_class(layer.__class__)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
        return mode
    for layer in layers[::2] if mode == "alternate" else layers:
        mlp = getattr(layer, "mlp", None)
        if not isinstance(mlp, nn.Module):
            raise ValueError(f"gradient_checkpointing=mlp: {type(layer).__name__} has no mlp block")
        if mlp.__class__ not in _CHECKPOINTED.values():
            mlp.__class__ = _checkpointed_class(mlp.__class__)
    return mode
