"""Rollout guards: the rollout/training log-prob gap and truncated importance weights, by hand."""

from __future__ import annotations

import math

import pytest
import torch

from alignkit.losses import logprob_gap, truncated_is_weights


def test_logprob_gap_mean_and_max_over_sampled_tokens():
    rollout = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, -0.5, -9.0]])
    train = torch.tensor([[-1.5, -2.0, -1.0], [-0.25, -1.5, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])  # the last token is padding
    mean, mx = logprob_gap(rollout, train, mask)
    # |gaps| = 0.5, 0, 2, 0.25, 1 (the masked 9 is ignored): mean 3.75 / 5, max 2
    assert float(mean) == pytest.approx(0.75) and float(mx) == pytest.approx(2.0)
    zero_mean, zero_max = logprob_gap(rollout, train, torch.zeros_like(mask))
    assert float(zero_mean) == 0.0 and float(zero_max) == 0.0


def test_truncated_is_weights_against_hand_values():
    train = torch.tensor([[-1.0, -2.0, -0.5]])
    rollout = torch.tensor([[-1.0, -1.0, -2.5]], requires_grad=True)
    mask = torch.tensor([[1.0, 1.0, 1.0]])
    w = truncated_is_weights(train, rollout, mask, cap=2.0)
    # exp(0) = 1; exp(-1) = 0.367879...; exp(2) = 7.389 -> capped at 2
    assert w.tolist()[0] == pytest.approx([1.0, math.exp(-1.0), 2.0])
    assert not w.requires_grad
    # applied to a token-level policy-gradient loss -A * logp, weighted mean over tokens
    logp = torch.tensor([[-1.0, -2.0, -0.5]], requires_grad=True)
    adv = torch.tensor([[1.0, 1.0, 1.0]])
    loss = (-(adv * logp) * w).sum() / mask.sum()
    loss.backward()
    assert logp.grad.tolist()[0] == pytest.approx([-1 / 3, -math.exp(-1.0) / 3, -2 / 3])
    assert truncated_is_weights(train, rollout, torch.tensor([[1.0, 0.0, 1.0]]), cap=2.0)[0, 1] == 0
    with pytest.raises(ValueError, match="cap must be > 0"):
        truncated_is_weights(train, rollout, mask, cap=0.0)
