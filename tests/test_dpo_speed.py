"""DPO's speed and memory options on tiny-random: the shared-prompt forward (values and gradients equal
to the plain ``[2B, T]`` forward and to full logits), padding kept out of the compute, and the
activation-checkpointing modes (same loss and gradients, fewer saved activations)."""

from __future__ import annotations

import random

import pytest
import torch

from alignkit.config import LoraSettings
from alignkit.data.batching import collate_preference, epoch_batches
from alignkit.logprobs import can_share_prompts, full_logits_token_logps, shared_prompt_token_logps
from alignkit.methods import common
from alignkit.methods.common import forward_label_logps, pair_sequence_logps
from alignkit.models import apply_lora, build_tiny_random


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _model(lora: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_tiny_random()
    if lora:
        model = apply_lora(model, LoraSettings(r=4, alpha=8.0))
        with torch.no_grad():  # non-zero adapters, so that the LoRA path differs from the base
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.normal_(0, 0.1)
    return model


def _pairs(seed: int = 1, prompt_lengths=(5, 9, 1), chosen=(7, 2, 4), rejected=(3, 8, 4)) -> list[dict]:
    """Pairs with prompts (and answers) of different lengths: the shared layout left-pads the prompts,
    the plain one right-pads whole rows."""
    g = torch.Generator().manual_seed(seed)

    def ids(n: int) -> list[int]:
        return torch.randint(3, 900, (n,), generator=g).tolist()

    return [{"prompt_ids": ids(p), "chosen_ids": ids(c), "rejected_ids": ids(r)}
            for p, c, r in zip(prompt_lengths, chosen, rejected)]


def _full_logits_answer_logps(model, batch) -> list[torch.Tensor]:
    """Per-token answer log-probs of each row through ``model(...).logits`` (the plain right-padded rows)."""
    logps, mask = full_logits_token_logps(model, batch["input_ids"], batch["attention_mask"], batch["labels"])
    return [logps[i][mask[i]] for i in range(logps.shape[0])]


def _trainable(model):
    return [p for p in model.parameters() if p.requires_grad]


@pytest.mark.parametrize("lora", [True, False], ids=["lora", "full"])
def test_shared_prompt_pair_logps_equal_plain_forward_values_and_grads(lora):
    model = _model(lora)
    batch = collate_preference(_pairs(), 0, shared=True)
    ids, attn, cmask = batch["shared_input_ids"], batch["shared_attention_mask"], batch["shared_completion_mask"]
    # layout: prompts left-padded to 9 tokens, answers right-padded to 8 (chosen rows, then rejected rows)
    assert ids.shape == (6, 9 + 8) and attn[2, :8].sum() == 0 and attn[2, 8] == 1
    assert cmask.sum(-1).tolist() == [7, 2, 4, 3, 8, 4]
    assert can_share_prompts(model, ids, attn, 8, 2, tiled=True)

    shared, _ = shared_prompt_token_logps(model, ids, attn, cmask, 2, tiled=True)
    plain, mask = forward_label_logps(model, batch)
    full = _full_logits_answer_logps(model, batch)
    for i in range(6):
        n = int(cmask[i].sum())
        assert torch.allclose(shared[i, :n], full[i], atol=1e-5)
        assert torch.allclose(plain[i][mask[i].bool()], full[i], atol=1e-5)
        assert (shared[i, n:] == 0).all() and (shared[i, :n] < 0).all()

    # gradients of a weighted sum of the per-pair sums, as a DPO loss forms it
    weights = torch.tensor([0.3, -1.2, 0.7, 2.0, -0.4, 1.1])
    (s_sum, s_len), (p_sum, p_len) = pair_sequence_logps(model, batch, True), pair_sequence_logps(model, batch, False)
    assert s_len.tolist() == p_len.tolist() == [7, 2, 4, 3, 8, 4]
    assert torch.allclose(s_sum, torch.stack([f.sum() for f in full]), atol=1e-4)
    params = _trainable(model)
    g_shared = torch.autograd.grad((s_sum * weights).sum(), params)
    g_plain = torch.autograd.grad((p_sum * weights).sum(), params)
    assert all("lora_" in n for n, p in model.named_parameters() if p.requires_grad) is lora
    assert any(float(g.abs().max()) > 1e-3 for g in g_plain)
    for a, b in zip(g_shared, g_plain):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)


def test_pair_logps_take_the_shared_path_only_where_it_applies(monkeypatch):
    model = _model(True)
    calls = []
    real = common.shared_prompt_token_logps
    monkeypatch.setattr(common, "shared_prompt_token_logps", lambda *a, **k: calls.append(1) or real(*a, **k))
    batch = collate_preference(_pairs(), 0, shared=True)
    pair_sequence_logps(model, batch, True)
    assert calls == [1]
    pair_sequence_logps(model, batch, False)  # share_prompt=false
    pair_sequence_logps(model, collate_preference(_pairs(), 0), True)  # collated without the shared layout
    assert calls == [1]
    # a chosen row whose prompt differs from its rejected row's: the plain forward
    other = dict(batch, shared_input_ids=batch["shared_input_ids"].clone())
    other["shared_input_ids"][0, 8] += 1
    assert not can_share_prompts(model, other["shared_input_ids"], other["shared_attention_mask"], 8, 2, tiled=True)
    # Hugging Face gradient checkpointing drops the KV cache: the plain forward, same values
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    with torch.no_grad():
        a, _ = pair_sequence_logps(model, batch, True)
    assert calls == [1]
    model.gradient_checkpointing_disable()
    with torch.no_grad():
        b, _ = pair_sequence_logps(model, batch, True)
    assert calls == [1, 1] and torch.allclose(a, b, atol=1e-5)


def test_empty_prompt_is_not_shared():
    model = _model(False)
    batch = collate_preference(_pairs(prompt_lengths=(0, 3, 2)), 0, shared=True)
    C = batch["shared_completion_mask"].shape[1]
    assert not can_share_prompts(model, batch["shared_input_ids"], batch["shared_attention_mask"], C, 2, tiled=True)


def _dpo(tokenizer, **keys):
    from alignkit.methods.dpo import DPO, DPOConfig

    return DPO(DPOConfig(**{"model": "tiny-random", "batch_size": 3, "precompute_ref_log_probs": False, **keys}), tokenizer)


class _Acc:
    device = torch.device("cpu")
    is_main_process, num_processes, process_index, mixed_precision = True, 1, 0, "no"

    def wait_for_everyone(self) -> None:
        pass


@pytest.mark.parametrize("lora", [True, False], ids=["lora", "full"])
def test_dpo_loss_and_grads_same_with_and_without_share_prompt(lora, tokenizer):
    """The DPO loss over a batch (policy forward with gradients, reference forward without: adapters
    disabled with LoRA, a frozen copy without) is the same with share_prompt on and off."""
    model = _model(lora)
    if not lora:  # move the policy away from the reference copy, so the loss is not log 2
        ref = _dpo(tokenizer, share_prompt=True)
        ref.setup(model, _Acc())
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.02 * torch.randn_like(p))
    results = []
    for share in (True, False):
        method = _dpo(tokenizer, share_prompt=share)
        if lora:
            method.setup(model, _Acc())
        else:
            method.reference = ref.reference
        batch = method.collate(_pairs())
        assert ("shared_input_ids" in batch) is share
        out = method.loss(model, batch, 0)
        grads = torch.autograd.grad(out.loss_sum, _trainable(model))
        results.append((out, grads))
    (a, ga), (b, gb) = results
    loss = float(a.loss_sum)
    assert abs(loss - 3 * 0.6931) > 1e-3  # policy != reference: a real margin
    assert abs(loss - float(b.loss_sum)) < 1e-5
    for k in ("rewards/chosen", "rewards/margins", "logps/chosen", "logps/rejected"):
        assert abs(a.metrics[k][0] - b.metrics[k][0]) < 1e-4
    for x, y in zip(ga, gb):
        assert torch.allclose(x, y, atol=1e-5, rtol=1e-4)


def test_precomputed_reference_columns_same_with_and_without_share_prompt(tokenizer):
    model = _model(True)
    cols = []
    for share in (True, False):
        method = _dpo(tokenizer, share_prompt=share)
        method.setup(model, _Acc())
        cols.append(method._reference_columns(_pairs()))
    for k in cols[0]:
        assert torch.allclose(cols[0][k], cols[1][k], atol=1e-5)


def test_online_dpo_pair_rows_share_their_prompt():
    """A rollout-layout pair batch (chosen rows, then rejected rows of the same prompts) through the
    tiled shared forward equals the plain forward."""
    from alignkit.methods.online import completion_token_logps

    model = _model(True)
    batch = collate_preference(_pairs(), 0, shared=True)
    ids, attn, cmask = batch["shared_input_ids"], batch["shared_attention_mask"], batch["shared_completion_mask"]
    C = cmask.shape[1]
    position_ids = (attn.cumsum(-1) - 1).clamp(min=0) * attn
    labels = ids.masked_fill(torch.cat([torch.zeros_like(attn[:, :-C]), cmask], 1) == 0, -100)
    rollout = {"input_ids": ids, "attention_mask": attn, "position_ids": position_ids, "labels": labels,
               "completion_mask": cmask}
    with torch.no_grad():
        plain = completion_token_logps(model, rollout)
        shared = completion_token_logps(model, rollout, group_size=2, tiled=True)
    assert torch.allclose(plain, shared, atol=1e-5) and (plain[cmask == 1] < 0).all()


# ------------------------------------------------------------------------------------------ padding
def _mixed_pairs(n: int = 24) -> list[dict]:
    """Pairs of very different lengths (prompts 2-30 tokens, answers 1-40)."""
    rng = random.Random(7)
    return [{"prompt_ids": [rng.randrange(3, 900) for _ in range(rng.randint(2, 30))],
             "chosen_ids": [rng.randrange(3, 900) for _ in range(rng.randint(1, 40))],
             "rejected_ids": [rng.randrange(3, 900) for _ in range(rng.randint(1, 40))]} for _ in range(n)]


class _PositionCounter:
    """Counts the token positions that go through the decoder (a hook on the embedding layer)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.n = 0
        emb = model.get_input_embeddings()
        self.handle = emb.register_forward_hook(lambda mod, args, out: setattr(self, "n", self.n + args[0].numel()))


def test_length_grouping_and_shared_prompts_cut_padded_compute_not_the_loss(tokenizer):
    examples = _mixed_pairs()
    lengths = [len(e["prompt_ids"]) + max(len(e["chosen_ids"]), len(e["rejected_ids"])) for e in examples]
    real = sum(len(e["prompt_ids"]) * 2 + len(e["chosen_ids"]) + len(e["rejected_ids"]) for e in examples)
    model = _model(True)
    method = _dpo(tokenizer, batch_size=4)
    method.setup(model, _Acc())
    counter = _PositionCounter(model)
    computed, losses = {}, {}
    for grouped in (False, True):
        batches = epoch_batches(lengths, 4, seed=3, epoch=0, group_by_length=grouped)
        assert sorted(i for b in batches for i in b) == list(range(24))  # every pair once
        for shared in (False, True):
            method.config.share_prompt = shared
            counter.n = 0
            with torch.no_grad():  # the policy forward and the reference forward of every batch
                losses[grouped, shared] = sum(float(method.loss(model, method.collate([examples[i] for i in b]), 0)
                                                    .loss_sum) for b in batches)
            computed[grouped, shared] = counter.n / 2
    # plain, ungrouped: each batch is padded to its longest row, more than the real tokens
    longest = sum(2 * len(b) * max(lengths[i] for i in b)
                  for b in epoch_batches(lengths, 4, seed=3, epoch=0, group_by_length=False))
    assert computed[False, False] == longest > real
    assert computed[True, False] < computed[False, False]  # length grouping
    assert computed[False, True] < computed[False, False]  # shared prompts
    assert computed[True, True] <= computed[True, False]  # never more
    values = list(losses.values())
    assert abs(values[0]) > 1.0 and max(values) - min(values) < 1e-4


# ------------------------------------------------------------------------------------ checkpointing
def _saved_activation_bytes(model, fn) -> tuple[object, int]:
    """Run ``fn()`` and add up the bytes of the tensors autograd saves for backward outside any
    checkpointed region, parameters excluded (each storage once)."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params:
            seen[ptr] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return out, sum(seen.values())


@pytest.mark.parametrize("lora", [True, False], ids=["lora", "full"])
def test_checkpointing_modes_give_the_same_loss_and_grads_and_save_less(lora, tokenizer, monkeypatch):
    from alignkit.models import enable_checkpointing

    shared_calls = []
    real = common.shared_prompt_token_logps
    monkeypatch.setattr(common, "shared_prompt_token_logps", lambda *a, **k: shared_calls.append(1) or real(*a, **k))
    results = {}
    for mode in (False, "mlp", "alternate", "full"):
        torch.manual_seed(0)
        model = build_tiny_random()
        assert enable_checkpointing(model, mode) == (mode or None)
        if lora:
            model = apply_lora(model, LoraSettings(r=4, alpha=8.0))
        model.train()
        method = _dpo(tokenizer)
        method.setup(model, _Acc())  # the reference: adapters disabled, or a frozen copy made now
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B" in name or (not lora and "mlp" in name):
                    p.add_(0.05 * torch.randn_like(p))  # (seeded above: the same change in every mode)
        batch = method.collate(_pairs())
        shared_calls.clear()
        out, saved = _saved_activation_bytes(model, lambda m=method, b=batch, mod=model: m.loss(mod, b, 0))
        grads = torch.autograd.grad(out.loss_sum, _trainable(model))
        # the KV cache (shared prompts) survives every mode (full: the cache-aware layer wrapper)
        assert len(shared_calls) == 2
        results[mode] = (float(out.loss_sum), grads, saved)
    base_loss, base_grads, base_saved = results[False]
    assert abs(base_loss - 3 * 0.6931) > 1e-3
    for mode in ("mlp", "alternate", "full"):
        loss, grads, saved = results[mode]
        assert abs(loss - base_loss) < 1e-5, mode
        for a, b in zip(grads, base_grads):
            assert torch.allclose(a, b, atol=1e-5, rtol=1e-4), mode
    assert results["full"][2] < results["mlp"][2] < results["alternate"][2] < base_saved
    assert results["mlp"][2] < 0.8 * base_saved


def test_checkpointing_mode_values():
    from alignkit.config import TrainConfig
    from alignkit.models.checkpointing import checkpoint_mode

    assert [checkpoint_mode(TrainConfig(gradient_checkpointing=v).gradient_checkpointing)
            for v in (False, True, "mlp", "alternate", "full")] == [None, "full", "mlp", "alternate", "full"]
    with pytest.raises(ValueError):
        TrainConfig(gradient_checkpointing="every")
