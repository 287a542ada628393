"""Chunked per-token log-probs == the plain full-logits computation (values and gradients)."""

from __future__ import annotations

import pytest
import torch

from alignkit.logprobs import (
    full_logits_token_logps,
    logps_from_logits,
    sequence_token_logps,
    sum_token_logps,
    token_logps_from_hidden,
)

VOCAB = 1000


def tiny_llama(seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config).float()
    model.train()  # no dropout in Llama; train mode exercises the training path
    return model


def batch(seed: int = 1):
    """Two right-padded sequences; labels -100 on the prompt and the padding."""
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(0, VOCAB, (2, 12), generator=g)
    attention_mask = torch.ones(2, 12, dtype=torch.long)
    attention_mask[1, 9:] = 0
    labels = input_ids.clone()
    labels[0, :4] = -100  # prompt of 4 tokens
    labels[1, :6] = -100  # prompt of 6 tokens
    labels[1, 9:] = -100  # padding
    return input_ids, attention_mask, labels


def grads(model, fn, weights):
    model.zero_grad(set_to_none=True)
    logps, *_ = fn()
    (logps * weights).sum().backward()
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def assert_same(model, chunk_size=5, **kw):
    input_ids, attention_mask, labels = batch()
    lp, mask = sequence_token_logps(model, input_ids, attention_mask, labels, chunk_size=chunk_size, **kw)
    ref_lp, ref_mask = full_logits_token_logps(model, input_ids, attention_mask, labels, **kw)
    assert lp.shape == labels.shape and lp.dtype == torch.float32
    assert torch.equal(mask, ref_mask)
    torch.testing.assert_close(lp, ref_lp, atol=1e-5, rtol=0)

    weights = torch.linspace(0.5, 1.5, labels.numel()).view_as(lp)
    g = grads(
        model,
        lambda: sequence_token_logps(model, input_ids, attention_mask, labels, chunk_size=chunk_size, **kw),
        weights,
    )
    g_ref = grads(
        model, lambda: full_logits_token_logps(model, input_ids, attention_mask, labels, **kw), weights
    )
    assert g.keys() == g_ref.keys() and len(g) > 0
    for name in g:
        torch.testing.assert_close(g[name], g_ref[name], atol=1e-5, rtol=1e-4, msg=name)
    return lp, mask, labels


def test_chunked_matches_full_logits_values_and_gradients():
    model = tiny_llama()
    lp, mask, labels = assert_same(model, chunk_size=5)  # 11 scored tokens -> 3 chunks
    # alignment: mask is labels != -100 except column 0; ignored positions are exactly 0
    expected_mask = labels != -100
    expected_mask[:, 0] = False
    assert torch.equal(mask, expected_mask)
    assert (lp[~mask] == 0).all() and (lp[mask] < 0).all()
    assert int(mask.sum()) == 8 + 3


def test_chunk_size_does_not_matter_and_temperature():
    model = tiny_llama()
    input_ids, attention_mask, labels = batch()
    with torch.no_grad():
        outs = [
            sequence_token_logps(model, input_ids, attention_mask, labels, chunk_size=c)[0]
            for c in (1, 4, 4096)
        ]
        hot, _ = sequence_token_logps(model, input_ids, attention_mask, labels, temperature=0.7)
        hot_ref, _ = full_logits_token_logps(model, input_ids, attention_mask, labels, temperature=0.7)
    for o in outs[1:]:
        torch.testing.assert_close(o, outs[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(hot, hot_ref, atol=1e-5, rtol=0)


def test_entropy_matches_full_logits():
    model = tiny_llama()
    input_ids, attention_mask, labels = batch()
    lp, mask, ent = sequence_token_logps(
        model, input_ids, attention_mask, labels, chunk_size=3, return_entropy=True
    )
    ref_lp, _, ref_ent = full_logits_token_logps(
        model, input_ids, attention_mask, labels, return_entropy=True
    )
    torch.testing.assert_close(ent, ref_ent, atol=1e-5, rtol=0)
    torch.testing.assert_close(lp, ref_lp, atol=1e-5, rtol=0)
    assert (ent[~mask] == 0).all() and (ent[mask] > 0).all()
    # gradients of an entropy bonus agree too
    w = torch.ones_like(ent)
    g = grads(
        model,
        lambda: sequence_token_logps(
            model, input_ids, attention_mask, labels, chunk_size=3, return_entropy=True
        )[2:],
        w,
    )
    g_ref = grads(
        model,
        lambda: full_logits_token_logps(model, input_ids, attention_mask, labels, return_entropy=True)[2:],
        w,
    )
    for name in g_ref:
        torch.testing.assert_close(g[name], g_ref[name], atol=1e-5, rtol=1e-4, msg=name)


def test_peft_lora_model():
    peft = pytest.importorskip("peft")
    model = tiny_llama()
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)
    lora = peft.get_peft_model(model, config)
    lora.train()
    assert_same(lora, chunk_size=4)
    trainable = [n for n, p in lora.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    # the adapter is really applied, and disable_adapter() gives the base model's values
    input_ids, attention_mask, labels = batch()
    with torch.no_grad():
        with_adapter, _ = sequence_token_logps(lora, input_ids, attention_mask, labels, chunk_size=4)
        with lora.disable_adapter():
            without, _ = sequence_token_logps(lora, input_ids, attention_mask, labels, chunk_size=4)
            base_ref, _ = full_logits_token_logps(lora, input_ids, attention_mask, labels)
    assert not torch.allclose(with_adapter, without, atol=1e-4)
    torch.testing.assert_close(without, base_ref, atol=1e-5, rtol=0)


class DDPLike(torch.nn.Module):
    """Stands in for DistributedDataParallel: the real model is ``.module`` and forward must run."""

    def __init__(self, module):
        super().__init__()
        self.module = module
        self.calls = 0

    def forward(self, **kwargs):
        self.calls += 1
        return self.module(**kwargs)


def test_wrapped_model_runs_its_forward():
    model = tiny_llama()
    wrapped = DDPLike(model)
    input_ids, attention_mask, labels = batch()
    lp, mask = sequence_token_logps(wrapped, input_ids, attention_mask, labels, chunk_size=4)
    assert wrapped.calls == 1
    ref_lp, ref_mask = full_logits_token_logps(model, input_ids, attention_mask, labels)
    assert torch.equal(mask, ref_mask)
    torch.testing.assert_close(lp, ref_lp, atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", ["full", "lora", "module_head"])
def test_no_vocab_sized_tensor_is_kept_for_backward(kind):
    model = tiny_llama()
    if kind == "lora":  # frozen head: the fused path
        peft = pytest.importorskip("peft")
        model = peft.get_peft_model(model, peft.LoraConfig(r=4, target_modules="all-linear"))
    elif kind == "module_head":  # checkpointed path
        model.lm_head = WrappedHead(model.lm_head)
    input_ids, attention_mask, labels = batch()
    saved: list[tuple[int, ...]] = []

    def pack(x):
        saved.append(tuple(x.shape))
        return x

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
        lp, _ = sequence_token_logps(model, input_ids, attention_mask, labels, chunk_size=4)
    assert not [s for s in saved if len(s) >= 2 and s[-1] == VOCAB]
    lp.sum().backward()  # backward recomputes the chunks

    saved.clear()  # sanity: the check does see the full logits of the plain implementation
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
        full_logits_token_logps(model, input_ids, attention_mask, labels)
    assert [s for s in saved if len(s) >= 2 and s[-1] == VOCAB]


def reference_head(hidden, weight, bias, labels, temperature=1.0, softcap=None):
    """Plain full-logits computation of log-probs and entropies (float64)."""
    z = hidden @ weight.T + (bias if bias is not None else 0.0)
    if softcap is not None:
        z = softcap * torch.tanh(z / softcap)
    z = z / temperature
    logp = torch.log_softmax(z, -1)
    valid = labels != -100
    lp = logp.gather(-1, torch.where(valid, labels, 0).unsqueeze(-1)).squeeze(-1)
    ent = -(logp.exp() * logp).sum(-1)
    return torch.where(valid, lp, 0.0), torch.where(valid, ent, 0.0)


class WrappedHead(torch.nn.Module):
    """A head that is not a plain nn.Linear (like peft's wrapper): takes the checkpointed path."""

    def __init__(self, linear):
        super().__init__()
        self.inner = linear

    def forward(self, x):
        return self.inner(x)


@pytest.mark.parametrize("head_kind", ["trainable", "frozen", "module"])
@pytest.mark.parametrize("temperature,softcap", [(1.0, None), (0.7, None), (1.3, 2.0)])
def test_token_logps_from_hidden_all_paths(head_kind, temperature, softcap):
    torch.manual_seed(0)
    hidden = torch.randn(2, 4, 8, dtype=torch.float64, requires_grad=True)
    linear = torch.nn.Linear(8, 13, bias=True).double()
    linear.requires_grad_(head_kind != "frozen")
    head = WrappedHead(linear) if head_kind == "module" else linear
    labels = torch.tensor([[1, -100, 12, 3], [-100, -100, 0, 7]])

    lp, ent = token_logps_from_hidden(
        hidden, head, labels, chunk_size=2, return_entropy=True, temperature=temperature, softcap=softcap
    )
    ref_lp, ref_ent = reference_head(hidden, linear.weight, linear.bias, labels, temperature, softcap)
    torch.testing.assert_close(lp, ref_lp, atol=1e-10, rtol=0)
    torch.testing.assert_close(ent, ref_ent, atol=1e-10, rtol=0)
    assert (lp[labels == -100] == 0).all() and (ent[labels == -100] == 0).all()

    # gradients of a weighted mix of log-probs and entropies (as in a loss with an entropy bonus)
    w1 = torch.linspace(-1.0, 2.0, 8, dtype=torch.float64).view(2, 4)
    w2 = torch.linspace(0.5, -0.7, 8, dtype=torch.float64).view(2, 4)
    params = [hidden] + [p for p in linear.parameters() if p.requires_grad]
    g = torch.autograd.grad((lp * w1 + ent * w2).sum(), params)
    g_ref = torch.autograd.grad((ref_lp * w1 + ref_ent * w2).sum(), params, retain_graph=True)
    for a, b in zip(g, g_ref):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-8)
    # log-probs alone (entropy unused) and entropy-free calls
    lp_only = token_logps_from_hidden(
        hidden, head, labels, chunk_size=3, temperature=temperature, softcap=softcap
    )
    g = torch.autograd.grad((lp_only * w1).sum(), params)
    g_ref = torch.autograd.grad((ref_lp * w1).sum(), params)
    for a, b in zip(g, g_ref):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-8)


def test_token_logps_from_hidden_weight_tensor_no_grad_and_errors():
    torch.manual_seed(0)
    hidden = torch.randn(2, 3, 8)
    weight = torch.randn(11, 8)
    labels = torch.tensor([[1, -100, 10], [-100, -100, 0]])
    with torch.no_grad():
        lp = token_logps_from_hidden(hidden, weight, labels, chunk_size=2)
    assert lp.dtype == torch.float32 and not lp.requires_grad
    torch.testing.assert_close(lp, logps_from_logits(hidden @ weight.T, labels), atol=1e-6, rtol=0)
    # nothing to score: zeros, still attached to the graph
    h = hidden.clone().requires_grad_()
    empty = token_logps_from_hidden(h, weight, torch.full((2, 3), -100))
    assert (empty == 0).all() and empty.requires_grad
    with pytest.raises(ValueError):
        token_logps_from_hidden(hidden, weight, labels[:, :2])


def test_sum_token_logps():
    lp = torch.tensor([[0.0, -1.0, -2.0], [0.0, -0.5, 0.0]])
    mask = torch.tensor([[False, True, True], [False, True, False]])
    sums, lengths = sum_token_logps(lp, mask)
    assert sums.tolist() == [-3.0, -0.5] and lengths.tolist() == [2.0, 1.0]


# ------------------------------------------------------------------ shared prompts (GRPO groups)
def _grouped_rollout(G=3, n=2, P=7, C=6, seed=0):
    """n prompts (the second left-padded by 3) x G completions (one right-padded after 2 tokens)."""
    g = torch.Generator().manual_seed(seed)
    prompts = torch.randint(3, 900, (n, P), generator=g)
    pmask = torch.ones(n, P, dtype=torch.long)
    pmask[1, :3] = 0
    prompts = prompts.masked_fill(pmask == 0, 0)
    comp = torch.randint(3, 900, (n * G, C), generator=g)
    cmask = torch.ones(n * G, C, dtype=torch.long)
    cmask[1, 2:] = 0
    comp = comp.masked_fill(cmask == 0, 0)
    ids = torch.cat([prompts.repeat_interleave(G, 0), comp], 1)
    attn = torch.cat([pmask.repeat_interleave(G, 0), cmask], 1)
    return ids, attn, cmask


def test_shared_prompt_logps_equal_the_full_forward_values_and_grads():
    from alignkit.config import LoraSettings
    from alignkit.logprobs import can_share_prompts, shared_prompt_token_logps
    from alignkit.methods.online import completion_token_logps
    from alignkit.models import apply_lora, build_tiny_random

    torch.manual_seed(0)
    model = apply_lora(build_tiny_random(), LoraSettings(r=4, alpha=8.0))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
    G = 3
    ids, attn, cmask = _grouped_rollout(G)
    C = cmask.shape[1]
    assert can_share_prompts(model, ids, attn, C, G)
    labels = ids.masked_fill(torch.cat([torch.zeros_like(attn[:, :-C]), cmask], 1) == 0, -100)
    position_ids = (attn.cumsum(-1) - 1).clamp(min=0) * attn
    params = [p for p in model.parameters() if p.requires_grad]

    full, _, full_ent = sequence_token_logps(model, ids, attn, labels, return_entropy=True, position_ids=position_ids)
    full, full_ent = full[:, -C:], full_ent[:, -C:]
    shared, shared_ent = shared_prompt_token_logps(model, ids, attn, cmask, G, return_entropy=True)
    assert torch.allclose(shared, full, atol=1e-5) and torch.allclose(shared_ent, full_ent, atol=1e-5)
    assert (shared[cmask == 0] == 0).all() and (shared[cmask == 1] < 0).all()
    weights = torch.randn(shared.shape)
    g_full = torch.autograd.grad((full * weights).sum(), params)
    g_shared = torch.autograd.grad((shared * weights).sum(), params)
    for a, b in zip(g_full, g_shared):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)
    # the online helper takes the shared path for groups and the full one without
    batch = {"input_ids": ids, "attention_mask": attn, "labels": labels, "position_ids": position_ids,
             "completion_mask": cmask}
    with torch.no_grad():
        assert torch.allclose(completion_token_logps(model, batch, group_size=G), full.detach(), atol=1e-5)
        assert torch.allclose(completion_token_logps(model, batch, group_size=1), full.detach(), atol=1e-6)


def test_can_share_prompts_only_for_identical_prompts_per_group():
    from alignkit.logprobs import can_share_prompts
    from alignkit.models import build_tiny_random

    model = build_tiny_random()
    ids, attn, cmask = _grouped_rollout(G=3)
    C = cmask.shape[1]
    assert can_share_prompts(model, ids, attn, C, 3)
    assert not can_share_prompts(model, ids, attn, C, 1)
    assert not can_share_prompts(model, ids, attn, C, 4)  # 6 rows are not groups of 4
    other = ids.clone()
    other[1, 4] += 1  # one row of the first group has another prompt
    assert not can_share_prompts(model, other, attn, C, 3)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    assert not can_share_prompts(model, ids, attn, C, 3)
