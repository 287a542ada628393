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


def weak_to_strong_loss(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor, weak_probs: torch.Tensor,
                        aux_alpha: float = 0.0) -> torch.Tensor:
    """Pairwise reward-model loss on a weak supervisor's soft labels, with the auxiliary confidence term of
    Burns et al. 2023 ("Weak-to-Strong Generalization", arXiv:2312.09390), shape [B]::

        p = sigma(r_c - r_r)                      the strong model's probability that chosen is better
        t = 1[p > 1/2]                            its own hardened prediction (no gradient)
        loss = (1 - a) * CE(p, y_w) + a * CE(p, t),   CE(p, y) = -(y log p + (1 - y) log(1 - p))

    ``weak_probs`` [B] is y_w, the weak model's probability that chosen is better; ``aux_alpha`` = a. With
    a = 0 and y_w = 1 it is the Bradley-Terry loss. The second term lets the strong model overrule weak
    labels it confidently disagrees with instead of imitating the weak model's mistakes.
    """
    diff = chosen_rewards - rejected_rewards
    log_p, log_q = F.logsigmoid(diff), F.logsigmoid(-diff)
    soft = -(weak_probs * log_p + (1 - weak_probs) * log_q)
    if not aux_alpha:
        return soft
    hard = (diff.detach() > 0).to(diff.dtype)
    return (1 - aux_alpha) * soft + aux_alpha * -(hard * log_p + (1 - hard) * log_q)
