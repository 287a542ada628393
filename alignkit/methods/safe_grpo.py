"""``alignkit safe-grpo``: GRPO under a cost constraint, the cheap variant of Safe RLHF (Dai et al. 2023).

Every rollout is scored twice: ``reward=`` (helpfulness) and ``cost=`` (harm; any reward spec, e.g.
``costmodel:PATH`` from ``alignkit cost`` or the pattern cost ``safety:compliance``). Both get group
advantages with the same estimator (``advantage=``), and the step trains on the Lagrangian advantage

    A = (A_r - lambda * A_c) / (1 + lambda)                      (:func:`alignkit.losses.lagrangian_advantages`)

The multiplier lambda >= 0 (:mod:`alignkit.methods.lagrange`) is learned by dual ascent on the constraint J_c <= ``cost_limit``, J_c the
rollout's mean cost (all processes), once per rollout, after its advantages are computed:

* ``lambda_update=gradient`` (default): lambda <- clip(lambda + lambda_lr * (J_c - cost_limit), 0, lambda_max);
* ``lambda_update=pid``: the PID Lagrangian of Stooke et al. 2020 (``pid_kp``, ``pid_ki``, ``pid_kd``).

With ``lambda_reads=eval`` J_c is instead the mean cost of greedy (``eval_temperature=0``) or sampled answers
to held-out prompts (``eval_data``), measured every ``eval_steps`` (and at the start with ``eval_on_start``),
one dual step per evaluation. Why: on prompts the policy has trained on (or that an SFT stage taught it by
heart) the rollout cost says little about unseen requests, and lambda then drifts the wrong way (README
"Safety alignment", 2026-12-07); the held-out cost is the constraint the user cares about. Evaluations also
log ``eval_cost`` and ``eval_costs/NAME``, which ``metric_for_best_model`` can select on.

Why a GRPO method and not a ``cost=`` key on ``ppo``: GRPO needs no critic, so the constraint costs one
extra scoring pass and nothing else (the paper's two-critic PPO-Lagrangian is ``alignkit safe-ppo``).
Logged every step: ``lambda``, ``cost`` (J_c), ``cost_violation`` (J_c - cost_limit),
``costs/NAME`` per source. The multiplier's state after each rollout goes to
``OUTPUT_DIR/rollouts/lambda.json`` (written atomically), so a resumed run continues with the value the
interrupted one had reached and reproduces it.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field, model_validator

from alignkit.config import ConfigError
from alignkit.losses import lagrangian_advantages
from alignkit.methods.grpo import GRPO, GRPOConfig
from alignkit.methods.lagrange import CostConstraintConfig, LagrangeMultiplier, global_mean
from alignkit.methods.online import score_rollout
from alignkit.scoring import load_reward_functions

NO_COST = ("needs a cost: cost=costmodel:PATH (from `alignkit cost`), cost=safety:compliance (refusal patterns), "
           "or FILE.py:FUNC")


class SafeGRPOConfig(GRPOConfig, CostConstraintConfig):
    """GRPO with a cost constraint: maximise reward subject to mean cost <= cost_limit (Lagrangian)."""

    lambda_reads: Literal["rollout", "eval"] = Field(
        "rollout", description="the cost the dual update reads: each rollout's (rollout), or the held-out "
        "eval_cost of each evaluation (eval: eval_data, eval_steps; one update per evaluation)")

    @model_validator(mode="after")
    def _check_lambda_reads(self) -> SafeGRPOConfig:
        if self.lambda_reads == "eval" and not (self.eval_data and (self.eval_steps or self.eval_on_start)):
            raise ValueError("lambda_reads=eval needs eval_data and eval_steps > 0 (the held-out cost it reads)")
        return self


class SafeGRPO(GRPO):
    name = "safe-grpo"
    config_cls = SafeGRPOConfig

    def __init__(self, config: SafeGRPOConfig, tokenizer: Any) -> None:
        super().__init__(config, tokenizer)
        if config.cost is None:
            raise ConfigError(f"safe-grpo {NO_COST}")
        self.costs = load_reward_functions(config.cost, config.cost_weights)
        self.multiplier = LagrangeMultiplier(config, config.output_dir)

    def setup(self, model: torch.nn.Module, accelerator: Any) -> None:
        super().setup(model, accelerator)
        self.multiplier.load()

    # -- rollout hooks -----------------------------------------------------------------------------
    def score_part(self, part: dict[str, Any], batch: dict[str, Any], ro: Any) -> None:
        total, per, _, _ = score_rollout(self.costs, self.tokenizer, batch, ro)
        part["costs"], part["cost_per"] = total, per

    def score_eval(self, batch: dict[str, Any], ro: Any, metrics: dict[str, tuple[float, float]]) -> None:
        """``eval_cost`` and ``eval_costs/NAME``: the held-out prompts' mean costs."""
        total, per, _, _ = score_rollout(self.costs, self.tokenizer, batch, ro)
        N = float(total.numel())
        metrics["cost"] = (float(total.sum()), N)
        for name, values in per.items():
            metrics[f"costs/{name}"] = (float(values.sum()), N)

    def after_evaluate(self, step: int, metrics: dict[str, float]) -> None:
        """With ``lambda_reads=eval``: one dual step on the held-out cost, for the rollouts from ``step`` on."""
        if self.config.lambda_reads != "eval":
            return
        mu = self.config.num_iterations
        next_block = -(-step // mu)  # the first block whose rollout has not been sampled yet
        self.multiplier.at(next_block)  # the state as of that block (a resumed run reads it from disk)
        acc = self.accelerator
        self.multiplier.update(next_block - 1, float(metrics["eval_cost"]), write=acc is None or acc.is_main_process)

    def adjust_advantages(self, parts: list[dict[str, Any]], advantages: torch.Tensor,
                          metrics: dict[str, tuple[float, float]], step: int) -> torch.Tensor:
        block = step // self.config.num_iterations
        lam = self.multiplier.at(block)
        costs = torch.cat([p["costs"] for p in parts])
        cost_adv = self._advantages(costs)
        per = {n: torch.cat([p["cost_per"][n] for p in parts]) for n in self.costs.names}
        metrics.update(self.multiplier.metrics(lam, costs, per))
        acc = self.accelerator
        if self.config.lambda_reads == "rollout":
            self.multiplier.update(block, global_mean(costs, acc), write=acc is None or acc.is_main_process)
        return lagrangian_advantages(advantages, cost_adv.to(advantages.dtype), lam)
