"""GRPO family: config, advantage/normalisation plumbing on a stub rollout, and end-to-end runs on tiny-random
(learning, run directory, LoRA + KL reference, dynamic sampling, resume)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from alignkit.cli import main
from alignkit.config import ConfigError, load_config
from alignkit.engine.logging import read_metrics
from alignkit.generation.backends import rollout_from_token_lists
from alignkit.losses import group_advantages, grpo_loss, reinforce_pp_advantages, rloo_advantages
from alignkit.methods import grpo as grpo_module
from alignkit.methods.grpo import GRPO, GRPOConfig
from alignkit.methods.online import collate_prompt_examples
from alignkit.models import build_tiny_random
from tests.helpers import write_jsonl

QUESTIONS = ["What is 2+2?", "Name a fruit.", "Say hello.", "What colour is the sky?", "Count to three.",
             "Name a colour.", "What is 3*3?", "Spell dog.", "Name a month.", "Say goodbye.", "What is ice?",
             "Name a planet.", "Pick a number.", "Name an animal.", "What is rain?", "Say yes."]


@pytest.fixture(scope="module")
def prompt_data(tmp_path_factory):
    d = tmp_path_factory.mktemp("grpo")
    rows = [{"prompt": [{"role": "user", "content": q}], "answer": str(i)} for i, q in enumerate(QUESTIONS)]
    return write_jsonl(d / "prompts.jsonl", rows)


@pytest.fixture(scope="module")
def reward_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("rewards") / "stub_rewards.py"
    path.write_text(
        "def first_token(prompts, completions, completion_ids=None, **kw):\n"
        "    return [float(ids[0]) for ids in completion_ids]\n"
        "def constant(prompts, completions, **kw):\n"
        "    return [1.0] * len(completions)\n"
        "def explode(prompts, completions, **kw):\n"
        "    raise RuntimeError('reward server down')\n"
    )
    return path


@pytest.fixture(autouse=True)
def no_report(monkeypatch):
    """The engine's HTML report (plots) is tested with the engine; skipping it keeps these runs fast."""
    monkeypatch.setattr("alignkit.cli.write_run_report", lambda out: None)


def _grpo(*args: str) -> int:
    return main(["grpo", "model=tiny-random", "max_length=128", *args])


# ----------------------------------------------------------------------------- config


def test_config_defaults_and_alias():
    cfg = load_config(GRPOConfig, overrides=["reward=tokens.py:even_token_fraction"])
    assert (cfg.num_generations, cfg.max_new_tokens, cfg.temperature, cfg.top_p) == (4, 64, 1.0, 1.0)
    assert (cfg.beta, cfg.eps_low, cfg.eps_high, cfg.loss_type) == (0.0, 0.2, 0.2, "dapo")
    assert (cfg.scale_rewards, cfg.advantage, cfg.dynamic_sampling, cfg.num_iterations) == (True, "grpo", False, 1)
    assert cfg.batch_size == 2  # prompts per micro-batch (x num_generations completions)
    cfg = load_config(GRPOConfig, overrides=["reward=x.py:f", "epsilon=0.1", "eps_high=0.28"])
    assert (cfg.eps_low, cfg.eps_high) == (0.1, 0.28)
    with pytest.raises(ConfigError, match="max_new_tokens"):
        load_config(GRPOConfig, overrides=["reward=x.py:f", "max_length=32", "max_new_tokens=32"])
    with pytest.raises(ConfigError, match="loss_type"):
        load_config(GRPOConfig, overrides=["reward=x.py:f", "loss_type=ppo"])
    with pytest.raises(ConfigError, match="did you mean 'num_generations'"):
        load_config(GRPOConfig, overrides=["num_generation=4"])


def test_cli_errors(prompt_data, reward_file, tmp_path, capsys):
    assert _grpo(f"data={prompt_data}", f"output_dir={tmp_path / 'a'}") == 2
    assert "grpo needs a reward" in capsys.readouterr().err
    assert _grpo(f"data={prompt_data}", f"output_dir={tmp_path / 'b'}", "reward=missing.py:f") == 2
    assert "file not found: missing.py" in capsys.readouterr().err
    # a reward function that raises stops the run, naming the function
    out = tmp_path / "c"
    assert _grpo(f"data={prompt_data}", f"output_dir={out}", f"reward={reward_file}:explode", "max_steps=1",
                 "batch_size=1", "num_generations=2", "max_new_tokens=2") == 2
    err = capsys.readouterr().err
    assert "reward function 'explode'" in err and "RuntimeError: reward server down" in err


# ----------------------------------------------------------------------------- plumbing on a stub


class StubBackend:
    """Returns fixed completions: completion j of prompt i is [base + j, eos-less filler...]."""

    def __init__(self, completions, max_new_tokens, eos=2):
        self.completions = completions
        self.max_new_tokens = max_new_tokens
        self.eos = eos

    def generate(self, model, prompt_ids, *, num_generations, seed):
        n = len(prompt_ids) * num_generations
        comps, self.completions = self.completions[:n], self.completions[n:]
        return rollout_from_token_lists(prompt_ids, comps, pad_id=0, eos_ids=[self.eos],
                                        max_new_tokens=self.max_new_tokens, num_generations=num_generations)


def _method(tokenizer, reward_file, completions, **overrides):
    args = [f"reward={reward_file}:first_token", "num_generations=2", "max_new_tokens=4", "max_length=32"]
    args += [f"{k}={v}" for k, v in overrides.items()]
    cfg = load_config(GRPOConfig, overrides=args)
    method = GRPO(cfg, tokenizer)
    method.backend = StubBackend(completions, cfg.max_new_tokens)
    return method


def _prompt_batch(n, start=0):
    examples = [{"prompt_ids": [10 + i, 11 + i], "prompt": f"q{i}", "columns": {}, "row": i + 1}
                for i in range(start, start + n)]
    return collate_prompt_examples(examples, pad_id=0)


# rewards = first completion token; two micro-batches of 2 prompts x 2 completions
COMPLETIONS = [[5, 7, 2], [3, 1, 1, 1], [4, 2], [4, 9, 9],   # micro-batch 0: groups (5, 3), (4, 4) flat
               [8, 2], [1, 6, 2], [6, 6, 6, 6], [2]]          # micro-batch 1: groups (8, 1), (6, 2)
REWARDS = torch.tensor([5.0, 3, 4, 4, 8, 1, 6, 2])


@pytest.mark.parametrize("advantage, scale, expected", [
    ("grpo", True, group_advantages(REWARDS, 2)),
    ("grpo", False, group_advantages(REWARDS, 2, scale=False)),
    ("rloo", True, rloo_advantages(REWARDS, 2)),
    ("reinforce_pp", True, reinforce_pp_advantages(REWARDS, 2)),
])
def test_advantages_and_metrics(tokenizer, reward_file, advantage, scale, expected):
    method = _method(tokenizer, reward_file, [list(c) for c in COMPLETIONS], advantage=advantage,
                     scale_rewards=str(scale).lower())
    model = build_tiny_random()
    micro, metrics = method.prepare_step(model, [_prompt_batch(2), _prompt_batch(2, 2)], step=0)
    assert len(micro) == 2
    got = torch.cat([m["advantages"] for m in micro])
    assert torch.allclose(got, expected, atol=1e-6)
    assert metrics["reward"] == (pytest.approx(float(REWARDS.sum())), 8.0)
    assert metrics["rewards/first_token"] == metrics["reward"]
    assert metrics["frac_reward_zero_std"] == (1.0, 4.0)
    assert metrics["reward_std"][0] == pytest.approx(float(REWARDS.std()))
    lengths = [len(c) if 2 not in c else c.index(2) + 1 for c in COMPLETIONS]
    lengths = [min(n, 4) for n in lengths]
    assert metrics["completion_length"] == (pytest.approx(sum(lengths)), 8.0)
    assert "old_logps" not in micro[0] and "ref_logps" not in micro[0]  # mu = 1, beta = 0: no extra forward
    # trailing all-padding completion columns are trimmed per micro-batch
    assert micro[1]["completion_mask"].shape[1] == 4 and micro[0]["completion_mask"].shape[1] == 4


@pytest.mark.parametrize("loss_type", ["dapo", "grpo", "dr_grpo"])
def test_global_normalisation_matches_one_big_batch(tokenizer, reward_file, loss_type):
    """loss_sum / count_units over micro-batches = grpo_loss over the whole batch (engine contract)."""
    method = _method(tokenizer, reward_file, [list(c) for c in COMPLETIONS], loss_type=loss_type)
    model = build_tiny_random()
    micro, _ = method.prepare_step(model, [_prompt_batch(2), _prompt_batch(2, 2)], step=0)
    units = sum(method.count_units(b) for b in micro)
    masks = [b["completion_mask"] for b in micro]
    if loss_type == "dapo":
        assert units == sum(int(m.sum()) for m in masks)
    elif loss_type == "grpo":
        assert units == 8
    else:
        assert units == 8 * 4

    # the perturbed "current" policy: old log-probs fixed, so the ratio is not 1 everywhere
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    total = sum(method.loss(model, b, 0).loss_sum for b in micro) / units

    from alignkit.methods.online import completion_token_logps

    lps = [completion_token_logps(model, b) for b in micro]
    width = max(m.shape[1] for m in masks)

    def cat(ts):
        return torch.cat([torch.nn.functional.pad(t, (0, width - t.shape[1])) for t in ts])

    logps, mask = cat(lps), cat(masks)
    adv = torch.cat([b["advantages"] for b in micro])
    expected = grpo_loss(logps, logps.detach(), adv, mask, loss_type=loss_type)
    if loss_type == "dr_grpo":  # grpo_loss divides by the padded width; alignkit by max_new_tokens
        expected = expected * width / 4
    assert float(total) == pytest.approx(float(expected), abs=1e-6)


def test_dynamic_sampling_drops_flat_groups(tokenizer, reward_file):
    method = _method(tokenizer, reward_file, [list(c) for c in COMPLETIONS], dynamic_sampling="true")
    model = build_tiny_random()
    micro, metrics = method.prepare_step(model, [_prompt_batch(2), _prompt_batch(2, 2)], step=0)
    assert [b["input_ids"].shape[0] for b in micro] == [2, 4]  # the flat group (4, 4) is gone
    assert metrics["reward"][1] == 8.0  # metrics describe the whole rollout
    assert torch.allclose(micro[0]["advantages"], group_advantages(REWARDS[:2], 2))


def test_all_groups_flat_trains_nothing(tokenizer, reward_file):
    flat = [[4, 1], [4, 2], [7], [7, 7]]
    method = _method(tokenizer, reward_file, flat, dynamic_sampling="true")
    model = build_tiny_random()
    micro, metrics = method.prepare_step(model, [_prompt_batch(2)], step=0)
    assert len(micro) == 1 and micro[0]["loss_weight"] == 0.0
    assert method.count_units(micro[0]) == 0
    out = method.loss(model, micro[0], 0)
    out.loss_sum.backward()
    assert float(out.loss_sum) == 0.0
    assert all(p.grad is None or not p.grad.any() for p in model.parameters())
    assert metrics["frac_reward_zero_std"] == (2.0, 2.0)


def test_several_iterations_keep_old_logps(tokenizer, reward_file, tmp_path):
    method = _method(tokenizer, reward_file, [list(c) for c in COMPLETIONS[:4]] * 2, num_iterations=2,
                     output_dir=str(tmp_path))
    model = build_tiny_random()
    micro, _ = method.prepare_step(model, [_prompt_batch(2)], step=0)
    assert "old_logps" in micro[0]
    out = method.loss(model, micro[0], 0)
    assert out.metrics["clip_ratio"][0] == 0.0  # ratio is exactly 1 on the first iteration
    again, _ = method.prepare_step(model, [_prompt_batch(2, 2)], step=1)  # same block: reused
    assert again is micro
    assert list((tmp_path / "rollouts").glob("block-0-rank0.safetensors"))
    fresh = GRPO(method.config, tokenizer)  # a resumed process reads the block back from disk
    loaded, _ = fresh.prepare_step(model, [_prompt_batch(2, 2)], step=1)
    for k in ("input_ids", "advantages", "old_logps", "completion_mask"):
        assert torch.equal(loaded[0][k], micro[0][k])


# ----------------------------------------------------------------------------- end to end


# tiny-random's next-token distribution is nearly uniform over 49,152 ids, so the policy can only learn by
# concentrating mass on sampled even ids; a high lr and temperature 0.5 (sharper sampling, same
# temperature in the log-probs) make that happen within 10 steps for every seed tried (1, 3, 7, 11, 42).
LEARN = ["reward=tokens.py:even_token_fraction", "lr=1e-1", "temperature=0.5", "scheduler=constant",
         "num_generations=4", "batch_size=4", "max_new_tokens=8"]


def test_grpo_learns_and_writes_run_directory(prompt_data, tmp_path, monkeypatch):
    """Fraction of even token ids: about 0.5 under the random policy, with spread; GRPO must push it up."""
    def no_reference(*a, **k):
        raise AssertionError("beta=0 must not build a reference model")

    monkeypatch.setattr(grpo_module, "build_reference", no_reference)
    out = tmp_path / "run"
    assert _grpo(f"data={prompt_data}", f"output_dir={out}", *LEARN, "max_steps=10",
                 "seed=11", "log_completions_steps=5") == 0
    rows = read_metrics(out)
    assert [r["step"] for r in rows] == list(range(1, 11))
    for key in ("loss", "reward", "reward_std", "rewards/even_token_fraction", "entropy", "clip_ratio",
                "completion_length", "tokens_per_second", "frac_reward_zero_std", "grad_norm", "learning_rate"):
        assert all(isinstance(r[key], float) and math.isfinite(r[key]) for r in rows), key
    assert "kl" not in rows[0]
    rewards = [r["reward"] for r in rows]
    start, end = sum(rewards[:2]) / 2, sum(rewards[-3:]) / 3
    assert 0.3 < start < 0.7, rewards
    assert end > max(start + 0.3, 0.8), rewards
    assert rows[-1]["entropy"] < rows[0]["entropy"]

    assert "num_generations: 4" in (out / "config.yaml").read_text()
    assert (out / "final" / "config.json").is_file() and list((out / "final").glob("*.safetensors"))
    assert (out / "checkpoints" / "step-10" / "state.json").is_file()
    logged = [json.loads(line) for line in (out / "completions.jsonl").read_text().splitlines()]
    assert {r["step"] for r in logged} == {5, 10}
    assert {"prompt", "completion", "reward", "rewards", "advantage"} <= set(logged[0])


@pytest.mark.parametrize("base_dtype", ["float32", "bfloat16"])
def test_lora_with_kl_reference_and_eval(base_dtype, prompt_data, tmp_path, capsys):
    """LoRA GRPO with the adapters-disabled reference; also with the frozen base in bfloat16 (the lean
    sampler then runs in float32 on the bf16-rounded weights)."""
    out = tmp_path / "lora"
    assert _grpo(f"data={prompt_data}", f"eval_data={prompt_data}", f"output_dir={out}", *LEARN,
                 "lora.r=4", "beta=0.5", "max_steps=2", "batch_size=2", "max_new_tokens=4",
                 "loss_type=grpo", "advantage=rloo", f"lora.base_dtype={base_dtype}") == 0
    assert "reference = the policy with its LoRA adapters disabled" in capsys.readouterr().err
    rows = read_metrics(out)
    train = [r for r in rows if "kl" in r]
    assert len(train) == 2
    assert train[0]["kl"] == pytest.approx(0.0, abs=1e-6)  # the policy starts as the reference
    assert train[1]["kl"] > 0.0
    assert any("eval_reward" in r and "eval_rewards/even_token_fraction" in r for r in rows)
    assert (out / "final" / "adapter_config.json").is_file()


def test_flat_rewards_with_dynamic_sampling_do_not_crash(prompt_data, reward_file, tmp_path):
    out = tmp_path / "flat"
    assert _grpo(f"data={prompt_data}", f"output_dir={out}", f"reward={reward_file}:constant",
                 "dynamic_sampling=true", "max_steps=2", "batch_size=2", "num_generations=2",
                 "max_new_tokens=2") == 0
    rows = read_metrics(out)
    assert [r["loss"] for r in rows] == [0.0, 0.0]
    assert [r["frac_reward_zero_std"] for r in rows] == [1.0, 1.0]


def test_resume_in_the_middle_of_a_rollout_block(prompt_data, tmp_path, monkeypatch):
    """num_iterations=2: interrupted during step 4 (second step of block 1), the resumed run reloads the
    saved rollout and then samples block 2 from the seed; everything matches an uninterrupted run."""
    common = [f"data={prompt_data}", *LEARN, "batch_size=2", "max_new_tokens=4", "max_steps=6", "save_steps=2",
              "num_iterations=2", "lr=1e-2", "log_completions_steps=1"]
    ref = tmp_path / "ref"
    assert _grpo(*common, f"output_dir={ref}") == 0

    run = tmp_path / "run"
    original = GRPO.loss

    def interrupting(self, model, batch, step):
        if step == 3:
            raise KeyboardInterrupt
        return original(self, model, batch, step)

    monkeypatch.setattr(GRPO, "loss", interrupting)
    assert _grpo(*common, f"output_dir={run}") == 130
    monkeypatch.setattr(GRPO, "loss", original)
    assert (run / "checkpoints" / "step-3").is_dir()
    assert (run / "rollouts" / "block-1-rank0.safetensors").is_file()
    assert _grpo(*common, f"output_dir={run}", "resume=true") == 0

    keys = ("loss", "grad_norm", "reward", "reward_std", "entropy", "clip_ratio", "completion_length")
    a, b = read_metrics(ref), read_metrics(run)
    assert [r["step"] for r in b] == list(range(1, 7))
    for ra, rb in zip(a, b):
        assert {k: ra[k] for k in keys} == {k: rb[k] for k in keys}, ra["step"]
    assert (ref / "completions.jsonl").read_text() == (run / "completions.jsonl").read_text()
    assert any(r["clip_ratio"] > 0 or r["loss"] != 0 for r in a)


def test_grpo_learns_sampling_from_a_bfloat16_copy(prompt_data, tmp_path, capsys):
    """rollout_dtype=bfloat16: completions come from a bf16 copy refreshed every step; learning must
    still work (a copy that went stale would sample from the initial policy and stop improving)."""
    out = tmp_path / "bf16"
    assert _grpo(f"data={prompt_data}", f"output_dir={out}", *LEARN, "max_steps=10", "seed=11",
                 "rollout_dtype=bfloat16") == 0
    rewards = [r["reward"] for r in read_metrics(out)]
    start, end = sum(rewards[:2]) / 2, sum(rewards[-3:]) / 3
    assert end > max(start + 0.3, 0.8), rewards
    with pytest.raises(ConfigError, match="rollout_dtype applies to rollout_backend=hf"):
        load_config(GRPOConfig, overrides=["reward=x.py:f", "rollout_dtype=bfloat16", "rollout_backend=vllm"])


def test_num_iterations_hands_each_batch_to_mu_steps_and_skips_no_prompt(prompt_data, reward_file, tmp_path,
                                                                         monkeypatch):
    """num_iterations=2: steps 2k and 2k+1 get the same prompts (one rollout); over an epoch every prompt
    is rolled out once, so an epoch takes twice the steps."""
    seen = []
    original = GRPO.prepare_step

    def spy(self, model, batches, step):
        seen.append([row for b in batches for row in b["rows"]])
        return original(self, model, batches, step)

    monkeypatch.setattr(GRPO, "prepare_step", spy)
    n = len(QUESTIONS)
    assert _grpo(f"data={prompt_data}", f"output_dir={tmp_path / 'mu'}", f"reward={reward_file}:first_token",
                 "num_iterations=2", "epochs=1", "max_steps=-1", "batch_size=2", "num_generations=2",
                 "max_new_tokens=2") == 0
    assert len(seen) == 2 * (n // 2)
    assert all(seen[2 * k] == seen[2 * k + 1] for k in range(len(seen) // 2))
    rolled_out = sorted(row for rows in seen[::2] for row in rows)
    assert rolled_out == sorted(set(rolled_out)) and len(rolled_out) == 2 * (n // 2)
