"""PPO's critic: a value head on a transformer body, riding on the policy model it shares weights with.

``lora.r > 0`` (one copy of the base weights)
    The policy is a peft model whose adapter ``default`` is the policy (named so that ``final/`` is an
    ordinary adapter directory); :func:`add_critic` adds a second LoRA adapter ``critic``. The critic body
    is the base with the ``critic`` adapter active. Switching adapters with peft's ``set_adapter`` (or
    ``disable_adapter``) marks the inactive adapters ``requires_grad=False``; :func:`critic_body` switches
    back and re-enables the trainable parameters it is given right after the forward, so that one optimizer
    keeps training both adapters.
``lora.r = 0`` (the "full-copy setup")
    The critic body is a separate copy of the base decoder (without the LM head).

Either way the critic's own parameters live on the model as the submodule ``ppo_critic``
(:class:`CriticParts`: ``.value_head``, and ``.body`` in the full-copy setup), so the engine's optimizer,
gradient clipping and checkpoints cover them like any other trainable parameter. The value head
``Linear(hidden, 1)`` reads the body's final (normed) hidden state.

Safe RLHF's PPO (``safe-ppo``) adds a second critic for the cost the same way: a :class:`CriticSlot` names
where a critic lives (submodule ``cost_critic``, LoRA adapter ``cost_critic``, ``final/cost_critic/``);
every function takes the slot, the reward critic (:data:`REWARD_CRITIC`) by default.

On disk (:func:`save_critic`, ``final/critic/``): the ``critic`` peft adapter (LoRA; load it on the same base
model, without the policy adapter) or the critic body as a Hugging Face model (full-copy setup), plus
``value_head.safetensors`` (``weight`` [1, hidden], ``bias`` [1]) and ``critic.json``.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from alignkit.models.modules import base_module

POLICY_ADAPTER = "default"
CRITIC_ADAPTER = "critic"
CRITIC_ATTR = "ppo_critic"
CRITIC_DIR = "critic"
VALUE_HEAD_FILE = "value_head.safetensors"

__all__ = ["COST_CRITIC", "CRITIC_ADAPTER", "CRITIC_ATTR", "CRITIC_DIR", "POLICY_ADAPTER", "REWARD_CRITIC",
           "SLOTS", "VALUE_HEAD_FILE", "CriticParts", "CriticSlot", "add_critic", "critic_body", "critic_values", "decoder", "detached_critic", "explained_variance",
           "is_critic_param", "is_lora_critic", "save_critic", "write_value_head"]


@dataclass(frozen=True)
class CriticSlot:
    """Where a critic lives: the submodule ``attr`` on the policy model, the LoRA adapter ``adapter``, and the
    directory ``dir`` under ``final/``."""

    attr: str
    adapter: str
    dir: str


REWARD_CRITIC = CriticSlot(CRITIC_ATTR, CRITIC_ADAPTER, CRITIC_DIR)
COST_CRITIC = CriticSlot("cost_critic", "cost_critic", "cost_critic")
SLOTS = (REWARD_CRITIC, COST_CRITIC)


class CriticParts(nn.Module):
    """The critic's own parameters: ``value_head`` Linear(hidden, 1) and, in the full-copy setup,
    ``body`` (the critic's copy of the decoder). With LoRA the body is the shared base with the
    ``critic`` adapter active, so ``body`` is None.

    The value head starts at zero (as in OpenAI's lm-human-preferences): the first rollout's values
    are 0, so its advantages carry no random critic noise; the body starts receiving gradients once
    the head has moved (from the second optimizer step on)."""

    def __init__(self, hidden_size: int, body: nn.Module | None = None) -> None:
        super().__init__()
        self.value_head = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)
        self.body = body


def decoder(model: nn.Module) -> nn.Module:
    """The decoder body (e.g. ``LlamaModel``) of a causal LM, looking through DDP and peft."""
    return base_module(model).get_decoder()


def add_critic(model: nn.Module, lora: bool, slot: CriticSlot = REWARD_CRITIC) -> nn.Module:
    """Give a causal LM a critic: with ``lora`` (``model`` is a peft model whose adapter ``default`` is the
    policy) a trainable LoRA adapter ``slot.adapter`` configured as the policy's, else a copy of the decoder
    body; plus the value head. Returns ``model`` with the :class:`CriticParts` as its submodule ``slot.attr``."""
    hidden = int(decoder(model).config.hidden_size)
    if lora:
        model.add_adapter(slot.adapter, copy.deepcopy(model.peft_config[POLICY_ADAPTER]))
        for name, p in model.named_parameters():
            if f".{slot.adapter}." in name:  # peft adds a second adapter frozen
                p.requires_grad_(True)
        parts = CriticParts(hidden)
    else:
        parts = CriticParts(hidden, body=copy.deepcopy(decoder(model)))
    setattr(model, slot.attr, parts)
    return model


def is_lora_critic(model: nn.Module, slot: CriticSlot = REWARD_CRITIC) -> bool:
    """Whether the critic of ``model`` (unwrapped) is a LoRA adapter (else its own body copy)."""
    return getattr(model, slot.attr).body is None


def is_critic_param(name: str) -> bool:
    """Whether the parameter ``name`` (as in ``model.named_parameters()``) belongs to a critic (either slot)."""
    return any(f".{s.adapter}." in name or name.startswith(s.attr + ".") for s in SLOTS)


@contextmanager
def detached_critic(model: nn.Module) -> Iterator[list[CriticParts]]:
    """The model without its critic submodules for the block (to save or copy the policy alone)."""
    popped = [(s.attr, model._modules.pop(s.attr)) for s in SLOTS if s.attr in model._modules]
    try:
        yield [parts for _, parts in popped]
    finally:
        for attr, parts in popped:
            model._modules[attr] = parts


@contextmanager
def critic_body(model: nn.Module, trainable: Sequence[nn.Parameter] = (),
                slot: CriticSlot = REWARD_CRITIC) -> Iterator[nn.Module]:
    """The critic's decoder body of ``model`` (unwrapped): the shared base with the critic's adapter
    active (LoRA), or the critic's own copy. peft's adapter switch freezes the other adapters; on exit the
    policy adapter is active again and every parameter in ``trainable`` requires grad again."""
    parts: CriticParts = getattr(model, slot.attr)
    if parts.body is not None:
        yield parts.body
        return
    model.set_adapter(slot.adapter)
    try:
        yield decoder(model)
    finally:
        model.set_adapter(POLICY_ADAPTER)
        for p in trainable:
            p.requires_grad_(True)


def critic_values(model: nn.Module, batch: dict[str, torch.Tensor],
                  trainable: Sequence[nn.Parameter] = (), slot: CriticSlot = REWARD_CRITIC) -> torch.Tensor:
    """Critic values [N, C] (float32) of the completion positions of a rollout batch (C = width of its
    ``completion_mask``): column j is the value of the state before completion token j (the hidden state
    of the token before it), aligned with the completion log-probs. ``model`` is unwrapped."""
    head = getattr(model, slot.attr).value_head
    C = batch["completion_mask"].shape[1]
    with critic_body(model, trainable, slot) as body:
        out = body(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                   position_ids=batch.get("position_ids"), use_cache=False)
    hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
    hidden = hidden[:, -C - 1:-1]
    return head(hidden.to(head.weight.dtype)).squeeze(-1).float()


def write_value_head(parts: CriticParts, out: Path, kind: str) -> None:
    """``value_head.safetensors`` and ``critic.json`` in ``out``."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    head = parts.value_head
    save_file({"weight": head.weight.detach().float().contiguous().cpu(),
               "bias": head.bias.detach().float().contiguous().cpu()}, str(out / VALUE_HEAD_FILE))
    info = {"kind": kind, "value_head": VALUE_HEAD_FILE, "hidden_size": int(head.in_features),
            "input": "final normed hidden state of the critic body; the value of position t estimates the "
                     "return of the completion tokens after t"}
    (out / "critic.json").write_text(json.dumps(info, indent=2) + "\n")


def save_critic(model: nn.Module, out: str | os.PathLike, slot: CriticSlot = REWARD_CRITIC) -> Path:
    """Write the critic of ``model`` (unwrapped) to ``out`` (e.g. ``final/critic``), replacing what is there:
    the critic's adapter (``adapter_config.json`` + ``adapter_model.safetensors``, for the base model without
    the policy adapter) or the critic body, plus the value head. Written to a temporary sibling first."""
    from safetensors.torch import save_file

    out = Path(out)
    parts: CriticParts = getattr(model, slot.attr)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        if is_lora_critic(model, slot):
            from peft import get_peft_model_state_dict

            config = copy.deepcopy(model.peft_config[slot.adapter])
            config.inference_mode = True
            config.save_pretrained(str(tmp))
            targets = config.target_modules
            targets = [targets] if isinstance(targets, str) else list(targets or [])
            embedding = any(t in ("embed_tokens", "lm_head", "wte", "embeddings") for t in targets)
            # explicit save_embedding_layers (as save_model): "auto" may query the hub about the base model
            state = get_peft_model_state_dict(model, adapter_name=slot.adapter, save_embedding_layers=embedding)
            save_file({k: v.detach().contiguous().cpu() for k, v in state.items()},
                      str(tmp / "adapter_model.safetensors"))
            kind = "lora-adapter (on the base model without the policy adapter)"
        else:
            parts.body.save_pretrained(str(tmp))
            kind = "full-body"
        write_value_head(parts, tmp, kind)
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> float:
    """1 - Var(returns - values) / Var(returns) over the masked tokens (nan when returns are constant)."""
    m = mask.to(torch.float64)
    n = float(m.sum())
    if n < 2:
        return float("nan")
    r, v = returns.double(), values.double()
    var_r = float((((r - (r * m).sum() / n) ** 2) * m).sum())
    d = r - v
    var_d = float((((d - (d * m).sum() / n) ** 2) * m).sum())
    return 1.0 - var_d / var_r if var_r > 0 else float("nan")
