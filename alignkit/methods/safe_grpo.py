"""``alignkit safe-grpo``: GRPO under a cost constraint, the cheap variant of Safe RLHF (Dai et al. 2023).

Every rollout is scored twice: ``reward=`` (helpfulness) and ``cost=`` (harm; any reward spec, e.g.
``costmodel:PATH`` from ``alignkit cost`` or the pattern cost ``safety:compliance``). Both get group
advantages with the same estimator (``advantage=``), and the step trains on the Lagrangian advantage

    A = (A_r - lambda * A_c) / (1 + lambda)                      (:func:`alignkit.losses.lagrangian_advantages`)

The multiplier lambda >= 0 is learned by dual ascent on the constraint J_c <= ``cost_limit``, J_c the
rollout's mean cost (all processes), once per rollout, after its advantages are computed:

* ``lambda_update=gradient`` (default): lambda <- clip(lambda + lambda_lr * (J_c - cost_limit), 0, lambda_max);
* ``lambda_update=pid``: the PID Lagrangian of Stooke et al. 2020 (``pid_kp``, ``pid_ki``, ``pid_kd``).

Why a GRPO method and not a ``cost=`` key on ``ppo``: GRPO needs no critic, so the constraint costs one
extra scoring pass and nothing else (the two-critic PPO-Lagrangian of the paper is not built yet; see the
README). Logged every step: ``lambda``, ``cost`` (J_c), ``cost_violation`` (J_c - cost_limit),
``costs/NAME`` per source. The multiplier's state after each rollout goes to
``OUTPUT_DIR/rollouts/lambda.json`` (written atomically), so a resumed run continues with the value the
interrupted one had reached and reproduces it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import Field

from alignkit.config import ConfigError
from alignkit.files import read_json, write_json
from alignkit.losses import LambdaState, lagrangian_advantages, lambda_update, pid_lambda_update
from alignkit.methods.grpo import GRPO, GRPOConfig
from alignkit.methods.online import score_rollout
from alignkit.scoring import load_reward_functions


class SafeGRPOConfig(GRPOConfig):
    """GRPO with a cost constraint: maximise reward subject to mean cost <= cost_limit (Lagrangian)."""

    cost: str | list[str] | None = Field(None, description="cost source(s): costmodel:PATH, safety:compliance, "
                                         "FILE.py:FUNC, ... (higher = more harmful)")
    cost_weights: list[float] | None = Field(None, description="one weight per cost source (default all 1)")
    cost_limit: float = Field(0.0, description="the constraint: mean cost per completion <= cost_limit")
    lambda_init: float = Field(1.0, ge=0, description="initial Lagrange multiplier")
    lambda_lr: float = Field(0.1, gt=0, description="dual step size of lambda_update=gradient")
    lambda_max: float | None = Field(None, gt=0, description="upper bound on lambda (unset: none)")
    lambda_update: Literal["gradient", "pid"] = Field("gradient", description="multiplier update rule")
    pid_kp: float = Field(0.0, ge=0, description="lambda_update=pid: proportional gain")
    pid_ki: float = Field(0.1, ge=0, description="lambda_update=pid: integral gain")
    pid_kd: float = Field(0.0, ge=0, description="lambda_update=pid: derivative gain")


class SafeGRPO(GRPO):
    name = "safe-grpo"
    config_cls = SafeGRPOConfig

    def __init__(self, config: SafeGRPOConfig, tokenizer: Any) -> None:
        super().__init__(config, tokenizer)
        if config.cost is None:
            raise ConfigError("safe-grpo needs a cost: cost=costmodel:PATH (from `alignkit cost`), "
                              "cost=safety:compliance (refusal patterns), or FILE.py:FUNC")
        self.costs = load_reward_functions(config.cost, config.cost_weights)
        self.state = LambdaState(lam=float(config.lambda_init))
        self._history: dict[int, dict[str, Any]] = {}

    # -- the multiplier on disk -------------------------------------------------------------------
    def _history_path(self) -> Path:
        return Path(self.config.output_dir) / "rollouts" / "lambda.json"

    def setup(self, model: torch.nn.Module, accelerator: Any) -> None:
        super().setup(model, accelerator)
        saved = read_json(self._history_path(), default={}) or {}
        self._history = {int(k): v for k, v in saved.items()} if isinstance(saved, dict) else {}

    def _state_for(self, block: int) -> LambdaState:
        saved = self._history.get(block)
        if saved is None:
            return self.state
        return LambdaState(lam=float(saved["lam"]), integral=float(saved.get("integral", 0.0)),
                           last_cost=saved.get("last_cost"))

    def _record(self, block: int, state: LambdaState) -> None:
        self._history[block] = {"lam": state.lam, "integral": state.integral, "last_cost": state.last_cost}
        if self.accelerator is None or self.accelerator.is_main_process:
            write_json(self._history_path(), {str(k): v for k, v in sorted(self._history.items())})

    # -- rollout hooks -----------------------------------------------------------------------------
    def score_part(self, part: dict[str, Any], batch: dict[str, Any], ro: Any) -> None:
        total, per, _, _ = score_rollout(self.costs, self.tokenizer, batch, ro)
        part["costs"], part["cost_per"] = total, per

    def _global_mean(self, values: torch.Tensor) -> float:
        acc = self.accelerator
        sums = torch.tensor([float(values.sum()), float(values.numel())], dtype=torch.float64)
        if acc is not None and acc.num_processes > 1:
            sums = acc.reduce(sums.to(acc.device), reduction="sum").cpu()
        return float(sums[0] / sums[1].clamp(min=1))

    def adjust_advantages(self, parts: list[dict[str, Any]], advantages: torch.Tensor,
                          metrics: dict[str, tuple[float, float]], step: int) -> torch.Tensor:
        cfg = self.config
        block = step // cfg.num_iterations
        self.state = self._state_for(block)
        costs = torch.cat([p["costs"] for p in parts])
        cost_adv = self._advantages(costs)
        lam = self.state.lam
        combined = lagrangian_advantages(advantages, cost_adv.to(advantages.dtype), lam)
        mean_cost = self._global_mean(costs)
        N = float(costs.numel())
        metrics.update({"lambda": (lam, 1.0), "cost": (float(costs.sum()), N),
                        "cost_violation": (float(costs.sum()) - cfg.cost_limit * N, N)})
        for name in self.costs.names:
            metrics[f"costs/{name}"] = (float(torch.cat([p["cost_per"][name] for p in parts]).sum()), N)
        if cfg.lambda_update == "pid":
            nxt = pid_lambda_update(self.state, mean_cost, cfg.cost_limit, cfg.pid_kp, cfg.pid_ki, cfg.pid_kd,
                                    cfg.lambda_max)
        else:
            nxt = lambda_update(self.state, mean_cost, cfg.cost_limit, cfg.lambda_lr, cfg.lambda_max)
        self.state = nxt
        self._record(block + 1, nxt)
        return combined
