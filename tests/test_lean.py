"""The lean Llama decode forward (alignkit.generation.lean) against the model's own forward and HF generate."""

from __future__ import annotations

import pytest
import torch

from alignkit.config import LoraSettings
from alignkit.generation import sample_completions
from alignkit.generation.decode import PreallocatedCache
from alignkit.generation.lean import LeanDecoder, lean_decoder, supports_lean
from alignkit.models.loading import apply_lora
from tests.helpers import scrambled_tiny_random

PROMPT_IDS = [[5, 17, 9, 33, 2, 8, 41], [12, 7], [3, 3, 90, 14], [60]]


@pytest.fixture()
def scrambled():
    return scrambled_tiny_random(3)


def _lora(model, seed=0):
    model = apply_lora(model, LoraSettings(r=4, alpha=8)).eval()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    return model


def _lean_logits(model, ids, mask):
    """Prefill logits of every position through LeanDecoder, left-padded like the decode loop."""
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    cache = PreallocatedCache(model.config.num_hidden_layers, ids.shape[1])
    return LeanDecoder(model)(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache).logits


def _padded(prompts):
    width = max(map(len, prompts))
    ids = torch.tensor([[0] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    return ids, mask


def test_prefill_logits_equal_the_model_forward_with_left_padding(scrambled):
    ids, mask = _padded(PROMPT_IDS)
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    with torch.no_grad():
        want = scrambled(input_ids=ids, attention_mask=mask, position_ids=positions).logits
    got = _lean_logits(scrambled, ids, mask)
    real = mask.bool()
    assert torch.allclose(got[real], want[real], atol=1e-4, rtol=1e-4)
    assert not torch.isnan(got).any()  # padding queries attend to themselves, never to nothing


def test_greedy_tokens_equal_hf_generate_with_padding_groups_and_early_stops(scrambled):
    kw = dict(pad_id=0, eos_id=1, max_new_tokens=12, temperature=0, num_generations=2)
    lean = sample_completions(scrambled, PROMPT_IDS, sampler="lean", **kw)
    hf = sample_completions(scrambled, PROMPT_IDS, sampler="hf", **kw)
    assert lean.completion_ids == hf.completion_ids
    assert torch.equal(lean.sequences, hf.sequences)
    eos = hf.completion_ids[0][2]  # row 0 stops at its third token: rows leave the batch
    kw["eos_id"] = [1, eos]
    lean = sample_completions(scrambled, PROMPT_IDS, sampler="lean", **kw)
    hf = sample_completions(scrambled, PROMPT_IDS, sampler="hf", **kw)
    assert lean.completion_ids == hf.completion_ids
    assert len(lean.completion_ids[0]) == 3 and max(map(len, lean.completion_ids)) > 3


def test_prefill_by_length_fills_the_cache_like_one_padded_batch(scrambled, monkeypatch):
    import alignkit.generation.decode as decode

    monkeypatch.setattr(decode, "PREFILL_ROWS", 2)  # chunks {7, 4} and {2, 1} tokens: two widths
    ids, mask = _padded(PROMPT_IDS)
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    layers, width = scrambled.config.num_hidden_layers, ids.shape[1]
    one, chunked = PreallocatedCache(layers, width + 3), PreallocatedCache(layers, width + 3)
    lean = LeanDecoder(scrambled)
    with torch.no_grad():
        want = lean(input_ids=ids, attention_mask=mask, position_ids=positions, cache=one, logits_to_keep=1)
        got = decode._prefill_by_length(lean, ids, mask, positions, chunked)
    assert torch.allclose(got, want.logits[:, -1], atol=1e-5, rtol=1e-5)
    real = mask.bool()
    for a, b in zip(one.layers, chunked.layers):
        assert a.get_seq_length() == b.get_seq_length() == width
        assert torch.allclose(b.keys.transpose(1, 2)[real], a.keys.transpose(1, 2)[real], atol=1e-5)
        assert torch.allclose(b.values.transpose(1, 2)[real], a.values.transpose(1, 2)[real], atol=1e-5)
        # left of the chunk {2, 1 tokens}: zeros, never stale memory
        assert not b.keys[[1, 3], :, :width - 2].any() and not b.values[[1, 3], :, :width - 2].any()
        assert torch.isfinite(b.keys).all() and torch.isfinite(b.values).all()
    monkeypatch.setattr(decode, "PREFILL_ROWS", 1)
    kw = dict(pad_id=0, eos_id=1, max_new_tokens=12, temperature=0, num_generations=2)
    assert (sample_completions(scrambled, PROMPT_IDS, sampler="lean", **kw).completion_ids
            == sample_completions(scrambled, PROMPT_IDS, sampler="hf", **kw).completion_ids)


def test_decode_step_attention_equals_grouped_sdpa():
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(shape, generator=gen) for shape in ((5, 6, 1, 8), (5, 2, 11, 8), (5, 2, 11, 8)))
    keys = torch.ones(5, 1, 1, 11, dtype=torch.bool)
    keys[1, ..., :4] = False  # a left-padded row
    lean = LeanDecoder.__new__(LeanDecoder)
    want = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=keys, enable_gqa=True)
    assert torch.allclose(lean._attend(q, k, v, keys), want, atol=1e-6)
    # the same with queries that must not see the masked keys: changing those keys changes nothing
    k2 = k.clone()
    k2[1, :, :4] = 1e3
    assert torch.allclose(lean._attend(q, k2, v, keys), want, atol=1e-6)


def test_bf16_decode_step_attention_by_matmul_without_amx_and_flash_with_it():
    gen = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(shape, generator=gen).mul(2).bfloat16()
               for shape in ((4, 6, 1, 8), (4, 2, 9, 8), (4, 2, 9, 8)))
    keys = torch.ones(4, 1, 1, 9, dtype=torch.bool)
    keys[2, ..., :3] = False
    lean = LeanDecoder.__new__(LeanDecoder)
    sdpa = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=keys, enable_gqa=True)
    lean.bf16_by_matmul = False  # with AMX: the flash kernel, bit for bit
    assert torch.equal(lean._attend(q, k, v, keys), sdpa)
    lean.bf16_by_matmul = True  # without: HF eager's rounding, written out per head by hand
    got = lean._attend(q, k, v, keys)
    assert got.dtype == torch.bfloat16
    for row in range(4):
        for head in range(6):
            kv = head // 3  # 6 query heads share 2 key/value heads in groups of 3
            s = (q[row, head, 0] @ k[row, kv].T).float() / 8 ** 0.5  # product rounded to bf16, then float
            s[~keys[row, 0, 0]] = float("-inf")
            p = s.softmax(-1).bfloat16()
            assert torch.allclose(got[row, head, 0].float(), (p @ v[row, kv]).float(), rtol=1e-2, atol=1e-2)
    exact = torch.nn.functional.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=keys,
                                                              enable_gqa=True)
    assert (got.float() - exact).abs().max() < 0.1


def test_has_amx_reads_the_cpu_flags(monkeypatch):
    from alignkit import hardware

    monkeypatch.setattr(hardware, "read_cpu_info", lambda: hardware.parse_cpuinfo("flags : avx2 amx_bf16 amx_tile"))
    assert hardware.has_amx()
    monkeypatch.setattr(hardware, "read_cpu_info", lambda: hardware.parse_cpuinfo("flags : avx2 avx512_bf16"))
    assert not hardware.has_amx()


def test_lora_adapters_are_merged_and_follow_training_steps(scrambled):
    model = _lora(scrambled)
    ids, mask = _padded(PROMPT_IDS)
    real = mask.bool()

    def model_logits():
        with torch.no_grad():
            return model(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(1) - 1).clamp(min=0)).logits

    decoder = lean_decoder(model)
    cache = PreallocatedCache(model.config.num_hidden_layers, ids.shape[1])
    before = decoder(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(1) - 1).clamp(min=0), cache=cache).logits
    assert torch.allclose(before[real], model_logits()[real], atol=1e-4, rtol=1e-4)

    # an optimizer step on the adapters: the cached decoder must notice and rebuild its weights
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0)
    model.train()
    model(input_ids=ids, attention_mask=mask).logits.pow(2).mean().backward()
    optimizer.step()
    model.eval()
    assert lean_decoder(model) is decoder  # one decoder per model, refreshed in place
    cache = PreallocatedCache(model.config.num_hidden_layers, ids.shape[1])
    after = decoder(input_ids=ids, attention_mask=mask, position_ids=(mask.cumsum(1) - 1).clamp(min=0), cache=cache).logits
    assert not torch.allclose(after[real], before[real], atol=1e-3)
    assert torch.allclose(after[real], model_logits()[real], atol=1e-4, rtol=1e-4)

    with model.disable_adapter():  # the reference view: base weights only
        cache = PreallocatedCache(model.config.num_hidden_layers, ids.shape[1])
        base = lean_decoder(model)(input_ids=ids, attention_mask=mask,
                                   position_ids=(mask.cumsum(1) - 1).clamp(min=0), cache=cache).logits
        assert torch.allclose(base[real], model_logits()[real], atol=1e-4, rtol=1e-4)
    assert not torch.allclose(base[real], after[real], atol=1e-3)


def test_lora_greedy_tokens_equal_hf_generate(scrambled):
    model = _lora(scrambled, seed=1)
    kw = dict(pad_id=0, eos_id=1, max_new_tokens=10, temperature=0)
    assert (sample_completions(model, PROMPT_IDS, sampler="lean", **kw).completion_ids
            == sample_completions(model, PROMPT_IDS, sampler="hf", **kw).completion_ids)


def test_which_models_it_runs_and_the_fallback(scrambled, monkeypatch):
    assert supports_lean(scrambled) and supports_lean(_lora(scrambled_tiny_random(4)))
    scrambled.config.mlp_bias = True
    assert not supports_lean(scrambled)
    scrambled.config.mlp_bias = False
    scrambled.config.model_type = "mistral"
    assert not supports_lean(scrambled)
    scrambled.config.model_type = "llama"
    handle = scrambled.lm_head.register_forward_hook(lambda *args: None)  # a hook the lean forward would skip
    assert not supports_lean(scrambled)
    handle.remove()
    scrambled.config.model_type = "mistral"
    # auto picks lean where supported and the plain decode loop elsewhere, with the same greedy tokens
    from alignkit.generation import decode as decode_module

    seen = []
    real_decode = decode_module.decode

    def spy(*args, **kwargs):
        seen.append(kwargs["lean"])
        return real_decode(*args, **kwargs)

    monkeypatch.setattr("alignkit.generation.sampling.decode", spy)
    monkeypatch.delenv("ALIGNKIT_SAMPLER", raising=False)
    kw = dict(pad_id=0, eos_id=1, max_new_tokens=6, temperature=0)
    plain = sample_completions(scrambled, PROMPT_IDS, **kw)
    scrambled.config.model_type = "llama"
    lean = sample_completions(scrambled, PROMPT_IDS, **kw)
    assert seen == [False, True]
    assert plain.completion_ids == lean.completion_ids


@pytest.mark.parametrize(("amx", "onednn"), [(True, True), (False, True), (False, False)])
def test_weight_layout_gives_the_model_forward_at_few_and_many_rows(scrambled, monkeypatch, amx, onednn):
    """Without AMX float32 weights are stored [out, in] and multiplied by oneDNN's linear or, without it,
    few rows as (W xᵀ)ᵀ; with AMX (or bf16) [in, out]. Every way, and on both sides of OUT_IN_ROWS, the
    logits are the model's."""
    from alignkit.generation import lean as lean_module

    if onednn and not lean_module.onednn_linear_works():
        pytest.skip("this torch build has no oneDNN float32 linear")
    monkeypatch.setattr(lean_module, "has_amx", lambda: amx)
    monkeypatch.setattr(lean_module, "onednn_linear_works", lambda: onednn)
    monkeypatch.setattr(lean_module, "OUT_IN_ROWS", 6)
    decoder = LeanDecoder(scrambled)
    assert decoder.out_in is (not amx) and decoder.onednn is (onednn and not amx)
    assert decoder.layers[0].qkv.is_contiguous() is amx  # an [in, out] view of [out, in] storage without AMX
    for prompts in (PROMPT_IDS[1:3], PROMPT_IDS):  # 2 x 4 = 8 rows > 6; 4 x 7 = 28 rows
        for width in (1, None):  # one column (decode-sized, 2-4 rows <= 6) and the whole prompt
            ids, mask = _padded(prompts)
            ids, mask = (ids[:, -1:], mask[:, -1:]) if width == 1 else (ids, mask)
            positions = (mask.cumsum(1) - 1).clamp(min=0)
            with torch.no_grad():
                want = scrambled(input_ids=ids, attention_mask=mask, position_ids=positions).logits
            cache = PreallocatedCache(scrambled.config.num_hidden_layers, ids.shape[1])
            got = decoder(input_ids=ids, attention_mask=mask, position_ids=positions, cache=cache).logits
            assert torch.allclose(got[mask.bool()], want[mask.bool()], atol=1e-4, rtol=1e-4)
