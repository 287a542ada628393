"""Padding-free SFT batches: the one-row layout, the per-sequence attention, and equality with padding."""

from __future__ import annotations

import math

import pytest
import torch

from alignkit.config import ConfigError, SFTConfig
from alignkit.data import collate_lm, collate_padding_free, collate_preference_tree, model_inputs
from alignkit.engine.logging import read_metrics
from alignkit.methods.common import forward_label_logps, pair_sequence_logps
from alignkit.models.segment_attention import (
    SEGMENT_ATTENTION,
    segment_attention_forward,
    tree_attention,
    use_segment_attention,
)
from tests.helpers import preference_rows, sft_rows, write_jsonl

EXAMPLES = [
    {"input_ids": [5, 6, 7], "labels": [-100, 6, 7], "row": 1},
    {"input_ids": [8, 9], "labels": [8, 9], "row": 2},
    {"input_ids": [10, 11, 12, 13], "labels": [-100, -100, 12, 13], "row": 3},
]


def test_collate_padding_free_layout():
    batch = collate_padding_free(EXAMPLES, pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9, 10, 11, 12, 13]]
    # each sequence's first label is never a target (nothing of its own precedes it)
    assert batch["labels"].tolist() == [[-100, 6, 7, -100, 9, -100, -100, 12, 13]]
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1, 0, 1, 2, 3]]
    assert batch["attention_mask"].tolist() == [[1] * 9]
    assert batch["cu_seq_lens"].tolist() == [0, 3, 5, 9] and batch["cu_seq_lens"].dtype == torch.int32
    inputs = model_inputs(batch)
    assert inputs["attention_mask"] is None and inputs["cu_seq_lens_q"].tolist() == [0, 3, 5, 9]
    assert inputs["max_length_q"] == 4


def test_segment_attention_by_hand():
    """Each sequence attends causally within itself: softmax(q kᵀ / √D + causal) v per sequence, with
    the 2 query heads of each key/value head, written out with explicit products."""
    torch.manual_seed(0)
    lengths, heads, kv_heads, d = [3, 5, 2], 4, 2, 8
    t = sum(lengths)
    q, k, v = torch.randn(1, heads, t, d), torch.randn(1, kv_heads, t, d), torch.randn(1, kv_heads, t, d)
    cu = torch.tensor([0, 3, 8, 10], dtype=torch.int32)
    out, weights = segment_attention_forward(None, q, k, v, None, scaling=d ** -0.5, cu_seq_lens_q=cu)
    assert weights is None and out.shape == (1, t, heads, d)
    expected = torch.zeros(1, t, heads, d)
    for a, b in [(0, 3), (3, 8), (8, 10)]:
        for h in range(heads):
            kv = h // (heads // kv_heads)
            for i in range(a, b):
                scores = [float(q[0, h, i] @ k[0, kv, j]) / math.sqrt(d) for j in range(a, i + 1)]
                top = max(scores)
                p = [math.exp(s - top) for s in scores]
                expected[0, i, h] = sum(pj / sum(p) * v[0, kv, j] for pj, j in zip(p, range(a, i + 1)))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="do not cover"):
        segment_attention_forward(None, q, k, v, None, cu_seq_lens_q=torch.tensor([0, 3, 9]))


def _tiny_llama(attn: str = "sdpa"):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                      attn_implementation=attn)
    return LlamaForCausalLM(cfg)


def _loss_and_grads(model, batch):
    model.zero_grad(set_to_none=True)
    logps, mask = forward_label_logps(model, batch)
    loss = -(logps * mask).sum()
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}


def test_padding_free_loss_and_gradients_equal_padded():
    model = _tiny_llama()
    padded_loss, padded_grads = _loss_and_grads(model, collate_lm(EXAMPLES, 0))
    assert use_segment_attention(model) and model.config._attn_implementation == SEGMENT_ATTENTION
    free_loss, free_grads = _loss_and_grads(model, collate_padding_free(EXAMPLES, 0))
    torch.testing.assert_close(free_loss, padded_loss, atol=1e-5, rtol=1e-6)
    for name, g in padded_grads.items():
        torch.testing.assert_close(free_grads[name], g, atol=1e-5, rtol=1e-4, msg=name)
    # a batch without cu_seq_lens through the switched model: the sdpa forward as before
    again, _ = _loss_and_grads(model, collate_lm(EXAMPLES, 0))
    torch.testing.assert_close(again, padded_loss, atol=1e-6, rtol=1e-7)


def test_eager_attention_is_left_alone():
    model = _tiny_llama("eager")
    assert not use_segment_attention(model) and model.config._attn_implementation == "eager"


def test_cli_padding_free_matches_padded(tmp_path, monkeypatch):
    from alignkit.cli import main
    from alignkit.methods import common as forward_helpers

    calls = []
    boundaries = forward_helpers.segment_kwargs
    monkeypatch.setattr(forward_helpers, "segment_kwargs", lambda cu: calls.append(cu.tolist()) or boundaries(cu))
    data = write_jsonl(tmp_path / "sft.jsonl", sft_rows(12))
    common = ["sft", "model=tiny-random", f"data={data}", "lr=1e-3", "batch_size=4", "max_length=64", "max_steps=3"]
    assert main([*common, f"output_dir={tmp_path / 'padded'}"]) == 0
    assert not calls
    assert main([*common, f"output_dir={tmp_path / 'free'}", "padding_free=true"]) == 0
    assert len(calls) == 3 and all(len(c) == 5 for c in calls)  # one row of 4 examples per step
    padded, free = read_metrics(tmp_path / "padded"), read_metrics(tmp_path / "free")
    assert len(padded) == len(free) == 3
    for a, b in zip(padded, free):
        assert b["loss"] == pytest.approx(a["loss"], abs=1e-5)
        assert b["grad_norm"] == pytest.approx(a["grad_norm"], rel=1e-4)


def test_padding_free_with_distillation_is_a_config_error():
    with pytest.raises((ConfigError, ValueError), match="padding_free"):
        SFTConfig(model="tiny-random", data="x.jsonl", padding_free=True, kd_alpha=0.5, kd_teacher="tiny-random")


# ------------------------------------------------------------------ preference pairs: prompt | chosen | rejected

PAIRS = [{"prompt_ids": [1, 2], "chosen_ids": [3, 4, 5], "rejected_ids": [6]},
         {"prompt_ids": [7], "chosen_ids": [8], "rejected_ids": [9, 10]}]


def test_collate_preference_tree_layout():
    batch = collate_preference_tree(PAIRS, pad_id=0)
    assert batch["input_ids"].shape == (4, 5)  # the padded [2B, T] batch stays for the fallback paths
    assert batch["tree_input_ids"].tolist() == [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]]
    assert batch["tree_position_ids"].tolist() == [[0, 1, 2, 3, 4, 2, 0, 1, 1, 2]]  # answers continue the prompt
    assert batch["tree_segments"].tolist() == [[0, 2, 0, 0], [2, 5, 0, 2], [5, 6, 0, 2],
                                               [6, 7, 6, 6], [7, 8, 6, 7], [8, 10, 6, 7]]
    # each answer token, the position that predicts it, and its row (chosen 0, 1; rejected 2, 3)
    assert batch["tree_labels"].tolist() == [3, 4, 5, 6, 8, 9, 10]
    assert batch["tree_predictors"].tolist() == [1, 2, 3, 1, 6, 6, 8]
    assert batch["tree_sequences"].tolist() == [0, 0, 0, 2, 1, 3, 3]


def test_tree_attention_by_hand():
    """Each answer attends to every key of its prompt and causally to its own; a prompt only to itself."""
    torch.manual_seed(1)
    heads, kv_heads, d, n = 4, 2, 8, 10
    q, k, v = torch.randn(1, heads, n, d), torch.randn(1, kv_heads, n, d), torch.randn(1, kv_heads, n, d)
    segments = collate_preference_tree(PAIRS, 0)["tree_segments"]
    out = tree_attention(q, k, v, segments, scaling=d ** -0.5)
    expected = torch.zeros(1, n, heads, d)
    for start, end, ps, pe in segments.tolist():
        for i in range(start, end):
            keys = list(range(ps, pe)) + list(range(start, i + 1))
            for h in range(heads):
                kv = h // (heads // kv_heads)
                scores = [float(q[0, h, i] @ k[0, kv, j]) / math.sqrt(d) for j in keys]
                top = max(scores)
                p = [math.exp(s - top) for s in scores]
                expected[0, i, h] = sum(pj / sum(p) * v[0, kv, j] for pj, j in zip(p, keys))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="cover"):
        tree_attention(q, k, v, segments[:-1])


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_tree_pair_logps_and_gradients_equal_the_padded_forward(lora):
    from alignkit.config import LoraSettings
    from alignkit.models import apply_lora, build_tiny_random

    torch.manual_seed(0)
    model = build_tiny_random()
    if lora:
        model = apply_lora(model, LoraSettings(r=4, alpha=8.0))
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.1)
    g = torch.Generator().manual_seed(3)
    pairs = [{"prompt_ids": torch.randint(3, 900, (p,), generator=g).tolist(),
              "chosen_ids": torch.randint(3, 900, (c,), generator=g).tolist(),
              "rejected_ids": torch.randint(3, 900, (r,), generator=g).tolist()}
             for p, c, r in ((5, 7, 3), (9, 2, 8), (1, 4, 4))]
    batch = collate_preference_tree(pairs, 0)
    weights = torch.tensor([0.3, -1.2, 0.7, 2.0, -0.4, 1.1])
    params = [p for p in model.parameters() if p.requires_grad]
    plain_sum, plain_len = pair_sequence_logps(model, batch, share_prompt=False)  # sdpa: the padded rows
    g_plain = torch.autograd.grad((plain_sum * weights).sum(), params)
    assert use_segment_attention(model)
    tree_sum, tree_len = pair_sequence_logps(model, batch, share_prompt=False)  # now the one-row forward
    g_tree = torch.autograd.grad((tree_sum * weights).sum(), params)
    assert tree_len.tolist() == plain_len.tolist() == [7, 2, 4, 3, 8, 4]
    torch.testing.assert_close(tree_sum, plain_sum, atol=1e-4, rtol=1e-5)
    assert any(float(x.abs().max()) > 1e-3 for x in g_plain)
    for a, b in zip(g_tree, g_plain):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_cli_dpo_padding_free_matches_padded(tmp_path, monkeypatch):
    from alignkit.cli import main
    from alignkit.methods import common

    calls = []
    tree_forward = common.tree_pair_token_logps
    monkeypatch.setattr(common, "tree_pair_token_logps", lambda *a, **k: calls.append(1) or tree_forward(*a, **k))
    monkeypatch.setenv("ALIGNKIT_REF_CACHE", str(tmp_path / "cache"))
    data = write_jsonl(tmp_path / "pairs.jsonl", preference_rows(8))
    common = ["dpo", "model=tiny-random", f"data={data}", "lr=1e-3", "batch_size=4", "max_length=64", "max_steps=2",
              "lora.r=4"]
    assert main([*common, f"output_dir={tmp_path / 'padded'}"]) == 0
    assert not calls
    monkeypatch.setenv("ALIGNKIT_REF_CACHE", str(tmp_path / "cache-2"))  # the reference pass in the tree layout too
    assert main([*common, f"output_dir={tmp_path / 'free'}", "padding_free=true"]) == 0
    assert len(calls) == 1 + 2  # the reference pass over the 8 pairs (one batch of 8), then 2 training steps
    assert main([*common, f"output_dir={tmp_path / 'free-ref'}", "padding_free=true", "precompute_ref_log_probs=false"]) == 0
    padded = read_metrics(tmp_path / "padded")
    assert len(padded) == 2
    for other in ("free", "free-ref"):
        rows = read_metrics(tmp_path / other)
        assert len(rows) == 2
        for a, b in zip(padded, rows):
            for key in ("loss", "grad_norm", "logps/chosen", "logps/rejected", "rewards/margins"):
                assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-5), (other, key)
