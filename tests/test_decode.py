"""alignkit's decode loop (alignkit.generation.decode) against HF generate and against hand-computed draws."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from alignkit.generation import sample_completions
from alignkit.generation.decode import PreallocatedCache, sample_next, supports_fast_decode
from tests.helpers import scrambled_tiny_random

PROMPT_IDS = [[5, 17, 9, 33, 2, 8, 41], [12, 7], [3, 3, 90, 14], [60]]


@pytest.fixture(scope="module")
def scrambled():
    return scrambled_tiny_random(1)


def _both(model, prompts, **kw):
    fast = sample_completions(model, prompts, sampler="fast", **kw)
    hf = sample_completions(model, prompts, sampler="hf", **kw)
    return fast, hf


def test_greedy_tokens_equal_hf_generate_with_padding_and_groups(scrambled):
    fast, hf = _both(scrambled, PROMPT_IDS, pad_id=0, eos_id=1, max_new_tokens=12, temperature=0,
                     num_generations=2)
    assert fast.completion_ids == hf.completion_ids
    assert torch.equal(fast.sequences, hf.sequences)
    assert torch.equal(fast.attention_mask, hf.attention_mask)
    assert torch.equal(fast.completion_mask, hf.completion_mask)
    assert fast.truncated.tolist() == hf.truncated.tolist()
    assert len({tuple(c) for c in fast.completion_ids}) > 1  # the prompts really differ


def test_rows_that_stop_early_are_dropped_without_changing_the_rest(scrambled):
    """Pick as EOS a token that some rows emit early: finished rows leave the batch (the cache is
    compacted) and the remaining rows must still continue exactly as HF generate continues them."""
    plain = sample_completions(scrambled, PROMPT_IDS, pad_id=0, eos_id=1, max_new_tokens=12,
                               temperature=0, sampler="hf")
    eos = plain.completion_ids[0][2]  # row 0 stops at its third token
    fast, hf = _both(scrambled, PROMPT_IDS, pad_id=0, eos_id=[1, eos], max_new_tokens=12, temperature=0)
    assert fast.completion_ids == hf.completion_ids
    lengths = [len(c) for c in fast.completion_ids]
    assert lengths[0] == 3 and max(lengths) > 3  # some rows stopped, others went on
    assert fast.truncated.tolist() == hf.truncated.tolist()


def test_sample_next_inverse_cdf_by_hand():
    logits = torch.log(torch.tensor([[0.1, 0.2, 0.7], [0.5, 0.3, 0.2]]))
    # cdf row 0: 0.1, 0.3, 1.0 -> u=0.05 picks 0, u=0.25 picks 1, u=0.31 picks 2
    for u, want in ((0.05, 0), (0.25, 1), (0.31, 2), (0.999, 2)):
        got = sample_next(logits, 1.0, 1.0, uniforms=torch.tensor([u, u]))
        assert int(got[0]) == want
    # top_p=0.7 on row 1 (sorted 0.5, 0.3, 0.2): mass before each token 0, 0.5, 0.8 -> the 0.2 token is
    # cut; the nucleus {0.5, 0.3} renormalised has cdf 0.625, 1.0
    assert sample_next(logits, 1.0, 0.7, uniforms=torch.tensor([0.99, 0.6]))[1] == 0
    assert sample_next(logits, 1.0, 0.7, uniforms=torch.tensor([0.99, 0.63]))[1] == 1
    assert sample_next(logits, 1.0, 0.7, uniforms=torch.tensor([0.99, 0.999]))[1] == 1  # never token 2
    # temperature 0.5 squares the probabilities: 0.01, 0.04, 0.49 -> cdf/0.54 = 0.0185, 0.0926, 1
    assert sample_next(logits, 0.5, 1.0, uniforms=torch.tensor([0.05, 0.5]))[0] == 1
    assert sample_next(logits, 0.5, 1.0, uniforms=torch.tensor([0.01, 0.5]))[0] == 0
    assert sample_next(logits, 0.0, 1.0).tolist() == [2, 0]  # greedy


def test_sample_next_frequencies_follow_the_softmax():
    probs = torch.tensor([0.05, 0.15, 0.3, 0.5])
    n = 40_000
    logits = torch.log(probs).expand(n, 4)
    draws = sample_next(logits, 1.0, 1.0, generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(draws, minlength=4).float() / n
    for f, p in zip(freq.tolist(), probs.tolist()):
        assert abs(f - p) < 4 * math.sqrt(p * (1 - p) / n)


def test_sample_next_two_level_cdf_across_blocks_by_hand():
    # 600 tokens (three blocks of 256, the last one partial): mass only at 10 (0.2), 300 (0.3), 599 (0.5)
    v = 600
    logits = torch.full((1, v), float("-inf"))
    logits[0, [10, 300, 599]] = torch.log(torch.tensor([0.2, 0.3, 0.5]))
    for u, want in ((0.0, 10), (0.19, 10), (0.21, 300), (0.49, 300), (0.51, 599), (0.999999, 599)):
        assert int(sample_next(logits, 1.0, 1.0, uniforms=torch.tensor([u]))[0]) == want
    # temperature 0.5 squares them: 0.04, 0.09, 0.25 -> cdf / 0.38 = 0.105, 0.342, 1
    assert int(sample_next(logits, 0.5, 1.0, uniforms=torch.tensor([0.1]))[0]) == 10
    assert int(sample_next(logits, 0.5, 1.0, uniforms=torch.tensor([0.2]))[0]) == 300
    assert int(sample_next(logits, 0.5, 1.0, uniforms=torch.tensor([0.35]))[0]) == 599


def test_sample_next_chunks_rows_and_never_draws_zero_mass():
    torch.manual_seed(0)
    v, n = 700, 40 * 16 + 3  # rows drawn in several chunks, the last one partial
    logits = torch.randn(n, v) * 2
    logits[:, 256:512] = float("-inf")  # a whole block without mass
    logits[:, 650:] = float("-inf")  # and the tail of the partial block
    u = torch.rand(n)
    together = sample_next(logits, 0.8, 1.0, uniforms=u)
    alone = torch.cat([sample_next(logits[i:i + 1], 0.8, 1.0, uniforms=u[i:i + 1]) for i in range(n)])
    assert torch.equal(together, alone)
    assert not ((together >= 256) & (together < 512)).any() and not (together >= 650).any()
    # against the plain cumulative sum over the whole row (the single-level inverse CDF)
    cdf = torch.softmax(logits / 0.8, dim=-1).cumsum(-1)
    plain = torch.searchsorted(cdf, (u * cdf[:, -1]).unsqueeze(-1), right=True).squeeze(-1)
    assert (plain == together).float().mean() > 0.99  # equal but for rounding at a boundary


def test_sample_next_two_level_frequencies_follow_the_softmax():
    probs = torch.zeros(520)
    probs[[3, 255, 256, 519]] = torch.tensor([0.1, 0.2, 0.3, 0.4])  # either side of block boundaries
    n = 40_000
    draws = sample_next(torch.log(probs).expand(n, -1), 1.0, 1.0, generator=torch.Generator().manual_seed(0))
    freq = torch.bincount(draws, minlength=520).float() / n
    assert freq.sum() == 1 and float(freq[[3, 255, 256, 519]].sum()) == 1.0
    for i, p in ((3, 0.1), (255, 0.2), (256, 0.3), (519, 0.4)):
        assert abs(float(freq[i]) - p) < 4 * math.sqrt(p * (1 - p) / n)


def test_sampled_rollouts_are_seeded_and_follow_the_model(scrambled):
    kw = dict(pad_id=0, eos_id=1, max_new_tokens=1, temperature=1.0, num_generations=3000, sampler="fast")
    a = sample_completions(scrambled, [[5, 17, 9]], generator_seed=7, **kw)
    b = sample_completions(scrambled, [[5, 17, 9]], generator_seed=7, **kw)
    assert a.completion_ids == b.completion_ids
    with torch.no_grad():
        probs = torch.softmax(scrambled(torch.tensor([[5, 17, 9]])).logits[0, -1], -1)
    top = int(probs.argmax())
    freq = sum(c[0] == top for c in a.completion_ids) / 3000
    p = float(probs[top])
    assert abs(freq - p) < 4 * math.sqrt(p * (1 - p) / 3000)


def test_preallocated_cache_writes_in_place_and_selects_rows():
    cache = PreallocatedCache(num_layers=1, capacity=5)
    k = torch.arange(2 * 1 * 3 * 2, dtype=torch.float).reshape(2, 1, 3, 2)
    keys, _ = cache.update(k, k + 100, 0)
    assert keys.shape == (2, 1, 3, 2) and cache.get_seq_length() == 3
    keys, values = cache.update(k[:, :, :1] * -1, k[:, :, :1], 0)
    assert keys.shape == (2, 1, 4, 2) and torch.equal(keys[:, :, 3], -k[:, :, 0])
    cache.repeat_rows(2)
    cache.keep_rows(torch.tensor([3]))  # the second copy of row 1
    assert torch.equal(cache.layers[0].keys[0, :, :3], k[1]) and cache.get_seq_length() == 4
    with pytest.raises(RuntimeError, match="overflow"):
        cache.update(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), 0)


def test_which_models_the_loop_supports(scrambled):
    assert supports_fast_decode(scrambled)

    class Fake(torch.nn.Module):
        def __init__(self, **config):
            super().__init__()
            self.config = SimpleNamespace(num_hidden_layers=2, **config)

    assert supports_fast_decode(Fake(layer_types=["full_attention"] * 2))
    assert not supports_fast_decode(Fake(layer_types=["full_attention", "sliding_attention"]))
    assert not supports_fast_decode(Fake(sliding_window=4096))
    assert supports_fast_decode(Fake(sliding_window=4096, use_sliding_window=False))  # Qwen2's switch
    assert not supports_fast_decode(Fake(is_encoder_decoder=True))


def test_unsupported_models_use_generate(scrambled, monkeypatch):
    from alignkit.generation import sampling

    monkeypatch.setattr(sampling, "supports_fast_decode", lambda model: False)
    monkeypatch.setattr(sampling, "decode", lambda *a, **k: pytest.fail("the decode loop was used"))
    out = sample_completions(scrambled, PROMPT_IDS[:1], pad_id=0, eos_id=1, max_new_tokens=3, temperature=0)
    assert len(out.completion_ids[0]) == 3
    with pytest.raises(ValueError, match="sampler must be"):
        sample_completions(scrambled, PROMPT_IDS[:1], pad_id=0, eos_id=1, max_new_tokens=3, sampler="turbo")
