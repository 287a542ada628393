"""The linear probe of hidden states (alignkit.safety.probe), checked by hand."""

from __future__ import annotations

import torch

from alignkit.models import load_model
from alignkit.safety.probe import choose_layer, fit_probe, last_token_states


def test_fit_probe_on_symmetric_points_meets_the_optimality_condition():
    h = torch.tensor([[-2.0], [-1.0], [1.0], [2.0]])
    y = torch.tensor([0.0, 0.0, 1.0, 1.0])
    l2 = 0.01
    probe = fit_probe(h, y, l2)
    # standardised by the fitting rows: mean 0, sample std sqrt((4 + 1 + 1 + 4) / 3)
    assert abs(float(probe.mean) - 0.0) < 1e-6
    assert abs(float(probe.std) - (10 / 3) ** 0.5) < 1e-3
    # the points are symmetric about 0, so the bias is 0 and w > 0
    w = float(probe.weight)
    assert abs(probe.bias) < 1e-4 and w > 0
    # first-order condition of mean BCE + l2 w^2, written out: mean((σ(w z) - y) z) + 2 l2 w = 0
    z = [x / (10 / 3) ** 0.5 for x in (-2.0, -1.0, 1.0, 2.0)]
    grad = sum((1 / (1 + torch.exp(torch.tensor(-w * zi))) - yi) * zi for zi, yi in zip(z, [0, 0, 1, 1])) / 4
    assert abs(float(grad) + 2 * l2 * w) < 1e-4
    assert probe.predict(torch.tensor([[-0.5], [0.5]])).tolist() == [False, True]


def test_choose_layer_takes_the_separating_layer_and_the_deeper_of_ties():
    g = torch.Generator().manual_seed(0)
    y = torch.tensor([0.0, 1.0] * 20)
    noise = torch.randn(40, 3, generator=g)
    signal = noise.clone()
    signal[:, 0] += 4 * (2 * y - 1)  # layer 1: feature 0 separates the classes by a wide margin
    features = torch.stack([torch.randn(40, 3, generator=g), signal], dim=1)  # [N, 2 layers, H]
    fit_rows = torch.arange(40) < 30
    layer, acc = choose_layer(features, y, fit_rows, ~fit_rows)
    assert layer == 1 and acc[1] == 1.0 and acc[0] < 1.0
    both = torch.stack([signal, signal], dim=1)
    assert choose_layer(both, y, fit_rows, ~fit_rows)[0] == 1  # a tie goes to the deeper layer


def test_last_token_states_are_each_prompts_own_last_position():
    model = load_model("tiny-random").eval()
    prompts = [[5, 6, 7], [8, 9, 10, 11, 12]]
    states = last_token_states(model, prompts)
    layers = model.config.num_hidden_layers
    assert states.shape == (2, layers + 1, model.config.hidden_size)
    with torch.no_grad():
        direct = model(input_ids=torch.tensor([prompts[1]]), output_hidden_states=True).hidden_states
    assert torch.equal(states[1, layers], direct[layers][0, -1])
    assert not torch.equal(states[0, layers], states[1, layers])
