"""Pairwise preference losses: DPO and its family (hinge, IPO, robust DPO), SimPO and ORPO.

Every function here is pure: tensors in, tensors out, no model and no config. Inputs are the
per-sequence log-probabilities of the *response* tokens, summed over those tokens:

    chosen_logps, rejected_logps          [B]  policy  log pi(y_c | x), log pi(y_r | x)
    ref_chosen_logps, ref_rejected_logps  [B]  frozen reference policy, same sums
    chosen_lengths, rejected_lengths      [B]  number of response tokens summed over (|c|, |r|)

and each loss returns the per-example loss, shape [B] (the caller reduces).

Notation: c, r are the policy sums; c_ref, r_ref the reference sums; |c|, |r| the lengths;
h = (c - c_ref) - (r - r_ref) is the difference of the two log-ratios; sigma is the logistic
function and epsilon = ``label_smoothing``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

PREFERENCE_LOSSES: tuple[str, ...] = ("sigmoid", "hinge", "ipo", "robust", "simpo", "orpo")
"""Names accepted by :func:`preference_loss` (and by ``alignkit dpo loss=...``)."""

REFERENCE_FREE: tuple[str, ...] = ("simpo", "orpo")
"""Losses that need no reference model (``ref_*_logps`` are ignored)."""

NEEDS_LENGTHS: tuple[str, ...] = ("ipo", "simpo", "orpo")
"""Losses that use per-token averages and therefore need ``chosen_lengths``/``rejected_lengths``."""


def _check_same_shape(**tensors: torch.Tensor | None) -> None:
    shapes = {k: tuple(v.shape) for k, v in tensors.items() if v is not None}
    if len(set(shapes.values())) > 1:
        detail = ", ".join(f"{k}={list(s)}" for k, s in shapes.items())
        raise ValueError(f"preference loss inputs must all have the same shape [B]; got {detail}")


def _per_token(logps: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """logps / lengths, with lengths clamped to >= 1 so that an empty response cannot divide by 0."""
    return logps / lengths.to(logps.dtype).clamp(min=1)


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x < 0, computed stably (Maechler 2012).

    Uses log(-expm1(x)) for x > -ln 2 and log1p(-exp(x)) otherwise; both branches are accurate in
    their range. x is clamped just below 0 (by the dtype's machine epsilon) so that an average
    log-probability of exactly 0 gives a large finite negative value instead of -inf / NaN grads.
    """
    x = x.clamp(max=-torch.finfo(x.dtype).eps)
    near_zero = x > -math.log(2.0)
    # evaluate each branch on inputs where it is safe, so the unused branch never produces NaN grads
    a = torch.log(-torch.expm1(torch.where(near_zero, x, torch.full_like(x, -1.0))))
    b = torch.log1p(-torch.exp(torch.where(near_zero, torch.full_like(x, -1.0), x)))
    return torch.where(near_zero, a, b)


def preference_loss(
    name: str,
    chosen_logps: torch.Tensor,
    rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor | None = None,
    ref_rejected_logps: torch.Tensor | None = None,
    chosen_lengths: torch.Tensor | None = None,
    rejected_lengths: torch.Tensor | None = None,
    beta: float = 0.1,
    label_smoothing: float = 0.0,
    gamma: float = 0.0,
    lam: float = 0.1,
) -> torch.Tensor:
    """Per-example pairwise preference loss, shape [B].

    All tensor inputs have shape [B]: summed response log-probs (policy and reference) and response
    token counts. With h = (c - c_ref) - (r - r_ref), epsilon = ``label_smoothing``:

    ``sigmoid``  DPO (Rafailov et al., 2023, arXiv:2305.18290); with epsilon > 0 the "conservative
                 DPO" label smoothing (Mitchell, 2023):
                 -(1 - eps) * log sigma(beta * h) - eps * log sigma(-beta * h)
    ``hinge``    SLiC-style hinge (Zhao et al., 2023, arXiv:2305.10425): relu(1 - beta * h)
    ``ipo``      IPO (Azar et al., 2023, arXiv:2310.12036): (h_bar - 1 / (2 * beta))^2 where
                 h_bar = (c - c_ref) / |c| - (r - r_ref) / |r| uses per-token averaged log-ratios
    ``robust``   robust DPO (Chowdhury et al., 2024, arXiv:2403.00409), unbiased under label noise
                 epsilon (requires 0 <= eps < 0.5):
                 ((1 - eps) * (-log sigma(beta * h)) + eps * log sigma(-beta * h)) / (1 - 2 * eps)
    ``simpo``    SimPO (Meng et al., 2024, arXiv:2405.14734), reference free:
                 -log sigma(beta * (c / |c| - r / |r|) - gamma)
    ``orpo``     ORPO (Hong et al., 2024, arXiv:2403.07691), reference free, with c_bar = c / |c|,
                 r_bar = r / |r| and log_odds = (c_bar - r_bar) - (log(1 - exp(c_bar)) - log(1 - exp(r_bar))):
                 -c_bar - lam * log sigma(log_odds)
                 (the first term is the per-token averaged NLL of the chosen response).

    ``label_smoothing`` is used by ``sigmoid`` and ``robust`` only; ``gamma`` by ``simpo`` only;
    ``lam`` by ``orpo`` only; ``beta`` by all but ``orpo``. Reference log-probs are required by the
    reference-based losses (all but ``simpo`` and ``orpo``), lengths by ``ipo``, ``simpo`` and ``orpo``.
    Lengths are clamped to >= 1. Raises ``ValueError`` on an unknown name, missing inputs or
    inconsistent shapes.
    """
    if name not in PREFERENCE_LOSSES:
        raise ValueError(f"unknown preference loss {name!r}; expected one of {', '.join(PREFERENCE_LOSSES)}")
    if name not in REFERENCE_FREE and (ref_chosen_logps is None or ref_rejected_logps is None):
        raise ValueError(
            f"preference loss {name!r} needs ref_chosen_logps and ref_rejected_logps (a reference model); "
            f"only {' and '.join(REFERENCE_FREE)} are reference free"
        )
    if name in NEEDS_LENGTHS and (chosen_lengths is None or rejected_lengths is None):
        raise ValueError(
            f"preference loss {name!r} averages per token and needs chosen_lengths and rejected_lengths"
        )
    if name in ("sigmoid", "robust") and not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"label_smoothing must be in [0, 0.5), got {label_smoothing}")
    if name == "ipo" and beta <= 0:
        raise ValueError(f"ipo needs beta > 0 (its target margin is 1 / (2 * beta)), got {beta}")
    _check_same_shape(
        chosen_logps=chosen_logps,
        rejected_logps=rejected_logps,
        ref_chosen_logps=ref_chosen_logps if name not in REFERENCE_FREE else None,
        ref_rejected_logps=ref_rejected_logps if name not in REFERENCE_FREE else None,
        chosen_lengths=chosen_lengths if name in NEEDS_LENGTHS else None,
        rejected_lengths=rejected_lengths if name in NEEDS_LENGTHS else None,
    )

    if name == "simpo":
        margin = _per_token(chosen_logps, chosen_lengths) - _per_token(rejected_logps, rejected_lengths)
        return -F.logsigmoid(beta * margin - gamma)

    if name == "orpo":
        c_bar = _per_token(chosen_logps, chosen_lengths)
        r_bar = _per_token(rejected_logps, rejected_lengths)
        log_odds = (c_bar - r_bar) - (log1mexp(c_bar) - log1mexp(r_bar))
        return -c_bar - lam * F.logsigmoid(log_odds)

    if name == "ipo":
        h_bar = _per_token(chosen_logps - ref_chosen_logps, chosen_lengths) - _per_token(
            rejected_logps - ref_rejected_logps, rejected_lengths
        )
        return (h_bar - 1.0 / (2.0 * beta)) ** 2

    h = (chosen_logps - ref_chosen_logps) - (rejected_logps - ref_rejected_logps)
    eps = label_smoothing
    if name == "sigmoid":
        return -(1.0 - eps) * F.logsigmoid(beta * h) - eps * F.logsigmoid(-beta * h)
    if name == "hinge":
        return torch.relu(1.0 - beta * h)
    # robust
    return ((1.0 - eps) * -F.logsigmoid(beta * h) + eps * F.logsigmoid(-beta * h)) / (1.0 - 2.0 * eps)


def preference_rewards(
    chosen_logps: torch.Tensor,
    rejected_logps: torch.Tensor,
    ref_chosen_logps: torch.Tensor,
    ref_rejected_logps: torch.Tensor,
    beta: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Implicit DPO rewards for metrics: (beta * (c - c_ref), beta * (r - r_ref)), each [B], detached.

    The metrics ``rewards/chosen``, ``rewards/rejected`` are their means, ``rewards/margins`` the
    mean of the difference and ``rewards/accuracies`` the fraction with chosen > rejected (as TRL).
    For the reference-free losses pass the policy sums with zero references (SimPO/ORPO report
    beta * log-prob averages instead; that choice is the caller's).
    """
    chosen = beta * (chosen_logps.detach() - ref_chosen_logps.detach())
    rejected = beta * (rejected_logps.detach() - ref_rejected_logps.detach())
    return chosen, rejected


def nll_term(chosen_logps: torch.Tensor, chosen_lengths: torch.Tensor) -> torch.Tensor:
    """Per-token averaged negative log-likelihood of the chosen response, shape [B]: -c / |c|.

    RPO (iterative reasoning preference optimisation, Pang et al., 2024, arXiv:2404.19733) is DPO
    plus this term:  ``loss = preference_loss("sigmoid", ...) + rpo_alpha * nll_term(c, |c|)``.
    (TRL's ``rpo_alpha``; Pang et al. use rpo_alpha = 1.) Lengths are clamped to >= 1.
    """
    return -_per_token(chosen_logps, chosen_lengths)
