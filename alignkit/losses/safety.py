"""Safe RLHF (Dai et al. 2023, "Safe RLHF: Safe Reinforcement Learning from Human Feedback",
arXiv:2310.12773): the cost model's loss and the Lagrangian that trades reward against cost.
Pure functions: tensors or floats in, tensors or floats out."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


def cost_sign_loss(costs: torch.Tensor, unsafe: torch.Tensor) -> torch.Tensor:
    """Safe RLHF's sign term, shape [N]: ``-log sigma(s * C)`` with ``s = +1`` for an unsafe response and
    ``-1`` for a safe one, so unsafe responses are pushed to cost > 0 and safe ones to cost < 0.
    ``costs`` [N] float, ``unsafe`` [N] bool."""
    sign = unsafe.to(costs.dtype) * 2.0 - 1.0
    return -F.logsigmoid(sign * costs)


def cost_model_loss(harmful_costs: torch.Tensor, harmless_costs: torch.Tensor, harmful_unsafe: torch.Tensor,
                    harmless_unsafe: torch.Tensor) -> torch.Tensor:
    """The cost model's loss per pair, shape [B] (Safe RLHF eq. 6)::

        loss = -log sigma(C(y_w) - C(y_l)) - log sigma(s_w C(y_w)) - log sigma(s_l C(y_l))

    y_w is the *more harmful* response of the pair (``harmful_costs`` [B]), y_l the less harmful one
    (``harmless_costs`` [B]); s = +1 for an unsafe response, -1 for a safe one (``*_unsafe`` [B] bool).
    The first term is Bradley-Terry on harmfulness, the others :func:`cost_sign_loss`.
    """
    if harmful_costs.shape != harmless_costs.shape:
        raise ValueError(f"harmful_costs and harmless_costs must have the same shape; got "
                         f"{list(harmful_costs.shape)} and {list(harmless_costs.shape)}")
    return (-F.logsigmoid(harmful_costs - harmless_costs) + cost_sign_loss(harmful_costs, harmful_unsafe)
            + cost_sign_loss(harmless_costs, harmless_unsafe))


def lagrangian_advantages(reward_advantages: torch.Tensor, cost_advantages: torch.Tensor,
                          lam: float) -> torch.Tensor:
    """The PPO-Lagrangian advantage (Safe RLHF eq. 11, normalised): ``(A_r - lam * A_c) / (1 + lam)``,
    any shape; the division keeps the step size steady as lam grows."""
    return (reward_advantages - lam * cost_advantages) / (1.0 + lam)


@dataclass
class LambdaState:
    """The multiplier and what the PID update remembers: the integral of the violation and the last cost."""

    lam: float
    integral: float = 0.0
    last_cost: float | None = None


def lambda_update(state: LambdaState, mean_cost: float, cost_limit: float, lr: float,
                  lambda_max: float | None = None) -> LambdaState:
    """Projected gradient ascent on the dual (Safe RLHF's update of lambda)::

        lam <- clip(lam + lr * (J_c - d), 0, lambda_max)

    J_c = ``mean_cost`` of the rollout, d = ``cost_limit``: lam rises while the constraint J_c <= d is
    violated and falls (never below 0) while it holds."""
    lam = max(0.0, state.lam + lr * (mean_cost - cost_limit))
    if lambda_max is not None:
        lam = min(lam, lambda_max)
    return LambdaState(lam=lam, integral=state.integral, last_cost=mean_cost)


def pid_lambda_update(state: LambdaState, mean_cost: float, cost_limit: float, kp: float, ki: float, kd: float,
                      lambda_max: float | None = None) -> LambdaState:
    """PID Lagrangian (Stooke et al. 2020, "Responsive Safety in RL by PID Lagrangian Methods",
    arXiv:2007.03964)::

        e = J_c - d;  I <- max(0, I + e);  D = max(0, J_c - J_c_prev)
        lam = clip(kp * e + ki * I + kd * D, 0, lambda_max)

    ``ki`` alone is the plain gradient update with lr = ki (from lam = 0); ``kp`` reacts to the current
    violation, ``kd`` to a rising cost. D is 0 on the first update."""
    error = mean_cost - cost_limit
    integral = max(0.0, state.integral + error)
    derivative = 0.0 if state.last_cost is None else max(0.0, mean_cost - state.last_cost)
    lam = max(0.0, kp * error + ki * integral + kd * derivative)
    if lambda_max is not None:
        lam = min(lam, lambda_max)
    return LambdaState(lam=lam, integral=integral, last_cost=mean_cost)
