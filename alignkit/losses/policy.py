"""Policy-gradient pieces for online RL: advantages (GRPO, RLOO, REINFORCE++, GAE), the GRPO/DAPO/Dr.GRPO
loss, PPO's clipped policy and value losses, KL estimators and masked statistics.

Pure tensor functions. Shapes: B sequences, T response positions; ``mask`` [B, T] is 1 (True) on
real response tokens and 0 on padding. Per-token log-probs ``logps`` [B, T] are log pi(a_t | s_t)
of the sampled tokens (see :mod:`alignkit.logprobs`).
"""

from __future__ import annotations

import torch

GRPO_LOSS_TYPES: tuple[str, ...] = ("grpo", "dapo", "dr_grpo", "bnpo")
"""Aggregations accepted by :func:`grpo_loss` (``bnpo`` is an alias of ``dapo``)."""

KL_KINDS: tuple[str, ...] = ("k1", "k2", "k3", "abs")


# ----------------------------------------------------------------------------------------------
# masked statistics
# ----------------------------------------------------------------------------------------------
def masked_mean(values: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of ``values`` over positions where ``mask`` is set (over all dims, or along ``dim``).

    An all-masked reduction gives 0 (the denominator is clamped to >= 1).
    """
    mask = mask.to(values.dtype)
    if dim is None:
        return (values * mask).sum() / mask.sum().clamp(min=1)
    return (values * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def masked_var(values: torch.Tensor, mask: torch.Tensor, unbiased: bool = True) -> torch.Tensor:
    """Variance of the masked entries (scalar); ``unbiased`` applies Bessel's correction n / (n - 1)."""
    mask = mask.to(values.dtype)
    mean = masked_mean(values, mask)
    var = masked_mean((values - mean) ** 2, mask)
    if unbiased:
        n = mask.sum()
        var = var * n / (n - 1).clamp(min=1)
    return var


def masked_whiten(
    values: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8
) -> torch.Tensor:
    """(x - mean) / sqrt(var + eps) with mean and unbiased var over the masked entries.

    With ``shift_mean=False`` the mean is added back (only the scale changes), as in TRL/OpenAI's
    PPO. Masked-out positions are returned as 0.
    """
    mean = masked_mean(values, mask)
    var = masked_var(values, mask)
    whitened = (values - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        whitened = whitened + mean
    return whitened * mask.to(values.dtype)


def entropy_from_logits(logits: torch.Tensor) -> torch.Tensor:
    """Entropy of softmax(logits) over the last dim: H = logsumexp(l) - sum softmax(l) * l. [..., V] -> [...].

    Computed in float32 (at least).
    """
    logits = logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits
    logz = torch.logsumexp(logits, dim=-1)
    probs = torch.softmax(logits, dim=-1)
    return logz - (probs * logits).sum(-1)


def kl_penalty(logps: torch.Tensor, ref_logps: torch.Tensor, kind: str = "k1") -> torch.Tensor:
    """Per-token estimate of KL(pi || pi_ref) from sampled tokens (Schulman, "Approximating KL
    divergence", 2020). With d = logps - ref_logps:

    ``k1``  d                          (unbiased, can be negative)
    ``k2``  d^2 / 2                    (biased, low variance)
    ``k3``  exp(-d) - (-d) - 1 = exp(ref - logp) - (ref - logp) - 1   (unbiased, >= 0; GRPO's)
    ``abs`` |d|
    """
    d = logps - ref_logps
    if kind == "k1":
        return d
    if kind == "k2":
        return 0.5 * d**2
    if kind == "k3":
        return torch.exp(-d) + d - 1.0
    if kind == "abs":
        return d.abs()
    raise ValueError(f"unknown KL estimator {kind!r}; expected one of {', '.join(KL_KINDS)}")


# ----------------------------------------------------------------------------------------------
# advantages
# ----------------------------------------------------------------------------------------------
def _grouped(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be a flat [N] tensor, got shape {list(rewards.shape)}")
    if group_size < 1 or rewards.numel() % group_size != 0:
        raise ValueError(
            f"number of rewards ({rewards.numel()}) must be a positive multiple of group_size ({group_size})"
        )
    return rewards.view(-1, group_size)


def group_advantages(rewards: torch.Tensor, group_size: int, scale: bool = True) -> torch.Tensor:
    """GRPO group-relative advantages (Shao et al., 2024, DeepSeekMath, arXiv:2402.03300), [N] -> [N].

    ``rewards`` [N] is ordered group by group: entries ``k*G .. k*G+G-1`` are the G = ``group_size``
    completions of prompt k. A_i = r_i - mean(group); with ``scale`` divided by (std(group) + 1e-4).
    The std is the *unbiased* one (Bessel's correction, ``torch.std`` default), as in TRL. A group of
    one has std 0 by convention (its advantage is 0). ``scale=False`` gives Dr. GRPO's
    unscaled advantages (Liu et al., 2025, arXiv:2503.20783).
    """
    grouped = _grouped(rewards, group_size)
    centred = grouped - grouped.mean(dim=1, keepdim=True)
    if scale:
        if group_size > 1:
            std = grouped.std(dim=1, keepdim=True)
        else:
            std = torch.zeros_like(grouped)
        centred = centred / (std + 1e-4)
    return centred.reshape(-1)


def rloo_advantages(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """RLOO leave-one-out advantages (Ahmadian et al., 2024, arXiv:2402.14740), [N] -> [N].

    A_i = r_i - (sum of the other G - 1 rewards in the group) / (G - 1) = G / (G - 1) * (r_i - mean).
    Same group-by-group ordering as :func:`group_advantages`; needs ``group_size`` >= 2.
    """
    if group_size < 2:
        raise ValueError(f"RLOO needs group_size >= 2 (a leave-one-out baseline), got {group_size}")
    grouped = _grouped(rewards, group_size)
    baseline = (grouped.sum(dim=1, keepdim=True) - grouped) / (group_size - 1)
    return (grouped - baseline).reshape(-1)


def reinforce_pp_advantages(
    rewards: torch.Tensor, group_size: int | None = None, eps: float = 1e-8
) -> torch.Tensor:
    """REINFORCE++ advantages (Hu, 2025, arXiv:2501.03262) for sequence-level rewards, [N] -> [N].

    Global batch normalisation instead of GRPO's per-group std: A = (x - mean(x)) / (std(x) + eps)
    over the whole batch (unbiased std), where x = r, or with ``group_size`` given, x = r - group mean
    ("REINFORCE++-baseline"). This is the outcome-reward form: the KL penalty of the paper is kept
    out of the reward here (put it in the loss via ``beta``), so the discounted return of each token
    equals the sequence reward and the advantage is shared by all tokens of a sequence.
    """
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be a flat [N] tensor, got shape {list(rewards.shape)}")
    x = rewards
    if group_size is not None:
        grouped = _grouped(rewards, group_size)
        x = (grouped - grouped.mean(dim=1, keepdim=True)).reshape(-1)
    if x.numel() < 2:
        return x - x.mean()
    return (x - x.mean()) / (x.std() + eps)


def gae(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0, lam: float = 0.95
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al., 2016, arXiv:1506.02438). All tensors [B, T].

    delta_t = r_t + gamma * V_{t+1} - V_t,   A_t = delta_t + gamma * lam * A_{t+1},   returns = A + V.

    ``mask`` marks real tokens. A masked (padding) position gets advantage 0 and is a boundary: it
    contributes neither its value V_{t+1} nor its advantage A_{t+1} to the position before it, so
    the last real token of a right-padded sequence bootstraps from 0 (the episode ends there).
    Rewards at masked positions are ignored. ``returns`` = advantages + values everywhere (so equal to
    the value at masked positions; mask them in the value loss). No gradient flows (computed under
    ``torch.no_grad`` on detached inputs).
    """
    if not (rewards.shape == values.shape == mask.shape) or rewards.dim() != 2:
        raise ValueError(
            f"rewards, values and mask must all be [B, T]; got {list(rewards.shape)}, "
            f"{list(values.shape)}, {list(mask.shape)}"
        )
    with torch.no_grad():
        values = values.detach()
        m = mask.to(values.dtype)
        rewards = rewards.detach().to(values.dtype) * m
        T = rewards.shape[1]
        advantages = torch.zeros_like(values)
        next_adv = torch.zeros_like(values[:, 0])
        next_value = torch.zeros_like(values[:, 0])
        for t in reversed(range(T)):
            delta = rewards[:, t] + gamma * next_value - values[:, t]
            adv_t = (delta + gamma * lam * next_adv) * m[:, t]
            advantages[:, t] = adv_t
            next_adv = adv_t
            next_value = values[:, t] * m[:, t]
        returns = advantages + values
    return advantages, returns


# ----------------------------------------------------------------------------------------------
# GRPO family
# ----------------------------------------------------------------------------------------------
def _aggregate(per_token: torch.Tensor, mask: torch.Tensor, loss_type: str) -> torch.Tensor:
    if loss_type == "grpo":
        per_seq = (per_token * mask).sum(-1) / mask.sum(-1).clamp(min=1)
        return per_seq.mean()
    if loss_type in ("dapo", "bnpo"):
        return (per_token * mask).sum() / mask.sum().clamp(min=1)
    if loss_type == "dr_grpo":
        return (per_token * mask).sum() / (mask.shape[0] * mask.shape[1])
    raise ValueError(f"unknown loss_type {loss_type!r}; expected one of {', '.join(GRPO_LOSS_TYPES)}")


def grpo_loss_with_stats(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    ref_logps: torch.Tensor | None = None,
    beta: float = 0.0,
    eps_low: float = 0.2,
    eps_high: float = 0.2,
    loss_type: str = "dapo",
    token_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """:func:`grpo_loss` plus detached statistics (each a 0-dim tensor, token-mean over ``mask``):

    ``clip_ratio/low_mean``  fraction of tokens with A < 0 and rho < 1 - eps_low (clipped below)
    ``clip_ratio/high_mean`` fraction of tokens with A > 0 and rho > 1 + eps_high (clipped above)
    ``clip_ratio``           fraction of tokens where the clip was active (either of the two)
    ``kl``                   mean k3 KL estimate (only when ``ref_logps`` is given, even with beta = 0)

    ``token_weights`` [B, T] (optional, detached): each token's clipped surrogate is multiplied by its
    weight before the KL term is added (the truncated importance-sampling correction of a rollout
    engine's mismatch, :func:`alignkit.losses.truncated_is_weights`).
    """
    if logps.dim() != 2 or logps.shape != old_logps.shape or logps.shape != mask.shape:
        raise ValueError(
            f"logps, old_logps and mask must all be [B, T]; got {list(logps.shape)}, "
            f"{list(old_logps.shape)}, {list(mask.shape)}"
        )
    if advantages.dim() == 1:
        if advantages.shape[0] != logps.shape[0]:
            raise ValueError(f"advantages [B] has {advantages.shape[0]} entries for B={logps.shape[0]}")
        advantages = advantages.unsqueeze(1)
    elif advantages.shape != logps.shape:
        raise ValueError(f"advantages must be [B] or [B, T]; got {list(advantages.shape)}")
    if loss_type not in GRPO_LOSS_TYPES:
        raise ValueError(f"unknown loss_type {loss_type!r}; expected one of {', '.join(GRPO_LOSS_TYPES)}")

    mask_f = mask.to(logps.dtype)
    advantages = advantages.detach().to(logps.dtype)
    ratio = torch.exp(logps - old_logps.detach())
    clipped = torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high)
    per_token = -torch.min(ratio * advantages, clipped * advantages)
    if token_weights is not None:
        per_token = per_token * token_weights.detach().to(logps.dtype)
    kl = None
    if ref_logps is not None:
        kl = kl_penalty(logps, ref_logps.detach(), "k3")
        if beta != 0.0:
            per_token = per_token + beta * kl
    loss = _aggregate(per_token, mask_f, loss_type)

    with torch.no_grad():
        low = ((ratio < 1.0 - eps_low) & (advantages < 0)).to(logps.dtype)
        high = ((ratio > 1.0 + eps_high) & (advantages > 0)).to(logps.dtype)
        stats = {
            "clip_ratio/low_mean": masked_mean(low, mask_f),
            "clip_ratio/high_mean": masked_mean(high, mask_f),
            "clip_ratio": masked_mean(torch.maximum(low, high), mask_f),
        }
        if kl is not None:
            stats["kl"] = masked_mean(kl.detach(), mask_f)
    return loss, stats


def grpo_loss(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    ref_logps: torch.Tensor | None = None,
    beta: float = 0.0,
    eps_low: float = 0.2,
    eps_high: float = 0.2,
    loss_type: str = "dapo",
) -> torch.Tensor:
    """GRPO-family clipped surrogate loss, a scalar.

    ``logps``, ``old_logps`` (the sampling policy's, detached), ``ref_logps`` and ``mask`` are [B, T];
    ``advantages`` is [B] (one per sequence, broadcast over its tokens) or [B, T]. Per token, with
    rho = exp(logps - old_logps):

        l_t = -min(rho * A, clip(rho, 1 - eps_low, 1 + eps_high) * A)  +  beta * k3_t,
        k3_t = exp(ref - logp) - (ref - logp) - 1

    (the k3 term only when beta > 0 and ``ref_logps`` is given). Aggregation per ``loss_type``:

    ``grpo``     mean over each sequence's tokens, then over sequences (Shao et al., 2024, arXiv:2402.03300)
    ``dapo``     sum over all tokens / number of tokens (Yu et al., 2025, arXiv:2503.14476; also ``bnpo``)
    ``dr_grpo``  sum over all tokens / (B * T), T the padded length (Liu et al., 2025, arXiv:2503.20783)

    Asymmetric clipping (eps_high > eps_low) is DAPO's "clip-higher". See
    :func:`grpo_loss_with_stats` for clip fractions and the KL metric.
    """
    return grpo_loss_with_stats(
        logps, old_logps, advantages, mask, ref_logps, beta, eps_low, eps_high, loss_type
    )[0]


# ----------------------------------------------------------------------------------------------
# PPO
# ----------------------------------------------------------------------------------------------
def ppo_policy_loss(
    logps: torch.Tensor,
    old_logps: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_eps: float = 0.2,
    clip_eps_high: float | None = None,
    token_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO clipped surrogate (Schulman et al., 2017, arXiv:1707.06347). Inputs [B, T] (advantages [B, T] or [B]).

    rho = exp(logps - old_logps);  loss = masked_mean(w * max(-A * rho, -A * clip(rho, 1 - eps, 1 + eps_high)))
    with eps_high = ``clip_eps_high`` or ``clip_eps`` and w = ``token_weights`` [B, T] (detached; default
    1: the truncated importance weights of :func:`alignkit.losses.truncated_is_weights`). Returns (loss
    scalar, clip fraction scalar = detached masked mean of [clipped term > unclipped term]).
    """
    eps_high = clip_eps if clip_eps_high is None else clip_eps_high
    advantages = advantages.detach()
    if advantages.dim() == 1:  # one advantage per sequence
        advantages = advantages.unsqueeze(1)
    ratio = torch.exp(logps - old_logps.detach())
    pg1 = -advantages * ratio
    pg2 = -advantages * torch.clamp(ratio, 1.0 - clip_eps, 1.0 + eps_high)
    per_token = torch.maximum(pg1, pg2)
    if token_weights is not None:
        per_token = per_token * token_weights.detach().to(per_token.dtype)
    loss = masked_mean(per_token, mask)
    clipfrac = masked_mean((pg2 > pg1).to(logps.dtype), mask).detach()
    return loss, clipfrac


def ppo_value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip_eps: float = 0.2,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Clipped value loss, all inputs [B, T]:

        0.5 * masked_mean(max((v - R)^2, (clip(v, v_old - c, v_old + c) - R)^2))

    Returns (loss scalar, value clip fraction = detached masked mean of [clipped term > unclipped]).
    """
    old_values = old_values.detach()
    returns = returns.detach()
    v_clipped = old_values + torch.clamp(values - old_values, -clip_eps, clip_eps)
    unclipped = (values - returns) ** 2
    clipped = (v_clipped - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(unclipped, clipped), mask)
    clipfrac = masked_mean((clipped > unclipped).to(values.dtype), mask).detach()
    return loss, clipfrac


def adaptive_kl_update(kl_coef: float, current_kl: float, target_kl: float, n_steps: int, horizon: int,
                       clip: float = 0.2) -> float:
    """One update of the adaptive KL controller (Ziegler et al. 2019, "Fine-Tuning Language Models from
    Human Preferences"): ``e = clip(current_kl / target_kl - 1, -clip, clip)``, new coefficient
    ``kl_coef * (1 + e * n_steps / horizon)``. Scalars in, scalar out."""
    error = min(max(current_kl / target_kl - 1.0, -clip), clip)
    return kl_coef * (1.0 + error * n_steps / horizon)


def kl_shaped_rewards(scores: torch.Tensor, logps: torch.Tensor, ref_logps: torch.Tensor, mask: torch.Tensor,
                      kl_coef: float, kind: str = "k1") -> tuple[torch.Tensor, torch.Tensor]:
    """PPO-RLHF per-token rewards (Ziegler et al. 2019; Ouyang et al. 2022): ``r_t = -kl_coef * KL_t``
    on every response token, plus the sequence's score at its last response token.

    ``scores``: [B]; ``logps``, ``ref_logps``, ``mask``: [B, T] (mask 1 on response tokens, left-aligned).
    ``KL_t`` is :func:`kl_penalty` of kind ``kind`` (zero off the mask). Returns ``(rewards, KL)``, both [B, T].
    """
    m = mask.to(logps.dtype)
    kl = kl_penalty(logps, ref_logps, kind) * m
    rewards = -kl_coef * kl
    last = (mask.sum(1) - 1).clamp(min=0)
    rewards[torch.arange(mask.shape[0], device=mask.device), last] += scores.to(rewards.dtype)
    return rewards, kl
