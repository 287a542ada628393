"""Learning-rate schedules with warmup (as a LambdaLR multiplier)."""

from __future__ import annotations

import math

import torch


def lr_multiplier(step: int, total_steps: int, warmup_steps: int, kind: str) -> float:
    """Multiplier of the peak LR at optimizer step ``step`` (0-based).

    warmup: linear from 1/(warmup+1) up to 1; then ``linear`` decays to 0 at ``total_steps``,
    ``cosine`` follows 0.5·(1 + cos(π·progress)), ``constant`` stays at 1.
    """
    if step < warmup_steps:
        return (step + 1) / (warmup_steps + 1)
    if kind == "constant":
        return 1.0
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    progress = min(max(progress, 0.0), 1.0)
    if kind == "linear":
        return 1.0 - progress
    if kind == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    raise ValueError(f"unknown scheduler {kind!r}")


def build_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int,
                    kind: str) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_multiplier(s, total_steps, warmup_steps, kind)
    )
