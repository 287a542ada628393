"""Rollout backends and the shared online pieces: shapes, masks, seeds, log-prob alignment."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from alignkit.generation.backends import (
    HFRolloutBackend,
    RolloutBackendError,
    SamplingSettings,
    VLLMRolloutBackend,
    make_backend,
    rollout_from_token_lists,
    rollout_seed,
    stop_token_ids,
)
from alignkit.logprobs import full_logits_token_logps
from alignkit.methods.online import (
    collate_prompt_examples,
    completion_token_logps,
    reward_inputs,
    rollout_batch,
)
from alignkit.models import build_tiny_random


@pytest.fixture(scope="module")
def model():
    return build_tiny_random()


@pytest.fixture(scope="module")
def prompts(tokenizer):
    return [tokenizer("Hello there, how are you today?")["input_ids"], tokenizer("Hi")["input_ids"]]


def _backend(tokenizer, model, **kw):
    settings = SamplingSettings(max_new_tokens=kw.pop("max_new_tokens", 6), temperature=kw.pop("temperature", 1.0),
                                top_p=kw.pop("top_p", 1.0), pad_id=tokenizer.pad_token_id,
                                eos_ids=stop_token_ids(tokenizer, model))
    return HFRolloutBackend(settings)


def test_hf_rollout_shapes_masks_and_grouping(tokenizer, model, prompts):
    backend = _backend(tokenizer, model)
    ro = backend.generate(model, prompts, num_generations=3, seed=rollout_seed(1, 0))
    N, P = 6, max(len(p) for p in prompts)
    assert ro.sequences.shape[0] == N and ro.prompt_length == P
    C = ro.sequences.shape[1] - P
    assert 1 <= C <= 6 and ro.completion_mask.shape == (N, C)
    # rows grouped per prompt, prompts left-padded
    for i in range(N):
        p = prompts[i // 3]
        assert ro.sequences[i, P - len(p):P].tolist() == p
        assert ro.attention_mask[i, :P].tolist() == [0] * (P - len(p)) + [1] * len(p)
        n = int(ro.completion_mask[i].sum())
        assert ro.completion_ids[i] == ro.sequences[i, P:P + n].tolist()
        assert ro.attention_mask[i, P:].tolist() == ro.completion_mask[i].tolist()
    assert not model.training  # the fixture model was in eval mode and stays so


def test_seed_reproduces_and_differs(tokenizer, model, prompts):
    backend = _backend(tokenizer, model)
    a = backend.generate(model, prompts, num_generations=2, seed=rollout_seed(7, 3))
    b = backend.generate(model, prompts, num_generations=2, seed=rollout_seed(7, 3))
    c = backend.generate(model, prompts, num_generations=2, seed=rollout_seed(7, 4))
    assert torch.equal(a.sequences, b.sequences)
    assert not torch.equal(a.sequences, c.sequences)
    assert len({rollout_seed(1, s, r, k) for s in range(5) for r in range(2) for k in range(3)}) == 30
    # generation does not touch the global RNG
    torch.manual_seed(0)
    x = torch.rand(1)
    torch.manual_seed(0)
    backend.generate(model, prompts, num_generations=2, seed=5)
    assert torch.equal(torch.rand(1), x)


def test_eos_stops_and_masks(tokenizer):
    eos = tokenizer.eos_token_id
    ro = rollout_from_token_lists([[5, 6], [7]], [[1, eos, 3], [4, 4, 4, 4], [eos], [9, 9]],
                                  pad_id=0, eos_ids=[eos], max_new_tokens=3, num_generations=2)
    assert ro.completion_ids == [[1, eos], [4, 4, 4], [eos], [9, 9]]
    assert ro.truncated.tolist() == [False, True, False, True]
    assert ro.completion_mask.tolist() == [[1, 1, 0], [1, 1, 1], [1, 0, 0], [1, 1, 0]]
    assert ro.sequences.tolist() == [[5, 6, 1, eos, 0], [5, 6, 4, 4, 4], [0, 7, eos, 0, 0], [0, 7, 9, 9, 0]]

    batch = rollout_batch(ro)
    assert batch["labels"].tolist()[2] == [-100, -100, eos, -100, -100]
    assert batch["position_ids"].tolist()[2] == [0, 0, 1, 0, 0]
    assert batch["position_ids"].tolist()[1] == [0, 1, 2, 3, 4]


def test_completion_logps_match_unpadded_reference(tokenizer, model, prompts):
    """Left padding + position ids: each row's completion log-probs equal those of the row alone."""
    backend = _backend(tokenizer, model, temperature=0.7)
    ro = backend.generate(model, prompts, num_generations=2, seed=3)
    batch = rollout_batch(ro)
    with torch.no_grad():
        logps, ent = completion_token_logps(model, batch, temperature=0.7, with_entropy=True)
    assert logps.shape == ro.completion_mask.shape == ent.shape
    assert torch.all(logps[ro.completion_mask == 0] == 0) and torch.all(ent[ro.completion_mask == 0] == 0)
    P = ro.prompt_length
    for i in range(ro.sequences.shape[0]):
        p = prompts[i // 2]
        comp = ro.completion_ids[i]
        ids = torch.tensor([p + comp])
        labels = torch.tensor([[-100] * len(p) + comp])
        with torch.no_grad():
            ref, _, ref_ent = full_logits_token_logps(model, ids, torch.ones_like(ids), labels,
                                                      return_entropy=True, temperature=0.7)
        n = len(comp)
        assert torch.allclose(logps[i, :n], ref[0, len(p):], atol=1e-4), i
        assert torch.allclose(ent[i, :n], ref_ent[0, len(p):], atol=1e-3), i
    assert P == max(len(p) for p in prompts)


def test_reward_inputs_follow_trl_conventions(tokenizer):
    examples = [
        {"prompt_ids": [1, 2], "prompt": [{"role": "user", "content": "q1"}], "columns": {"answer": "a"}, "row": 1},
        {"prompt_ids": [3], "prompt": [{"role": "user", "content": "q2"}], "columns": {"answer": "b", "x": 1},
         "row": 2},
    ]
    batch = collate_prompt_examples(examples, pad_id=0)
    assert batch["input_ids"].tolist() == [[1, 2], [0, 3]] and batch["rows"] == [1, 2]
    ro = rollout_from_token_lists(batch["prompt_ids"], [[5], [6], [7], [8]], pad_id=0, eos_ids=[9],
                                  max_new_tokens=2, num_generations=2)
    prompts, completions, columns = reward_inputs(batch, ro, ["t1", "t2", "t3", "t4"])
    assert prompts[1] == examples[0]["prompt"] and prompts[2] == examples[1]["prompt"]
    assert completions[0] == [{"role": "assistant", "content": "t1"}]
    assert columns["answer"] == ["a", "a", "b", "b"] and columns["x"] == [None, None, 1, 1]
    assert columns["completion_ids"] == [[5], [6], [7], [8]]
    # string prompts get string completions
    batch["prompts"] = ["q1", "q2"]
    _, completions, _ = reward_inputs(batch, ro, ["t1", "t2", "t3", "t4"])
    assert completions == ["t1", "t2", "t3", "t4"]


def test_backend_selection(tokenizer, model):
    settings = SamplingSettings(max_new_tokens=4, pad_id=0, eos_ids=(2,))
    assert isinstance(make_backend("hf", settings), HFRolloutBackend)
    with pytest.raises(ValueError, match="unknown rollout backend"):
        make_backend("sglang", settings)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        HFRolloutBackend(SamplingSettings(max_new_tokens=4, temperature=0.0))


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None and torch.cuda.is_available(),
                    reason="vllm and a GPU are present")
def test_vllm_backend_says_what_it_needs():
    with pytest.raises(RolloutBackendError, match="needs the `vllm` package and a CUDA GPU|needs a CUDA GPU"):
        VLLMRolloutBackend(SamplingSettings(max_new_tokens=4, pad_id=0, eos_ids=(2,)), "/nonexistent")


# ------------------------------------------------------------------------------ inference copy
def _lora_policy():
    from alignkit.config import LoraSettings
    from alignkit.models import apply_lora

    torch.manual_seed(0)
    policy = apply_lora(build_tiny_random(), LoraSettings(r=4, alpha=8.0))
    with torch.no_grad():  # lora_B starts at zero: make the adapters matter
        for name, p in policy.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.2)
    return policy


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits.float()


def test_inference_copy_float32_matches_the_lora_policy_and_follows_updates():
    from alignkit.generation.backends import InferenceCopy

    policy = _lora_policy()
    ids = torch.randint(0, 1000, (2, 9))
    copy = InferenceCopy(torch.float32)
    merged = copy.refresh(policy)
    assert not any("lora" in n for n, _ in merged.named_parameters())
    assert torch.allclose(_logits(merged, ids), _logits(policy, ids), atol=1e-5)
    # an optimizer step changes the adapters: the next refresh must carry the change
    with torch.no_grad():
        for name, p in policy.named_parameters():
            if "lora_A" in name:
                p.add_(0.3)
    stale = _logits(merged, ids)
    fresh = _logits(copy.refresh(policy), ids)
    assert copy.refresh(policy) is merged  # one copy, updated in place
    assert not torch.allclose(stale, _logits(policy, ids), atol=1e-3)
    assert torch.allclose(fresh, _logits(policy, ids), atol=1e-5)
    with policy.disable_adapter():  # the base itself was never touched
        assert torch.allclose(_logits(policy, ids), _logits(build_tiny_random(), ids), atol=0)


def test_inference_copy_bfloat16_full_model_tracks_trainable_weights():
    from alignkit.generation.backends import InferenceCopy

    policy = build_tiny_random()
    ids = torch.randint(0, 1000, (2, 9))
    copy = InferenceCopy(torch.bfloat16)
    merged = copy.refresh(policy)
    assert all(p.dtype == torch.bfloat16 for p in merged.parameters())
    assert all(b.dtype == torch.float32 for b in merged.buffers() if b.is_floating_point())
    with torch.no_grad():
        policy.model.norm.weight.mul_(3.0)  # a trainable weight moves
    ref = _logits(policy, ids)
    got = _logits(copy.refresh(policy), ids)
    assert (got - ref).abs().max() < 0.05 * ref.abs().max()


def test_hf_backend_samples_from_the_copy(tokenizer, prompts):
    policy = _lora_policy()
    settings = SamplingSettings(max_new_tokens=6, temperature=1.0, pad_id=tokenizer.pad_token_id,
                                eos_ids=stop_token_ids(tokenizer))
    own = HFRolloutBackend(settings).generate(policy, prompts, num_generations=2, seed=3)
    copied = HFRolloutBackend(settings, dtype="float32").generate(policy, prompts, num_generations=2, seed=3)
    # float32 merged weights sample the same tokens as the LoRA model for the same seed
    assert torch.equal(own.sequences, copied.sequences)
    with pytest.raises(ValueError, match="rollout_dtype"):
        HFRolloutBackend(settings, dtype="float16")


def test_rollout_dtype_defaults_to_bfloat16_under_bf16_mixed_precision():
    from types import SimpleNamespace

    from alignkit.generation.backends import rollout_dtype

    bf16, fp32 = SimpleNamespace(mixed_precision="bf16"), SimpleNamespace(mixed_precision="no")
    assert rollout_dtype(SimpleNamespace(rollout_dtype=None), bf16) == "bfloat16"
    assert rollout_dtype(SimpleNamespace(rollout_dtype=None), fp32) is None
    assert rollout_dtype(SimpleNamespace(rollout_dtype="float32"), bf16) == "float32"  # an explicit choice wins
