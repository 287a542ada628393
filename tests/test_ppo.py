"""PPO with a critic: config, the KL controller by hand, rollout plumbing on a stub backend (per-token
rewards, GAE, whitening, epochs x minibatches), LoRA (two adapters on one base, reference = adapters
disabled, one copy of the base weights, both adapters and the value head trained, final/critic), and
end-to-end runs on tiny-random (learning, run directory, resume in the middle of a rollout)."""

from __future__ import annotations

import json
import math
import shutil
from contextlib import nullcontext
from types import SimpleNamespace

import pytest
import torch

from alignkit.cli import main
from alignkit.config import ConfigError, load_config
from alignkit.engine.logging import read_metrics
from alignkit.generation.backends import rollout_from_token_lists
from alignkit.losses import adaptive_kl_update, gae, kl_penalty, masked_whiten
from alignkit.methods.online import collate_prompt_examples, completion_token_logps
from alignkit.methods.ppo import CRITIC_ATTR, PPO, PPOConfig
from alignkit.models import build_tiny_random
from tests.helpers import write_jsonl

QUESTIONS = ["What is 2+2?", "Name a fruit.", "Say hello.", "What colour is the sky?", "Count to three.",
             "Name a colour.", "What is 3*3?", "Spell dog.", "Name a month.", "Say goodbye.", "What is ice?",
             "Name a planet.", "Pick a number.", "Name an animal.", "What is rain?", "Say yes."]


@pytest.fixture(scope="module")
def prompt_data(tmp_path_factory):
    d = tmp_path_factory.mktemp("ppo")
    return write_jsonl(d / "prompts.jsonl", [{"prompt": [{"role": "user", "content": q}]} for q in QUESTIONS])


@pytest.fixture(scope="module")
def reward_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("rewards") / "ppo_stub_rewards.py"
    path.write_text("def first_token(prompts, completions, completion_ids=None, **kw):\n"
                    "    return [float(ids[0]) / 10 for ids in completion_ids]\n")
    return path


@pytest.fixture(autouse=True)
def no_report(monkeypatch):
    monkeypatch.setattr("alignkit.cli.write_run_report", lambda out: None)


def _ppo(*args: str) -> int:
    return main(["ppo", "model=tiny-random", "max_length=128", *args])


# ----------------------------------------------------------------------------- config, controller


def test_config_defaults_and_errors(prompt_data, tmp_path, capsys):
    cfg = load_config(PPOConfig, overrides=["reward=tokens.py:even_token_fraction"])
    assert (cfg.kl_coef, cfg.kl_estimator, cfg.target_kl, cfg.horizon) == (0.05, "k1", None, 10000)
    assert (cfg.gamma, cfg.lam, cfg.cliprange, cfg.cliprange_value, cfg.vf_coef) == (1.0, 0.95, 0.2, 0.2, 0.1)
    assert (cfg.ppo_epochs, cfg.num_minibatches, cfg.whiten_advantages, cfg.missing_eos_penalty) == (4, 1, True, None)
    with pytest.raises(ConfigError, match="num_minibatches"):
        load_config(PPOConfig, overrides=["reward=x.py:f", "batch_size=4", "num_minibatches=3"])
    with pytest.raises(ConfigError, match="kl_estimator"):
        load_config(PPOConfig, overrides=["reward=x.py:f", "kl_estimator=k2"])
    with pytest.raises(ConfigError, match="did you mean 'ppo_epochs'"):
        load_config(PPOConfig, overrides=["ppo_epoch=2"])
    assert _ppo(f"data={prompt_data}", f"output_dir={tmp_path / 'x'}") == 2
    assert "ppo needs a reward" in capsys.readouterr().err


def test_adaptive_kl_controller_by_hand():
    # e = clip(KL / target - 1, -0.2, 0.2); kl_coef * (1 + e * n / horizon)
    assert adaptive_kl_update(0.1, 7.0, 6.0, 64, 1000) == pytest.approx(0.1 * (1 + (7 / 6 - 1) * 64 / 1000))
    assert adaptive_kl_update(0.1, 60.0, 6.0, 64, 1000) == pytest.approx(0.1 * (1 + 0.2 * 0.064))   # clipped
    assert adaptive_kl_update(0.1, 0.0, 6.0, 64, 1000) == pytest.approx(0.1 * (1 - 0.2 * 0.064))    # clipped
    assert adaptive_kl_update(0.1, 6.0, 6.0, 64, 1000) == pytest.approx(0.1)


# ----------------------------------------------------------------------------- plumbing on a stub


class StubBackend:
    """Hands out fixed completions in order."""

    def __init__(self, completions, max_new_tokens, eos=2):
        self.completions, self.max_new_tokens, self.eos = list(completions), max_new_tokens, eos

    def generate(self, model, prompt_ids, *, num_generations, seed):
        n = len(prompt_ids) * num_generations
        comps, self.completions = self.completions[:n], self.completions[n:]
        return rollout_from_token_lists(prompt_ids, comps, pad_id=0, eos_ids=[self.eos],
                                        max_new_tokens=self.max_new_tokens, num_generations=num_generations)


FAKE_ACC = SimpleNamespace(is_main_process=True, process_index=0, num_processes=1, device=torch.device("cpu"),
                           autocast=nullcontext)


def _setup(tokenizer, reward_file, tmp_path, completions, **overrides):
    args = [f"reward={reward_file}:first_token", "model=tiny-random", "max_new_tokens=4", "max_length=32",
            f"output_dir={tmp_path}", "log_completions_steps=0"] + [f"{k}={v}" for k, v in overrides.items()]
    method = PPO(load_config(PPOConfig, overrides=args), tokenizer)
    torch.manual_seed(0)
    model = method.build_model()
    method.setup(model, FAKE_ACC)
    method.backend = StubBackend(completions, 4)
    return method, model


def _prompts(n, start=0):
    return collate_prompt_examples([{"prompt_ids": [10 + i, 11 + i, 12][: 2 + i % 2], "prompt": f"q{i}",
                                     "columns": {}, "row": i + 1} for i in range(start, start + n)], pad_id=0)


COMPLETIONS = [[5, 7, 2], [3, 1, 1, 1], [4, 2], [9, 9, 9, 9]]  # EOS = 2: rows 0, 2 end, rows 1, 3 are truncated


def _key(row_ids):
    return tuple(int(t) for t in row_ids if t != 0)


def test_rollout_rewards_gae_and_minibatches(tokenizer, reward_file, tmp_path):
    """Per-token reward = -kl_coef * KL_t + score at the last token (minus the missing-EOS penalty), GAE with the
    critic's values, whitened advantages; steps of a block walk epochs x minibatches over the rollout."""
    method, model = _setup(tokenizer, reward_file, tmp_path, COMPLETIONS * 2, batch_size=2, grad_accum=2,
                           ppo_epochs=2, num_minibatches=2, kl_coef=0.3, kl_estimator="k3",
                           missing_eos_penalty=0.25, lam=0.9, gamma=0.99)
    with torch.no_grad():  # a policy that differs from the reference (KL term not 0), a critic that is not 0
        for p in model.model.layers[0].parameters():
            p.add_(0.05 * torch.randn_like(p))
        getattr(model, CRITIC_ATTR).value_head.weight.normal_(0, 0.1)
    batches = [_prompts(2), _prompts(2, 2)]
    seen = []
    for step in range(4):
        micro, metrics = method.prepare_step(model, batches, step)
        assert len(micro) == 1 and micro[0]["input_ids"].shape[0] == 2  # 4 rollouts / 2 minibatches
        seen.append([_key(r) for r in micro[0]["input_ids"]])
    buf = method._buffer
    assert sorted(seen[0] + seen[1]) == sorted(seen[2] + seen[3]) == sorted(_key(r) for r in buf["input_ids"])
    assert len(set(seen[0] + seen[1])) == 4

    # recompute the rollout's rewards and advantages by hand from the stored tensors
    mask = buf["completion_mask"].float()
    assert mask.sum(1).tolist() == [3.0, 4.0, 2.0, 4.0]
    ref = method.reference_logps(model, buf)
    kl = kl_penalty(buf["old_logps"], ref, "k3") * mask
    assert float(kl.sum()) > 0
    score = torch.tensor([0.5, 0.3 - 0.25, 0.4, 0.9 - 0.25])
    rewards = -0.3 * kl
    for i, n in enumerate([3, 4, 2, 4]):
        rewards[i, n - 1] += score[i]
    adv, ret = gae(rewards, buf["old_values"], mask, gamma=0.99, lam=0.9)
    assert torch.allclose(buf["returns"], ret * mask, atol=1e-5)
    assert torch.allclose(buf["advantages"], masked_whiten(adv, mask), atol=1e-5)
    assert metrics["reward"] == (pytest.approx(2.1), 4.0)
    assert metrics["score"] == (pytest.approx(1.6), 4.0)
    assert metrics["kl"][0] == pytest.approx(float(kl.sum()), rel=1e-5)
    assert metrics["kl_coef"] == (0.3, 1.0)
    assert metrics["completion_length"] == (13.0, 4.0)
    assert metrics["completions/clipped_ratio"] == (2.0, 4.0)

    # the old values are the critic's, aligned with the completion tokens
    assert torch.allclose(buf["old_values"], method.values(model, buf) * mask, atol=1e-5)
    # the first minibatch trains at ratio 1: no clipping, approx_kl ~ 0, a finite loss and gradients everywhere
    out = method.loss(model, method._minibatch(buf, 0, 0)[0], 0)
    assert out.metrics["clip_ratio"][0] == 0.0 and out.metrics["approx_kl"][0] < 1e-8
    out.loss_sum.backward()
    assert getattr(model, CRITIC_ATTR).value_head.weight.grad.abs().sum() > 0
    assert model.model.embed_tokens.weight.grad.abs().sum() > 0

    # a new block samples a new rollout; the buffer of block 0 is on disk for resume
    assert (tmp_path / "rollouts" / "block-0-rank0.safetensors").is_file()
    method.prepare_step(model, batches, 4)
    assert method.store.block == 1 and (tmp_path / "rollouts" / "block-1-rank0.safetensors").is_file()
    fresh = PPO(method.config, tokenizer)
    fresh.setup(model, FAKE_ACC)
    loaded, _ = fresh.prepare_step(model, batches, 5)  # resumed mid-block: read back, not resampled
    again, _ = method.prepare_step(model, batches, 5)
    for k in ("input_ids", "advantages", "old_logps", "old_values", "returns"):
        assert torch.equal(loaded[0][k], again[0][k])


def test_adaptive_controller_updates_after_each_rollout(tokenizer, reward_file, tmp_path):
    method, model = _setup(tokenizer, reward_file, tmp_path, COMPLETIONS * 2, batch_size=4, ppo_epochs=1,
                           kl_coef=0.2, target_kl=0.5, horizon=10)
    with torch.no_grad():
        for p in model.model.layers[0].parameters():
            p.add_(0.05 * torch.randn_like(p))
    _, m0 = method.prepare_step(model, [_prompts(4)], 0)
    kl0 = m0["kl"][0] / m0["kl"][1]
    expected = 0.2 * (1 + min(max(kl0 / 0.5 - 1, -0.2), 0.2) * 4 / 10)
    assert method.kl_coef == pytest.approx(expected)
    _, m1 = method.prepare_step(model, [_prompts(4)], 1)
    assert m1["kl_coef"] == (pytest.approx(expected), 1.0)
    assert json.loads((tmp_path / "rollouts" / "ppo-kl.json").read_text())["1"] == pytest.approx(expected)


# ----------------------------------------------------------------------------- LoRA: one base, two adapters


def safe_keys(path):
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return list(f.keys())


def _storages(params):
    return {p.untyped_storage().data_ptr(): p.untyped_storage().nbytes() for p in params}


def test_lora_one_base_two_adapters(tokenizer, reward_file, tmp_path):
    method, model = _setup(tokenizer, reward_file, tmp_path, COMPLETIONS * 4, batch_size=4, ppo_epochs=1,
                           **{"lora.r": 4})
    assert list(model.peft_config) == ["default", "critic"]
    assert method.reference_model is None
    # one copy of the base weights: the non-adapter, non-critic parameters are the storages of one model
    base_params = [p for n, p in model.named_parameters() if "lora_" not in n and not n.startswith(CRITIC_ATTR)]
    plain = build_tiny_random()
    assert len(_storages(base_params)) == len(_storages(plain.parameters()))
    assert sum(_storages(base_params).values()) == sum(_storages(plain.parameters()).values())
    assert all(not p.requires_grad for p in base_params)

    # a policy that differs from the base (LoRA B starts at 0): the reference must still be the base
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B.default" in n:
                p.normal_(0, 0.05)
    micro, _ = method.prepare_step(model, [_prompts(4)], 0)
    batch = micro[0]
    base_logps = completion_token_logps(plain, batch)
    assert torch.allclose(method.reference_logps(model, batch), base_logps, atol=1e-5)
    assert not torch.allclose(completion_token_logps(model, batch), base_logps, atol=1e-3)

    # optimizer steps train both adapters and the value head (zero at the start, so the critic adapter
    # gets its first gradient on the second step) and leave the base alone
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert any(".critic." in n for n in trainable) and any(".default." in n for n in trainable)
    assert f"{CRITIC_ATTR}.value_head.weight" in trainable
    before = {n: p.detach().clone() for n, p in trainable.items()}
    base_before = [p.detach().clone() for p in base_params]
    opt = torch.optim.AdamW(list(trainable.values()), lr=1e-2)
    for _ in range(2):
        method.loss(model, batch, 0).loss_sum.backward()
        assert all(p.requires_grad for p in trainable.values())  # adapter switches did not freeze anything
        opt.step()
        opt.zero_grad()

    def changed(tag):
        return any(not torch.equal(before[n], trainable[n]) for n in trainable if tag in n)

    assert changed("lora_B.default") and changed("lora_B.critic") and changed("value_head")
    assert all(torch.equal(a, p) for a, p in zip(base_before, base_params))
    assert model.active_adapter == "default"
    # the values come from the critic adapter: changing the policy adapter leaves them alone
    v0 = method.values(model, batch)
    assert v0.abs().sum() > 0
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_B.default" in n:
                p.mul_(2)
    assert torch.equal(method.values(model, batch), v0)

    # final/ (Method.save_final): the policy adapter at the top, the critic adapter + value head in critic/
    # (merged: full policy); the model's class is peft's own (no class swap)
    assert type(model).__module__.startswith("peft.")
    tok = tokenizer
    method.save_final(model, tok, tmp_path / "final", method.config)
    assert (tmp_path / "final" / "adapter_config.json").is_file()
    assert (tmp_path / "final" / "critic" / "adapter_model.safetensors").is_file()
    assert (tmp_path / "final" / "critic" / "value_head.safetensors").is_file()
    assert not any(CRITIC_ATTR in k for k in safe_keys(tmp_path / "final" / "adapter_model.safetensors"))
    merged_cfg = method.config.model_copy(update={"lora": method.config.lora.model_copy(update={"merge_on_save": True})})
    method.save_final(model, tok, tmp_path / "merged", merged_cfg)
    assert (tmp_path / "merged" / "config.json").is_file()
    assert (tmp_path / "merged" / "critic" / "adapter_config.json").is_file()
    assert (tmp_path / "merged" / "critic" / "value_head.safetensors").is_file()
    from alignkit.models import load_trained

    reloaded, _ = load_trained(tmp_path / "merged")
    assert torch.allclose(completion_token_logps(reloaded, batch), completion_token_logps(model, batch), atol=1e-4)
    assert model.active_adapter == "default" and list(model.peft_config) == ["default", "critic"]
    assert not any(k.startswith(CRITIC_ATTR) for k in safe_keys(tmp_path / "merged" / "model.safetensors"))
    # the critic in critic/ loads on the plain base and gives the trained critic's values
    from peft import PeftModel
    from safetensors.torch import load_file

    critic = PeftModel.from_pretrained(build_tiny_random(), str(tmp_path / "merged" / "critic"))
    head = torch.nn.Linear(critic.config.hidden_size, 1)
    head.load_state_dict(load_file(str(tmp_path / "merged" / "critic" / "value_head.safetensors")))
    out = critic.get_base_model().get_decoder()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                                position_ids=batch["position_ids"])
    C = batch["completion_mask"].shape[1]
    with torch.no_grad():
        values = head(out.last_hidden_state[:, -C - 1:-1]).squeeze(-1)
    assert torch.allclose(values, method.values(model, batch), atol=1e-5)


# ----------------------------------------------------------------------------- end to end


# tiny-random's next-token distribution is nearly uniform over 49,152 ids, so the policy can only learn by
# concentrating mass on sampled even ids (the fraction of even ids starts near 0.5, with spread). That takes a
# high lr, at which the policy moves by tens of nats per rollout: kl_coef=0.05 would drown the score's spread
# (std ~0.16), so the penalty is kept small. With these settings the mean reward is 1.0 by step 12 for every
# seed tried (1, 3, 5, 7, 11, 13, 21, 42).
LEARN = ["reward=tokens.py:even_token_fraction", "lr=1e-1", "temperature=0.5", "scheduler=constant",
         "batch_size=16", "max_new_tokens=8", "ppo_epochs=2", "kl_coef=0.005"]


def test_ppo_learns_and_writes_run_directory(prompt_data, tmp_path):
    out = tmp_path / "run"
    assert _ppo(f"data={prompt_data}", f"output_dir={out}", *LEARN, "max_steps=12", "seed=1",
                "log_completions_steps=6") == 0
    rows = read_metrics(out)
    assert [r["step"] for r in rows] == list(range(1, 13))
    for key in ("loss", "reward", "reward_std", "rewards/even_token_fraction", "kl", "entropy", "clip_ratio",
                "value_loss", "policy_loss", "explained_variance", "completion_length", "kl_coef",
                "advantages/mean", "tokens_per_second", "grad_norm", "learning_rate"):
        assert all(isinstance(r[key], float) and math.isfinite(r[key]) for r in rows), key
    rewards = [r["reward"] for r in rows]
    start, end = sum(rewards[:2]) / 2, sum(rewards[-2:]) / 2
    assert 0.3 < start < 0.7, rewards
    assert end > max(start + 0.3, 0.8), rewards
    assert rows[0]["kl"] == pytest.approx(0.0, abs=1e-6) and rows[-1]["kl"] > 0
    assert rows[-1]["entropy"] < rows[0]["entropy"]
    assert rows[1]["clip_ratio"] > 0  # the second epoch on a rollout is off-policy: the clip is active
    assert "ppo_epochs: 2" in (out / "config.yaml").read_text()
    assert (out / "final" / "config.json").is_file() and (out / "final" / "critic" / "value_head.safetensors").is_file()
    assert not any(k.startswith(CRITIC_ATTR) for k in safe_keys(out / "final" / "model.safetensors"))  # policy only
    assert (out / "final" / "critic" / "config.json").is_file()  # the critic's decoder body
    assert (out / "checkpoints" / "step-12" / "state.json").is_file()
    # completions are labelled with the first step that trains on their rollout (steps 5-6 and 11-12)
    assert {json.loads(line)["step"] for line in (out / "completions.jsonl").read_text().splitlines()} == {5, 11}


def test_every_prompt_is_rolled_out_once_per_epoch(prompt_data, tmp_path, monkeypatch):
    """The engine hands each prompt batch to the K = ppo_epochs x num_minibatches steps of one rollout: an
    epoch of 16 prompts in batches of 4 is 4 rollouts and 16 optimizer steps, and every prompt row is sampled
    exactly once (no prompt batch is skipped)."""
    seen: list[list[int]] = []
    original = PPO.rollout

    def recording(self, model, batches, step):
        seen.append([row for b in batches for row in b["rows"]])
        return original(self, model, batches, step)

    monkeypatch.setattr(PPO, "rollout", recording)
    out = tmp_path / "epoch"
    assert _ppo(f"data={prompt_data}", f"output_dir={out}", "reward=tokens.py:even_token_fraction", "epochs=1",
                "batch_size=2", "grad_accum=2", "max_new_tokens=2", "ppo_epochs=2", "num_minibatches=2",
                "log_completions_steps=0") == 0
    assert [len(rows) for rows in seen] == [4, 4, 4, 4]
    assert sorted(row for rows in seen for row in rows) == list(range(1, len(QUESTIONS) + 1))
    metrics = read_metrics(out)
    assert [r["step"] for r in metrics] == list(range(1, 17))
    assert metrics[-1]["epoch"] == pytest.approx(1.0)


def test_resume_in_the_middle_of_a_rollout_and_at_its_start(prompt_data, tmp_path, monkeypatch):
    """LoRA, ppo_epochs=2 x num_minibatches=2 (a rollout every 4 steps), adaptive KL controller. Interrupted
    during step 6 (second step of rollout 1): resuming from that checkpoint reloads the saved rollout and its
    kl_coef; resuming from the periodic checkpoint at step 4 (a rollout boundary) restores the kl_coef and
    samples the same rollout again. Both match an uninterrupted run exactly."""
    common = [f"data={prompt_data}", *LEARN, "batch_size=4", "max_new_tokens=4", "max_steps=8", "save_steps=4",
              "ppo_epochs=2", "num_minibatches=2", "target_kl=0.01", "horizon=20", "lr=1e-2", "lora.r=4",
              "lora.alpha=32", f"eval_data={prompt_data}"]
    ref = tmp_path / "ref"
    assert _ppo(*common, f"output_dir={ref}") == 0
    run = tmp_path / "run"
    original = PPO.loss

    def interrupting(self, model, batch, step):
        if step == 5:
            raise KeyboardInterrupt
        return original(self, model, batch, step)

    monkeypatch.setattr(PPO, "loss", interrupting)
    assert _ppo(*common, f"output_dir={run}") == 130
    monkeypatch.setattr(PPO, "loss", original)
    assert (run / "checkpoints" / "step-4").is_dir() and (run / "checkpoints" / "step-5").is_dir()
    assert (run / "rollouts" / "block-1-rank0.safetensors").is_file()
    at_start = tmp_path / "at_start"
    shutil.copytree(run, at_start)
    shutil.rmtree(at_start / "checkpoints" / "step-5")
    (at_start / "rollouts" / "block-1-rank0.safetensors").unlink()  # not needed at a rollout boundary
    assert _ppo(*common, f"output_dir={run}", "resume=true") == 0
    assert _ppo(*common, f"output_dir={at_start}", "resume=true") == 0

    keys = ("loss", "grad_norm", "reward", "kl", "kl_coef", "value_loss", "clip_ratio", "entropy")
    train_ref = [r for r in read_metrics(ref) if "loss" in r]
    assert len({r["kl_coef"] for r in train_ref}) == 2  # the controller moved after the first rollout
    for resumed in (run, at_start):
        rows = read_metrics(resumed)
        train = [r for r in rows if "loss" in r]
        assert [r["step"] for r in train] == list(range(1, 9))
        for ra, rb in zip(train_ref, train):
            assert {k: ra[k] for k in keys} == {k: rb[k] for k in keys}, (resumed.name, ra["step"])
        assert any("eval_reward" in r for r in rows)
    assert (run / "final" / "adapter_config.json").is_file()
    assert (run / "final" / "critic" / "adapter_config.json").is_file()


@pytest.mark.parametrize("lora", [True, False])
def test_critic_lr_gets_its_own_param_groups(tokenizer, lora):
    from alignkit.engine.trainer import param_groups

    args = ["model=tiny-random", "reward=tokens.py:even_token_fraction", "lr=1e-4", "critic_lr=3e-3",
            "weight_decay=0.1"] + (["lora.r=4"] if lora else [])
    method = PPO(load_config(PPOConfig, overrides=args), tokenizer)
    model = method.build_model()
    groups = param_groups(model, method, method.config)
    by_id = {id(p): g for g in groups for p in g["params"]}
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert len(by_id) == len(named)  # every trainable parameter in exactly one group
    for name, p in named:
        critic = ".critic." in name or name.startswith("ppo_critic.")
        assert by_id[id(p)]["lr"] == (3e-3 if critic else 1e-4), name
        assert by_id[id(p)]["weight_decay"] == (0.1 if p.ndim >= 2 else 0.0), name
    assert any(".critic." in n or n.startswith("ppo_critic.body") for n, _ in named)  # the critic body trains
    assert groups[0]["lr"] == 1e-4  # the logged learning_rate is the policy's
    # without critic_lr: one learning rate for all
    plain = PPO(load_config(PPOConfig, overrides=[a for a in args if not a.startswith("critic_lr=")]), tokenizer)
    assert {g["lr"] for g in param_groups(plain.build_model(), plain, plain.config)} == {1e-4}


def test_lora_ppo_on_two_processes(tmp_path):
    """torchrun with 2 CPU processes (gloo): LoRA PPO with a separate critic_lr trains, logs the global
    metrics once and writes the policy adapter plus critic/ from the main process only."""
    import subprocess
    import sys

    from tests.helpers import REPO

    data = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": f"What is {i} plus {i + 1}?"} for i in range(8)])
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "alignkit", "ppo",
           "model=tiny-random", f"data={data}", f"output_dir={out}", "reward=tokens.py:even_token_fraction",
           "max_steps=2", "batch_size=2", "max_new_tokens=4", "max_length=48", "ppo_epochs=2", "lora.r=4",
           "critic_lr=1e-3"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = read_metrics(out)
    assert [r["step"] for r in rows] == [1, 2]
    for key in ("loss", "value_loss", "reward", "kl", "grad_norm"):
        assert all(math.isfinite(r[key]) for r in rows), key
    assert (out / "final" / "adapter_config.json").is_file() and (out / "final" / "critic").is_dir()


@pytest.mark.parametrize("lora", [True, False])
def test_float32_rollout_copy_reproduces_the_run(tmp_path, lora):
    """rollout_dtype=float32 samples from a merged float32 copy of the policy only (no critic): the
    completions, and so the whole run, match sampling from the training model itself."""
    data = write_jsonl(tmp_path / "prompts.jsonl", [{"prompt": f"What is {i} plus {i + 1}?"} for i in range(8)])
    common = ["ppo", "model=tiny-random", f"data={data}", "reward=tokens.py:even_token_fraction", "max_steps=4",
              "batch_size=2", "max_new_tokens=6", "max_length=48", "ppo_epochs=2", "lr=1e-2",
              *(["lora.r=4"] if lora else [])]
    assert main([*common, f"output_dir={tmp_path / 'own'}"]) == 0
    assert main([*common, f"output_dir={tmp_path / 'copy'}", "rollout_dtype=float32"]) == 0
    own, copied = read_metrics(tmp_path / "own"), read_metrics(tmp_path / "copy")
    assert [r["completion_length"] for r in own] == [r["completion_length"] for r in copied]
    for a, b in zip(own, copied):
        assert a["reward"] == b["reward"]
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-4)
