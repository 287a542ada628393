"""A linear probe of a frozen model's hidden states: does layer L tell a harmful request from its look-alike?

Used by ``scripts/probe_safety_intent.py`` (README "Safety alignment", attempts of 2026-12-06). The probe is an
L2-regularised logistic regression on standardised features,

    p(harmful | h) = σ(wᵀ z + b),  z = (h − μ) / σ_h,  minimising  mean BCE + l2 · ‖w‖²,

with μ, σ_h the per-feature mean and standard deviation of the fitting rows (solved by L-BFGS).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class LinearProbe:
    weight: torch.Tensor  # [H]
    bias: float
    mean: torch.Tensor  # [H]
    std: torch.Tensor  # [H]

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        """[N, H] -> [N] logits of the positive class."""
        return ((h - self.mean) / self.std) @ self.weight + self.bias

    def predict(self, h: torch.Tensor) -> torch.Tensor:
        """[N, H] -> [N] bool: the positive class (logit > 0)."""
        return self.logits(h) > 0


def fit_probe(h: torch.Tensor, y: torch.Tensor, l2: float = 0.01, max_iter: int = 200) -> LinearProbe:
    """Fit the probe on features ``h`` [N, H] and 0/1 labels ``y`` [N] (module docstring)."""
    h, y = h.float(), y.float()
    mean, std = h.mean(0), h.std(0) + 1e-4
    z = (h - mean) / std
    w = torch.zeros(h.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=max_iter)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(z @ w + b, y) + l2 * w.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return LinearProbe(w.detach(), float(b.detach()), mean, std)


def choose_layer(features: torch.Tensor, y: torch.Tensor, fit_rows: torch.Tensor, val_rows: torch.Tensor,
                 fit: Callable[[torch.Tensor, torch.Tensor], LinearProbe] = fit_probe) -> tuple[int, list[float]]:
    """The layer whose probe, fitted on ``fit_rows``, is most accurate on ``val_rows``; ties go to the deeper
    layer. ``features`` [N, layers, H]; returns (layer, validation accuracy of every layer)."""
    accuracies = []
    for layer in range(features.shape[1]):
        probe = fit(features[fit_rows, layer], y[fit_rows])
        accuracies.append((probe.predict(features[val_rows, layer]) == y[val_rows].bool()).float().mean().item())
    best = max(range(len(accuracies)), key=lambda i: (accuracies[i], i))
    return best, accuracies


def last_token_states(model: torch.nn.Module, prompt_ids: Sequence[Sequence[int]]) -> torch.Tensor:
    """[N, layers + 1, H] float32: every layer's hidden state at each prompt's last token (layer 0 is the
    embedding output), one prompt at a time (no padding)."""
    out = []
    with torch.no_grad():
        for ids in prompt_ids:
            hidden = model(input_ids=torch.tensor([list(ids)]), output_hidden_states=True).hidden_states
            out.append(torch.stack([h[0, -1].float() for h in hidden]))
    return torch.stack(out)
