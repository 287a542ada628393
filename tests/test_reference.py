"""Reference log-probs: LoRA adapters disabled == base model, frozen copy, the precompute cache, the
fingerprint, RNG neutrality, and precomputed == live reference in training."""

from __future__ import annotations

import contextlib
from types import SimpleNamespace

import pytest
import torch

from alignkit.cli import main
from alignkit.config import LoraSettings
from alignkit.data import collate_preference
from alignkit.engine.logging import read_metrics
from alignkit.methods import reference
from alignkit.methods.common import forward_label_logps
from alignkit.methods.dpo import DPO, DPOConfig
from alignkit.methods.reference import Reference, examples_key, model_fingerprint
from alignkit.models import apply_lora, build_tiny_random
from tests.helpers import preference_rows, write_jsonl


@pytest.fixture(scope="module")
def pref_data(tmp_path_factory):
    return write_jsonl(tmp_path_factory.mktemp("ref") / "pref.jsonl", preference_rows(8))


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is fastest on the shared test machine
    monkeypatch.setattr(reference, "ref_cache_dir", lambda: tmp_path / "refcache")
    monkeypatch.setattr("alignkit.cli.write_run_report", lambda out: None)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def examples(pref_data, tokenizer):
    return DPO(DPOConfig(model="tiny-random", max_length=64), tokenizer).build_examples(str(pref_data))


def _cpu_accelerator():
    return SimpleNamespace(device=torch.device("cpu"), mixed_precision="no", is_main_process=True,
                           process_index=0, num_processes=1, wait_for_everyone=lambda: None,
                           autocast=contextlib.nullcontext)


def _sums(model, batch):
    with torch.no_grad():
        logps, _ = forward_label_logps(model, batch)
    return logps.sum(-1)


def _lora_policy():
    policy = apply_lora(build_tiny_random(), LoraSettings(r=4, alpha=8))
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(1)
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)  # a trained-looking adapter: the policy differs from the base
    return policy.train()


def test_lora_reference_is_base_model_with_adapters_disabled(examples):
    batch = collate_preference(examples[:3], 0)
    policy = _lora_policy()
    before = _sums(policy, batch)
    ref = Reference(policy, _cpu_accelerator(), precompute=False)
    assert ref.mode == "adapters-disabled" and ref.copy is None
    ref_logps, lengths = ref.sequence_logps(batch)
    base = _sums(build_tiny_random().eval(), batch)
    assert torch.allclose(ref_logps, base, atol=1e-5, rtol=0)
    assert (before - base).abs().max() > 1e-2  # the adapter really changes the policy
    assert torch.equal(_sums(policy, batch), before)  # adapters are back on afterwards...
    assert policy.training  # ...and the training mode too
    assert lengths.tolist() == [len(e["chosen_ids"]) for e in examples[:3]] + \
        [len(e["rejected_ids"]) for e in examples[:3]]


def test_full_finetuning_reference_is_one_frozen_copy(examples):
    batch = collate_preference(examples[:2], 0)
    policy = build_tiny_random().train()
    ref = Reference(policy, _cpu_accelerator(), precompute=False)
    assert ref.mode == "frozen-copy" and not ref.copy.training
    assert not any(p.requires_grad for p in ref.copy.parameters())
    first, _ = ref.sequence_logps(batch)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.05)
    again, _ = ref.sequence_logps(batch)
    assert torch.equal(first, again)


def test_precompute_cache_and_rng(examples):
    examples = [dict(e) for e in examples]
    policy = build_tiny_random().train()
    acc = _cpu_accelerator()
    ref = Reference(policy, acc, precompute=True)
    assert ref.mode == "precomputed" and ref.copy is None

    def compute(chunk):
        logps, _ = ref.sequence_logps(collate_preference(chunk, 0))
        return {"ref_chosen_logps": logps[:len(chunk)], "ref_rejected_logps": logps[len(chunk):]}

    kwargs = dict(tag="dpo", id_fields=("prompt_ids", "chosen_ids", "rejected_ids"),
                  lengths=[len(e["prompt_ids"]) + len(e["chosen_ids"]) for e in examples], batch_size=3)
    rng = torch.get_rng_state()
    assert ref.attach(examples, ("ref_chosen_logps", "ref_rejected_logps"), compute, **kwargs) is False
    assert torch.equal(torch.get_rng_state(), rng)
    assert policy.training
    first = [(e["ref_chosen_logps"], e["ref_rejected_logps"]) for e in examples]
    assert all(isinstance(c, float) and c < 0 for c, _ in first)

    # a batch of one, no padding, matches the length-sorted padded pass
    one = _sums(build_tiny_random().eval(), collate_preference(examples[:1], 0))
    assert first[0] == pytest.approx((float(one[0]), float(one[1])), abs=1e-5)

    for e in examples:
        del e["ref_chosen_logps"], e["ref_rejected_logps"]
    ref2 = Reference(build_tiny_random(), acc, precompute=True)
    assert ref2.attach(examples, ("ref_chosen_logps", "ref_rejected_logps"), compute, **kwargs) is True
    assert [(e["ref_chosen_logps"], e["ref_rejected_logps"]) for e in examples] == first
    # full fine-tuning: once trained, the policy is no longer the reference
    with pytest.raises(RuntimeError, match="precomputed"):
        ref.sequence_logps(collate_preference(examples[:1], 0))


def test_fingerprint_and_key():
    base = build_tiny_random()
    fp = model_fingerprint(base)
    assert model_fingerprint(_lora_policy()) == fp  # LoRA: the reference is the base model
    with torch.no_grad():
        base.model.layers[1].mlp.down_proj.weight[3, 5] += 1e-3
    assert model_fingerprint(base) != fp
    ex = [{"prompt_ids": [1, 2], "chosen_ids": [3], "rejected_ids": [4]}]
    k = examples_key("dpo", fp, ex, ("prompt_ids", "chosen_ids", "rejected_ids"))
    assert k == examples_key("dpo", fp, [dict(ex[0])], ("prompt_ids", "chosen_ids", "rejected_ids"))
    ex2 = [{"prompt_ids": [1, 2], "chosen_ids": [3], "rejected_ids": [5]}]
    assert k != examples_key("dpo", fp, ex2, ("prompt_ids", "chosen_ids", "rejected_ids"))
    assert k != examples_key("kto", fp, ex, ("prompt_ids", "chosen_ids", "rejected_ids"))


@pytest.mark.parametrize("method,extra", [("dpo", []), ("kto", ["lora.r=4", "lr=1e-2"])])
def test_precomputed_reference_trains_like_a_live_one(method, extra, pref_data, tmp_path):
    """Same losses with the reference precomputed and with it run every step (frozen copy for DPO,
    adapters disabled for KTO with LoRA)."""
    runs = {}
    for pre in ("true", "false"):
        out = tmp_path / pre
        assert main([method, "model=tiny-random", f"data={pref_data}", f"output_dir={out}", "max_steps=2",
                     "batch_size=4", "max_length=64", "lr=1e-3", f"precompute_ref_log_probs={pre}", *extra]) == 0
        runs[pre] = read_metrics(out)
    for a, b in zip(runs["true"], runs["false"], strict=True):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-5)
        assert a["rewards/chosen"] == pytest.approx(b["rewards/chosen"], abs=1e-5)
        if method == "kto":
            assert a["kl"] == pytest.approx(b["kl"], abs=1e-5)


def test_unwritable_cache_only_costs_a_pass(examples, monkeypatch, capsys):
    def no_cache():
        raise PermissionError("read-only")

    monkeypatch.setattr(reference, "ref_cache_dir", no_cache)
    examples = [dict(e) for e in examples[:2]]
    ref = Reference(build_tiny_random(), _cpu_accelerator(), precompute=True)

    def compute(chunk):
        logps, _ = ref.sequence_logps(collate_preference(chunk, 0))
        return {"ref_chosen_logps": logps[:len(chunk)], "ref_rejected_logps": logps[len(chunk):]}

    assert ref.attach(examples, ("ref_chosen_logps", "ref_rejected_logps"), compute, tag="dpo",
                      id_fields=("prompt_ids",), lengths=[1, 1], batch_size=2) is False
    assert all("ref_chosen_logps" in e for e in examples)
    assert "not cached" in capsys.readouterr().err
