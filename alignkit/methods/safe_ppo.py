"""``alignkit safe-ppo``: Safe RLHF's PPO-Lagrangian (Dai et al. 2023, arXiv:2310.12773) on ``alignkit ppo``.

Everything PPO does (KL-shaped rewards, a reward critic, GAE, clipped policy and value losses, the
adaptive KL controller, resumable rollouts), plus:

* a **cost critic** (:data:`alignkit.models.critic.COST_CRITIC`): a second value head on its own LoRA adapter
  ``cost_critic`` (one base copy holds policy, reward critic and cost critic as three adapters) or on its
  own body copy in full fine-tuning; written to ``final/cost_critic/``;
* per rollout, the ``cost=`` sources score every completion (a sequence cost C at its last token, no KL
  term), GAE gives cost advantages A_c and returns (whitened like the reward's with ``whiten_advantages``);
* the policy trains on the Lagrangian advantage (A_r - lambda * A_c) / (1 + lambda); the cost critic's
  clipped value loss is added with the reward critic's weight ``vf_coef``;
* lambda is learned by dual ascent on mean cost <= ``cost_limit`` (``lambda_update=gradient|pid``, keys
  and history in :mod:`alignkit.methods.lagrange`), logged as ``lambda``, ``cost``, ``cost_violation``.

``alignkit safe-grpo`` is the critic-free variant (cheaper: no value heads, no GAE).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from alignkit.config import ConfigError
from alignkit.engine.method import StepOutput
from alignkit.losses import gae, lagrangian_advantages, ppo_value_loss
from alignkit.methods.common import unwrap
from alignkit.methods.lagrange import CostConstraintConfig, LagrangeMultiplier, global_mean
from alignkit.methods.online import score_rollout, select_rows, trim_padding
from alignkit.methods.ppo import PPO, PPOConfig
from alignkit.methods.safe_grpo import NO_COST
from alignkit.models.critic import COST_CRITIC, add_critic, critic_values, save_critic
from alignkit.models.modules import eval_mode
from alignkit.scoring import load_reward_functions


class SafePPOConfig(PPOConfig, CostConstraintConfig):
    """PPO-Lagrangian (Safe RLHF): reward and cost critics, maximise reward subject to mean cost <= cost_limit."""


class SafePPO(PPO):
    name = "safe-ppo"
    config_cls = SafePPOConfig

    def __init__(self, config: SafePPOConfig, tokenizer: Any) -> None:
        super().__init__(config, tokenizer)
        if config.cost is None:
            raise ConfigError(f"safe-ppo {NO_COST}")
        self.costs = load_reward_functions(config.cost, config.cost_weights)
        self.multiplier = LagrangeMultiplier(config, config.output_dir)
        self._scored: list[tuple[torch.Tensor, dict[str, torch.Tensor]]] = []

    def build_model(self) -> nn.Module:
        """Policy + reward critic (PPO's) + the cost critic, in one module."""
        return add_critic(super().build_model(), lora=self.config.lora.enabled, slot=COST_CRITIC)

    def setup(self, model: nn.Module, accelerator: Any) -> None:
        super().setup(model, accelerator)
        self.multiplier.load()

    def save_final(self, model: nn.Module, tokenizer: Any, final_dir: Path, config: Any) -> None:
        super().save_final(model, tokenizer, final_dir, config)
        save_critic(model, Path(final_dir) / COST_CRITIC.dir, COST_CRITIC)

    def cost_values(self, model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Cost-critic values [N, C] (float32) of the completion positions."""
        return critic_values(unwrap(model), batch, self._trainable, COST_CRITIC)

    # -- rollout hooks -----------------------------------------------------------------------------
    def on_scored(self, batch: dict[str, Any], ro: Any) -> None:
        total, per, _, _ = score_rollout(self.costs, self.tokenizer, batch, ro)
        self._scored.append((total, per))

    def extend_rollout(self, model: nn.Module, buf: dict[str, torch.Tensor], metrics: dict[str, tuple[float, float]],
                       step: int) -> None:
        cfg, acc = self.config, self.accelerator
        block = step // self.period
        scored, self._scored = self._scored, []
        mask = buf["completion_mask"]
        maskf = mask.float()
        costs = torch.cat([c for c, _ in scored]).to(mask.device)
        per = {n: torch.cat([p[n] for _, p in scored]) for n in self.costs.names}

        values = []
        ctx = acc.autocast() if acc is not None else torch.autocast("cpu", enabled=False)
        with torch.no_grad(), ctx, eval_mode(unwrap(model)):
            for start in range(0, mask.shape[0], cfg.batch_size):
                chunk = trim_padding(select_rows(buf, torch.arange(start, min(start + cfg.batch_size, mask.shape[0]))))
                v = self.cost_values(model, chunk)
                values.append(nn.functional.pad(v.float(), (0, mask.shape[1] - v.shape[1])))
        old_values = torch.cat(values) * maskf

        token_costs = torch.zeros_like(maskf)
        last = (mask.sum(1) - 1).clamp(min=0)
        token_costs[torch.arange(mask.shape[0], device=mask.device), last] = costs.float()
        cost_adv, cost_returns = gae(token_costs, old_values, mask, gamma=cfg.gamma, lam=cfg.lam)
        if cfg.whiten_advantages:
            cost_adv = self._whiten(cost_adv, mask)

        lam = self.multiplier.at(block)
        buf["advantages"] = lagrangian_advantages(buf["advantages"], cost_adv * maskf, lam) * maskf
        buf.update(old_cost_values=old_values, cost_returns=cost_returns * maskf)
        metrics.update(self.multiplier.metrics(lam, costs, per))
        metrics["cost_values/mean"] = (float(old_values.sum()), float(maskf.sum()))
        self.multiplier.update(block, global_mean(costs, acc), write=acc is None or acc.is_main_process)

    # -- loss ---------------------------------------------------------------------------------------
    def loss(self, model: nn.Module, batch: dict[str, Any], step: int) -> StepOutput:
        """PPO's loss on the Lagrangian advantages, plus ``vf_coef`` x the cost critic's clipped value loss."""
        out = super().loss(model, batch, step)
        if "completion_mask" not in batch:
            return out
        mask = batch["completion_mask"]
        vf, clip = ppo_value_loss(self.cost_values(model, batch), batch["old_cost_values"], batch["cost_returns"],
                                  mask, self.config.cliprange_value)
        tok = float(mask.sum())
        out.loss_sum = out.loss_sum + self.config.vf_coef * vf * mask.sum().float()
        out.metrics["cost_value_loss"] = (float(vf.detach()) * tok, tok)
        out.metrics["cost_value_clip_ratio"] = (float(clip) * tok, tok)
        return out
