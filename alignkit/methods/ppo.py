"""``alignkit ppo``: PPO with a critic (RLHF as in Ziegler et al. 2019 / Ouyang et al. 2022).

Four roles: the **policy** (actor), the **critic** (a value head on a transformer body), the frozen
**reference** policy and the **reward** (``reward=``, README "Reward functions": Python functions, ``rm:PATH``, ...).

Models (see :mod:`alignkit.models.critic`): with ``lora.r > 0`` one frozen base carries two LoRA adapters,
``default`` (the policy) and ``critic``, and the reference is the base with the adapters disabled: one
copy of the base weights for all four roles but an ``rm:`` reward model. With ``lora.r = 0`` (the
"full-copy setup") the policy is the whole model, the critic a copy of its decoder body and the reference
a frozen copy of the initial policy (not trained, not checkpointed). The critic parts ride on the model as
the submodule ``ppo_critic``, so the engine's one optimizer, clipping and checkpoints cover them. Policy
and critic share no trainable parameter, so under Adam ``vf_coef`` mostly sets how much the value loss
weighs in the global ``max_grad_norm`` clipping, not the critic's step size (that is ``lr``/``critic_lr``).

One rollout per prompt batch, then K = ``ppo_epochs`` x ``num_minibatches`` optimizer steps
------------------------------------------------------------------------------------------
``steps_per_batch`` is K: the engine hands each prompt batch to K consecutive optimizer steps (a block;
block B trains on prompt batch B), so an epoch is K times as many steps as prompt batches and every
prompt is rolled out once per epoch.

1. **Rollout** (first step of a block, ``prepare_step``): the block's prompts (``batch_size`` x
   ``grad_accum`` per process) get one sampled completion each (generated ``batch_size`` prompts at a
   time, seeded from ``(seed, step, rank, micro-batch)``). Then, without gradients and in eval mode:
   the policy's per-token log-probs (``old_logps``), the critic's values, the reference log-probs and
   the reward sources' scores. Per-token rewards are ``-kl_coef * KL_t`` (``kl_estimator`` k1:
   logp - ref, or k3) with the score (minus ``missing_eos_penalty`` for a completion without EOS) added
   at its last token; GAE (``gamma``, ``lam``) over the completion tokens with the critic's values gives
   advantages and returns; the advantages are whitened over the rollout's tokens (all processes) when
   ``whiten_advantages``.
2. **PPO epochs** (every step of the block): step ``k`` of the block trains on minibatch
   ``k % num_minibatches`` of PPO epoch ``k // num_minibatches``; each epoch shuffles the rollout
   with its own seed ``(seed, block, rank, epoch)``, so minibatches differ between epochs and a
   resumed run shuffles identically. A minibatch holds ``batch_size * grad_accum / num_minibatches``
   sequences per process (that product must divide evenly) and is cut into micro-batches of at most
   ``batch_size`` sequences. Loss = clipped policy surrogate (``cliprange``) + ``vf_coef`` x clipped
   value loss (``cliprange_value``), a mean over the minibatch's completion tokens (the engine divides
   the token sum by the global token count).

So the defaults (``ppo_epochs=4``, ``num_minibatches=1``) train 4 times on each rollout; ``max_steps=100``
is 25 rollouts (the README's PPO section maps these keys to TRL's PPOTrainer).

KL controller: ``target_kl`` unset: fixed ``kl_coef``. Set: the adaptive controller of Ziegler et al.
(2019) (:func:`adaptive_kl_update`) after each rollout, with KL the rollout's mean per-sequence KL (summed
over tokens, all processes) and n its number of sequences (all processes); the new value applies from the
next rollout on.

Resume: the current block's rollout is kept by the shared :class:`~alignkit.methods.rollout_store.RolloutStore`
(``OUTPUT_DIR/rollouts/block-B-rankR.safetensors``, only when K > 1, with the controller's next kl_coef),
and the kl_coef of every block goes to ``OUTPUT_DIR/rollouts/ppo-kl.json`` (adaptive controller). A run
resumed in the middle of a block reloads that block's rollout (the weights at resume differ from those
that sampled it, so re-sampling would not reproduce it); any checkpoint step works, also an interrupt.
Without the file (deleted) the resumed run samples a fresh rollout of the block's prompts and says so.

Output: ``final/`` holds the policy as every method writes it, ``final/critic/`` the critic
(:meth:`PPO.save_final`); checkpoints hold all trainable weights. Metrics: the README's PPO section.

Multi-process (DDP) runs: the critic forward calls the critic's modules directly, not through the
DDP wrapper's forward; gradients still reach every parameter in the same backward, but this path
is not covered by the tests (single process is).

Rollouts: ``rollout_backend=hf`` (default) or ``vllm-server`` (the policy adapter, or the full policy
weights without the critics, pushed to the server before each rollout; the in-process ``vllm`` backend is
not offered for PPO).
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from alignkit.config import ConfigError, TrainConfig
from alignkit.engine.method import StepOutput
from alignkit.files import write_text
from alignkit.generation.backends import (
    rollout_seed,
)
from alignkit.losses import (
    adaptive_kl_update,
    gae,
    kl_shaped_rewards,
    masked_mean,
    masked_whiten,
    ppo_policy_loss,
    ppo_value_loss,
)
from alignkit.methods.common import unwrap
from alignkit.methods.online import (
    PromptMethod,
    ServerRolloutKeys,
    completion_token_logps,
    pad_cat,
    rollout_batch,
    score_rollout,
    select_rows,
    trim_padding,
)
from alignkit.methods.reference import announce
from alignkit.methods.rollout_store import CompletionLog, RolloutStore
from alignkit.models.critic import (
    CRITIC_ADAPTER,
    CRITIC_ATTR,
    CRITIC_DIR,
    SLOTS,
    add_critic,
    critic_values,
    detached_critic,
    explained_variance,
    is_critic_param,
    is_lora_critic,
    save_critic,
)
from alignkit.models.modules import eval_mode
from alignkit.scoring import load_reward_functions

__all__ = ["CRITIC_ADAPTER", "CRITIC_ATTR", "PPO", "PPOConfig"]

KL_NEXT = "kl_coef_next"  # stored with a rollout: the controller's coefficient after it



class PPOConfig(TrainConfig, ServerRolloutKeys):
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
    rollout_backend: Literal["hf", "vllm-server"] = Field(
        "hf", description="generation engine: hf, or vllm-server (an OpenAI-compatible vLLM server, started "
        "from .venv-vllm or vllm_url=)")

    @model_validator(mode="after")
    def _check(self) -> PPOConfig:
        if self.rollout_dtype is not None and self.rollout_backend != "hf":
            raise ValueError("rollout_dtype applies to rollout_backend=hf (vLLM sets its own dtype); unset one of them")
        if self.max_new_tokens >= self.max_length:
            raise ValueError(f"max_new_tokens ({self.max_new_tokens}) must be smaller than max_length "
                             f"({self.max_length}): prompt and completion share max_length")
        rollout = self.batch_size * self.grad_accum
        if rollout % self.num_minibatches:
            raise ValueError(f"num_minibatches ({self.num_minibatches}) must divide the rollout size per process, "
                             f"batch_size x grad_accum = {rollout}")
        return self



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
        self.store = RolloutStore(config.output_dir, self.period)
        self.kl_coef = float(config.kl_coef)
        self._kl_history: dict[int, float] = {}
        self._trainable: list[nn.Parameter] = []
        self._buffer: dict[str, torch.Tensor] | None = None  # the current block's rollout
        self._first_step: int | None = None

    @property
    def steps_per_batch(self) -> int:
        """K = ppo_epochs x num_minibatches optimizer steps on the rollout of each prompt batch."""
        return self.period

    # -- data ---------------------------------------------------------------------------------
    def count_units(self, batch: dict[str, Any]) -> int:
        """Completion tokens: the loss is a mean over the minibatch's tokens."""
        return int(batch["completion_mask"].sum()) if "completion_mask" in batch else 0

    def param_lr(self, name: str) -> float | None:
        """``critic_lr`` for the critic's parameters (its LoRA adapter or body copy, and the value head)."""
        return self.config.critic_lr if self.config.critic_lr is not None and is_critic_param(name) else None

    # -- models -------------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        """Policy + critic in one module (see :mod:`alignkit.models.critic`); the reference is made in setup."""
        return add_critic(super().build_model(), lora=self.config.lora.enabled)

    def setup(self, model: nn.Module, accelerator: Any) -> None:
        cfg = self.config
        self.accelerator = accelerator
        inner = unwrap(model)
        self._trainable = [p for p in inner.parameters() if p.requires_grad]
        # the critic (value head, full-copy body) rides on the policy module: not part of the sampling copy
        self.backend = self.rollout_backend(model, accelerator, skip=tuple(s.attr + "." for s in SLOTS))
        if is_lora_critic(inner):
            how = "one base model: policy = LoRA adapter 'default', critic = LoRA adapter 'critic' + value head, " \
                  "reference = adapters disabled"
        else:
            # setup runs before a checkpoint is restored: the policy still holds the initial weights
            with detached_critic(inner):
                ref = copy.deepcopy(inner)
            ref.requires_grad_(False)
            ref.eval()
            self.reference_model = ref
            how = "full-copy setup: policy, critic body (a copy of the base) + value head, frozen reference copy"
        announce(f"ppo: {how}; one rollout per prompt batch, then {self.period} optimizer steps on it (ppo_epochs "
                 f"{cfg.ppo_epochs} x num_minibatches {cfg.num_minibatches})", accelerator)
        self.completion_log = CompletionLog(cfg.output_dir, cfg.log_completions_steps,
                                            enabled=accelerator.is_main_process)
        self.store = RolloutStore(cfg.output_dir, self.period, rank=accelerator.process_index,
                                  device=accelerator.device)

    def save_final(self, model: nn.Module, tokenizer: Any, final_dir: Path, config: Any) -> None:
        """The policy to ``final/`` as every method writes it, the critic to ``final/critic/``."""
        with detached_critic(model):
            super().save_final(model, tokenizer, final_dir, config)
        save_critic(model, Path(final_dir) / CRITIC_DIR)

    # -- forwards -----------------------------------------------------------------------------
    def values(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Critic values [N, C] (float32) of the completion positions (:func:`~alignkit.models.critic.critic_values`)."""
        return critic_values(unwrap(model), batch, self._trainable)

    def reference_logps(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Reference per-token log-probs [N, C] (no gradient): adapters disabled, or the frozen copy."""
        inner = unwrap(model)
        with torch.no_grad():
            if self.reference_model is not None:
                return completion_token_logps(self.reference_model, batch, self.config.temperature).float()
            try:
                with eval_mode(inner), inner.disable_adapter():
                    return completion_token_logps(inner, batch, self.config.temperature).float()
            finally:
                for p in self._trainable:  # peft's disable_adapter freezes the adapters
                    p.requires_grad_(True)

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
        stored = self.store.lookup(step)
        if stored is not None:
            (record,), metrics = stored
            buf = {k: v for k, v in record.items() if isinstance(v, torch.Tensor)}
            self.kl_coef = float(record[KL_NEXT])  # the controller had already updated after this rollout
        else:
            if self.store.missing == block:
                announce(f"ppo: no saved rollout for steps {block * K + 1}-{block * K + K}; sampling a new one "
                         "from the current policy (the resumed run will differ from an uninterrupted one)",
                         self.accelerator)
                self.store.missing = None
            buf, metrics = self.rollout(model, batches, step)
            self.store.put(step, [{**buf, KL_NEXT: self.kl_coef}], metrics)
        self._buffer = buf
        return self._minibatch(buf, block, offset), dict(metrics)

    def rollout(self, model: nn.Module, batches: list[dict[str, Any]],
                step: int) -> tuple[dict[str, torch.Tensor], dict[str, tuple[float, float]]]:
        """Sample, score and evaluate one rollout; returns the buffer (one row per sequence) and its metrics."""
        cfg, acc = self.config, self.accelerator
        rank = acc.process_index if acc is not None else 0
        inner = unwrap(model)
        device = next(inner.parameters()).device
        parts, scores, per_all, truncated, prompts, texts = [], [], [], [], [], []
        report = self.sync_backend(model, batches, step)
        for k, batch in enumerate(batches):
            ro = self.backend.generate(model, batch["prompt_ids"], num_generations=1,
                                       seed=rollout_seed(cfg.seed, step, rank, k))
            total, per, p, t = score_rollout(self.rewards, self.tokenizer, batch, ro)
            self.on_scored(batch, ro)
            parts.append(rollout_batch(ro))
            scores.append(total)
            per_all.append(per)
            truncated.append(ro.truncated.cpu())
            prompts.extend(p)
            texts.extend(t)
        buf = pad_cat(parts, self.pad_id)
        if "rollout_logps" in buf:  # per row, so that minibatch selection keeps it (see RolloutGuard)
            buf["rollout_fresh"] = torch.full((buf["rollout_logps"].shape[0],), float(report.fresh),
                                              device=buf["rollout_logps"].device)
        reward = torch.cat(scores).to(device)
        trunc = torch.cat(truncated).to(device)
        mask = buf["completion_mask"]
        maskf = mask.float()

        # no-grad forwards in eval mode, batch_size sequences at a time
        old_logps, old_values, ref_logps = [], [], []
        ctx = acc.autocast() if acc is not None else torch.autocast("cpu", enabled=False)
        with torch.no_grad(), ctx, eval_mode(inner):
            for start in range(0, mask.shape[0], cfg.batch_size):
                chunk = trim_padding(select_rows(buf, torch.arange(start, min(start + cfg.batch_size, mask.shape[0]))))
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
        token_rewards, kl = kl_shaped_rewards(score, old_lp, ref_lp, mask, self.kl_coef, cfg.kl_estimator)
        non_score = -self.kl_coef * kl
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
        metrics.update({k: (float(v), 1.0) for k, v in report.metrics.items()})  # the sync's fingerprint
        self.extend_rollout(model, buf, metrics, step)

        if self.completion_log is not None and any(self.completion_log.due(s)
                                                   for s in range(step + 1, step + self.period + 1)):
            per_lists = {n: torch.cat([p[n] for p in per_all]).tolist() for n in self.rewards.names}
            self.completion_log.write(step + 1, prompts, texts, reward.tolist(), per_lists)

        # adaptive KL controller: the next rollout's coefficient, from this rollout's KL (all processes)
        if cfg.target_kl is not None:
            kl_sum, n_all = self._global_sums([float(seq_kl.sum()), N])
            self.kl_coef = adaptive_kl_update(self.kl_coef, kl_sum / max(n_all, 1.0), cfg.target_kl,
                                              int(n_all), cfg.horizon)
            self._kl_history[step // self.period + 1] = self.kl_coef
            self._save_kl_history()
        return buf, metrics

    def on_scored(self, batch: dict[str, Any], ro: Any) -> None:
        """Hook: called after each micro-batch of the rollout is sampled and scored (safe-ppo scores costs)."""

    def extend_rollout(self, model: nn.Module, buf: dict[str, torch.Tensor], metrics: dict[str, tuple[float, float]],
                       step: int) -> None:
        """Hook: change the finished rollout buffer in place before it is stored (safe-ppo: cost critic, GAE
        of the cost, the Lagrangian advantage)."""

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

    def _minibatch(self, buf: dict[str, torch.Tensor], block: int, offset: int) -> list[dict[str, torch.Tensor]]:
        """The micro-batches of the minibatch that step ``offset`` of ``block`` trains on."""
        cfg = self.config
        epoch, m = divmod(offset, cfg.num_minibatches)
        R = buf["completion_mask"].shape[0]
        rank = self.accelerator.process_index if self.accelerator is not None else 0
        gen = torch.Generator().manual_seed(rollout_seed(cfg.seed, block, rank, 100_003 + epoch))
        order = torch.randperm(R, generator=gen)
        size = R // cfg.num_minibatches
        chosen = order[m * size:(m + 1) * size]
        return [trim_padding(select_rows(buf, chosen[i:i + cfg.batch_size])) for i in range(0, size, cfg.batch_size)]

    # -- loss ---------------------------------------------------------------------------------
    def loss(self, model: nn.Module, batch: dict[str, Any], step: int) -> StepOutput:
        if "completion_mask" not in batch:
            return self._evaluate_prompts(model, batch)
        cfg = self.config
        mask = batch["completion_mask"]
        logps, entropy = completion_token_logps(model, batch, cfg.temperature, with_entropy=True)
        values = self.values(model, batch)
        weights, guard_metrics = self.guard.observe(batch, batch["old_logps"], mask, step)
        pg_loss, clip_frac = ppo_policy_loss(logps, batch["old_logps"], batch["advantages"], mask, cfg.cliprange,
                                             token_weights=weights)
        vf_loss, vf_clip = ppo_value_loss(values, batch["old_values"], batch["returns"], mask, cfg.cliprange_value)
        n_tok = mask.sum().float()
        loss_sum = (pg_loss + cfg.vf_coef * vf_loss) * n_tok
        tok = float(n_tok)
        with torch.no_grad():
            approx_kl = masked_mean(0.5 * (logps - batch["old_logps"]) ** 2, mask)
        metrics = {
            "policy_loss": (float(pg_loss.detach()) * tok, tok),
            "value_loss": (float(vf_loss.detach()) * tok, tok),
            "clip_ratio": (float(clip_frac) * tok, tok),
            "value_clip_ratio": (float(vf_clip) * tok, tok),
            "approx_kl": (float(approx_kl) * tok, tok),
            "entropy": (float((entropy * mask).sum()), tok),
            **guard_metrics,
        }
        return StepOutput(loss_sum=loss_sum, metrics=metrics)

    def _evaluate_prompts(self, model: nn.Module, batch: dict[str, Any]) -> StepOutput:
        """Mean reward of one sampled completion per held-out prompt (fixed seeds), as ``eval_reward``."""
        rank = self.accelerator.process_index if self.accelerator is not None else 0
        first_row = int(batch["rows"][0] or 0) if batch.get("rows") else 0
        ro = self.backend.generate(model, batch["prompt_ids"], num_generations=1,
                                   seed=rollout_seed(self.config.seed, -1 - first_row, rank, 0))
        total, per, _, _ = score_rollout(self.rewards, self.tokenizer, batch, ro)
        N = float(total.numel())
        metrics = {"reward": (float(total.sum()), N), "completion_length": (float(ro.completion_mask.sum()), N)}
        for name, values in per.items():
            metrics[f"rewards/{name}"] = (float(values.sum()), N)
        return StepOutput(loss_sum=torch.zeros((), device=ro.sequences.device), metrics=metrics)

    # -- the adaptive controller's coefficients on disk -----------------------------------------
    def _kl_path(self) -> Path:
        return Path(self.config.output_dir) / "rollouts" / "ppo-kl.json"

    def _save_kl_history(self) -> None:
        if self.accelerator is not None and not self.accelerator.is_main_process:
            return
        write_text(self._kl_path(), json.dumps({str(b): v for b, v in sorted(self._kl_history.items())}))

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
