"""``alignkit demo``: the pair-building rules, the output-directory safety, and the whole pipeline on
tiny-random with minimal settings (never the embedded smollm2-135m: that is measured by hand)."""

from __future__ import annotations

import json

import pytest

from alignkit.pipelines.demo.pairs import choose_pair, passing_answers, spread
from alignkit.pipelines.demo.run import prepare_output_dir
from alignkit.pipelines.demo.settings import MARKER, QUICK, DemoError, settings_for

TINY = ["--model", "tiny-random", "--method", "dpo", "--eval-prompts", "4", "--train-prompts", "16", "--max-new-tokens", "8",
        "--candidates", "4", "--temperature", "1.0", "--steps", "2", "--batch-size", "2", "--threads", "1"]


# ------------------------------------------------------------------------------------------ pairs
def test_choose_pair_best_vs_worst():
    assert choose_pair([0.5, 1.0, 0.0, 0.5], [False] * 4, ["a", "b", "c", "d"]) == (1, 2)


def test_choose_pair_all_equal_gives_none():
    assert choose_pair([1.0, 1.0, 1.0], [False, True, False], ["a", "b", "c"]) is None
    assert choose_pair([0.0, 0.0], [False, False], ["a", "b"]) is None


def test_choose_pair_prefers_complete_chosen_and_truncated_rejected():
    rewards = [1.0, 1.0, 0.0, 0.0]
    truncated = [True, False, False, True]
    assert choose_pair(rewards, truncated, ["a", "b", "c", "d"]) == (1, 3)
    # without a truncation difference: the earliest of each group
    assert choose_pair(rewards, [False] * 4, ["a", "b", "c", "d"]) == (0, 2)


def test_choose_pair_skips_candidates_that_do_not_read_back():
    assert choose_pair([1.0, 0.0, 0.5], [False] * 3, ["a", "b", "c"], [True, False, True]) == (0, 2)


def test_choose_pair_ignores_blank_candidates():
    # the only 0.0 candidate is blank: what is left all scores 1.0, so no pair
    assert choose_pair([1.0, 0.0, 1.0], [False] * 3, ["a", "  ", "c"]) is None
    assert choose_pair([1.0, 0.0, 0.5], [False] * 3, ["a", "", "c"]) == (0, 2)
    assert choose_pair([1.0], [False], [""]) is None


def test_spread_keeps_order_and_covers_the_range():
    items = list(range(32))
    assert spread(items, 0) == items
    assert spread(items, 40) == items
    assert spread(items, 4) == [0, 8, 16, 24]
    assert len(spread(items, 16)) == 16 and spread(items, 16)[-1] == 30


def test_quick_preset_is_smaller_and_explicit_values_win():
    full, quick = settings_for(False), settings_for(True)
    assert quick.quick and not full.quick
    assert quick.eval_prompts < full.eval_prompts and quick.steps < full.steps
    assert quick.candidates <= full.candidates and quick.eval_max_new_tokens <= full.eval_max_new_tokens
    assert settings_for(True, steps=3, candidates=None).steps == 3
    assert settings_for(True, candidates=None).candidates == QUICK["candidates"]


def test_each_method_starts_from_its_own_preset():
    from alignkit.pipelines.demo.settings import FULL, METHOD_PRESETS

    sft, dpo, grpo = (settings_for(False, method=m) for m in ("sft", "dpo", "grpo"))
    assert sft.method == "sft" and settings_for(False).method == "sft+dpo"  # the default: SFT, then DPO
    assert (sft.candidates, sft.repairs, sft.lr, sft.train_prompts) == (FULL["candidates"], 1, FULL["lr"], 0)
    assert (dpo.candidates, dpo.steps, dpo.lr) == (4, 40, 2e-4) and dpo.repairs == FULL["repairs"]
    assert (grpo.candidates, grpo.repairs) == (METHOD_PRESETS["grpo"]["candidates"], 0)
    assert settings_for(False, method="dpo", lr=5e-4, candidates=2).lr == 5e-4  # a given value wins
    assert settings_for(True, method="grpo").candidates >= 2


def test_stages_each_take_their_method_preset_and_given_values_win():
    from alignkit.pipelines.demo.settings import FULL, METHOD_PRESETS, PIPELINE_PRESETS, stage_settings

    sft, dpo = stage_settings(settings_for(False, method="sft+dpo"))
    assert (sft.method, dpo.method) == ("sft", "dpo")
    own = PIPELINE_PRESETS["sft+dpo"]
    assert (sft.candidates, sft.steps, sft.lr, sft.train_prompts) == (FULL["candidates"],
                                                                      own[0].get("steps", FULL["steps"]), FULL["lr"], 0)
    want = {**METHOD_PRESETS["dpo"], **own[1]}
    assert (dpo.candidates, dpo.steps, dpo.lr, dpo.train_prompts) == (want["candidates"], want["steps"], want["lr"],
                                                                      want["train_prompts"])
    sft, dpo = stage_settings(settings_for(False, method="sft+dpo", lr=5e-4, steps=None))
    assert sft.lr == dpo.lr == 5e-4 and dpo.steps == want["steps"]  # given: every stage; not given: the preset
    quick_dpo = stage_settings(settings_for(True))[1]
    assert quick_dpo.train_prompts == QUICK["train_prompts"] and quick_dpo.candidates == 4
    assert stage_settings(settings_for(False, method="sft")) == [settings_for(False, method="sft")]
    dpo_sft = stage_settings(settings_for(False, method="dpo+sft"))  # no pipeline preset: each method's own
    assert [(x.method, x.steps) for x in dpo_sft] == [("dpo", METHOD_PRESETS["dpo"]["steps"]), ("sft", FULL["steps"])]


def test_work_dtype_follows_the_cpu(monkeypatch):
    import alignkit.hardware as hardware
    from alignkit.pipelines.demo.settings import work_dtype

    for fast, want in ((True, "bfloat16"), (False, "float32")):
        monkeypatch.setattr(hardware, "fast_bf16", lambda fast=fast: fast)
        assert work_dtype(settings_for(False)) == want
        assert work_dtype(settings_for(False, train_dtype="float32")) == "float32"


def test_eval_dtype_follows_the_work_dtype_unless_given(monkeypatch):
    import alignkit.hardware as hardware
    from alignkit.pipelines.demo.settings import eval_dtype

    for fast, want in ((True, "bfloat16"), (False, "float32")):
        monkeypatch.setattr(hardware, "fast_bf16", lambda fast=fast: fast)
        assert eval_dtype(settings_for(False)) == "float32"  # the default, on any CPU
        assert eval_dtype(settings_for(False, eval_dtype="auto")) == want
        assert eval_dtype(settings_for(False, train_dtype="float32", eval_dtype="auto")) == "float32"
        assert eval_dtype(settings_for(False, train_dtype="float32", eval_dtype="bfloat16")) == "bfloat16"


def test_fast_bf16_reads_the_cpu_flags(monkeypatch):
    import alignkit.hardware as hardware

    monkeypatch.setattr(hardware.torch.cuda, "is_available", lambda: False)
    for flags, want in (("avx2 fma avx512f amx_tile amx_bf16", True), ("avx2 avx512f avx512_bf16", True),
                        ("avx2 fma", False)):
        info = hardware.parse_cpuinfo(f"processor : 0\nmodel name : X\nflags : {flags}\n")
        monkeypatch.setattr(hardware, "read_cpu_info", lambda info=info: info)
        assert hardware.fast_bf16() is want


def test_bad_settings_are_errors():
    for kwargs in ({"method": "ppo"}, {"candidates": 1, "repairs": 0}, {"method": "grpo", "candidates": 1},
                   {"repairs": -1}, {"temperature": 0.0}, {"threads": 0}, {"steps": 0}, {"method": "sft+ppo"},
                   {"method": "sft+dpo", "iterations": 2}, {"method": "sft+grpo", "candidates": 1},
                   {"train_dtype": "float16"}, {"eval_dtype": "fp16"}):
        with pytest.raises(DemoError):
            settings_for(True, **kwargs).check()


# --------------------------------------------------------------------------------- output directory
def test_output_dir_refuses_a_foreign_directory(tmp_path):
    d = tmp_path / "mine"
    d.mkdir()
    (d / "notes.txt").write_text("keep me")
    with pytest.raises(DemoError, match="not made by alignkit demo"):
        prepare_output_dir(d)
    assert (d / "notes.txt").read_text() == "keep me"


def test_output_dir_clears_its_own_earlier_run(tmp_path):
    d = prepare_output_dir(tmp_path / "demo")
    (d / "old.json").write_text("{}")
    prepare_output_dir(d)
    assert (d / MARKER).is_file() and not (d / "old.json").exists()


def test_cli_refuses_foreign_output_dir_before_loading_a_model(tmp_path, capsys):
    from alignkit.commands.demo import main

    d = tmp_path / "x"
    d.mkdir()
    (d / "f").write_text("x")
    assert main(TINY + ["--output-dir", str(d)]) == 2
    assert "not made by alignkit demo" in capsys.readouterr().err


def test_help(capsys):
    from alignkit.commands.demo import main

    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--quick", "--method", "--output-dir", "--model", "--threads"):
        assert flag in out


# ------------------------------------------------------------------------------------- the pipeline
def _check_run(out_dir, stdout: str, method: str) -> dict:
    # the before/after table (plain text: stdout is not a terminal here) and the stage lines
    for stage in ("[1/5]", "[2/5]", "[3/5]", "[4/5]", "[5/5]"):
        assert stage in stdout
    assert "held-out metric" in stdout and "gold prompt-level strict" in stdout
    assert "gold instruction-level strict" in stdout and method in stdout
    assert f"report: {out_dir / 'report.html'}" in stdout

    for name in ("report.html", "results.json", "results.md", "pairs.jsonl", "samples.jsonl", "demo.json",
                 "metrics.jsonl", "config.yaml", MARKER):
        assert (out_dir / name).is_file(), name
    assert (out_dir / "final").is_dir()
    assert len(list(out_dir.glob("completions-*.jsonl"))) == 2

    results = json.loads((out_dir / "results.json").read_text())
    assert results["prompts"]["split"] == "test" and results["prompts"]["n"] == 4
    assert [m["name"].split(" ")[0] for m in results["models"]] == ["base", method]
    html = (out_dir / "report.html").read_text()
    assert "<img" in html and "gold prompt-level strict" in html

    summary = json.loads((out_dir / "demo.json").read_text())
    assert not set(summary["held_out"]["prompts"]) & set(summary["train_prompts"])
    assert all(i.startswith("test-") for i in summary["held_out"]["prompts"])
    assert summary["pairs"]["pairs"] >= 1
    pairs = [json.loads(line) for line in (out_dir / "pairs.jsonl").read_text().splitlines()]
    assert len(pairs) == summary["pairs"]["pairs"]
    for p in pairs:
        assert p["id"].startswith("train-") and p["chosen_reward"] > p["rejected_reward"]
        assert p["chosen"][0]["role"] == "assistant" and p["chosen"][0]["content"].strip()
    _check_pairs_read_back(out_dir)
    assert set(summary["timings"]) >= {"1_eval_base", "2_pairs", "3_train", "4_eval_trained", "total"}
    return summary


def _check_pairs_read_back(out_dir) -> None:
    """The token ids DPO trains on for each demo pair are the prompt and completion ids as sampled
    (a truncated sample ends in the end-of-turn token every row ends with)."""
    from alignkit.config import load_config
    from alignkit.methods.dpo import DPO, DPOConfig
    from alignkit.models import load_tokenizer

    config = load_config(DPOConfig, out_dir / "config.yaml", [])
    examples = DPO(config, load_tokenizer("tiny-random")).build_examples(str(out_dir / "pairs.jsonl"))
    samples = {s["id"]: s for s in map(json.loads, (out_dir / "samples.jsonl").read_text().splitlines())}
    pairs = [json.loads(line) for line in (out_dir / "pairs.jsonl").read_text().splitlines()]
    eos = load_tokenizer("tiny-random").eos_token_id
    assert len(examples) == len(pairs)
    seen: dict[str, int] = {}
    fixes: dict[str, int] = {}
    for pair, ex in zip(pairs, examples):
        sample = samples[pair["id"]]
        assert ex["prompt_ids"] == sample["prompt_ids"]
        if pair.get("repaired"):  # only the rejected side was sampled; the chosen side is its edit
            j = fixes[pair["id"]] = fixes.get(pair["id"], -1) + 1
            sides = [("rejected", sample["repairs"][j]["of"])]
            assert sample["repairs"][j]["text"] == pair["chosen"][-1]["content"]
        else:
            j = seen[pair["id"]] = seen.get(pair["id"], -1) + 1  # the j-th pair of this prompt
            sides = list(zip(("chosen", "rejected"), sample["pairs"][j]))
        for side, index in sides:
            cand = sample["candidates"][index]
            assert cand["exact"]
            assert ex[f"{side}_ids"] == cand["ids"] + ([eos] if cand["truncated"] else [])
    for sample in samples.values():  # no candidate in two pairs; pairs listed == pairs written
        used = [i for pc in sample["pairs"] for i in pc]
        assert len(used) == len(set(used)) and len(sample["pairs"]) == seen.get(sample["id"], -1) + 1


def _length_reward(prompts, completions, **columns):
    """tiny-random's 8-token samples satisfy no constraint, so every candidate would tie; score by
    length instead so that the pipeline (pairs -> DPO -> eval) is exercised end to end."""
    return [min(1.0, len(c) / 400) for c in completions]


def test_demo_pipeline_on_tiny_random(tmp_path, capsys, monkeypatch):
    import alignkit.evaluation.constraints as constraints
    import alignkit.hardware as hardware
    from alignkit.commands.demo import main

    monkeypatch.setattr(constraints, "constraint_reward", _length_reward)
    released = []
    monkeypatch.setattr(hardware, "release_memory", lambda: released.append(1) or True)
    out_dir = tmp_path / "demo"
    assert main(TINY + ["--output-dir", str(out_dir)]) == 0
    summary = _check_run(out_dir, capsys.readouterr().out, "dpo")
    assert summary["settings"]["method"] == "dpo"
    # the heap is given back after each stage: base eval, sampling, training, trained eval
    assert len(released) == 4
    assert summary["training"]["steps"] == 2


def test_demo_several_pairs_per_prompt_and_rpo(tmp_path, capsys, monkeypatch):
    import alignkit.evaluation.constraints as constraints
    from alignkit.commands.demo import main

    monkeypatch.setattr(constraints, "constraint_reward", _length_reward)
    out_dir = tmp_path / "demo"
    assert main(TINY + ["--output-dir", str(out_dir), "--pairs-per-prompt", "2", "--rpo-alpha", "0.5", "--repairs", "0"]) == 0
    summary = _check_run(out_dir, capsys.readouterr().out, "dpo")
    per_prompt = [len(s["pairs"]) for s in map(json.loads, (out_dir / "samples.jsonl").read_text().splitlines())]
    assert max(per_prompt) == 2 and sum(per_prompt) == summary["pairs"]["pairs"]
    assert "rpo_alpha: 0.5" in (out_dir / "config.yaml").read_text()
    assert main(TINY + ["--output-dir", str(tmp_path / "x"), "--pairs-per-prompt", "0"]) == 2
    assert main(TINY + ["--output-dir", str(tmp_path / "x"), "--min-margin", "-1"]) == 2


def test_repair_pairs_pick_the_best_repairable_samples():
    from alignkit.pipelines.demo.pairs import repair_pairs

    cons = [{"type": "lowercase"}]
    pool = {"texts": ["Hello there.", "Good day. And", "", "Bye now.", "Fine."], "rewards": [0.0] * 5,
            "truncated": [False, True, False, False, False], "exact": [True, True, True, True, False]}
    # equal rewards: untruncated first, then by index; the blank and the not-read-back candidates take no part
    assert repair_pairs(pool, cons, 2) == [(0, "hello there."), (3, "bye now.")]
    assert repair_pairs(pool, cons, 3) == [(0, "hello there."), (3, "bye now."), (1, "good day.")]
    assert repair_pairs(pool, cons, 0) == []
    # a prompt with a passing sample gets no repairs (its own best-vs-worst pair carries the signal)
    assert repair_pairs({**pool, "rewards": [0.0, 0.0, 0.0, 1.0, 0.0]}, cons, 2) == []
    # nothing repairable: no pair
    assert repair_pairs(pool, [{"type": "min_words", "min": 50}], 2) == []


def test_demo_with_repairs_trains_on_edited_answers_that_pass(tmp_path, capsys, monkeypatch):
    import alignkit.evaluation.constraints as constraints
    from alignkit.commands.demo import main
    from alignkit.evaluation.constraints import check_constraint

    monkeypatch.setattr(constraints, "constraint_reward", lambda prompts, completions, **kw: [0.0] * len(completions))
    out_dir = tmp_path / "demo"
    assert main(TINY + ["--output-dir", str(out_dir), "--repairs", "1"]) == 0
    summary = _check_run(out_dir, capsys.readouterr().out, "dpo")
    pairs = [json.loads(line) for line in (out_dir / "pairs.jsonl").read_text().splitlines()]
    samples = {s["id"]: s for s in map(json.loads, (out_dir / "samples.jsonl").read_text().splitlines())}
    # every sample scores 0 here, so there are no best-vs-worst pairs: every pair is a repair
    assert pairs and all(p["repaired"] for p in pairs) and summary["pairs"]["repair_pairs"] == len(pairs)
    for p in pairs:
        sample = samples[p["id"]]
        chosen, rejected = p["chosen"][-1]["content"], p["rejected"][-1]["content"]
        assert all(check_constraint(chosen, c) for c in sample["constraints"])
        assert rejected in [c["text"] for c in sample["candidates"]] and chosen != rejected
    assert main(TINY + ["--output-dir", str(tmp_path / "x"), "--repairs", "-1"]) == 2


@pytest.mark.slow
def test_demo_pipeline_ift_on_tiny_random(tmp_path, capsys):
    from alignkit.commands.demo import main

    out_dir = tmp_path / "demo-ift"
    assert main(TINY + ["--method", "ift", "--output-dir", str(out_dir)]) == 0
    _check_run(out_dir, capsys.readouterr().out, "ift")


def test_demo_sft_is_the_sft_method_and_ift_is_ift(tmp_path, monkeypatch):
    import alignkit.engine.trainer as trainer
    from alignkit.methods.ift import IFT
    from alignkit.methods.sft import SFT
    from alignkit.pipelines.demo.stages import train_on_pairs

    seen = {}
    monkeypatch.setattr(trainer, "train", lambda cls, config: seen.update(cls=cls, config=config) or "ran")
    data = tmp_path / "pairs.jsonl"
    data.write_text(json.dumps({"prompt": "p", "chosen": "a", "rejected": "b"}) + "\n")
    for method, cls in (("sft", SFT), ("ift", IFT)):
        result, config = train_on_pairs(settings_for(True, model="tiny-random", method=method), data,
                                        tmp_path / "run", max_length=64, batch_size=1)
        assert result == "ran" and seen["cls"] is cls and type(config).__name__ == f"{method.upper()}Config"
    assert (seen["config"].ift_lambda, seen["config"].drp_gamma) == (0.2, 0.95)


def test_passing_answers_prefer_a_sampled_pass_then_a_repair():
    def cand(text, reward, exact=True, truncated=False):
        return {"text": text, "reward": reward, "exact": exact, "truncated": truncated}

    rows = [
        {"id": "a", "candidates": [cand("cut", 1.0, truncated=True), cand("whole", 1.0)], "repairs": []},
        {"id": "b", "candidates": [cand("x", 0.5), cand("y", 1.0, exact=False)], "repairs": []},
        {"id": "c", "candidates": [cand("z", 0.0)], "repairs": [{"of": 0, "text": "fixed z"}]},
        {"id": "d", "candidates": [cand("w", 0.0)]},
        # only a sample that does not read back could be repaired: good enough for SFT (text only)
        {"id": "e", "candidates": [cand("v", 0.0, exact=False)], "repairs": [], "spare_repair": {"of": 0, "text": "v!"}},
    ]
    assert [(r["id"], t) for r, t in passing_answers(rows)] == [("a", "whole"), ("c", "fixed z"), ("e", "v!")]


def test_demo_sft_with_repairs_and_one_candidate(tmp_path, capsys, monkeypatch):
    import alignkit.evaluation.constraints as constraints
    from alignkit.commands.demo import main
    from alignkit.evaluation.constraints import check_constraint

    monkeypatch.setattr(constraints, "constraint_reward", lambda prompts, completions, **kw: [0.0] * len(completions))
    out_dir = tmp_path / "demo"
    args = TINY[:]
    args[args.index("--candidates") + 1] = "1"
    assert main(args + ["--repairs", "1", "--method", "sft", "--output-dir", str(out_dir)]) == 0
    stdout = capsys.readouterr().out
    assert "SFT on" in stdout and "repaired" in stdout and "passing answers (" in stdout
    rows = [json.loads(line) for line in (out_dir / "sft.jsonl").read_text().splitlines()]
    samples = {s["id"]: s for s in map(json.loads, (out_dir / "samples.jsonl").read_text().splitlines())}
    summary = json.loads((out_dir / "demo.json").read_text())
    assert rows and len(rows) == summary["pairs"]["sft_answers"] == summary["pairs"]["sft_repaired"]
    by_text = {(s["repairs"] or [s.get("spare_repair")])[0]["text"]: s for s in samples.values()
               if s["repairs"] or s.get("spare_repair")}
    for row in rows:  # each SFT answer is a repair that passes its prompt's constraints
        sample = by_text[row["completion"][-1]["content"]]
        assert all(check_constraint(row["completion"][-1]["content"], c) for c in sample["constraints"])
    assert "SFTConfig" not in (out_dir / "config.yaml").read_text() and (out_dir / "final").is_dir()
    assert main(args + ["--repairs", "0", "--output-dir", str(tmp_path / "x")]) == 2  # 1 candidate needs repairs


def test_demo_iterations_seeds_and_bootstrap_on_tiny_random(tmp_path, capsys, monkeypatch):
    """Two on-policy iterations (the second starts from, and samples with, the first's model) and two
    seeds: per-iteration directories, the paired-bootstrap change of each, and the spread over seeds."""
    import alignkit.evaluation.constraints as constraints
    from alignkit.commands.demo import main

    monkeypatch.setattr(constraints, "constraint_reward", _length_reward)
    out_dir = tmp_path / "demo"
    assert main(TINY + ["--iterations", "2", "--seeds", "2", "--output-dir", str(out_dir)]) == 0
    stdout = capsys.readouterr().out
    summary = json.loads((out_dir / "demo.json").read_text())
    its = summary["iterations"]
    assert [it["iteration"] for it in its] == [1, 2]
    assert its[0]["final_dir"].startswith(str(out_dir / "seed-0")) and "iter-2" in its[1]["final_dir"]
    # iteration 2 trained on top of iteration 1's model
    cfg2 = (out_dir / "seed-0" / "iter-2" / "config.yaml").read_text()
    assert f"model: {out_dir / 'seed-0' / 'final'}" in cfg2
    for it in its:
        ch = it["change"]
        assert ch["n"] == 4 and ch["low"] <= ch["delta"] <= ch["high"]
    assert (out_dir / "seed-1" / "iter-2" / "final").is_dir()
    assert len(summary["seeds"]["gains"]) == 2 and summary["seeds"]["sd"] >= 0
    assert "per iteration:" in stdout and "over 2 seeds" in stdout and "paired bootstrap" in stdout


@pytest.mark.parametrize("method", ["kto", "grpo"])
def test_demo_kto_and_grpo_on_tiny_random(tmp_path, capsys, monkeypatch, method):
    import alignkit.evaluation.constraints as constraints
    from alignkit.commands.demo import main

    monkeypatch.setattr(constraints, "constraint_reward", _length_reward)
    out_dir = tmp_path / method
    assert main(TINY + ["--method", method, "--output-dir", str(out_dir)]) == 0
    summary = json.loads((out_dir / "demo.json").read_text())
    assert summary["settings"]["method"] == method and summary["training"]["steps"] == 2
    config = (out_dir / "config.yaml").read_text()
    if method == "grpo":
        assert "constraint_reward" in config and (out_dir / "prompts.jsonl").is_file()
        assert not (out_dir / "pairs.jsonl").exists()
    else:
        assert (out_dir / "pairs.jsonl").is_file() and "desirable_weight" in config


def test_change_by_held_out_group_by_hand():
    from alignkit.pipelines.demo.tables import change_with_interval

    def entry(passes, groups):
        return {"_completions": [{"all": p, "heldout": g} for p, g in zip(passes, groups)]}

    groups = [None, None, "family", "family", "kind"]
    base, trained = entry([True, False, False, False, True], groups), entry([True, True, True, False, False], groups)
    assert change_with_interval(base, trained)["delta"] == pytest.approx(1 / 5)      # (+1 +1 -1) / 5
    fam = change_with_interval(base, trained, "family")
    # differences [1, 0]: resample means 0, 1/2, 1/2, 1 -> delta 1/2, 95 % interval [0, 1]
    assert (fam["n"], fam["delta"], fam["low"], fam["high"]) == (2, 0.5, 0.0, 1.0)
    assert change_with_interval(base, trained, "kind")["delta"] == -1.0
    assert change_with_interval(base, trained, "other")["n"] == 0


def test_demo_sft_then_dpo_stages_on_tiny_random(tmp_path, capsys, monkeypatch):
    """--method sft+dpo: SFT on repaired answers, then DPO from the SFT model on its own samples, with each
    stage's preset except the given values; only the last stage is evaluated; the LoRA base and the
    sampling in bfloat16 (--train-dtype), and so the evaluation (--eval-dtype auto)."""
    import alignkit.evaluation.constraints as constraints
    from alignkit.commands.demo import main

    monkeypatch.setattr(constraints, "constraint_reward", _length_reward)
    out_dir = tmp_path / "demo"
    args = TINY + ["--method", "sft+dpo", "--repairs", "1", "--train-dtype", "bfloat16", "--eval-dtype", "auto",
                   "--output-dir", str(out_dir)]
    assert main(args) == 0
    stdout = capsys.readouterr().out
    assert "stage 1/2 (sft)" in stdout and "stage 2/2 (dpo)" in stdout and "[4/5] stage 1/2" not in stdout
    summary = json.loads((out_dir / "demo.json").read_text())
    first, second = summary["iterations"]
    assert (first["method"], second["method"]) == ("sft", "dpo")
    assert "change" not in first and second["change"]["n"] == 4
    assert (out_dir / "sft.jsonl").is_file() and (out_dir / "iter-2" / "pairs.jsonl").is_file()
    sft_cfg, dpo_cfg = (out_dir / "config.yaml").read_text(), (out_dir / "iter-2" / "config.yaml").read_text()
    assert "\nbeta:" in dpo_cfg and "\nbeta:" not in sft_cfg
    assert f"model: {out_dir / 'final'}" in dpo_cfg  # DPO starts from the SFT model
    assert "base_dtype: bfloat16" in sft_cfg and "base_dtype: bfloat16" in dpo_cfg
    assert summary["settings"]["work_dtype"] == "bfloat16" and summary["settings"]["eval_dtype_used"] == "bfloat16"
    results = json.loads((out_dir / "results.json").read_text())
    assert len(results["models"]) == 2 and len(list(out_dir.glob("completions-*.jsonl"))) == 2
