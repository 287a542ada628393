"""``alignkit kto`` on tiny-random: unpaired and paired files, the KL reference point, first-step values."""

from __future__ import annotations

import math

import pytest
import torch

from alignkit.cli import main
from alignkit.engine.logging import read_metrics
from alignkit.methods import reference
from alignkit.methods.kto import KTO, KTOConfig, assign_kl_completions
from tests.helpers import QA, preference_rows, write_jsonl

METRICS = ("loss", "grad_norm", "tokens_per_second", "kl", "rewards/chosen", "rewards/rejected",
           "rewards/margins", "logps/chosen", "logps/rejected")


def unpaired_rows(n: int = 12) -> list[dict]:
    rows = []
    for i in range(n):
        q, a = QA[i % len(QA)]
        good = i % 3 != 2
        rows.append({"prompt": q + "\n", "completion": a if good else "I don't know.", "label": good})
    return rows


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("kto")
    return {"unpaired": write_jsonl(d / "unpaired.jsonl", unpaired_rows(12)),
            "paired": write_jsonl(d / "paired.jsonl", preference_rows(6))}


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is fastest on the shared test machine
    monkeypatch.setattr(reference, "ref_cache_dir", lambda: tmp_path / "refcache")
    monkeypatch.setattr("alignkit.cli.write_run_report", lambda out: None)  # plots: ~2 s a run, checked in test_dpo
    yield
    torch.set_num_threads(n)


def _run(*args: str) -> int:
    return main(["kto", "model=tiny-random", "batch_size=4", "max_length=64", *args])


def test_unpaired_run_logs_kl_and_starts_at_one_half(data, tmp_path):
    out = tmp_path / "run"
    assert _run(f"data={data['unpaired']}", f"eval_data={data['unpaired']}", f"output_dir={out}",
                "max_steps=3", "lr=1e-3") == 0
    assert "desirable_weight: 1.0" in (out / "config.yaml").read_text()
    assert (out / "final" / "config.json").is_file()
    rows = [r for r in read_metrics(out) if "loss" in r]
    assert [r["step"] for r in rows] == [1, 2, 3]
    for key in METRICS:
        assert all(math.isfinite(r[key]) for r in rows), key
    # step 0: policy == reference, so Delta = 0 and z = 0: every example's loss is 1 - sigma(0) = 1/2
    assert rows[0]["loss"] == pytest.approx(0.5, abs=1e-5)
    assert rows[0]["kl"] == pytest.approx(0.0, abs=1e-5)
    assert all(r["kl"] >= 0 for r in rows)
    assert rows[-1]["loss"] < 0.5  # the policy moved away from the reference
    for r in rows:  # margins: difference of the two reduced means
        assert r["rewards/margins"] == pytest.approx(r["rewards/chosen"] - r["rewards/rejected"], abs=1e-6)
    evals = [r for r in read_metrics(out) if "eval_loss" in r]
    assert evals and "eval_kl" in evals[-1] and "eval_rewards/chosen" in evals[-1]
    e = evals[-1]
    assert e["eval_rewards/margins"] == pytest.approx(e["eval_rewards/chosen"] - e["eval_rewards/rejected"],
                                                      abs=1e-6)


def test_paired_file_is_converted_and_weights_apply(data, tmp_path, capsys):
    out = tmp_path / "run"
    assert _run(f"data={data['paired']}", f"output_dir={out}", "max_steps=2", "desirable_weight=2.0") == 0
    err = capsys.readouterr().err
    assert "12 examples" in err  # 6 pairs -> 6 desirable + 6 undesirable examples
    assert "[1, 4/3]" in err  # 2 * 6 / (1 * 6) = 2 is outside the recommended range
    rows = read_metrics(out)
    assert set(METRICS) <= set(rows[0])
    # step 0: desirable examples cost 2 * 1/2, undesirable 1/2; the first batch's mix sets the mean
    assert 0.5 - 1e-5 <= rows[0]["loss"] <= 1.0 + 1e-5


def test_grad_accum_matches_bigger_batch(data, tmp_path):
    """z is estimated once per optimizer step from all of its KL pairs, so accumulation changes nothing."""
    a, b = tmp_path / "a", tmp_path / "b"
    common = [f"data={data['unpaired']}", "max_steps=3", "lr=1e-3"]
    assert _run(*common, f"output_dir={a}", "batch_size=4") == 0
    assert _run(*common, f"output_dir={b}", "batch_size=2", "grad_accum=2") == 0
    for ra, rb in zip(read_metrics(a), read_metrics(b), strict=True):
        assert ra["loss"] == pytest.approx(rb["loss"], abs=1e-5)
        assert ra["kl"] == pytest.approx(rb["kl"], abs=1e-5)
        assert ra["rewards/margins"] == pytest.approx(rb["rewards/margins"], abs=1e-5)
        assert ra["grad_norm"] == pytest.approx(rb["grad_norm"], rel=1e-4)


def test_kl_pairs_are_mismatched_and_fixed():
    # 6 prompts with 2 completions each (as a converted paired file): every completion is unique
    examples = [{"prompt_ids": [1, 100 + p], "completion_ids": [200 + 2 * p + k] * (3 + k)}
                for p in range(6) for k in range(2)]
    owner = {tuple(e["completion_ids"]): tuple(e["prompt_ids"]) for e in examples}
    assign_kl_completions(examples, seed=42, max_length=4)
    for ex in examples:
        kl = ex["kl_completion_ids"]
        full = next(c for c in owner if list(c[:len(kl)]) == kl)
        assert owner[full] != tuple(ex["prompt_ids"])  # another prompt's completion
        assert len(ex["prompt_ids"]) + len(kl) <= 4  # cut to fit max_length
    partners = [ex["kl_completion_ids"] for ex in examples]
    again = [{"prompt_ids": e["prompt_ids"], "completion_ids": e["completion_ids"]} for e in examples]
    assign_kl_completions(again, seed=42, max_length=4)
    assert [e["kl_completion_ids"] for e in again] == partners  # fixed by the seed
    assign_kl_completions(again, seed=7, max_length=4)
    assert [e["kl_completion_ids"] for e in again] != partners


def test_collate_carries_kl_pairs(tokenizer, data):
    method = KTO(KTOConfig(model="tiny-random", max_length=64), tokenizer)
    examples = method.build_examples(str(data["unpaired"]))
    batch = method.collate(examples[:3])
    assert batch["kl_input_ids"].shape[0] == 3 and batch["label"].tolist() == [True, True, False]
    assert method.count_units(batch) == 3
    assert method.count_tokens(batch) == int(batch["attention_mask"].sum() + batch["kl_attention_mask"].sum())


def test_bad_unpaired_row_exits_2(tmp_path, capsys):
    rows = unpaired_rows(4)
    rows[1] = {"prompt": "hi", "completion": "hello", "label": "maybe"}
    bad = write_jsonl(tmp_path / "bad.jsonl", rows)
    assert _run(f"data={bad}", f"output_dir={tmp_path / 'run'}", "max_steps=1") == 2
    err = capsys.readouterr().err
    assert "bad.jsonl" in err and "row 2" in err and "label" in err
