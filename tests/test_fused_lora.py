"""The fused LoRA linear (alignkit.models.fused_lora) against peft's own forward: values and gradients."""

from __future__ import annotations

import pytest
import torch
from peft.tuners.lora.layer import Linear as LoraLinear

from alignkit.config import LoraSettings
from alignkit.models import build_tiny_random
from alignkit.models.fused_lora import fuse_lora_linears
from alignkit.models.loading import apply_lora


def _pair(dropout=0.0, seed=0):
    """The same LoRA model twice: peft's forward and the fused one (random non-zero B)."""
    models = []
    for fused in (False, True):
        torch.manual_seed(seed)
        model = build_tiny_random()
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=4, lora_alpha=12, lora_dropout=dropout,
                                                 target_modules="all-linear", task_type="CAUSAL_LM"))
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
        if fused:
            assert fuse_lora_linears(model) > 0
        models.append(model)
    return models


def _run(model, ids):
    model.zero_grad()
    out = model(input_ids=ids).logits
    out.pow(2).mean().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return out.detach(), grads


def test_values_and_gradients_equal_peft_forward():
    plain, fused = _pair()
    ids = torch.tensor([[5, 17, 9, 33, 2, 8], [12, 7, 3, 3, 90, 14]])
    want, want_grads = _run(plain, ids)
    got, got_grads = _run(fused, ids)
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-5)
    assert set(got_grads) == set(want_grads) and len(got_grads) > 0
    for name, g in want_grads.items():
        assert torch.allclose(got_grads[name], g, atol=1e-5, rtol=1e-4), name
    # the adapter really contributes: with adapters off the output differs
    with fused.disable_adapter():
        base = fused(input_ids=ids).logits.detach()
    assert not torch.allclose(base, got, atol=1e-3)


def test_one_layer_by_hand():
    torch.manual_seed(1)
    model = apply_lora(build_tiny_random(), LoraSettings(r=2, alpha=6))
    layer = model.base_model.model.model.layers[0].mlp.down_proj
    with torch.no_grad():
        layer.lora_B["default"].weight.normal_()
    x = torch.randn(3, 4, layer.base_layer.in_features)
    w, a, b = layer.base_layer.weight, layer.lora_A["default"].weight, layer.lora_B["default"].weight
    assert torch.allclose(layer(x), x @ w.T + 3.0 * (x @ a.T) @ b.T, atol=1e-5)  # s = alpha / r = 3


@pytest.mark.parametrize("case", ["dropout", "disabled"])
def test_other_cases_take_peft_forward(case, monkeypatch):
    plain, fused = _pair(dropout=0.5 if case == "dropout" else 0.0)
    calls = []
    real = LoraLinear.forward
    monkeypatch.setattr(LoraLinear, "forward", lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    for module in fused.modules():  # the fused class captured peft's forward when it was made
        if type(module).__name__ == "FusedLinear":
            monkeypatch.setattr(type(module), "_peft_forward", LoraLinear.forward)
            break
    ids = torch.tensor([[5, 17, 9, 33]])
    fused.eval(), plain.eval()
    if case == "disabled":
        with fused.disable_adapter(), plain.disable_adapter():
            got, want = fused(input_ids=ids).logits, plain(input_ids=ids).logits
    else:
        got, want = fused(input_ids=ids).logits, plain(input_ids=ids).logits
    assert calls  # peft's forward ran for the fused model's layers too
    assert torch.allclose(got, want, atol=1e-5)


def test_apply_lora_fuses():
    model = apply_lora(build_tiny_random(), LoraSettings(r=4))
    kinds = {type(m).__name__ for m in model.modules() if hasattr(m, "lora_A")}
    assert kinds == {"FusedLinear"}


def test_bf16_base_layer_by_hand():
    """lora.base_dtype=bfloat16: the base weight is stored in bf16, the adapters stay float32 and trainable,
    and the layer is x Wᵀ + s (x Aᵀ) Bᵀ computed from bf16-rounded operands, returned in x's dtype."""
    torch.manual_seed(2)
    model = apply_lora(build_tiny_random(), LoraSettings(r=2, alpha=6, base_dtype="bfloat16"))
    layer = model.base_model.model.model.layers[0].mlp.down_proj
    with torch.no_grad():
        layer.lora_B["default"].weight.normal_()
    w, a, b = layer.base_layer.weight, layer.lora_A["default"].weight, layer.lora_B["default"].weight
    assert w.dtype == torch.bfloat16 and not w.requires_grad
    assert a.dtype == b.dtype == torch.float32 and a.requires_grad and b.requires_grad
    x = torch.randn(3, 4, layer.base_layer.in_features)
    got = layer(x)
    assert got.dtype == torch.float32
    r = lambda t: t.to(torch.bfloat16).double()  # noqa: E731 - the rounding the bf16 product sees
    want = r(x) @ r(w).T + 3.0 * (r(x) @ r(a).T) @ r(b).T
    assert torch.allclose(got.double(), want, atol=0.05, rtol=0.02)
    exact = x @ w.float().T + 3.0 * (x @ a.T) @ b.T
    assert not torch.equal(got, exact)  # really computed in bf16, not float32
    got.pow(2).sum().backward()
    assert a.grad is not None and a.grad.dtype == torch.float32 and b.grad.abs().sum() > 0
    assert w.grad is None
    with model.disable_adapter():  # the reference view: the bf16 base alone
        base_only = layer(x)
    assert torch.allclose(base_only.double(), r(x) @ r(w).T, atol=0.05, rtol=0.02)


def test_bf16_base_model_close_to_float32():
    """The whole model with bf16 base weights: logits and adapter gradients close to float32's."""
    outs = []
    for dtype in ("float32", "bfloat16"):
        torch.manual_seed(3)
        model = apply_lora(build_tiny_random(), LoraSettings(r=4, alpha=8, base_dtype=dtype))
        gen = torch.Generator().manual_seed(3)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
        outs.append(_run(model, torch.tensor([[5, 17, 9, 33, 2, 8]])))
    (want, want_grads), (got, got_grads) = outs
    assert set(got_grads) == set(want_grads) and not torch.equal(got, want)
    assert (got - want).abs().max() < 0.05 * want.abs().max()
    for name, g in want_grads.items():
        cos = torch.nn.functional.cosine_similarity(got_grads[name].flatten(), g.flatten(), dim=0)
        assert cos > 0.98, (name, float(cos))


def test_base_dtype_needs_lora():
    with pytest.raises(ValueError, match="lora.r > 0"):
        LoraSettings(r=0, base_dtype="bfloat16")
