"""Reward models on tiny-random: `alignkit rm`, alignkit.reward_model and `alignkit score`.

Two short training runs (full fine-tuning in-process through the Trainer, LoRA through the CLI) are
shared by the tests of this module.
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from alignkit.cli import main
from alignkit.config import load_config
from alignkit.engine.logging import read_metrics
from alignkit.engine.trainer import Trainer
from alignkit.methods.rm import RM, RMConfig
from alignkit.models import load_tokenizer, save_model
from alignkit.reward_model import is_reward_model_dir, load_reward_model, sequence_rewards
from tests.helpers import preference_rows, write_jsonl

COMMON = ["model=tiny-random", "max_length=64"]


@pytest.fixture(scope="module", autouse=True)
def _fast():
    """One torch thread (the tiny model gains nothing from more on a shared CPU) and no report.html
    plots (tested with the engine): keeps this module's training runs to a few seconds."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("alignkit.cli.write_run_report", lambda out: None)
        yield
    torch.set_num_threads(threads)


def _bt(rc: float, rr: float, m: float = 0.0) -> float:
    """-log sigmoid(rc - rr - m), by hand."""
    return -math.log(1.0 / (1.0 + math.exp(-(rc - rr - m))))


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """8 pairs whose chosen answer is always a real answer and rejected always "I don't know."."""
    return write_jsonl(tmp_path_factory.mktemp("rmdata") / "toy.jsonl", preference_rows(8))


@pytest.fixture(scope="module")
def full_run(toy, tmp_path_factory):
    out = tmp_path_factory.mktemp("rm") / "full"
    cfg = load_config(RMConfig, None, [*COMMON, f"data={toy}", f"eval_data={toy}", f"output_dir={out}",
                                       "max_steps=8", "batch_size=8", "lr=1e-3"])
    trainer = Trainer(RM, cfg)
    # batch_size 8 = the whole file: step 1 sees every pair. Rewards of the initial model, one
    # unpadded sequence at a time through transformers' own forward (its pooling = last token)
    model = trainer.accelerator.unwrap_model(trainer.model)
    model.eval()
    init = []
    with torch.no_grad():
        for ex in trainer.examples:
            pair = []
            for key in ("chosen_ids", "rejected_ids"):
                ids = torch.tensor([ex["prompt_ids"] + ex[key]])
                pair.append(float(model(input_ids=ids).logits[0, 0]))
            init.append(tuple(pair))
    model.train()
    init_eval = trainer.evaluate()
    trainer.fit()
    return {"out": out, "init": init, "init_eval": init_eval, "metrics": read_metrics(out)}


@pytest.fixture(scope="module")
def lora_run(toy, tmp_path_factory):
    out = tmp_path_factory.mktemp("rm") / "lora"
    rc = main(["rm", *COMMON, f"data={toy}", f"eval_data={toy}", f"output_dir={out}", "max_steps=4",
               "batch_size=4", "lr=5e-3", "lora.r=8"])
    assert rc == 0
    return out


def _pairs(rm, path):
    """Token ids of prompt+chosen and prompt+rejected of each row of a preference file."""
    from alignkit.data import load_examples, tokenize_preference

    exs = tokenize_preference(load_examples(path, ("preference",)), rm.tokenizer, rm.max_length, rm.chat_template)
    return [e["prompt_ids"] + e["chosen_ids"] for e in exs], [e["prompt_ids"] + e["rejected_ids"] for e in exs]


# ----------------------------------------------------------------------------- training


def test_first_step_loss_is_bradley_terry_of_model_rewards(full_run):
    first = full_run["metrics"][0]
    init = full_run["init"]
    assert first["step"] == 1
    assert first["loss"] == pytest.approx(sum(_bt(c, r) for c, r in init) / len(init), abs=1e-5)
    assert first["rewards/chosen"] == pytest.approx(sum(c for c, _ in init) / len(init), abs=1e-5)
    assert first["rewards/rejected"] == pytest.approx(sum(r for _, r in init) / len(init), abs=1e-5)
    assert first["rewards/margins"] == pytest.approx(sum(c - r for c, r in init) / len(init), abs=1e-5)
    assert first["accuracy"] == pytest.approx(sum(c > r for c, r in init) / len(init))


def test_training_raises_eval_accuracy(full_run):
    before = full_run["init_eval"]
    after = full_run["metrics"][-1]
    assert "eval_accuracy" in after and "eval_loss" in after
    assert after["eval_accuracy"] == 1.0 > before["eval_accuracy"]
    assert after["eval_loss"] < before["eval_loss"] - 0.2


def test_run_directory_and_hf_loadable_final(full_run):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = full_run["out"]
    cfg = (out / "config.yaml").read_text()
    assert "center_rewards_coefficient: null" in cfg and "model: tiny-random" in cfg
    rows = full_run["metrics"]
    train_rows = [r for r in rows if "loss" in r]
    assert [r["step"] for r in train_rows] == list(range(1, 9))
    for key in ("loss", "accuracy", "rewards/chosen", "rewards/rejected", "rewards/margins", "grad_norm",
                "learning_rate", "tokens_per_second"):
        assert all(math.isfinite(r[key]) for r in train_rows), key
    assert (out / "checkpoints" / "step-8").is_dir()
    final = out / "final"
    assert (final / "model.safetensors").is_file() and not list(out.rglob("*.bin"))
    assert is_reward_model_dir(final)

    # plain transformers loads final/; its pad id (where it reads the reward) is not EOS
    hf = AutoModelForSequenceClassification.from_pretrained(str(final)).eval()
    tok = AutoTokenizer.from_pretrained(str(final))
    assert hf.config.num_labels == 1 and hf.config.pad_token_id == tok.pad_token_id != tok.eos_token_id


def test_rewards_match_eval_and_transformers(full_run, toy):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = full_run["out"]
    rm = load_reward_model(out)
    assert rm.max_length == 64 and rm.chat_template == "auto"  # from the run's config.yaml
    chosen, rejected = _pairs(rm, toy)
    rc, rr = rm.score_ids(chosen), rm.score_ids(rejected)
    final_eval = full_run["metrics"][-1]
    assert sum(_bt(c, r) for c, r in zip(rc, rr)) / len(rc) == pytest.approx(final_eval["eval_loss"], abs=1e-5)

    # plain transformers on a batch padded by the saved tokenizer gives the same rewards
    hf = AutoModelForSequenceClassification.from_pretrained(str(out / "final")).eval()
    tok = AutoTokenizer.from_pretrained(str(out / "final"))
    batch = tok.pad({"input_ids": chosen + rejected}, return_tensors="pt")
    assert (batch["attention_mask"] == 0).any()
    with torch.no_grad():
        logits = hf(**batch).logits[:, 0]
    assert torch.allclose(logits, torch.tensor(rc + rr), atol=1e-5)


def test_padding_does_not_change_rewards(full_run, toy):
    rm = load_reward_model(full_run["out"])
    chosen, rejected = _pairs(rm, toy)
    seqs = chosen + rejected
    alone = [rm.score_ids([s], batch_size=1)[0] for s in seqs]
    batched = rm.score_ids(seqs, batch_size=16)
    assert max(map(len, seqs)) > min(map(len, seqs))  # the batch really is padded
    assert batched == pytest.approx(alone, abs=1e-5)
    # extra padding, with the pad id or with EOS (SmolLM2's default pad, the last real token) as filler
    s = torch.tensor([seqs[0]])
    base = sequence_rewards(rm.model, s, torch.ones_like(s))
    for filler in (rm.tokenizer.pad_token_id, rm.tokenizer.eos_token_id):
        ids = torch.cat([s, torch.full((1, 7), filler)], dim=1)
        mask = torch.cat([torch.ones_like(s), torch.zeros(1, 7, dtype=torch.long)], dim=1)
        with torch.no_grad():
            assert torch.allclose(sequence_rewards(rm.model, ids, mask), base, atol=1e-5)


def test_margin_and_centering_change_the_loss_as_the_formula_says(tmp_path):
    rows = preference_rows(4)
    margins = [0.5, 2, "1.5", -1.0]  # CSV-style strings are numbers too
    for row, m in zip(rows, margins):
        row["margin"] = m
    path = write_jsonl(tmp_path / "margin.jsonl", rows)
    tok = load_tokenizer("tiny-random")
    method = RM(RMConfig(model="tiny-random", max_length=64, center_rewards_coefficient=0.1), tok)
    examples = method.build_examples(str(path))
    assert [e["margin"] for e in examples] == [0.5, 2.0, 1.5, -1.0]
    torch.manual_seed(0)
    model = method.build_model().eval()
    batch = method.collate(examples)
    assert method.count_units(batch) == 4
    with torch.no_grad():
        out = method.loss(model, batch, step=0)
        r = sequence_rewards(model, batch["input_ids"], batch["attention_mask"]).tolist()
        no_margin = {k: v for k, v in batch.items() if k != "margin"}
        out_plain = method.loss(model, no_margin, step=0)
    rc, rr = r[:4], r[4:]
    centred = [0.1 * (c + q) ** 2 for c, q in zip(rc, rr)]
    want = sum(_bt(c, q, m) + z for c, q, m, z in zip(rc, rr, [0.5, 2.0, 1.5, -1.0], centred))
    want_plain = sum(_bt(c, q) + z for c, q, z in zip(rc, rr, centred))
    assert float(out.loss_sum) == pytest.approx(want, abs=1e-5)
    assert float(out_plain.loss_sum) == pytest.approx(want_plain, abs=1e-5)
    assert abs(want - want_plain) > 0.1
    assert out.metrics["accuracy"] == (sum(c > q for c, q in zip(rc, rr)), 4)


# ----------------------------------------------------------------------------- LoRA


def test_lora_reward_model_trains_saves_and_loads(lora_run, toy):
    from safetensors import safe_open

    final = lora_run / "final"
    cfg = json.loads((final / "adapter_config.json").read_text())
    assert cfg["task_type"] == "SEQ_CLS" and "score" in cfg["modules_to_save"]
    with safe_open(str(final / "adapter_model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert any(k.endswith("score.weight") for k in keys) and any("lora_A" in k for k in keys)
    assert json.loads((final / "alignkit.json").read_text())["base_model"] == "tiny-random"
    assert not (final / "config.json").exists() and not list(lora_run.rglob("*.bin"))
    rows = read_metrics(lora_run)
    assert all(math.isfinite(r["loss"]) for r in rows if "loss" in r)
    # the loaded adapter (LoRA + trained head, merged) reproduces the run's own final eval loss
    rm = load_reward_model(lora_run)
    chosen, rejected = _pairs(rm, toy)
    rc, rr = rm.score_ids(chosen), rm.score_ids(rejected)
    assert sum(_bt(c, r) for c, r in zip(rc, rr)) / len(rc) == pytest.approx(rows[-1]["eval_loss"], abs=1e-4)


def test_lora_merge_on_save_writes_a_plain_reward_model(tmp_path):
    from transformers import AutoModelForSequenceClassification

    tok = load_tokenizer("tiny-random")
    method = RM(RMConfig(model="tiny-random", max_length=64, lora={"r": 4}), tok)
    model = method.build_model().eval()
    with torch.no_grad():  # make the adapter non-trivial
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    ids = torch.tensor([[1, 28, 29, 30, 2]])
    with torch.no_grad():
        want = sequence_rewards(model, ids, torch.ones_like(ids))
    save_model(model, tok, tmp_path / "merged", merge=True, base_name="tiny-random")
    hf = AutoModelForSequenceClassification.from_pretrained(str(tmp_path / "merged")).eval()
    with torch.no_grad():
        assert torch.allclose(hf(input_ids=ids).logits[:, 0], want, atol=1e-5)


# ----------------------------------------------------------------------------- scoring


def test_score_command_writes_rewards_and_accuracy(full_run, toy, tmp_path, capsys):
    out_file = tmp_path / "scores.jsonl"
    assert main(["score", "--model", str(full_run["out"]), "--data", str(toy), "--output", str(out_file),
                 "--batch-size", "3"]) == 0
    printed = capsys.readouterr().out
    rows = [json.loads(line) for line in out_file.read_text().splitlines()]
    src = [json.loads(line) for line in toy.read_text().splitlines()]
    assert len(rows) == len(src)
    for row, orig in zip(rows, src):
        assert {k: row[k] for k in orig} == orig
        assert math.isfinite(row["reward_chosen"]) and math.isfinite(row["reward_rejected"])
    acc = sum(r["reward_chosen"] > r["reward_rejected"] for r in rows) / len(rows)
    assert acc == full_run["metrics"][-1]["eval_accuracy"]
    assert f"accuracy: {acc:.4f}" in printed

    # prompt-completion rows get one reward each; the library call gives the same numbers
    pc = write_jsonl(tmp_path / "pc.jsonl", [{"prompt": s["prompt"], "completion": s["chosen"][0]["content"]}
                                            for s in src[:3]])
    assert main(["score", "--model", str(full_run["out"]), "--data", str(pc)]) == 0
    scored = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["reward"] for r in scored] == pytest.approx([r["reward_chosen"] for r in rows[:3]], abs=1e-5)
    rm = load_reward_model(full_run["out"] / "final")
    lib = rm.score([s["prompt"] for s in src[:3]], [s["chosen"][0]["content"] for s in src[:3]], batch_size=2)
    assert lib == pytest.approx([r["reward"] for r in scored], abs=1e-5)
    assert all(math.isfinite(x) for x in rm(["Hi"], [""]))  # an empty generation still gets a reward


# ----------------------------------------------------------------------------- errors


def test_bad_rows_exit_2_naming_file_row_and_field(tmp_path, capsys, full_run):
    rows = preference_rows(4)
    del rows[1]["rejected"]
    bad = write_jsonl(tmp_path / "bad.jsonl", rows)
    assert main(["rm", *COMMON, f"data={bad}", f"output_dir={tmp_path / 'r1'}"]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "row 2" in err and "field 'rejected'" in err

    rows = preference_rows(4)
    for row in rows:
        row["margin"] = 1.0
    rows[2]["margin"] = "abc"
    bad_margin = write_jsonl(tmp_path / "bad_margin.jsonl", rows)
    assert main(["rm", *COMMON, f"data={bad_margin}", f"output_dir={tmp_path / 'r2'}"]) == 2
    err = capsys.readouterr().err
    assert str(bad_margin) in err and "row 3" in err and "field 'margin'" in err
    assert not (tmp_path / "r1").exists() and not (tmp_path / "r2").exists()

    assert main(["score", "--model", str(full_run["out"]), "--data", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "row 2" in err and "field 'rejected'" in err
    assert main(["score", "--model", "tiny-random", "--data", str(bad_margin)]) == 2
    assert "not a reward model" in capsys.readouterr().err
    assert main(["score", "--model", str(full_run["out"]), "--data", str(tmp_path / "missing.jsonl")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["score", "--model", str(tmp_path / "nowhere"), "--data", str(bad_margin)]) == 2
    assert "error:" in capsys.readouterr().err
