"""SPPO: the square loss and the win probabilities by hand, and an ``alignkit sppo`` run."""

from __future__ import annotations

import json
import math

import pytest
import torch

from alignkit.cli import main
from alignkit.engine.logging import read_metrics
from alignkit.losses import bt_win_probabilities, sppo_loss
from tests.helpers import write_jsonl


def _sig(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_win_probabilities_by_hand():
    rewards = torch.tensor([1.0, 0.0, 0.0, 2.0, 2.0, 2.0])
    p = bt_win_probabilities(rewards, 3).tolist()
    assert p[0] == pytest.approx(_sig(1.0))  # beats both others with sigma(1)
    assert p[1] == pytest.approx((_sig(-1.0) + 0.5) / 2)
    assert p[3:] == pytest.approx([0.5, 0.5, 0.5])
    p2 = bt_win_probabilities(torch.tensor([1.0, 0.0]), 2, scale=3.0).tolist()
    assert p2 == pytest.approx([_sig(3.0), _sig(-3.0)])
    with pytest.raises(ValueError):
        bt_win_probabilities(rewards, 4)


def test_sppo_loss_by_hand():
    logps = torch.tensor([-3.0, -5.0], requires_grad=True)
    old = torch.tensor([-3.5, -4.0])
    win = torch.tensor([0.8, 0.25])
    loss = sppo_loss(logps, old, win, eta=2.0)
    # (0.5 - 2 * 0.3)^2 = 0.01 ; (-1 - 2 * (-0.25))^2 = 0.25
    assert loss.tolist() == pytest.approx([0.01, 0.25])
    loss.sum().backward()
    assert logps.grad.tolist() == pytest.approx([2 * (0.5 - 0.6), 2 * (-1.0 + 0.5)])


def test_sppo_run_first_loss_is_the_win_probability_target(tmp_path, monkeypatch):
    monkeypatch.setattr("alignkit.cli.write_run_report", lambda out: None)
    data = write_jsonl(tmp_path / "p.jsonl", [{"prompt": f"Count to {i}:"} for i in range(4)])
    out = tmp_path / "run"
    eta = 3.0
    assert main(["sppo", "model=tiny-random", f"data={data}", f"output_dir={out}", "max_steps=2", "batch_size=2",
                 "num_generations=3", "max_new_tokens=8", "max_length=64", f"eta={eta}",
                 "reward=tokens.py:even_token_fraction", "log_completions_steps=1"]) == 0
    first = read_metrics(out)[0]
    rows = [json.loads(x) for x in (out / "completions.jsonl").read_text().splitlines()]
    rows = [r for r in rows if r["step"] == 1]
    rewards = torch.tensor([r["reward"] for r in rows])
    win = bt_win_probabilities(rewards, 3)
    # at the rollout theta = theta_t, so the loss is (eta (P - 1/2))^2 averaged over answers
    assert first["loss"] == pytest.approx(float(((eta * (win - 0.5)) ** 2).mean()), rel=1e-4, abs=1e-6)
    assert first["log_ratio"] == pytest.approx(0.0, abs=1e-6) and first["loss"] > 0.01
    assert (out / "final").is_dir() and (out / "config.yaml").is_file()
    # several steps per rollout: the second step of a block trains on the stored rollout
    out2 = tmp_path / "run2"
    assert main(["sppo", "model=tiny-random", f"data={data}", f"output_dir={out2}", "max_steps=2", "batch_size=2",
                 "num_generations=2", "max_new_tokens=8", "max_length=64", "num_iterations=2", "lr=1e-2",
                 "reward=tokens.py:even_token_fraction"]) == 0
    m = read_metrics(out2)
    assert m[0]["reward"] == m[1]["reward"]


def test_sppo_needs_a_reward(tmp_path, capsys):
    data = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "x"}])
    assert main(["sppo", "model=tiny-random", f"data={data}", f"output_dir={tmp_path / 'r'}"]) != 0
    assert "needs a preference signal" in capsys.readouterr().err


def test_win_rates_from_pairwise_verdicts_by_hand():
    from alignkit.methods.sppo import PairwiseWinRate, group_pairs, win_rates

    assert group_pairs(6, 3) == [(0, 1), (0, 2), (1, 2), (3, 4), (3, 5), (4, 5)]
    # group 1: 0 beats 1, ties 2, 2 beats 1 -> 0: 1.5/2, 1: 0, 2: 1.5/2; group 2: 3 beats both, 4 beats 5
    assert win_rates(["A", "tie", "B", "A", "A", "A"], 3) == [0.75, 0.0, 0.75, 1.0, 0.5, 0.0]
    with pytest.raises(ValueError):
        win_rates(["A", "B"], 3)

    class LongerWins:
        def compare(self, prompts, a, b):
            return ["A" if len(x) > len(y) else "B" if len(y) > len(x) else "tie" for x, y in zip(a, b)]

    source = PairwiseWinRate(LongerWins(), 2)
    assert source(["p"] * 4, ["aa", "a", [{"role": "assistant", "content": "x"}], "y"]) == [1.0, 0.0, 0.5, 0.5]


def test_sppo_with_a_pairwise_judge(tmp_path, monkeypatch):
    monkeypatch.setattr("alignkit.cli.write_run_report", lambda out: None)
    data = write_jsonl(tmp_path / "p.jsonl", [{"prompt": f"Count to {i}:"} for i in range(2)])
    judge = tmp_path / "judge_len.py"
    judge.write_text("def length(prompts, completions, **kw):\n    return [float(len(c)) for c in completions]\n")
    out = tmp_path / "run"
    assert main(["sppo", "model=tiny-random", f"data={data}", f"output_dir={out}", "max_steps=1", "batch_size=2",
                 "num_generations=3", "max_new_tokens=8", "max_length=64", f"judge={judge}:length",
                 "log_completions_steps=1"]) == 0
    rows = [json.loads(x) for x in (out / "completions.jsonl").read_text().splitlines()]
    win = torch.tensor([r["reward"] for r in rows])  # the win rates themselves
    assert set(win.tolist()) <= {0.0, 0.25, 0.5, 0.75, 1.0} and win.view(2, 3).mean(1).tolist() == [0.5, 0.5]
    assert len(set(win.tolist())) > 1  # the longer answer wins: not all ties
    assert read_metrics(out)[0]["loss"] == pytest.approx(float(((win - 0.5) ** 2).mean()), rel=1e-4, abs=1e-6)
    assert main(["sppo", "model=tiny-random", f"data={data}", f"output_dir={tmp_path / 'r'}", "reward=math:answer",
                 f"judge={judge}:length"]) == 2
