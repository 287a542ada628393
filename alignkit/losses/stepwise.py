"""Losses of the step-level and self-play methods: the process reward model's step loss and SPPO's
square loss with its win-probability estimate. Pure tensor functions."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def step_bce_loss(step_logits: torch.Tensor, step_labels: torch.Tensor) -> torch.Tensor:
    """Per-step binary cross-entropy of a process reward model, shape [S].

        loss_k = -(y_k log sigma(z_k) + (1 - y_k) log(1 - sigma(z_k)))

    ``step_logits`` z [S]: the head's logit at each step's separator token; ``step_labels`` y [S] in
    {0, 1} (1: the step is good). Lightman et al. 2023 ("Let's Verify Step by Step", arXiv:2305.20050)
    score each step at its end token; Wang et al. 2024 (Math-Shepherd, arXiv:2312.08935) train the same
    per-step objective on labels from Monte-Carlo rollouts.
    """
    if step_logits.shape != step_labels.shape:
        raise ValueError(f"step_logits {list(step_logits.shape)} and step_labels {list(step_labels.shape)} differ")
    return F.binary_cross_entropy_with_logits(step_logits.float(), step_labels.float(), reduction="none")


def bt_win_probabilities(rewards: torch.Tensor, group_size: int, scale: float = 1.0) -> torch.Tensor:
    """Each answer's estimated probability of beating the other answers to its prompt, shape [N].

        P_i = 1/(K-1) * sum_{j != i} sigma(scale * (r_i - r_j))

    under a Bradley-Terry preference model on the rewards r [N], ordered group by group (K =
    ``group_size`` consecutive answers per prompt). This is SPPO's estimate of P(y_i > pi_t | x) from K
    samples of pi_t (Wu et al. 2024, arXiv:2405.00675, section 4), with the pairwise preference given by
    the rewards' Bradley-Terry probabilities (SPPO itself queries PairRM for P(y_i > y_j)).
    """
    if group_size < 2:
        raise ValueError("a win probability needs at least two answers per prompt (group_size >= 2)")
    if rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    g = rewards.float().view(-1, group_size)
    pairwise = torch.sigmoid(scale * (g.unsqueeze(2) - g.unsqueeze(1)))  # [groups, K, K]: P(i beats j)
    off = 1.0 - torch.eye(group_size, device=g.device)
    return ((pairwise * off).sum(-1) / (group_size - 1)).view(-1)


def sppo_loss(logps: torch.Tensor, old_logps: torch.Tensor, win_probs: torch.Tensor, eta: float = 1.0) -> torch.Tensor:
    """Self-Play Preference Optimization (SPPO) square loss per answer, shape [B].

        loss = (log pi_theta(y|x) - log pi_t(y|x) - eta * (P(y > pi_t | x) - 1/2))^2

    ``logps`` / ``old_logps`` [B]: summed log-probabilities of each sampled answer under the policy
    being trained and under pi_t, the policy that sampled it; ``win_probs`` [B]: the estimated
    probability that the answer beats pi_t (:func:`bt_win_probabilities`). Wu, Sun, Yuan, Ji, Yang, Gu
    (2024), "Self-Play Preference Optimization for Language Model Alignment", arXiv:2405.00675 (the SPPO objective, section 4):
    the multiplicative-weights update pi_{t+1} ∝ pi_t exp(eta P(y > pi_t)) regressed in log space, with the
    log-partition approximated by eta/2.
    """
    if not logps.shape == old_logps.shape == win_probs.shape:
        raise ValueError(f"logps {list(logps.shape)}, old_logps {list(old_logps.shape)} and win_probs "
                         f"{list(win_probs.shape)} must have the same shape")
    return (logps - old_logps - eta * (win_probs - 0.5)) ** 2
