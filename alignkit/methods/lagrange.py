"""The cost constraint shared by ``safe-grpo`` and ``safe-ppo``: its config keys and the Lagrange multiplier
with its history on disk (Safe RLHF, Dai et al. 2023; PID variant: Stooke et al. 2020).

The multiplier is updated once per rollout (block of optimizer steps) from the rollout's mean cost over
all processes (with ``cost_window`` N > 1: the mean of the last N rollouts' mean costs, which smooths lambda
when rollouts are a few prompts each: with 4 prompts, half of them harmful, one rollout's mean cost moved
between 0 and 0.7 from step to step in the safety runs of the README). Its state after block k's update
(with the window) is written to ``OUTPUT_DIR/rollouts/lambda.json`` under key k + 1 (atomically), so a
resumed run reads the value the interrupted one had reached for the block it resumes in and reproduces the
uninterrupted run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, Field

from alignkit.files import read_json, write_json
from alignkit.losses import LambdaState, lambda_update, pid_lambda_update


class CostConstraintConfig(BaseModel):
    """Keys of a cost-constrained method: maximise reward subject to mean cost <= cost_limit."""

    cost: str | list[str] | None = Field(None, description="cost source(s): costmodel:PATH, safety:compliance, "
                                         "FILE.py:FUNC, ... (higher = more harmful)")
    cost_weights: list[float] | None = Field(None, description="one weight per cost source (default all 1)")
    cost_limit: float = Field(0.0, description="the constraint: mean cost per completion <= cost_limit")
    lambda_init: float = Field(1.0, ge=0, description="initial Lagrange multiplier")
    lambda_lr: float = Field(0.1, gt=0, description="dual step size of lambda_update=gradient")
    lambda_max: float | None = Field(None, gt=0, description="upper bound on lambda (unset: none)")
    cost_window: int = Field(1, ge=1, description="the dual update reads the mean cost of the last N rollouts "
                             "(1: the current rollout's only; more smooths lambda when rollouts are small)")
    lambda_update: Literal["gradient", "pid"] = Field("gradient", description="multiplier update rule (pid: the "
                                                      "PID Lagrangian; lambda_init is then used for the first "
                                                      "rollout only)")
    pid_kp: float = Field(0.0, ge=0, description="lambda_update=pid: proportional gain")
    pid_ki: float = Field(0.1, ge=0, description="lambda_update=pid: integral gain")
    pid_kd: float = Field(0.0, ge=0, description="lambda_update=pid: derivative gain")


class LagrangeMultiplier:
    """lambda >= 0 for the rollout of each block, updated by dual ascent after it (see the module docstring)."""

    def __init__(self, cfg: CostConstraintConfig, output_dir: str | Path) -> None:
        self.cfg = cfg
        self.path = Path(output_dir) / "rollouts" / "lambda.json"
        self.state = LambdaState(lam=float(cfg.lambda_init))
        self.history: dict[int, dict[str, Any]] = {}
        self.recent: list[float] = []  # the last cost_window rollouts' mean costs, oldest first

    def load(self) -> None:
        """Read the history an interrupted run left (nothing for a fresh run)."""
        saved = read_json(self.path, default={}) or {}
        self.history = {int(k): v for k, v in saved.items()} if isinstance(saved, dict) else {}

    def at(self, block: int) -> float:
        """The multiplier the rollout of ``block`` uses."""
        # the newest state at or before this block (every block has one when lambda follows the rollouts;
        # with lambda_reads=eval only the blocks after an evaluation do)
        known = [k for k in self.history if k <= block]
        saved = self.history[max(known)] if known else None
        if saved is not None:
            self.state = LambdaState(lam=float(saved["lam"]), integral=float(saved.get("integral", 0.0)),
                                     last_cost=saved.get("last_cost"))
            self.recent = [float(c) for c in saved.get("recent", [])]
        return self.state.lam

    def update(self, block: int, mean_cost: float, write: bool = True) -> float:
        """Dual step after ``block``'s rollout with its mean cost (averaged with the previous
        ``cost_window`` - 1 rollouts'); returns the next multiplier."""
        cfg = self.cfg
        self.recent = (self.recent + [float(mean_cost)])[-cfg.cost_window:]
        mean_cost = sum(self.recent) / len(self.recent)
        if cfg.lambda_update == "pid":
            self.state = pid_lambda_update(self.state, mean_cost, cfg.cost_limit, cfg.pid_kp, cfg.pid_ki, cfg.pid_kd,
                                           cfg.lambda_max)
        else:
            self.state = lambda_update(self.state, mean_cost, cfg.cost_limit, cfg.lambda_lr, cfg.lambda_max)
        s = self.state
        self.history[block + 1] = {"lam": s.lam, "integral": s.integral, "last_cost": s.last_cost,
                                   "recent": list(self.recent)}
        if write:
            write_json(self.path, {str(k): v for k, v in sorted(self.history.items())})
        return s.lam

    def metrics(self, lam: float, costs: torch.Tensor, per_source: dict[str, torch.Tensor]
                ) -> dict[str, tuple[float, float]]:
        """``lambda``, ``cost``, ``cost_violation`` and ``costs/NAME`` as (sum, count) pairs for the engine."""
        N = float(costs.numel())
        out = {"lambda": (lam, 1.0), "cost": (float(costs.sum()), N),
               "cost_violation": (float(costs.sum()) - self.cfg.cost_limit * N, N)}
        for name, values in per_source.items():
            out[f"costs/{name}"] = (float(values.sum()), N)
        return out


def global_mean(values: torch.Tensor, accelerator: Any) -> float:
    """Mean of ``values`` over every process."""
    sums = torch.tensor([float(values.sum()), float(values.numel())], dtype=torch.float64)
    if accelerator is not None and accelerator.num_processes > 1:
        sums = accelerator.reduce(sums.to(accelerator.device), reduction="sum").cpu()
    return float(sums[0] / sums[1].clamp(min=1))
