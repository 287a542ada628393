"""Reward-model losses (pairwise Bradley-Terry), pure tensor functions."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bradley_terry_loss(
    chosen_rewards: torch.Tensor,
    rejected_rewards: torch.Tensor,
    margin: torch.Tensor | float | None = None,
) -> torch.Tensor:
    """Pairwise Bradley-Terry loss of a scalar reward model, shape [B].

        loss = -log sigma(r_c - r_r - m)

    ``chosen_rewards``, ``rejected_rewards`` [B] are the reward model's scores; ``margin`` m ([B] or a
    float, default 0) is an optional required gap, as in Llama 2's reward model (Touvron et al., 2023,
    arXiv:2307.09288). Bradley & Terry (1952); Ouyang et al. (2022, arXiv:2203.02155).
    """
    if chosen_rewards.shape != rejected_rewards.shape:
        raise ValueError(
            f"chosen_rewards and rejected_rewards must have the same shape; got "
            f"{list(chosen_rewards.shape)} and {list(rejected_rewards.shape)}"
        )
    diff = chosen_rewards - rejected_rewards
    if margin is not None:
        diff = diff - margin
    return -F.logsigmoid(diff)


def reward_centering_term(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor) -> torch.Tensor:
    """Auxiliary term (r_c + r_r)^2, shape [B], that pushes rewards towards zero mean
    (Eisenstein et al., 2023, arXiv:2312.09244; TRL's ``center_rewards_coefficient`` multiplies it)."""
    return (chosen_rewards + rejected_rewards) ** 2
