"""``alignkit ppo``: PPO with a critic (RLHF as in Ziegler et al. 2019 / Ouyang et al. 2022).

Four roles: the **policy** (actor), the **critic** (a value head on a transformer body), the frozen
**reference** policy and the **reward** (``reward=``, SPEC 6a: Python functions, ``rm:PATH``, ...).

Models
------
``lora.r > 0`` (one copy of the base weights for all four roles but an ``rm:`` reward model)
    One frozen base model carries two peft LoRA adapters: ``default`` (the policy; named so that
    ``final/`` is an ordinary adapter directory) and ``critic``. The critic is the base with the
    ``critic`` adapter active plus a value head ``Linear(hidden, 1)`` on its final (normed) hidden
    state; the reference is the base with the adapters disabled. Switching adapters with peft's
    ``set_adapter`` (or ``disable_adapter``) marks the inactive adapters ``requires_grad=False``;
    alignkit switches back and re-enables every trainable parameter right after each critic or
    reference forward, so the one optimizer keeps training both adapters.
``lora.r = 0`` (the "full-copy setup")
    The policy is the whole model; the critic is a separate copy of the base decoder body (without
    the LM head) plus the value head; the reference is a frozen copy of the initial policy (not
    trained, not checkpointed). Three copies of the base weights.

The critic parts live on the built model as the submodule ``ppo_critic`` (``.value_head``, and
``.body`` in the full-copy setup), so the engine's single optimizer, gradient clipping and
checkpoints cover them like any other trainable parameter. Policy and critic share no trainable
parameter (separate adapters or bodies), so under Adam ``vf_coef`` mostly sets how much the value
loss weighs in the global ``max_grad_norm`` clipping, not the critic's step size (that is ``lr``).

One rollout, then ``ppo_epochs`` x ``num_minibatches`` optimizer steps
---------------------------------------------------------------------
The engine takes one optimizer step per step. PPO maps onto it in blocks of
K = ``ppo_epochs * num_minibatches`` steps:

1. **Rollout** (first step of a block, ``prepare_step``): the prompts the engine hands that step
   (``batch_size`` x ``grad_accum`` per process) get one sampled completion each (generated
   ``batch_size`` prompts at a time, seeded from ``(seed, step, rank, micro-batch)``). Then, without
   gradients and in eval mode: the policy's per-token log-probs (``old_logps``), the critic's values,
   the reference log-probs and the reward sources' scores. Per-token rewards are
   ``-kl_coef * KL_t`` (``kl_estimator`` k1: logp - ref, or k3) with the score (minus
   ``missing_eos_penalty`` for a completion without EOS) added at its last token; GAE (``gamma``,
   ``lam``) over the completion tokens with the critic's values gives advantages and returns; the
   advantages are whitened over the rollout's tokens (all processes) when ``whiten_advantages``.
2. **PPO epochs** (every step of the block): step ``k`` of the block trains on minibatch
   ``k % num_minibatches`` of PPO epoch ``k // num_minibatches``; each epoch shuffles the rollout
   with its own seed ``(seed, block, rank, epoch)``, so minibatches differ between epochs and a
   resumed run shuffles identically. A minibatch holds ``batch_size * grad_accum / num_minibatches``
   sequences per process (that product must divide evenly) and is cut into micro-batches of at most
   ``batch_size`` sequences. Loss = clipped policy surrogate (``cliprange``) + ``vf_coef`` x clipped
   value loss (``cliprange_value``), a mean over the minibatch's completion tokens (the engine divides
   the token sum by the global token count).

So the defaults (``ppo_epochs=4``, ``num_minibatches=1``) sample a rollout every 4 steps and train 4
times on all of it; ``max_steps=100`` is 25 rollouts. Prompts the engine hands to the other steps of
a block are not used (as GRPO's ``num_iterations``): a run sees 1/K of its prompts per data epoch,
so size ``max_steps`` rather than ``epochs``. In TRL's terms (PPOTrainer), alignkit's
``batch_size * grad_accum`` is the per-device rollout (TRL's ``per_device_train_batch_size *
gradient_accumulation_steps * num_mini_batches``) and ``num_minibatches`` is TRL's
``num_mini_batches``.

KL controller
-------------
``target_kl`` unset: fixed ``kl_coef``. Set: the adaptive controller of Ziegler et al. (2019): after
each rollout, with KL the rollout's mean per-sequence KL (summed over tokens, all processes) and n the
number of sequences in the rollout (all processes),
``kl_coef <- kl_coef * (1 + clip(KL / target_kl - 1, -0.2, 0.2) * n / horizon)``; the new value applies
from the next rollout on (:func:`adaptive_kl_update`).

Resume
------
The rollout buffer of the current block is written to ``OUTPUT_DIR/rollouts/ppo-block-B-rankR.
safetensors`` (only when K > 1), and the kl_coef of every block to ``OUTPUT_DIR/rollouts/ppo-kl.json``
(adaptive controller). A run resumed from a checkpoint in the middle of a block reloads that block's
rollout (the weights at resume differ from those that sampled it, so re-sampling would not reproduce
it); any checkpoint step works, also an interrupt. Without the file (deleted) the resumed run samples a
fresh rollout and says so.

Output
------
``final/`` holds the policy as every method writes it (adapter directory with LoRA, full model
otherwise, merged with ``lora.merge_on_save``); ``final/critic/`` holds the critic: the ``critic``
peft adapter (LoRA; load it on the same base) or the critic's decoder body as a Hugging Face model
(full-copy setup), plus ``value_head.safetensors`` (``weight`` [1, hidden], ``bias`` [1]) and
``critic.json``. Checkpoints hold all trainable weights (policy, critic, value head).

Metrics (TRL's names where TRL has them): ``reward`` (mean weighted score of the reward sources),
``reward_std``, ``rewards/NAME``, ``score`` (the score that enters the RL reward: ``reward`` minus
the missing-EOS penalty), ``kl`` (mean per-sequence KL to the reference, summed over tokens, from
the rollout), ``non_score_reward`` (mean per-sequence sum of -kl_coef * KL_t), ``kl_coef``,
``completion_length``, ``completions/clipped_ratio``, ``advantages/mean`` (raw GAE advantages before
whitening), ``returns/mean``, ``values/mean``, ``explained_variance`` (1 - Var(returns - values) /
Var(returns) of the rollout's old values; omitted when the returns are constant), all per rollout
(repeated on each step of its block); and per step ``policy_loss``,
``value_loss`` (the clipped value loss before ``vf_coef``), ``clip_ratio``, ``value_clip_ratio``,
``approx_kl`` (0.5 (logp - old)^2 against the sampling policy), ``entropy``; plus the engine's
``loss``, ``grad_norm``, ``learning_rate``, ``tokens_per_second``. With ``eval_data``: ``eval_reward``
and ``eval_rewards/NAME`` of one sampled completion per held-out prompt (fixed seeds). Sample
completions go to ``OUTPUT_DIR/completions.jsonl`` from each rollout whose block contains a multiple of
``log_completions_steps``, labelled with the block's first step (the step that sampled them).

Multi-process (DDP) runs: the critic forward calls the critic's modules directly, not through the
DDP wrapper's forward; gradients still reach every parameter in the same backward, but this path
is not covered by the tests (single process is). The vLLM rollout backend is not offered for PPO.
"""

from __future__ import annotations

import copy
import json
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from alignkit.config import ConfigError, TrainConfig
from alignkit.engine.checkpoint import list_checkpoints
from alignkit.losses import gae, kl_penalty, masked_mean, masked_whiten, ppo_policy_loss, ppo_value_loss
from alignkit.methods.base import StepOutput
from alignkit.methods.common import unwrap
from alignkit.methods.online import (
    CompletionLog,
    PromptMethod,
    completion_token_logps,
    decode_completions,
    reward_inputs,
    rollout_batch,
)
from alignkit.methods.reference import announce
from alignkit.rewards import load_reward_functions
from alignkit.rollout import SamplingSettings, make_backend, rollout_dtype, rollout_seed, stop_token_ids

POLICY_ADAPTER = "default"
CRITIC_ADAPTER = "critic"
CRITIC_ATTR = "ppo_critic"
CRITIC_DIR = "critic"
VALUE_HEAD_FILE = "value_head.safetensors"
ROLLOUT_FORMAT = 1
KL_CLIP = 0.2

_SEQ_KEYS = ("input_ids", "attention_mask", "position_ids", "labels")


class PPOConfig(TrainConfig):
    """PPO with a critic: KL-penalised per-token rewards, GAE, clipped policy and value losses."""

    reward: str | list[str] | None = Field(None, description="FILE.py:FUNC, package.module:FUNC, rm:PATH, or a list")
    reward_weights: list[float] | None = Field(None, description="one weight per reward source (default all 1)")
    max_new_tokens: int = Field(64, ge=1, description="longest completion, in tokens")
    temperature: float = Field(1.0, gt=0, description="sampling temperature (also applied to the log-probs)")
    top_p: float = Field(1.0, gt=0, le=1, description="nucleus sampling mass")
    kl_coef: float = Field(0.05, ge=0, description="initial weight of the per-token KL penalty in the reward")
    kl_estimator: Literal["k1", "k3"] = Field("k1", description="per-token KL estimate: k1 logp-ref, k3")
    target_kl: float | None = Field(None, gt=0, description="per-sequence KL target of the adaptive controller; "
                                    "unset: fixed kl_coef")
    horizon: int = Field(10000, ge=1, description="adaptive KL controller horizon (in sequences)")
    gamma: float = Field(1.0, ge=0, le=1, description="GAE discount")
    lam: float = Field(0.95, ge=0, le=1, description="GAE lambda")
    cliprange: float = Field(0.2, gt=0, description="policy ratio clip range")
    cliprange_value: float = Field(0.2, gt=0, description="value clip range around the rollout's values")
    vf_coef: float = Field(0.1, ge=0, description="weight of the value loss")
    critic_lr: float | None = Field(None, gt=0, description="learning rate of the critic (adapter or body, and "
                                    "value head); unset: lr")
    ppo_epochs: int = Field(4, ge=1, description="passes over each rollout (one optimizer step per minibatch)")
    num_minibatches: int = Field(1, ge=1, description="minibatches per PPO epoch; each is one optimizer step")
    whiten_advantages: bool = Field(True, description="normalise advantages over the rollout's tokens")
    missing_eos_penalty: float | None = Field(None, ge=0, description="subtracted from the score of a "
                                              "completion that ends without EOS")
    log_completions_steps: int = Field(10, ge=0, description="write sample completions every N steps; 0: never")
    max_prompt_length: int | None = Field(None, ge=1, description="keep the last N prompt tokens "
                                          "(default max_length - max_new_tokens)")
    rollout_dtype: Literal["float32", "bfloat16"] | None = Field(
        None, description="sample from a copy of the policy in this dtype with LoRA merged, refreshed each rollout; "
        "unset: bfloat16 under bf16 mixed precision, else the training model samples itself")

    @model_validator(mode="after")
    def _check(self) -> PPOConfig:
        if self.max_new_tokens >= self.max_length:
            raise ValueError(f"max_new_tokens ({self.max_new_tokens}) must be smaller than max_length "
                             f"({self.max_length}): prompt and completion share max_length")
        rollout = self.batch_size * self.grad_accum
        if rollout % self.num_minibatches:
            raise ValueError(f"num_minibatches ({self.num_minibatches}) must divide the rollout size per process, "
                             f"batch_size x grad_accum = {rollout}")
        return self


# ----------------------------------------------------------------------------- KL controller


def adaptive_kl_update(kl_coef: float, current_kl: float, target_kl: float, n_steps: int, horizon: int) -> float:
    """One update of Ziegler et al.'s (2019) adaptive KL controller:
    ``e = clip(current_kl / target_kl - 1, -0.2, 0.2)``, ``kl_coef * (1 + e * n_steps / horizon)``."""
    error = min(max(current_kl / target_kl - 1.0, -KL_CLIP), KL_CLIP)
    return kl_coef * (1.0 + error * n_steps / horizon)


# ----------------------------------------------------------------------------- the models


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


def _is_peft(model: nn.Module) -> bool:
    try:
        from peft import PeftModel
    except ImportError:  # pragma: no cover
        return False
    return isinstance(model, PeftModel)


def _decoder(model: nn.Module) -> nn.Module:
    """The decoder body (e.g. ``LlamaModel``) of a causal LM, looking through peft."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return inner.get_decoder()


def _write_value_head(parts: CriticParts, out: Path, kind: str) -> None:
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    head = parts.value_head
    save_file({"weight": head.weight.detach().float().contiguous().cpu(),
               "bias": head.bias.detach().float().contiguous().cpu()}, str(out / VALUE_HEAD_FILE))
    info = {"kind": kind, "value_head": VALUE_HEAD_FILE, "hidden_size": int(head.in_features),
            "input": "final normed hidden state of the critic body; the value of position t estimates the "
                     "return of the completion tokens after t"}
    (out / "critic.json").write_text(json.dumps(info, indent=2) + "\n")


class _PPOModelMixin:
    """Mixed into the built model's own class: ``save_pretrained`` (what the engine's ``save_model``
    calls for ``final/``) writes the policy as usual and the critic to ``critic/``."""

    def save_pretrained(self, save_directory: Any, *args: Any, **kwargs: Any) -> Any:
        out = Path(save_directory)
        parts: CriticParts = getattr(self, CRITIC_ATTR)
        if _is_peft(self):
            # every adapter: "default" (the policy) at the top, "critic" in critic/ (peft's layout)
            kwargs.pop("selected_adapters", None)
            result = super().save_pretrained(save_directory, *args, **kwargs)  # type: ignore[misc]
            _write_value_head(parts, out / CRITIC_DIR, "lora-adapter")
            return result
        prefix = CRITIC_ATTR + "."
        state = {k: v for k, v in self.state_dict().items() if not k.startswith(prefix)}  # type: ignore[attr-defined]
        kwargs["state_dict"] = state
        result = super().save_pretrained(save_directory, *args, **kwargs)  # type: ignore[misc]
        parts.body.save_pretrained(str(out / CRITIC_DIR))
        _write_value_head(parts, out / CRITIC_DIR, "full-body")
        return result

    def merge_and_unload(self, *args: Any, **kwargs: Any) -> Any:
        """peft merge (``lora.merge_on_save``): the policy adapter is merged into the base; the critic
        adapter and value head are kept aside and written to ``critic/`` when the merged model is saved."""
        from peft import get_peft_model_state_dict

        parts: CriticParts = getattr(self, CRITIC_ATTR)
        adapter = {k: v.detach().cpu().clone() for k, v in
                   get_peft_model_state_dict(self, adapter_name=CRITIC_ADAPTER).items()}
        config = copy.deepcopy(self.peft_config[CRITIC_ADAPTER])  # type: ignore[attr-defined]
        head = copy.deepcopy(parts).cpu()
        merged = self.base_model.merge_and_unload(*args, **kwargs)  # type: ignore[attr-defined]
        merged.__class__ = _merged_class(type(merged))
        merged._ppo_critic_payload = (adapter, config, head)
        return merged


class _MergedPolicyMixin:
    def save_pretrained(self, save_directory: Any, *args: Any, **kwargs: Any) -> Any:
        from safetensors.torch import save_file

        result = super().save_pretrained(save_directory, *args, **kwargs)  # type: ignore[misc]
        adapter, config, head = self._ppo_critic_payload  # type: ignore[attr-defined]
        out = Path(save_directory) / CRITIC_DIR
        out.mkdir(parents=True, exist_ok=True)
        config.save_pretrained(str(out))
        save_file({k: v.contiguous() for k, v in adapter.items()}, str(out / "adapter_model.safetensors"))
        _write_value_head(head, out, "lora-adapter (on the unmerged base model)")
        return result


_CLASSES: dict[tuple[type, type], type] = {}


def _with_mixin(mixin: type, cls: type) -> type:
    key = (mixin, cls)
    if key not in _CLASSES:
        _CLASSES[key] = type(f"PPO{cls.__name__}", (mixin, cls), {"__module__": __name__})
    return _CLASSES[key]


def _merged_class(cls: type) -> type:
    return _with_mixin(_MergedPolicyMixin, cls)


@contextmanager
def _eval_mode(module: nn.Module) -> Iterator[None]:
    was = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was)


# ----------------------------------------------------------------------------- buffers


def _pad_cat(parts: list[dict[str, torch.Tensor]], pad_id: int) -> dict[str, torch.Tensor]:
    """Concatenate rollout parts of different prompt (P) / completion (C) widths: the prompt region
    is left-padded, the completion region and per-token tensors right-padded."""
    C = max(p["completion_mask"].shape[1] for p in parts)
    P = max(p["input_ids"].shape[1] - p["completion_mask"].shape[1] for p in parts)
    fill = {"input_ids": pad_id, "attention_mask": 0, "position_ids": 0, "labels": -100}
    out: dict[str, list[torch.Tensor]] = {}
    for p in parts:
        c = p["completion_mask"].shape[1]
        left, right = P - (p["input_ids"].shape[1] - c), C - c
        for k, v in p.items():
            if k in fill:
                v = nn.functional.pad(v, (left, right), value=fill[k])
            elif v.dim() == 2:
                v = nn.functional.pad(v, (0, right), value=0)
            out.setdefault(k, []).append(v)
    return {k: torch.cat(v) for k, v in out.items()}


def _trim(t: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop all-padding columns (prompt columns before the longest prompt, completion columns after
    the longest completion); position ids count real tokens only, so nothing else changes."""
    cmask = t["completion_mask"]
    C = cmask.shape[1]
    keep = int(cmask.any(0).nonzero().max()) + 1 if cmask.any() else 1
    attn = t["attention_mask"]
    P = attn.shape[1] - C
    lead = int(attn[:, :P].any(0).long().argmax()) if P > 0 and attn[:, :P].any() else 0
    out = {}
    for k, v in t.items():
        if k in _SEQ_KEYS:
            out[k] = v[:, lead:P + keep]
        elif v.dim() == 2:
            out[k] = v[:, :keep]
        else:
            out[k] = v
    return out


def _rows(buf: dict[str, torch.Tensor], idx: torch.Tensor) -> dict[str, torch.Tensor]:
    return {k: v.index_select(0, idx.to(v.device)) for k, v in buf.items()}


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


# ----------------------------------------------------------------------------- the method


class PPO(PromptMethod):
    name = "ppo"
    config_cls = PPOConfig

    def __init__(self, config: PPOConfig, tokenizer: Any) -> None:
        super().__init__(config, tokenizer)
        if config.reward is None:
            raise ConfigError("ppo needs a reward: reward=FILE.py:FUNC (or package.module:FUNC, rm:PATH, or a list "
                              "with reward_weights); shipped ones: reward=format.py:word_limit, "
                              "reward=tokens.py:even_token_fraction")
        self.rewards = load_reward_functions(config.reward, config.reward_weights)
        self.period = config.ppo_epochs * config.num_minibatches
        self.accelerator: Any = None
        self.backend: Any = None
        self.completion_log: CompletionLog | None = None
        self.reference_model: nn.Module | None = None  # full-copy setup only
        self.kl_coef = float(config.kl_coef)
        self._kl_history: dict[int, float] = {}
        self._trainable: list[nn.Parameter] = []
        self._block: int | None = None
        self._buffer: dict[str, torch.Tensor] | None = None
        self._metrics: dict[str, tuple[float, float]] = {}
        self._first_step: int | None = None

    # -- data ---------------------------------------------------------------------------------
    def count_units(self, batch: dict[str, Any]) -> int:
        """Completion tokens: the loss is a mean over the minibatch's tokens."""
        return int(batch["completion_mask"].sum()) if "completion_mask" in batch else 0

    def param_lr(self, name: str) -> float | None:
        """``critic_lr`` for the critic's parameters (its LoRA adapter or body copy, and the value head)."""
        if self.config.critic_lr is not None and (f".{CRITIC_ADAPTER}." in name or name.startswith(CRITIC_ATTR + ".")):
            return self.config.critic_lr
        return None

    # -- models -------------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        """Policy + critic in one module (see the module docstring); the reference is made in setup."""
        from alignkit import models

        cfg = self.config
        base = models.load_model(cfg.model, trust_remote_code=cfg.trust_remote_code)
        if cfg.gradient_checkpointing:
            base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            base.config.use_cache = False
        hidden = int(base.config.hidden_size)
        if cfg.lora.enabled:
            model = models.apply_lora(base, cfg.lora)  # adapter "default": the policy
            model.add_adapter(CRITIC_ADAPTER, copy.deepcopy(model.peft_config[POLICY_ADAPTER]))
            for name, p in model.named_parameters():
                if f".{CRITIC_ADAPTER}." in name:  # peft adds a second adapter frozen
                    p.requires_grad_(True)
            parts = CriticParts(hidden)
        else:
            model = base
            parts = CriticParts(hidden, body=copy.deepcopy(_decoder(base)))
        setattr(model, CRITIC_ATTR, parts)
        model.__class__ = _with_mixin(_PPOModelMixin, type(model))
        return model

    def setup(self, model: nn.Module, accelerator: Any) -> None:
        cfg = self.config
        self.accelerator = accelerator
        inner = unwrap(model)
        self._trainable = [p for p in inner.parameters() if p.requires_grad]
        settings = SamplingSettings(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p,
                                    pad_id=self.pad_id, eos_ids=stop_token_ids(self.tokenizer, model))
        # the critic (value head, full-copy body) rides on the policy module: not part of the sampling copy
        self.backend = make_backend("hf", settings, dtype=rollout_dtype(cfg, accelerator), skip=(CRITIC_ATTR + ".",))
        if _is_peft(inner):
            how = "one base model: policy = LoRA adapter 'default', critic = LoRA adapter 'critic' + value head, " \
                  "reference = adapters disabled"
        else:
            # setup runs before a checkpoint is restored: the policy still holds the initial weights
            parts = inner._modules.pop(CRITIC_ATTR)
            try:
                ref = copy.deepcopy(inner)
            finally:
                inner._modules[CRITIC_ATTR] = parts
            ref.requires_grad_(False)
            ref.eval()
            self.reference_model = ref
            how = "full-copy setup: policy, critic body (a copy of the base) + value head, frozen reference copy"
        announce(f"ppo: {how}; a rollout every {self.period} steps (ppo_epochs {cfg.ppo_epochs} x "
                 f"num_minibatches {cfg.num_minibatches})", accelerator)
        self.completion_log = CompletionLog(cfg.output_dir, cfg.log_completions_steps,
                                            enabled=accelerator.is_main_process)

    # -- forwards -----------------------------------------------------------------------------
    def _restore_trainable(self) -> None:
        for p in self._trainable:
            p.requires_grad_(True)

    @contextmanager
    def _critic_body(self, model: nn.Module) -> Iterator[nn.Module]:
        """The critic's decoder body: the shared base with the ``critic`` adapter active (LoRA), or the
        critic's own copy. peft's adapter switch freezes the other adapter; it is undone on exit."""
        inner = unwrap(model)
        parts: CriticParts = getattr(inner, CRITIC_ATTR)
        if parts.body is not None:
            yield parts.body
            return
        inner.set_adapter(CRITIC_ADAPTER)
        try:
            yield _decoder(inner)
        finally:
            inner.set_adapter(POLICY_ADAPTER)
            self._restore_trainable()

    def values(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Critic values [N, C] (float32) of the completion positions: column j is the value of the state
        before completion token j (the hidden state of the token before it), aligned with the log-probs."""
        inner = unwrap(model)
        head = getattr(inner, CRITIC_ATTR).value_head
        C = batch["completion_mask"].shape[1]
        with self._critic_body(model) as body:
            out = body(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       position_ids=batch.get("position_ids"), use_cache=False)
        hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
        hidden = hidden[:, -C - 1:-1]
        return head(hidden.to(head.weight.dtype)).squeeze(-1).float()

    def reference_logps(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Reference per-token log-probs [N, C] (no gradient): adapters disabled, or the frozen copy."""
        inner = unwrap(model)
        with torch.no_grad():
            if self.reference_model is not None:
                return completion_token_logps(self.reference_model, batch, self.config.temperature).float()
            try:
                with _eval_mode(inner), inner.disable_adapter():
                    return completion_token_logps(inner, batch, self.config.temperature).float()
            finally:
                self._restore_trainable()

    # -- rollout ------------------------------------------------------------------------------
    def prepare_step(self, model: nn.Module, batches: list[dict[str, Any]],
                     step: int) -> tuple[list[dict[str, Any]], dict[str, tuple[float, float]]]:
        K = self.period
        block, offset = divmod(step, K)
        if self._first_step is None:
            self._first_step = step
            if self.completion_log is not None:
                self.completion_log.start(step)
            self._restore_kl_coef(block)
        if self._block != block:
            loaded = self._load_rollout(block) if offset else None
            if loaded is not None:
                self._buffer, self._metrics = loaded
            else:
                if offset:
                    announce(f"ppo: no saved rollout for steps {block * K + 1}-{block * K + K}; sampling a new one "
                             "from the current policy (the resumed run will differ from an uninterrupted one)",
                             self.accelerator)
                self._buffer, self._metrics = self.rollout(model, batches, step)
                if K > 1:
                    self._save_rollout(block)
            self._block = block
        return self._minibatch(block, offset), dict(self._metrics)

    def rollout(self, model: nn.Module, batches: list[dict[str, Any]],
                step: int) -> tuple[dict[str, torch.Tensor], dict[str, tuple[float, float]]]:
        """Sample, score and evaluate one rollout; returns the buffer (one row per sequence) and its metrics."""
        cfg, acc = self.config, self.accelerator
        rank = acc.process_index if acc is not None else 0
        inner = unwrap(model)
        device = next(inner.parameters()).device
        parts, scores, per_all, truncated, prompts, texts = [], [], [], [], [], []
        for k, batch in enumerate(batches):
            ro = self.backend.generate(model, batch["prompt_ids"], num_generations=1,
                                       seed=rollout_seed(cfg.seed, step, rank, k))
            t = decode_completions(self.tokenizer, ro.completion_ids)
            p, c, columns = reward_inputs(batch, ro, t)
            total, per = self.rewards(p, c, columns)
            parts.append(rollout_batch(ro))
            scores.append(total)
            per_all.append(per)
            truncated.append(ro.truncated.cpu())
            prompts.extend(p)
            texts.extend(t)
        buf = _pad_cat(parts, self.pad_id)
        reward = torch.cat(scores).to(device)
        trunc = torch.cat(truncated).to(device)
        mask = buf["completion_mask"]
        maskf = mask.float()

        # no-grad forwards in eval mode, batch_size sequences at a time
        old_logps, old_values, ref_logps = [], [], []
        ctx = acc.autocast() if acc is not None else torch.autocast("cpu", enabled=False)
        with torch.no_grad(), ctx, _eval_mode(inner):
            for start in range(0, mask.shape[0], cfg.batch_size):
                idx = torch.arange(start, min(start + cfg.batch_size, mask.shape[0]))
                chunk = _trim(_rows(buf, idx))
                pad = mask.shape[1] - chunk["completion_mask"].shape[1]

                def widen(x: torch.Tensor, pad: int = pad) -> torch.Tensor:
                    return nn.functional.pad(x.float(), (0, pad))

                old_logps.append(widen(completion_token_logps(model, chunk, cfg.temperature)))
                old_values.append(widen(self.values(model, chunk)))
                ref_logps.append(widen(self.reference_logps(model, chunk)))
        old_lp = torch.cat(old_logps) * maskf
        values = torch.cat(old_values) * maskf
        ref_lp = torch.cat(ref_logps) * maskf

        score = reward.clone()
        if cfg.missing_eos_penalty is not None:
            score = score - cfg.missing_eos_penalty * trunc.float()
        kl = kl_penalty(old_lp, ref_lp, cfg.kl_estimator) * maskf
        non_score = -self.kl_coef * kl
        token_rewards = non_score.clone()
        last = (mask.sum(1) - 1).clamp(min=0)
        rows = torch.arange(mask.shape[0], device=mask.device)
        token_rewards[rows, last] += score
        advantages, returns = gae(token_rewards, values, mask, gamma=cfg.gamma, lam=cfg.lam)
        raw_adv = advantages
        if cfg.whiten_advantages:
            advantages = self._whiten(advantages, mask)

        buf.update(old_logps=old_lp, old_values=values, advantages=advantages * maskf, returns=returns * maskf)

        # metrics (sums over this process; the engine reduces over processes)
        N = float(mask.shape[0])
        tok = float(maskf.sum())
        seq_kl = kl.sum(1)
        metrics: dict[str, tuple[float, float]] = {
            "reward": (float(reward.sum()), N),
            "reward_std": (float(reward.std()) if reward.numel() > 1 else 0.0, 1.0),
            "score": (float(score.sum()), N),
            "kl": (float(seq_kl.sum()), N),
            "non_score_reward": (float(non_score.sum()), N),
            "kl_coef": (self.kl_coef, 1.0),
            "completion_length": (tok, N),
            "completions/clipped_ratio": (float(trunc.float().sum()), N),
            "advantages/mean": (float((raw_adv * maskf).sum()), tok),
            "returns/mean": (float((returns * maskf).sum()), tok),
            "values/mean": (float(values.sum()), tok),
        }
        ev = explained_variance(values, returns, mask)
        if math.isfinite(ev):
            metrics["explained_variance"] = (ev, 1.0)
        for name in self.rewards.names:
            metrics[f"rewards/{name}"] = (float(torch.cat([p[name] for p in per_all]).sum()), N)

        if self.completion_log is not None and any(self.completion_log.due(s)
                                                   for s in range(step + 1, step + self.period + 1)):
            per_lists = {n: torch.cat([p[n] for p in per_all]).tolist() for n in self.rewards.names}
            self.completion_log.write(step + 1, prompts, texts, reward.tolist(), per_lists)

        # adaptive KL controller: the next rollout's coefficient, from this rollout's KL (all processes)
        block = step // self.period
        if self.config.target_kl is not None:
            kl_sum, n_all = self._global_sums([float(seq_kl.sum()), N])
            self.kl_coef = adaptive_kl_update(self.kl_coef, kl_sum / max(n_all, 1.0), self.config.target_kl,
                                              int(n_all), self.config.horizon)
            self._kl_history[block + 1] = self.kl_coef
            self._save_kl_history()
        return buf, metrics

    def _global_sums(self, values: list[float]) -> list[float]:
        acc = self.accelerator
        if acc is None or acc.num_processes == 1:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=acc.device)
        return acc.reduce(t, reduction="sum").tolist()

    def _whiten(self, advantages: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """masked_whiten over this rollout's tokens on every process (global mean and unbiased variance)."""
        acc = self.accelerator
        if acc is None or acc.num_processes == 1:
            return masked_whiten(advantages, mask)
        m = mask.to(advantages.dtype)
        s, n = self._global_sums([float((advantages * m).sum()), float(m.sum())])
        mean = s / max(n, 1.0)
        (ss,) = self._global_sums([float((((advantages - mean) ** 2) * m).sum())])
        var = ss / max(n - 1.0, 1.0)
        return (advantages - mean) * (var + 1e-8) ** -0.5 * m

    def _minibatch(self, block: int, offset: int) -> list[dict[str, torch.Tensor]]:
        """The micro-batches of the minibatch that step ``offset`` of ``block`` trains on."""
        assert self._buffer is not None
        cfg = self.config
        epoch, m = divmod(offset, cfg.num_minibatches)
        R = self._buffer["completion_mask"].shape[0]
        rank = self.accelerator.process_index if self.accelerator is not None else 0
        gen = torch.Generator().manual_seed(rollout_seed(cfg.seed, block, rank, 100_003 + epoch))
        order = torch.randperm(R, generator=gen)
        size = R // cfg.num_minibatches
        chosen = order[m * size:(m + 1) * size]
        return [_trim(_rows(self._buffer, chosen[i:i + cfg.batch_size])) for i in range(0, size, cfg.batch_size)]

    # -- loss ---------------------------------------------------------------------------------
    def loss(self, model: nn.Module, batch: dict[str, Any], step: int) -> StepOutput:
        if "completion_mask" not in batch:
            return self._evaluate_prompts(model, batch)
        cfg = self.config
        mask = batch["completion_mask"]
        logps, entropy = completion_token_logps(model, batch, cfg.temperature, with_entropy=True)
        values = self.values(model, batch)
        pg_loss, clip_frac = ppo_policy_loss(logps, batch["old_logps"], batch["advantages"], mask, cfg.cliprange)
        vf_loss, vf_clip = ppo_value_loss(values, batch["old_values"], batch["returns"], mask, cfg.cliprange_value)
        n_tok = mask.sum().float()
        loss_sum = (pg_loss + cfg.vf_coef * vf_loss) * n_tok
        tok = float(n_tok)
        pg, vf = float(pg_loss.detach()), float(vf_loss.detach())
        with torch.no_grad():
            approx_kl = masked_mean(0.5 * (logps - batch["old_logps"]) ** 2, mask)
        metrics = {
            "policy_loss": (pg * tok, tok),
            "value_loss": (vf * tok, tok),
            "clip_ratio": (float(clip_frac) * tok, tok),
            "value_clip_ratio": (float(vf_clip) * tok, tok),
            "approx_kl": (float(approx_kl) * tok, tok),
            "entropy": (float((entropy * mask).sum()), tok),
        }
        return StepOutput(loss_sum=loss_sum, metrics=metrics)

    def _evaluate_prompts(self, model: nn.Module, batch: dict[str, Any]) -> StepOutput:
        """Mean reward of one sampled completion per held-out prompt (fixed seeds), as ``eval_reward``."""
        cfg = self.config
        rank = self.accelerator.process_index if self.accelerator is not None else 0
        first_row = int(batch["rows"][0] or 0) if batch.get("rows") else 0
        ro = self.backend.generate(model, batch["prompt_ids"], num_generations=1,
                                   seed=rollout_seed(cfg.seed, -1 - first_row, rank, 0))
        texts = decode_completions(self.tokenizer, ro.completion_ids)
        prompts, completions, columns = reward_inputs(batch, ro, texts)
        total, per = self.rewards(prompts, completions, columns)
        N = float(total.numel())
        metrics = {"reward": (float(total.sum()), N), "completion_length": (float(ro.completion_mask.sum()), N)}
        for name, values in per.items():
            metrics[f"rewards/{name}"] = (float(values.sum()), N)
        return StepOutput(loss_sum=torch.zeros((), device=ro.sequences.device), metrics=metrics)

    # -- state on disk ------------------------------------------------------------------------
    def _rollout_dir(self) -> Path:
        return Path(self.config.output_dir) / "rollouts"

    def _rollout_path(self, block: int) -> Path:
        rank = self.accelerator.process_index if self.accelerator is not None else 0
        return self._rollout_dir() / f"ppo-block-{block}-rank{rank}.safetensors"

    def _save_rollout(self, block: int) -> None:
        from safetensors.torch import save_file

        assert self._buffer is not None
        path = self._rollout_path(block)
        path.parent.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().contiguous().cpu() for k, v in self._buffer.items()}
        meta = {"format": ROLLOUT_FORMAT, "block": block, "metrics": self._metrics, "kl_coef_next": self.kl_coef}
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        save_file(tensors, str(tmp), metadata={"alignkit": json.dumps(meta)})
        os.replace(tmp, path)
        # keep this block's file and those a retained checkpoint would resume into
        K = self.period
        needed = {block} | {s // K for s, _ in list_checkpoints(self.config.output_dir) if s % K}
        suffix = path.name.rsplit("-", 1)[1]
        for old in path.parent.glob(f"ppo-block-*-{suffix}"):
            try:
                b = int(old.name.split("-")[2])
            except (IndexError, ValueError):
                continue
            if b not in needed:
                old.unlink(missing_ok=True)

    def _load_rollout(self, block: int) -> tuple[dict[str, torch.Tensor], dict[str, tuple[float, float]]] | None:
        from safetensors import safe_open

        path = self._rollout_path(block)
        if not path.is_file():
            return None
        device = self.accelerator.device if self.accelerator is not None else torch.device("cpu")
        try:
            with safe_open(str(path), framework="pt") as f:
                meta = json.loads(f.metadata()["alignkit"])
                if meta.get("format") != ROLLOUT_FORMAT or meta.get("block") != block:
                    return None
                buf = {k: f.get_tensor(k).to(device) for k in f.keys()}
        except Exception:  # noqa: BLE001 - unreadable: the caller samples a fresh rollout
            return None
        metrics = {k: (float(v[0]), float(v[1])) for k, v in meta["metrics"].items()}
        self.kl_coef = float(meta["kl_coef_next"])  # the controller had already updated after this rollout
        return buf, metrics

    def _kl_path(self) -> Path:
        return self._rollout_dir() / "ppo-kl.json"

    def _save_kl_history(self) -> None:
        if self.accelerator is not None and not self.accelerator.is_main_process:
            return
        path = self._kl_path()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps({str(b): v for b, v in sorted(self._kl_history.items())}))
        os.replace(tmp, path)

    def _restore_kl_coef(self, block: int) -> None:
        """On the first step of a run: the adaptive controller's coefficient for ``block`` (a resumed
        run continues with the value the interrupted one had reached)."""
        if self.config.target_kl is None or block == 0:
            return
        try:
            history = {int(k): float(v) for k, v in json.loads(self._kl_path().read_text()).items()}
        except (OSError, ValueError):
            history = {}
        if block in history:
            self._kl_history = {b: v for b, v in history.items() if b <= block}
            self.kl_coef = self._kl_history[block]
        else:
            announce(f"ppo: no saved kl_coef for rollout {block} in {self._kl_path()}; the adaptive controller "
                     f"restarts from kl_coef={self.kl_coef}", self.accelerator)
