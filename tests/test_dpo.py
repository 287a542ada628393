"""``alignkit dpo`` on tiny-random: every loss from the CLI, first-step values, the reference cache,
gradient direction, reference-free losses, resume, bad rows."""

from __future__ import annotations

import json
import math

import pytest
import torch

from alignkit.cli import main
from alignkit.engine.logging import read_metrics
from alignkit.methods import dpo as dpo_module
from alignkit.methods import reference
from alignkit.methods.dpo import DPO, DPOConfig
from tests.helpers import preference_rows, run_cli, write_jsonl

METRICS = ("loss", "learning_rate", "grad_norm", "tokens_per_second", "rewards/chosen", "rewards/rejected",
           "rewards/margins", "rewards/accuracies", "logps/chosen", "logps/rejected")


@pytest.fixture(scope="module")
def pref_data(tmp_path_factory):
    return write_jsonl(tmp_path_factory.mktemp("dpo") / "pref.jsonl", preference_rows(12))


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest on one thread, and the test machine's cores are shared."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def ref_cache(tmp_path, monkeypatch, request):
    """Reference log-probs are cached in this test's own directory; report.html (plots, about 2 s a run)
    is written only where a test checks it."""
    path = tmp_path / "refcache"
    monkeypatch.setattr(reference, "ref_cache_dir", lambda: path)
    if not request.node.name.endswith("[sigmoid]"):
        monkeypatch.setattr("alignkit.cli.write_run_report", lambda out: None)
    return path


def _run(*args: str) -> int:
    return main(["dpo", "model=tiny-random", "batch_size=2", "max_length=64", *args])


# (loss, extra keys, first-step loss computed by hand with policy == reference and beta = 0.1)
CASES = [
    ("sigmoid", [], math.log(2)),                      # -log sigma(0)
    ("hinge", ["rpo_alpha=0.5"], None),                # relu(1 - 0) = 1, plus 0.5 * nll (checked below)
    ("ipo", [], 25.0),                                 # (0 - 1 / (2 * 0.1))^2
    ("robust", ["label_smoothing=0.1"], math.log(2)),  # (0.9 ln2 - 0.1 ln2) / 0.8
    ("simpo", [], None),
    ("orpo", [], None),
]


@pytest.mark.parametrize("loss,extra,first", CASES, ids=[c[0] for c in CASES])
def test_every_loss_runs_and_writes_run_dir(loss, extra, first, pref_data, tmp_path, monkeypatch, capsys):
    if loss in ("simpo", "orpo"):
        def no_reference(*a, **k):
            raise AssertionError("a reference-free loss built a reference")

        monkeypatch.setattr(dpo_module, "build_reference", no_reference)
        monkeypatch.setattr(reference.Reference, "__init__", no_reference)
    out = tmp_path / "run"
    assert _run(f"data={pref_data}", f"output_dir={out}", "max_steps=1", f"loss={loss}", *extra) == 0
    err = capsys.readouterr().err
    assert (out / "config.yaml").is_file() and f"loss: {loss}" in (out / "config.yaml").read_text()
    assert (out / "final" / "config.json").is_file()
    assert (out / "checkpoints" / "step-1" / "state.json").is_file()
    if loss == "sigmoid":
        assert (out / "report.html").is_file()
    rows = read_metrics(out)
    assert [r["step"] for r in rows] == [1]
    for key in METRICS:
        assert all(math.isfinite(r[key]) for r in rows), key
    if first is not None:
        assert rows[0]["loss"] == pytest.approx(first, abs=1e-4)
    if loss == "hinge":  # first step: 1 + rpo_alpha * nll
        assert rows[0]["nll_loss"] > 0
        assert rows[0]["loss"] == pytest.approx(1.0 + 0.5 * rows[0]["nll_loss"], abs=1e-4)
    else:
        assert "nll_loss" not in rows[0]
    if loss in ("simpo", "orpo"):
        assert "reference free" in err and "reference log-probs" not in err
        # rewards are beta * per-token average log-probs, so negative and no larger than beta * logps
        assert rows[0]["rewards/chosen"] < 0 and rows[0]["rewards/chosen"] > 0.1 * rows[0]["logps/chosen"]
    else:  # policy == reference at step 0: zero rewards
        assert "computed" in err and "precomputed" in err
        assert rows[0]["rewards/chosen"] == pytest.approx(0.0, abs=1e-5)
        assert rows[0]["rewards/margins"] == pytest.approx(0.0, abs=1e-5)


def test_subprocess_frozen_copy(pref_data, tmp_path):
    out = tmp_path / "run"
    proc = run_cli("dpo", "model=tiny-random", f"data={pref_data}", f"output_dir={out}", "max_steps=1",
                   "batch_size=2", "max_length=64", "precompute_ref_log_probs=false",
                   env={"OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "frozen copy" in proc.stderr
    rows = read_metrics(out)
    assert rows[0]["loss"] == pytest.approx(math.log(2), abs=1e-4)
    assert set(METRICS) <= set(rows[-1])


def _fresh_reference(examples):
    """Summed chosen/rejected log-probs of each example from the untrained model, one pair at a time,
    through the full logits (an independent path from the chunked one used in training)."""
    from alignkit.data import collate_preference
    from alignkit.logprobs import full_logits_token_logps, sum_token_logps
    from alignkit.models import build_tiny_random

    model = build_tiny_random().eval()
    chosen, rejected = [], []
    with torch.no_grad():
        for ex in examples:
            b = collate_preference([ex], 0)
            logps, mask = full_logits_token_logps(model, b["input_ids"], b["attention_mask"], b["labels"])
            sums, _ = sum_token_logps(logps, mask)
            chosen.append(float(sums[0]))
            rejected.append(float(sums[1]))
    return torch.tensor(chosen), torch.tensor(rejected)


def test_cached_reference_equals_fresh_forward_and_is_reused(pref_data, tmp_path, ref_cache, capsys, tokenizer,
                                                             monkeypatch):
    from safetensors.torch import load_file

    assert _run(f"data={pref_data}", f"output_dir={tmp_path / 'a'}", "max_steps=1") == 0
    assert "computed" in capsys.readouterr().err
    files = list(ref_cache.glob("*.safetensors"))
    assert len(files) == 1
    cached = load_file(str(files[0]))

    examples = DPO(DPOConfig(model="tiny-random", max_length=64), tokenizer).build_examples(str(pref_data))
    chosen, rejected = _fresh_reference(examples)
    # (sums of about -100: one float32 ulp is 7.6e-6; the shared-prompt forward rounds differently)
    assert torch.allclose(cached["ref_chosen_logps"], chosen, atol=1e-5, rtol=1e-6)
    assert torch.allclose(cached["ref_rejected_logps"], rejected, atol=1e-5, rtol=1e-6)

    # second run, same data and model: the pass is skipped
    calls = []
    original = reference.Reference._compute

    def counting(self, *a, **k):
        calls.append(1)
        return original(self, *a, **k)

    monkeypatch.setattr(reference.Reference, "_compute", counting)
    assert _run(f"data={pref_data}", f"output_dir={tmp_path / 'b'}", "max_steps=1") == 0
    # LoRA shares the cache: the reference is the base model either way
    assert _run(f"data={pref_data}", f"output_dir={tmp_path / 'c'}", "max_steps=1", "lora.r=4") == 0
    assert calls == []
    assert capsys.readouterr().err.count("loaded from cache") == 2
    assert read_metrics(tmp_path / "b")[0]["loss"] == read_metrics(tmp_path / "a")[0]["loss"]


def test_one_dpo_step_raises_the_margin(pref_data, tokenizer):
    """Gradient direction on a toy batch: one SGD step on the sigmoid loss raises h = (c - c_ref) - (r - r_ref)."""
    from alignkit.methods.common import forward_label_logps
    from alignkit.models import build_tiny_random

    method = DPO(DPOConfig(model="tiny-random", max_length=64), tokenizer)
    batch = method.collate(method.build_examples(str(pref_data))[:4])
    model = build_tiny_random().train()
    with torch.no_grad():
        logps, _ = forward_label_logps(model, batch)
        sums = logps.sum(-1)
    batch["ref_chosen_logps"], batch["ref_rejected_logps"] = sums[:4].clone(), sums[4:].clone()

    out = method.loss(model, batch, step=0)
    assert float(out.loss_sum) / 4 == pytest.approx(math.log(2), abs=1e-5)
    assert float(out.metrics["rewards/margins"][0]) == pytest.approx(0.0, abs=1e-6)
    out.loss_sum.backward()
    with torch.no_grad():
        for p in model.parameters():
            if p.grad is not None:
                p -= 0.5 * p.grad
    after = method.loss(model, batch, step=1)
    assert float(after.metrics["rewards/margins"][0]) > 1e-4
    assert float(after.loss_sum) / 4 < math.log(2)


@pytest.mark.parametrize("base_dtype", ["float32", "bfloat16"])
def test_training_raises_margins_and_accuracy_lora(base_dtype, pref_data, tmp_path, capsys):
    """Ten steps at a high lr on the toy set, LoRA with the adapters-disabled reference (no precompute);
    also with the frozen base stored and computed in bfloat16 (lora.base_dtype)."""
    out = tmp_path / "run"
    assert _run(f"data={pref_data}", f"output_dir={out}", "max_steps=10", "batch_size=4", "lr=1e-2",
                "lora.r=8", "lora.alpha=16", "precompute_ref_log_probs=false", f"lora.base_dtype={base_dtype}") == 0
    assert "adapters disabled" in capsys.readouterr().err
    rows = read_metrics(out)
    margins = [r["rewards/margins"] for r in rows]
    assert margins[0] == pytest.approx(0.0, abs=1e-5)
    late = sum(margins[-3:]) / 3
    assert late > 0.05 and late > max(margins[:2]), margins
    assert sum(r["rewards/accuracies"] for r in rows[-3:]) / 3 > 0.8
    assert rows[-1]["loss"] < rows[0]["loss"]
    assert (out / "final" / "adapter_config.json").is_file()


def _losses(out):
    return [(r["step"], r["loss"], r["grad_norm"], r["rewards/margins"]) for r in read_metrics(out)]


def test_resume_with_precomputed_reference(pref_data, tmp_path, monkeypatch):
    common = [f"data={pref_data}", "max_steps=4", "save_steps=2", "lr=1e-3"]
    ref = tmp_path / "ref"
    assert _run(*common, f"output_dir={ref}") == 0

    run = tmp_path / "run"
    original = DPO.loss

    def interrupting(self, model, batch, step):
        if step == 3:
            raise KeyboardInterrupt
        return original(self, model, batch, step)

    monkeypatch.setattr(DPO, "loss", interrupting)
    assert _run(*common, f"output_dir={run}") == 130
    monkeypatch.setattr(DPO, "loss", original)
    assert json.loads((run / "checkpoints" / "step-3" / "state.json").read_text())["step"] == 3

    # resume with a cold cache: the reference pass runs again on the initial weights (before the
    # checkpoint is restored) and must give the very same values
    monkeypatch.setattr(reference, "ref_cache_dir", lambda: tmp_path / "cold")
    assert _run(*common, f"output_dir={run}", "resume=true") == 0
    assert list((tmp_path / "cold").glob("*.safetensors"))
    assert _losses(run) == _losses(ref)


def test_bad_preference_row_exits_2(tmp_path, capsys):
    rows = preference_rows(4)
    rows[2] = {"prompt": "hi", "chosen": "hello", "rejected": 7}
    data = write_jsonl(tmp_path / "bad.jsonl", rows)
    out = tmp_path / "run"
    assert _run(f"data={data}", f"output_dir={out}", "max_steps=1") == 2
    err = capsys.readouterr().err
    assert "bad.jsonl" in err and "row 3" in err and "rejected" in err
    assert not (out / "checkpoints").exists()


def test_config_validation(capsys):
    assert main(["dpo", "model=tiny-random", "loss=dpo"]) == 2
    assert "loss" in capsys.readouterr().err
    assert main(["dpo", "model=tiny-random", "loss=hinge", "label_smoothing=0.1"]) == 2
    assert "label_smoothing" in capsys.readouterr().err
    assert main(["dpo", "model=tiny-random", "bta=0.2"]) == 2
    assert "did you mean 'beta'" in capsys.readouterr().err
    assert main(["dpo", "--help"]) == 0
    out = capsys.readouterr().out
    for key in ("loss", "beta", "label_smoothing", "gamma", "lam", "rpo_alpha", "precompute_ref_log_probs"):
        assert key in out
