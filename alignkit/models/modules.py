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
