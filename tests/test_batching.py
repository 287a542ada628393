"""Padding, collation, epoch batch order and SFT packing (incl. packed == separate logits)."""

from __future__ import annotations

import random

import pytest
import torch

from alignkit.data import (
    collate_kl,
    collate_lm,
    collate_preference,
    collate_prompts,
    collate_unpaired,
    epoch_batches,
    model_inputs,
    pack_examples,
    pad,
)

PAD = 0


def test_pad():
    assert pad([[1, 2, 3], [4]], 9).tolist() == [[1, 2, 3], [4, 9, 9]]
    assert pad([[1, 2, 3], [4]], 9, "left").tolist() == [[1, 2, 3], [9, 9, 4]]
    assert pad([torch.tensor([5]), []], -1, length=3).tolist() == [[5, -1, -1], [-1, -1, -1]]
    assert pad([[1]], 0).dtype == torch.long
    with pytest.raises(ValueError):
        pad([[1]], 0, "middle")


def test_collate_lm():
    exs = [{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [8], "labels": [8]}]
    b = collate_lm(exs, PAD)
    assert b["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert b["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert b["labels"].tolist() == [[-100, 6, 7], [8, -100, -100]]
    assert "position_ids" not in b
    assert model_inputs(b)["attention_mask"] is b["attention_mask"]
    assert model_inputs(b)["use_cache"] is False


def test_collate_lm_packed():
    exs = [{"input_ids": [5, 6, 7], "labels": [5, 6, 7], "position_ids": [0, 1, 0]},
           {"input_ids": [8], "labels": [8], "position_ids": [0]}]
    b = collate_lm(exs, PAD)
    assert b["position_ids"].tolist() == [[0, 1, 0], [0, 0, 0]]
    assert b["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    kw = model_inputs(b)
    assert kw["attention_mask"] is None and kw["use_cache"] is False and kw["position_ids"] is b["position_ids"]
    with pytest.raises(ValueError, match="position_ids"):
        collate_lm([exs[0], {"input_ids": [1], "labels": [1]}], PAD)


def test_collate_preference():
    exs = [{"prompt_ids": [1, 2], "chosen_ids": [3, 4, 5], "rejected_ids": [6]},
           {"prompt_ids": [7], "chosen_ids": [8], "rejected_ids": [9, 10]}]
    b = collate_preference(exs, PAD)
    assert b["input_ids"].shape == (4, 5)
    assert b["input_ids"].tolist() == [[1, 2, 3, 4, 5], [7, 8, 0, 0, 0], [1, 2, 6, 0, 0], [7, 9, 10, 0, 0]]
    assert b["labels"].tolist() == [[-100, -100, 3, 4, 5], [-100, 8, -100, -100, -100],
                                    [-100, -100, 6, -100, -100], [-100, 9, 10, -100, -100]]
    assert b["attention_mask"].sum(1).tolist() == [5, 2, 3, 3]


def test_collate_unpaired_and_kl():
    exs = [{"prompt_ids": [1], "completion_ids": [2, 3], "label": True},
           {"prompt_ids": [4, 5], "completion_ids": [6], "label": False},
           {"prompt_ids": [7], "completion_ids": [8], "label": True}]
    b = collate_unpaired(exs, PAD)
    assert b["input_ids"].tolist() == [[1, 2, 3], [4, 5, 6], [7, 8, 0]]
    assert b["labels"].tolist() == [[-100, 2, 3], [-100, -100, 6], [-100, 8, -100]]
    assert b["label"].dtype == torch.bool and b["label"].tolist() == [True, False, True]
    kl = collate_kl(exs, PAD)
    assert set(kl) == {"input_ids", "attention_mask", "labels"}
    assert kl["input_ids"].tolist() == [[1, 6, 0], [4, 5, 8], [7, 2, 3]]
    assert kl["labels"].tolist() == [[-100, 6, -100], [-100, -100, 8], [-100, 2, 3]]
    assert collate_kl(exs, PAD, max_length=2)["input_ids"].tolist() == [[1, 6], [4, 5], [7, 2]]


def test_collate_prompts_left_padded():
    b = collate_prompts([{"prompt_ids": [1, 2, 3]}, {"prompt_ids": [4]}], PAD)
    assert b["input_ids"].tolist() == [[1, 2, 3], [0, 0, 4]]
    assert b["attention_mask"].tolist() == [[1, 1, 1], [0, 0, 1]]


# ----------------------------------------------------------------------------- epoch order


def padding(batches, lengths):
    return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)


@pytest.mark.parametrize("grouped", [False, True])
def test_epoch_batches_deterministic(grouped):
    rng = random.Random(0)
    lengths = [rng.randint(1, 500) for _ in range(1003)]
    a = epoch_batches(lengths, 8, seed=1, epoch=0, group_by_length=grouped)
    assert a == epoch_batches(lengths, 8, seed=1, epoch=0, group_by_length=grouped)
    assert a != epoch_batches(lengths, 8, seed=1, epoch=1, group_by_length=grouped)
    assert a != epoch_batches(lengths, 8, seed=2, epoch=0, group_by_length=grouped)
    assert len(a) == 1003 // 8 and all(len(b) == 8 for b in a)
    flat = [i for b in a for i in b]
    assert len(set(flat)) == len(flat) == 1000
    full = epoch_batches(lengths, 8, seed=1, epoch=0, group_by_length=grouped, drop_last=False)
    assert sorted(i for b in full for i in b) == list(range(1003))
    assert sum(len(b) < 8 for b in full) == 1


def test_group_by_length_reduces_padding_and_stays_random():
    rng = random.Random(1)
    lengths = [rng.randint(1, 1000) for _ in range(2000)]
    rand = epoch_batches(lengths, 8, 0, 0, group_by_length=False)
    grouped = epoch_batches(lengths, 8, 0, 0, group_by_length=True)
    assert padding(grouped, lengths) < 0.2 * padding(rand, lengths)
    firsts = [max(lengths[i] for i in b) for b in grouped]
    assert firsts != sorted(firsts, reverse=True)  # the batch order is shuffled, not longest-first


def test_epoch_batches_too_few_examples():
    with pytest.raises(ValueError, match="only 3 example"):
        epoch_batches([1, 2, 3], 4, 0, 0, True)
    assert epoch_batches([1, 2, 3], 4, 0, 0, True, drop_last=False) != []
    with pytest.raises(ValueError):
        epoch_batches([], 4, 0, 0, False, drop_last=False)


# ----------------------------------------------------------------------------- packing


def make_examples(rng, n, max_len, vocab=100):
    exs = []
    for r in range(n):
        k = rng.randint(2, max_len)
        ids = [rng.randrange(3, vocab) for _ in range(k)]
        cut = rng.randint(0, k - 1)
        exs.append({"input_ids": ids, "labels": [-100] * cut + ids[cut:], "row": r + 1})
    return exs


def test_pack_examples_layout():
    rng = random.Random(3)
    exs = make_examples(rng, 200, 60)
    packs = pack_examples(exs, 128, eos_id=2)
    assert all(len(p["input_ids"]) <= 128 for p in packs)
    assert sorted(r for p in packs for r in p["rows"]) == list(range(1, 201))
    assert sum(len(p["input_ids"]) for p in packs) == sum(len(e["input_ids"]) for e in exs)
    assert len(packs) <= 1.1 * sum(len(e["input_ids"]) for e in exs) / 128 + 1  # packs tightly
    by_row = {e["row"]: e for e in exs}
    for p in packs:
        assert len(p["labels"]) == len(p["position_ids"]) == len(p["input_ids"])
        start = 0
        for row, n in zip(p["rows"], p["seq_lengths"]):
            e = by_row[row]
            assert p["input_ids"][start:start + n] == e["input_ids"]
            assert p["labels"][start:start + n] == [-100] + e["labels"][1:]  # first label: never a target
            assert p["position_ids"][start:start + n] == list(range(n))
            start += n
    with pytest.raises(ValueError, match="more than max_length"):
        pack_examples([{"input_ids": [1] * 10, "labels": [1] * 10}], 5)


def test_packed_logits_match_separate():
    """transformers (sdpa, attention_mask=None, restarted position_ids, use_cache=False) keeps the
    packed examples apart: each one's logits equal those of running it alone."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    model = LlamaForCausalLM(cfg).eval()
    assert model.config._attn_implementation == "sdpa"
    exs = make_examples(random.Random(5), 6, 16)
    packs = pack_examples(exs, 32)
    assert any(len(p["rows"]) > 1 for p in packs)
    batch = collate_lm(packs, PAD)
    by_row = {e["row"]: e for e in exs}
    ce = torch.nn.functional.cross_entropy
    with torch.no_grad():
        packed = model(**model_inputs(batch)).logits
        packed_loss = ce(packed[:, :-1].flatten(0, 1), batch["labels"][:, 1:].flatten(), reduction="sum")
        separate_loss = 0.0
        for b, p in enumerate(packs):
            start = 0
            for row, n in zip(p["rows"], p["seq_lengths"]):
                e = by_row[row]
                alone = model(torch.tensor([e["input_ids"]])).logits[0]
                torch.testing.assert_close(packed[b, start:start + n], alone, atol=1e-5, rtol=1e-4)
                separate_loss += ce(alone[:-1], torch.tensor(e["labels"][1:]), reduction="sum")
                start += n
    torch.testing.assert_close(packed_loss, separate_loss, atol=1e-4, rtol=1e-5)
