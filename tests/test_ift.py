"""Intuitive Fine-Tuning: SFT equivalence, TRC mixing, DRP weights, λ schedule, CLI runs and resume."""

from __future__ import annotations

import json

import pytest
import torch

from alignkit.cli import main
from alignkit.config import load_config
from alignkit.engine.logging import read_metrics
from alignkit.methods.ift import IFT, IFTConfig, discounted_cumsum_right, drp_weights, lambda_at
from alignkit.methods.sft import SFT
from alignkit.models import load_model
from alignkit.models.tokenizer import load_smollm2_tokenizer
from tests.helpers import preference_rows, sft_rows, write_jsonl


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("ift")
    rows = sft_rows(16, chat=False)
    rows[3] = {"prompt": rows[3]["prompt"], "completion": rows[3]["completion"] + " It is a long answer."}
    return {"sft": write_jsonl(d / "sft.jsonl", rows),
            "chat": write_jsonl(d / "chat.jsonl", sft_rows(16)),
            "pref": write_jsonl(d / "pref.jsonl", preference_rows(16)),
            "eval": write_jsonl(d / "eval.jsonl", sft_rows(4))}


@pytest.fixture(scope="module")
def tok():
    return load_smollm2_tokenizer()


def _config(cls, data_path, *overrides):
    return load_config(cls, None, ["model=tiny-random", f"data={data_path}", "max_length=64", *overrides])


def _batch(method, n=4):
    examples = method.build_examples(method.config.data)
    batch = method.collate(examples[:n])
    assert (batch["attention_mask"] == 0).any(), "want a padded batch"
    return batch


def _model():
    torch.manual_seed(0)
    model = load_model("tiny-random")
    model.train()
    return model


def _loss_and_grads(method, model, batch, step=0):
    model.zero_grad(set_to_none=True)
    out = method.loss(model, batch, step)
    out.loss_sum.backward()
    return out, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


# ------------------------------------------------------------------------------------- SFT equality
def test_lambda0_gamma0_equals_sft_loss_and_grads(data, tok):
    sft = SFT(_config(SFT.config_cls, data["sft"]), tok)
    ift = IFT(_config(IFTConfig, data["sft"], "ift_lambda=0", "drp_gamma=0"), tok)
    batch = _batch(sft)
    assert ift.count_units(batch) == sft.count_units(batch)
    model = _model()
    ift.setup(model, None)
    ref, g_ref = _loss_and_grads(sft, model, batch)
    out, g = _loss_and_grads(ift, model, batch)
    assert abs(float(out.loss_sum.detach() - ref.loss_sum.detach())) <= 1e-6 * max(1.0, float(ref.loss_sum.detach()))
    assert g.keys() == g_ref.keys() and g
    for name in g:
        torch.testing.assert_close(g[name], g_ref[name], atol=1e-6, rtol=1e-6, msg=name)
    # the pass-1 SFT loss is the same number, logged as a token mean
    s, c = out.metrics["sft_loss"]
    assert c == sft.count_units(batch) and s == pytest.approx(float(ref.loss_sum.detach()), rel=1e-5)
    assert out.metrics["lambda"] == (0.0, 1.0)


def test_cli_lambda0_gamma0_matches_sft(data, tmp_path):
    common = ["model=tiny-random", f"data={data['sft']}", "max_steps=3", "batch_size=2", "lr=1e-3",
              "max_length=64", "seed=7"]
    a, b = tmp_path / "sft", tmp_path / "ift"
    assert main(["sft", *common, f"output_dir={a}"]) == 0
    assert main(["ift", *common, f"output_dir={b}", "ift_lambda=0", "drp_gamma=0"]) == 0
    ra, rb = read_metrics(a), read_metrics(b)
    assert len(ra) == len(rb) == 3
    for x, y in zip(ra, rb):
        assert x["loss"] == pytest.approx(y["loss"], abs=1e-6)
        assert x["grad_norm"] == pytest.approx(y["grad_norm"], rel=1e-5)
        assert y["sft_loss"] == pytest.approx(y["loss"], abs=1e-5)


# ------------------------------------------------------------------------------------- TRC mixing
def test_mixed_embeddings_follow_the_formula_and_no_gradient_through_prediction(data, tok):
    lam = 0.3
    ift = IFT(_config(IFTConfig, data["sft"], f"ift_lambda={lam}"), tok)
    batch = _batch(ift)
    model = _model()
    ift.setup(model, None)
    ids, labels = batch["input_ids"], batch["labels"]

    pred, nll, correct, mask = ift.greedy_pass(model, batch)
    assert pred.grad_fn is None and not pred.requires_grad and nll.grad_fn is None
    # the chunked argmax equals the argmax of the full logits at the previous position
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=batch["attention_mask"]).logits
    resp = torch.zeros_like(labels, dtype=torch.bool)
    resp[:, 1:] = labels[:, 1:] != -100
    expected_pred = torch.where(resp, torch.cat([ids[:, :1], logits[:, :-1].argmax(-1)], 1), ids)
    assert torch.equal(pred, expected_pred)
    full_nll = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), labels[:, 1:], reduction="none")
    torch.testing.assert_close(nll, full_nll * mask, atol=1e-5, rtol=1e-5)

    emb = model.get_input_embeddings()
    embeds = ift.mixed_embeddings(model, batch, pred, lam)
    frozen = ift.frozen_embeddings(model)
    assert not frozen.requires_grad and frozen.data_ptr() != emb.weight.data_ptr()
    W = emb.weight.detach()
    formula = (1 - lam) * W[ids] + lam * W[pred]
    padding = batch["attention_mask"] == 0
    prompt = (labels == -100) & ~padding
    assert resp.any() and prompt.any() and padding.any()
    torch.testing.assert_close(embeds[resp], formula[resp], atol=1e-7, rtol=0)
    assert torch.equal(embeds[prompt], W[ids][prompt]) and torch.equal(embeds[padding], W[ids][padding])
    assert (pred[resp] != ids[resp]).any()  # the mixing did change something

    # gradient into the table: (1-λ) per mixed gold occurrence, 1 per unmixed one, nothing for ŷ
    model.zero_grad(set_to_none=True)
    embeds.sum().backward()
    expected = torch.zeros(W.shape[0])
    expected.index_add_(0, ids[resp], torch.full((int(resp.sum()),), 1 - lam))
    expected.index_add_(0, ids[~resp], torch.ones(int((~resp).sum())))
    if emb.padding_idx is not None:
        expected[emb.padding_idx] = 0.0  # nn.Embedding never updates its padding row
    torch.testing.assert_close(emb.weight.grad, expected.unsqueeze(1).expand_as(W), atol=1e-6, rtol=0)

    # the full loss: the frozen copy gets no gradient, the model does
    model.zero_grad(set_to_none=True)
    out = ift.loss(model, batch, step=0)
    out.loss_sum.backward()
    assert frozen.grad is None and emb.weight.grad is not None
    assert out.metrics["lambda"] == (lam, 1.0)
    # after an optimizer step the copy is refreshed
    with torch.no_grad():
        emb.weight.add_(1.0)
    assert not torch.equal(frozen, emb.weight)
    ift.after_optimizer_step(model, 0)
    assert torch.equal(frozen, emb.weight.detach())


def test_scheduled_sampling_replaces_response_inputs_only(data, tok):
    ift = IFT(_config(IFTConfig, data["sft"], "ift_lambda=0", "scheduled_sampling=1"), tok)
    batch = _batch(ift)
    model = _model()
    pred = batch["input_ids"].clone()
    resp = torch.zeros_like(pred, dtype=torch.bool)
    resp[:, 1:] = batch["labels"][:, 1:] != -100
    pred[resp] = 5  # pretend the model always guesses token 5
    W = model.get_input_embeddings().weight.detach()
    embeds = ift.mixed_embeddings(model, batch, pred, 0.0, step=3)
    assert torch.equal(embeds[resp], W[5].expand(int(resp.sum()), -1))
    assert torch.equal(embeds[~resp], W[batch["input_ids"]][~resp])
    half = IFT(_config(IFTConfig, data["sft"], "scheduled_sampling=0.5"), tok)
    m1 = half._sampling_mask(resp, step=3)
    half._micro = (-1, 0)
    assert torch.equal(m1, half._sampling_mask(resp, step=3))  # seeded by step: resume draws the same
    assert not (m1 & ~resp).any() and 0 < int(m1.sum()) < int(resp.sum())


# ------------------------------------------------------------------------------------- DRP
def test_drp_weights_match_hand_computation():
    g = 0.5
    losses = [1.0, 2.0, 0.5, 1.5]
    n = 4
    c = [x / n for x in losses]
    wt = [c[0] + g * c[1] + g**2 * c[2] + g**3 * c[3],  # 0.25 + 0.25 + 0.03125 + 0.046875
          c[1] + g * c[2] + g**2 * c[3],
          c[2] + g * c[3],
          c[3]]
    total = sum(wt)
    expected = [n * x / total for x in wt]
    assert sum(expected) == pytest.approx(4.0)
    # the same 4 response tokens after 2 prompt positions and before 1 padding position
    row = torch.tensor([[0.0, 0.0, *losses, 0.0]])
    mask = torch.tensor([[False, False, True, True, True, True, False]])
    w = drp_weights(row, mask, g)
    assert w[0, 2:6].tolist() == pytest.approx(expected, rel=1e-6)
    assert w[0, [0, 1, 6]].tolist() == [0.0, 0.0, 0.0]
    seq_loss = sum(e * x for e, x in zip(expected, losses)) / n
    assert float((w * row).sum() / n) == pytest.approx(seq_loss, rel=1e-6)
    # γ = 0: uniform weights
    assert drp_weights(row, mask, 0.0).tolist() == [[0, 0, 1, 1, 1, 1, 0]]
    # two packed sequences in one row are weighted as if apart
    packed = torch.tensor([[0.0, *losses, 0.0, 3.0, 1.0]])
    pmask = torch.tensor([[False, True, True, True, True, False, True, True]])
    starts = torch.tensor([[True, False, False, False, False, True, False, False]])
    wp = drp_weights(packed, pmask, g, starts)
    assert wp[0, 1:5].tolist() == pytest.approx(expected, rel=1e-6)
    second = [3.0 / 2 + g * 1.0 / 2, 1.0 / 2]
    assert wp[0, 6:].tolist() == pytest.approx([2 * x / sum(second) for x in second], rel=1e-6)
    # gradients flow through the weights unless detached
    x = row.clone().requires_grad_(True)
    (drp_weights(x, mask, g) * x).sum().backward()
    assert x.grad[0, 2:6].abs().sum() > 0


def test_discounted_cumsum_blocks_match_naive():
    x = torch.randn(3, 70, dtype=torch.float64)
    naive = torch.zeros_like(x)
    acc = torch.zeros(3, dtype=torch.float64)
    for t in reversed(range(70)):
        acc = x[:, t] + 0.9 * acc
        naive[:, t] = acc
    for block in (8, 16, 70, 256):
        torch.testing.assert_close(discounted_cumsum_right(x, 0.9, block=block), naive)


def test_sequence_average_is_mean_of_sequence_means(data, tok):
    ift = IFT(_config(IFTConfig, data["sft"], "loss_average=sequence", "ift_lambda=0", "drp_gamma=0"), tok)
    batch = _batch(ift)
    assert ift.count_units(batch) == batch["input_ids"].shape[0]
    model = _model()
    with torch.no_grad():
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    out = ift.loss(model, batch, step=0)
    nll = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), batch["labels"][:, 1:],
                                            reduction="none")
    m = (batch["labels"][:, 1:] != -100).float()
    expected = ((nll * m).sum(-1) / m.sum(-1)).sum()
    assert float(out.loss_sum) == pytest.approx(float(expected), rel=1e-5)


def test_packed_rows_equal_separate_sequences(data, tok):
    """λ > 0, γ > 0: a packed row's loss is the sum of its examples' losses computed one by one."""
    ift = IFT(_config(IFTConfig, data["sft"], "ift_lambda=0.4", "drp_gamma=0.9"), tok)
    examples = ift.build_examples(ift.config.data)[:3]
    model = _model()
    alone = sum(float(ift.loss(model, ift.collate([ex]), step=0).loss_sum.detach()) for ex in examples)
    packed_cfg = _config(IFTConfig, data["sft"], "ift_lambda=0.4", "drp_gamma=0.9", "packing=true")
    packed = IFT(packed_cfg, tok)
    from alignkit.data import pack_examples

    row = pack_examples(examples, 64)
    assert len(row) == 1
    batch = packed.collate(row)
    assert packed.count_units(batch) == sum(ift.count_units(ift.collate([ex])) for ex in examples)
    assert float(packed.loss(model, batch, step=0).loss_sum.detach()) == pytest.approx(alone, rel=1e-4)
    seq = IFT(_config(IFTConfig, data["sft"], "loss_average=sequence", "packing=true"), tok)
    assert seq.count_units(batch) == 3


# ------------------------------------------------------------------------------------- λ
def test_lambda_schedule():
    cfg = IFTConfig(data="x")
    assert cfg.ift_lambda == 0.2 and cfg.drp_gamma == 0.95
    assert [lambda_at(s, cfg) for s in (0, 5, 1000)] == [0.2, 0.2, 0.2]
    ramp = IFTConfig(data="x", lambda_min=0.1, lambda_max=0.5, lambda_warmup_steps=4)
    assert [lambda_at(s, ramp) for s in range(6)] == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5, 0.5])
    default_max = IFTConfig(data="x", ift_lambda=0.4, lambda_warmup_steps=2)
    assert [lambda_at(s, default_max) for s in range(3)] == pytest.approx([0.0, 0.2, 0.4])
    noisy = IFTConfig(data="x", ift_lambda=0.5, lambda_noise=0.1, seed=3)
    values = [lambda_at(s, noisy) for s in range(50)]
    assert values == [lambda_at(s, noisy) for s in range(50)]  # a function of (seed, step)
    assert all(0.4 <= v <= 0.6 for v in values) and len(set(values)) == 50
    clamped = IFTConfig(data="x", ift_lambda=0.95, lambda_noise=0.5)
    assert all(0.0 <= lambda_at(s, clamped) <= 1.0 for s in range(50))
    assert max(lambda_at(s, clamped) for s in range(50)) == 1.0


# ------------------------------------------------------------------------------------- CLI
def _check_run_dir(out, steps):
    assert (out / "config.yaml").is_file() and "drp_gamma: 0.95" in (out / "config.yaml").read_text()
    rows = [r for r in read_metrics(out) if "loss" in r]
    assert [r["step"] for r in rows] == list(range(1, steps + 1))
    for r in rows:
        for key in ("loss", "lambda", "sft_loss", "learning_rate", "grad_norm", "tokens_per_second"):
            assert key in r and r[key] == r[key], key
        assert r["lambda"] == pytest.approx(0.2)
    assert (out / "checkpoints" / f"step-{steps}" / "state.json").is_file()
    final = out / "final"
    assert (final / "config.json").is_file() or (final / "adapter_config.json").is_file()
    assert list(final.glob("*.safetensors")) and not list(out.rglob("*.bin"))
    return rows


def test_cli_runs_on_preference_and_sft_data(data, tmp_path):
    common = ["model=tiny-random", "max_steps=2", "batch_size=2", "lr=1e-3", "max_length=64"]
    pref = tmp_path / "pref"
    assert main(["ift", *common[:1], "max_steps=1", *common[2:], f"data={data['pref']}", f"output_dir={pref}"]) == 0
    _check_run_dir(pref, 1)
    chat = tmp_path / "chat"
    assert main(["ift", *common, f"data={data['chat']}", f"eval_data={data['eval']}", f"output_dir={chat}",
                 "lora.r=4", "neftune_alpha=5", "scheduled_sampling=0.2"]) == 0
    rows = _check_run_dir(chat, 2)
    assert any("eval_loss" in r for r in read_metrics(chat))
    assert rows[0]["sft_loss"] > 0
    assert (chat / "final" / "adapter_config.json").is_file()


def test_resume_with_lambda_noise_reproduces_run(data, tmp_path, monkeypatch):
    common = ["model=tiny-random", f"data={data['sft']}", "max_steps=4", "save_steps=2", "batch_size=1",
              "grad_accum=2", "lr=1e-3", "max_length=64", "lambda_noise=0.1", "scheduled_sampling=0.3"]
    ref = tmp_path / "ref"
    assert main(["ift", *common, f"output_dir={ref}"]) == 0

    run = tmp_path / "run"
    original = IFT.loss

    def interrupting(self, model, batch, step):
        if step == 3:
            raise KeyboardInterrupt
        return original(self, model, batch, step)

    monkeypatch.setattr(IFT, "loss", interrupting)
    assert main(["ift", *common, f"output_dir={run}"]) == 130
    monkeypatch.setattr(IFT, "loss", original)
    assert json.loads((run / "checkpoints" / "step-3" / "state.json").read_text())["step"] == 3
    assert main(["ift", *common, f"output_dir={run}", "resume=true"]) == 0

    def keyed(out):
        return [(r["step"], r["loss"], r["grad_norm"], r["lambda"], r["sft_loss"]) for r in read_metrics(out)]

    assert keyed(run) == keyed(ref)
    lambdas = [r["lambda"] for r in read_metrics(ref)]
    assert len(set(lambdas)) == 4 and all(0.1 <= v <= 0.3 for v in lambdas)
