"""Rollout/training mismatch: the log-prob gap and the truncated importance-sampling correction.

When completions are sampled by another engine (vLLM, a server, a bf16 copy), the sampler's per-token
log-probs ``log p_rollout`` differ from the training forward's ``log p_train`` (kernels, dtype, or an
adapter that never reached the server). Two pure functions over ``[B, T]`` tensors with a completion
``mask`` [B, T] (1 on sampled tokens):

* :func:`logprob_gap`: mean and max of ``|log p_rollout - log p_train|`` over sampled tokens, the
  ``rollout/logprob_gap`` metric (a gap far above float noise right after a weight sync means the
  server samples from other weights);
* :func:`truncated_is_weights`: per-token weights ``w = min(exp(log p_train - log p_rollout), C)``
  (detached), the truncated importance-sampling correction of Yao et al., "Your Efficient RL
  Framework Secretly Brings You Off-Policy RL Training" (2025): the policy-gradient loss of each
  sampled token is multiplied by ``w`` so that the update is (up to the cap ``C``) the on-policy one
  for the training engine's distribution, although the tokens came from the rollout engine's.
"""

from __future__ import annotations

import torch


def logprob_gap(rollout_logps: torch.Tensor, train_logps: torch.Tensor,
                mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, max) of ``|rollout_logps - train_logps|`` over the tokens where ``mask`` is 1 (scalars;
    both 0 when no token is sampled). All inputs [B, T]; no gradient flows."""
    gap = (rollout_logps.detach().float() - train_logps.detach().float()).abs() * mask
    n = mask.sum()
    if n == 0:
        zero = gap.new_zeros(())
        return zero, zero
    return gap.sum() / n, gap.max()


def truncated_is_weights(train_logps: torch.Tensor, rollout_logps: torch.Tensor, mask: torch.Tensor,
                         cap: float) -> torch.Tensor:
    """Truncated importance weights ``min(exp(train - rollout), cap)`` [B, T], 0 where ``mask`` is 0,
    detached (they reweight the loss; no gradient flows through them). ``cap`` > 0."""
    if cap <= 0:
        raise ValueError(f"the importance-weight cap must be > 0, got {cap}")
    ratio = torch.exp(train_logps.detach().float() - rollout_logps.detach().float())
    return ratio.clamp(max=cap) * mask
