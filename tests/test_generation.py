"""generate() and sample_completions() on tiny-random (the 135M model only in the slow test)."""

from __future__ import annotations

import time

import pytest
import torch

from alignkit.generation import Rollout, auto_batch_size, encode_prompt, generate, sample_completions
from alignkit.generation.sampling import _first_eos_mask
from alignkit.models import build_tiny_random
from tests.helpers import scrambled_tiny_random

PROMPTS = [
    "hello there, how are you doing today my friend?",
    "hi",
    [{"role": "user", "content": "x y z"}],
    "Count: 1 2 3",
]


@pytest.fixture(scope="module")
def scrambled():
    return scrambled_tiny_random(0)


def test_encode_prompt_modes(tokenizer):
    as_messages = encode_prompt(tokenizer, [{"role": "user", "content": "What is 2+2?"}])
    assert as_messages == encode_prompt(tokenizer, "What is 2+2?", "always")
    text = tokenizer.decode(as_messages)
    assert text.endswith("<|im_start|>assistant\n") and "<|im_start|>user\nWhat is 2+2?<|im_end|>" in text
    # TRL's convention under auto: a string is used as it is, exactly as the data layer tokenises it
    raw = encode_prompt(tokenizer, "What is 2+2?", "never")
    assert tokenizer.decode(raw) == "What is 2+2?" == tokenizer.decode(encode_prompt(tokenizer, "What is 2+2?"))
    with pytest.raises(ValueError, match="chat_template is 'never'"):
        encode_prompt(tokenizer, [{"role": "user", "content": "x"}], "never")
    with pytest.raises(ValueError):
        encode_prompt(tokenizer, "x", "sometimes")
    with pytest.raises(TypeError):
        encode_prompt(tokenizer, 42)


def test_generate_greedy_deterministic_and_batch_independent(scrambled, tokenizer):
    batched = generate(scrambled, tokenizer, PROMPTS, max_new_tokens=6, batch_size=4)
    assert batched == generate(scrambled, tokenizer, PROMPTS, max_new_tokens=6, batch_size=4)
    single = generate(scrambled, tokenizer, PROMPTS, max_new_tokens=6, batch_size=1)
    assert batched == single
    assert len(set(batched)) == len(PROMPTS)  # varied, in input order
    assert all("<|im_end|>" not in c and "<|im_start|>" not in c for c in batched)
    assert generate(scrambled, tokenizer, [], max_new_tokens=3) == []


def test_auto_batch_size_keeps_the_kv_cache_within_its_budget(scrambled, tokenizer):
    from types import SimpleNamespace

    class Fake(torch.nn.Module):
        def __init__(self, dtype, **config):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1, dtype=dtype))
            self.config = SimpleNamespace(**config)

    smol = dict(num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3, hidden_size=576)
    # per token: 30 layers x (K and V) x 3 heads x 64 dims x 4 bytes = 46,080 B; the budget is 2 GiB
    assert auto_batch_size(Fake(torch.float32, **smol), 260) == 64  # 2^31 // (46,080 x 260) = 179, capped
    assert auto_batch_size(Fake(torch.float32, **smol), 10_000) == 4  # 2^31 // 460,800,000
    assert auto_batch_size(Fake(torch.bfloat16, **smol), 10_000) == 9  # half the bytes
    assert auto_batch_size(Fake(torch.float32, **smol), 10**9) == 1
    assert auto_batch_size(Fake(torch.float32, hidden_size=8), 100) == 8  # no cache shape: a fixed 8
    # batch_size=None picks it per call; greedy answers are the batch-1 answers
    assert generate(scrambled, tokenizer, PROMPTS, max_new_tokens=6, batch_size=None) == \
        generate(scrambled, tokenizer, PROMPTS, max_new_tokens=6, batch_size=1)


def test_generate_sampling_seeded(scrambled, tokenizer):
    a = generate(scrambled, tokenizer, PROMPTS[:2], max_new_tokens=8, temperature=1.0, seed=7)
    b = generate(scrambled, tokenizer, PROMPTS[:2], max_new_tokens=8, temperature=1.0, seed=7)
    c = generate(scrambled, tokenizer, PROMPTS[:2], max_new_tokens=8, temperature=1.0, seed=8)
    assert a == b and a != c


def test_sample_completions_batch_matches_single(scrambled, tokenizer):
    ids = [encode_prompt(tokenizer, p) for p in PROMPTS]
    batch = sample_completions(scrambled, ids, pad_id=2, eos_id=2, max_new_tokens=6, temperature=0.0)
    assert batch.prompt_length == max(len(p) for p in ids)
    for i, p in enumerate(ids):
        one = sample_completions(scrambled, [p], pad_id=2, eos_id=2, max_new_tokens=6, temperature=0.0)
        assert one.completion_ids[0] == batch.completion_ids[i]
        # left padding: the prompt sits at the right end of the prompt block
        row = batch.sequences[i, : batch.prompt_length]
        assert row[batch.prompt_length - len(p):].tolist() == p
        assert batch.attention_mask[i, : batch.prompt_length].sum().item() == len(p)


def test_sample_completions_shapes_grouping_and_rng(scrambled):
    torch.manual_seed(5)
    expected = torch.rand(2)
    torch.manual_seed(5)
    prompts = [[5, 6, 7], [8], [9, 10]]
    r = sample_completions(scrambled, prompts, pad_id=2, eos_id=2, max_new_tokens=5, temperature=1.0,
                           num_generations=3, generator_seed=11)
    assert torch.equal(torch.rand(2), expected)  # caller's RNG untouched
    assert isinstance(r, Rollout) and r.num_generations == 3
    n, width = r.sequences.shape
    assert n == 9 and r.prompt_length == 3 and width == 3 + r.completion_mask.shape[1]
    assert r.attention_mask.shape == r.sequences.shape and r.sequences.dtype == torch.long
    # grouped: rows 3..5 belong to prompt [8]
    for row in range(3, 6):
        assert r.sequences[row, :3].tolist() == [2, 2, 8]
        assert r.attention_mask[row, :3].tolist() == [0, 0, 1]
    assert len({tuple(c) for c in r.completion_ids}) > 1  # sampling differs across generations
    again = sample_completions(scrambled, prompts, pad_id=2, eos_id=2, max_new_tokens=5, temperature=1.0,
                               num_generations=3, generator_seed=11)
    assert torch.equal(again.sequences, r.sequences)
    # greedy generations of one prompt are identical and consecutive
    g = sample_completions(scrambled, prompts, pad_id=2, eos_id=2, max_new_tokens=4, temperature=0.0,
                           num_generations=2)
    assert torch.equal(g.sequences[0], g.sequences[1]) and torch.equal(g.sequences[4], g.sequences[5])


def test_sample_completions_masks_stop_after_first_eos():
    # force row 0 to emit EOS (2) at its third step through a hook on the output head; row 1 never does
    model = build_tiny_random()
    step = {"n": 0}

    def hook(_module, _inputs, output):
        step["n"] += 1
        output = output.clone()
        output[:, -1, 2] = -1e4
        if step["n"] == 3:
            output[0, -1, 2] = 1e4
        return output

    handle = model.lm_head.register_forward_hook(hook)
    try:
        r = sample_completions(model, [[5, 6, 7], [7, 8, 9, 10]], pad_id=0, eos_id=2, max_new_tokens=5,
                               temperature=0.0)
    finally:
        handle.remove()
    assert r.completion_mask.shape == (2, 5)
    assert r.completion_mask[0].tolist() == [1, 1, 1, 0, 0]
    assert r.completion_ids[0][-1] == 2 and len(r.completion_ids[0]) == 3
    assert r.completions[0, 3:].tolist() == [0, 0]  # pad after the EOS
    assert r.completion_mask[1].tolist() == [1, 1, 1, 1, 1] and 2 not in r.completion_ids[1]
    assert r.truncated.tolist() == [False, True]
    assert r.completion_lengths.tolist() == [3, 5]
    assert torch.equal(r.attention_mask, torch.cat([torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]]),
                                                    r.completion_mask], dim=1))


def test_first_eos_mask_unit():
    comp = torch.tensor([[4, 2, 5, 2], [2, 2, 2, 2], [4, 5, 6, 7], [4, 5, 6, 3]])
    mask, truncated = _first_eos_mask(comp, [2, 3])
    assert mask.tolist() == [[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 1], [1, 1, 1, 1]]
    assert truncated.tolist() == [False, False, True, False]


def test_generation_restores_training_mode(scrambled, tokenizer):
    scrambled.train()
    generate(scrambled, tokenizer, ["hi"], max_new_tokens=2)
    assert scrambled.training
    scrambled.eval()
    sample_completions(scrambled, [[5]], pad_id=2, eos_id=2, max_new_tokens=2, temperature=0.0)
    assert not scrambled.training


def test_sample_completions_argument_errors(scrambled):
    with pytest.raises(ValueError):
        sample_completions(scrambled, [], pad_id=2, eos_id=2, max_new_tokens=2)
    with pytest.raises(ValueError, match="empty prompt"):
        sample_completions(scrambled, [[]], pad_id=2, eos_id=2, max_new_tokens=2)
    with pytest.raises(ValueError):
        sample_completions(scrambled, [[5]], pad_id=2, eos_id=2, max_new_tokens=0)


def test_generate_with_peft_model(tokenizer):
    from alignkit.config import LoraSettings
    from alignkit.models import apply_lora

    base = build_tiny_random()
    expected = generate(base, tokenizer, ["hi"], max_new_tokens=3)
    peft_model = apply_lora(build_tiny_random(), LoraSettings(r=2))
    assert generate(peft_model, tokenizer, ["hi"], max_new_tokens=3) == expected


@pytest.mark.slow
def test_smollm2_generates_sensible_answer():
    from alignkit.models import load_trained

    t0 = time.perf_counter()
    model, tok = load_trained("smollm2-135m")
    load_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = generate(model, tok, ["What is the capital of France?", "Name three colors."], max_new_tokens=40)
    gen_s = time.perf_counter() - t0
    print(f"smollm2-135m load {load_s:.1f}s, generate 2x40 tokens {gen_s:.1f}s: {out}")
    assert "Paris" in out[0]
    assert "<|im_end|>" not in out[0] and not out[0].startswith("assistant")
    assert sum(c in out[1].lower() for c in ("red", "blue", "green", "yellow")) >= 2
