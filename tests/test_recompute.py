"""Activations recomputed elementwise in backward (alignkit.models.recompute): values, gradients, what is kept."""

from __future__ import annotations

import copy

import torch

from alignkit.config import LoraSettings
from alignkit.models import build_tiny_random, recompute_cheap_activations
from alignkit.models.loading import apply_lora
from alignkit.models.recompute import SwiGLUFunction

IDS = torch.tensor([[5, 17, 9, 33, 2, 8, 41, 7], [12, 7, 3, 3, 90, 14, 60, 61]])


def _scrambled(seed=0):
    torch.manual_seed(seed)
    model = build_tiny_random()
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 2:
                p.normal_(0, 0.3)
    return model.train()


def _grads(model):
    model.zero_grad()
    out = model(input_ids=IDS).logits
    out.pow(2).mean().backward()
    return out.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_function_gradient_by_hand():
    g = torch.tensor([-1.0, 0.0, 2.0], requires_grad=True)
    u = torch.tensor([3.0, -2.0, 0.5], requires_grad=True)
    y = SwiGLUFunction.apply(g, u)
    sig = torch.sigmoid(g.detach())
    assert torch.allclose(y, g.detach() * sig * u.detach())
    y.sum().backward()
    # d/dg [g σ(g) u] = u (σ + g σ (1 − σ)), d/du = g σ(g); at g = 0: u · 1/2
    assert torch.allclose(u.grad, g.detach() * sig)
    assert torch.allclose(g.grad, u.detach() * (sig + g.detach() * sig * (1 - sig)))
    assert abs(float(g.grad[1]) - (-2.0 * 0.5)) < 1e-6
    assert torch.autograd.gradcheck(SwiGLUFunction.apply, (g.double().detach().requires_grad_(),
                                                            u.double().detach().requires_grad_()))


def test_full_model_values_and_gradients_equal_the_plain_mlp():
    plain = _scrambled()
    fused = copy.deepcopy(plain)
    assert recompute_cheap_activations(fused) == fused.config.num_hidden_layers
    want, want_grads = _grads(plain)
    got, got_grads = _grads(fused)
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-5)
    assert set(got_grads) == set(want_grads)
    for name, g in want_grads.items():
        assert torch.allclose(got_grads[name], g, atol=1e-5, rtol=1e-4), name


def test_with_lora_gradients_equal_and_the_product_is_not_kept():
    plain = apply_lora(_scrambled(1), LoraSettings(r=4, alpha=8))
    with torch.no_grad():
        for name, p in plain.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.3)
    fused = copy.deepcopy(plain)
    recompute_cheap_activations(fused)
    want, want_grads = _grads(plain)
    got, got_grads = _grads(fused)
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-5)
    for name, g in want_grads.items():
        assert torch.allclose(got_grads[name], g, atol=1e-5, rtol=1e-4), name
    # the product (down's input) and the post-attention norm's output (gate/up's input) are not kept for
    # backward: once the forward is done nothing holds them
    for module in ("mlp.down_proj", "mlp.gate_proj"):
        assert _input_kept(plain, module) and not _input_kept(fused, module)
    # what was stored as a recipe, counted: per layer the product (saved by down's LoRA A) and the two norm
    # outputs (saved by the LoRA A of q, k, v and of gate, up): 6, less layer 0's input norm, whose output
    # needs no gradient (the embedding is frozen) and is kept as it is
    from alignkit.models import recompute

    made = []
    real_init = recompute._Recipe.__init__

    def counting_init(self, fn, shape):
        made.append(tuple(shape))
        real_init(self, fn, shape)

    recompute._Recipe.__init__ = counting_init
    try:
        out = fused(input_ids=IDS).logits
    finally:
        recompute._Recipe.__init__ = real_init
    layers, tokens = fused.config.num_hidden_layers, IDS.numel()
    assert len(made) == 6 * layers - 3
    assert made.count((tokens, fused.config.intermediate_size)) == layers
    assert made.count((tokens, fused.config.hidden_size)) == 5 * layers - 3
    out.sum().backward()  # and backward recomputes them


def _input_kept(model, name: str) -> bool:
    import gc
    import weakref

    refs = []
    layer = model.base_model.model.model.layers[1].get_submodule(name)
    handle = layer.register_forward_pre_hook(lambda mod, args: refs.append(weakref.ref(args[0])))
    out = model(input_ids=IDS).logits  # the graph (and whatever it saved) lives as long as out
    handle.remove()
    gc.collect()
    kept = refs[0]() is not None
    del out
    return kept


def test_engine_uses_it_only_without_checkpointing(tmp_path):
    from alignkit.config import load_config
    from alignkit.methods.dpo import DPO

    def layer_class(checkpointing):
        cfg = load_config(DPO.config_cls, None, ["model=tiny-random", f"output_dir={tmp_path}", "lora.r=4",
                                                 f"gradient_checkpointing={checkpointing}"])
        from alignkit.models import load_tokenizer

        model = DPO(cfg, load_tokenizer("tiny-random")).build_model()
        return type(model.base_model.model.model.layers[0]).__name__

    assert layer_class("false") == "RecomputingLlamaDecoderLayer"
    assert layer_class("full") == "CheckpointedLlamaDecoderLayer"  # checkpointed, not recomputing
