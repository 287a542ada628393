"""KTO: Kahneman-Tversky optimisation on unpaired (prompt, completion, good/bad) data.

Ethayarajh et al., 2024, "KTO: Model Alignment as Prospect Theoretic Optimization", arXiv:2402.01306.
Pure tensor functions; inputs are per-sequence response log-probs summed over tokens, shape [B].
"""

from __future__ import annotations

import torch


def kto_kl_estimate(kl_logps: torch.Tensor, kl_ref_logps: torch.Tensor) -> torch.Tensor:
    """The KTO reference point z = max(0, mean(kl_logps - kl_ref_logps)), a detached scalar.

    ``kl_logps``/``kl_ref_logps`` [B_kl] are policy/reference log-probs of *mismatched* pairs
    (each prompt with another example's completion); their mean log-ratio estimates
    KL(pi || pi_ref). An empty batch gives z = 0.
    """
    if kl_logps.shape != kl_ref_logps.shape:
        raise ValueError(
            f"kl_logps and kl_ref_logps must have the same shape; got {list(kl_logps.shape)} "
            f"and {list(kl_ref_logps.shape)}"
        )
    if kl_logps.numel() == 0:
        return kl_logps.new_zeros(())
    return (kl_logps.detach() - kl_ref_logps.detach()).mean().clamp(min=0)


def kto_loss(
    logps: torch.Tensor,
    ref_logps: torch.Tensor,
    labels: torch.Tensor,
    kl_logps: torch.Tensor,
    kl_ref_logps: torch.Tensor,
    beta: float = 0.1,
    desirable_weight: float = 1.0,
    undesirable_weight: float = 1.0,
) -> torch.Tensor:
    """Per-example KTO loss, shape [B].

    Inputs: ``logps``, ``ref_logps`` [B] summed response log-probs of policy and reference;
    ``labels`` [B] bool (True = desirable); ``kl_logps``, ``kl_ref_logps`` [B_kl] for the
    reference point (see :func:`kto_kl_estimate`). With Delta = logps - ref_logps and
    z = max(0, mean(kl_logps - kl_ref_logps)) (detached: no gradient flows through z):

        desirable:    w_D * (1 - sigma(beta * (Delta - z)))
        undesirable:  w_U * (1 - sigma(beta * (z - Delta)))

    w_D = ``desirable_weight``, w_U = ``undesirable_weight`` (the paper suggests choosing them so
    that w_D * n_D / (w_U * n_U) lies in [1, 4/3]).
    """
    if logps.shape != ref_logps.shape or logps.shape != labels.shape:
        raise ValueError(
            f"logps, ref_logps and labels must have the same shape [B]; got {list(logps.shape)}, "
            f"{list(ref_logps.shape)}, {list(labels.shape)}"
        )
    z = kto_kl_estimate(kl_logps, kl_ref_logps).to(logps.dtype)
    delta = logps - ref_logps
    desirable = desirable_weight * (1.0 - torch.sigmoid(beta * (delta - z)))
    undesirable = undesirable_weight * (1.0 - torch.sigmoid(beta * (z - delta)))
    return torch.where(labels.bool(), desirable, undesirable)


def kto_rewards(logps: torch.Tensor, ref_logps: torch.Tensor, beta: float) -> torch.Tensor:
    """Implicit rewards beta * (logps - ref_logps), [B], detached (for ``rewards/chosen|rejected`` metrics)."""
    return beta * (logps.detach() - ref_logps.detach())
