"""Alignment without training the policy: ICL selectors against hand-picked nearest examples, the token
budget, the BPO / Aligner training masks, their model-kind checks, the BPO data builder with a scripted
writer, and generate / eval with the aids on tiny-random."""

from __future__ import annotations

import json

import pytest

from alignkit.cli import main
from alignkit.inference.icl import (
    Example,
    FewShot,
    ICLError,
    build_selector,
    jaccard,
    load_icl_examples,
    with_examples,
    words,
)
from alignkit.inference.rewriters import AidError, aligner_request, bpo_request, check_trained_as
from tests.helpers import write_jsonl

EXAMPLES = [Example("How do I bake sourdough bread?", "Feed the starter, mix, proof, bake."),
            Example("How do I stop a stuck Python process?", "Find its PID and run kill PID."),
            Example("What is the capital of France?", "Paris."),
            Example("How do I kill a process on Linux?", "Use kill or pkill.")]


@pytest.fixture(autouse=True)
def no_report(monkeypatch):
    monkeypatch.setattr("alignkit.cli.write_run_report", lambda out: None)


def test_jaccard_bm25_fixed_random_pick_the_expected_examples():
    q = "how do I kill a stuck process"
    # by hand: |q ∩ e| / |q ∪ e| on word sets
    qs = words(q)
    # q = {how, do, i, kill, a, stuck, process}
    assert jaccard(qs, words(EXAMPLES[3].prompt)) == pytest.approx(6 / 9)   # shares 6, adds on, linux
    assert jaccard(qs, words(EXAMPLES[1].prompt)) == pytest.approx(6 / 9)   # shares 6, adds stop, python
    assert jaccard(qs, words(EXAMPLES[2].prompt)) == 0.0
    assert build_selector("jaccard", EXAMPLES).rank(q)[:2] == [1, 3]      # a tie keeps file order
    bm25 = build_selector("bm25", EXAMPLES).rank("kill process linux")
    assert bm25[0] == 3 and bm25[-1] in (0, 2)
    assert build_selector("fixed", EXAMPLES).rank(q) == [0, 1, 2, 3]
    r = build_selector("random", EXAMPLES, seed=3)
    assert r.rank(q, 0) == r.rank("anything", 0) and sorted(r.rank(q, 1)) == [0, 1, 2, 3]
    assert any(r.rank(q, 0) != r.rank(q, p) for p in range(1, 6))
    with pytest.raises(ICLError, match="unknown --icl-selector"):
        build_selector("nearest", EXAMPLES)


def test_embedding_selector_finds_the_identical_prompt():
    from alignkit.models import build_tiny_random
    from alignkit.models.tokenizer import load_smollm2_tokenizer

    tok = load_smollm2_tokenizer()
    sel = build_selector("embedding", EXAMPLES, model=build_tiny_random().eval(), tokenizer=tok)
    assert sel.rank(EXAMPLES[2].prompt)[0] == 2


def test_few_shot_turns_order_and_token_budget(tokenizer):
    from alignkit.data.render import render_prompt

    sel = build_selector("jaccard", EXAMPLES)
    query = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "how do I kill a stuck process"}]

    def count(q):
        return len(render_prompt(tokenizer, q).ids)

    fs = FewShot(sel, 2, None, chat=lambda q: True, count=count)
    (out,), used = fs.apply([query])
    assert used == [2] and out[0]["role"] == "system" and out[-1] == query[-1]
    assert [m["content"] for m in out[1:5:2]] == [EXAMPLES[3].prompt, EXAMPLES[1].prompt]  # most similar last
    one = count(with_examples(query, [EXAMPLES[1]], True))
    (out,), used = FewShot(sel, 2, one, chat=lambda q: True, count=count).apply([query])
    assert used == [1] and out[1]["content"] == EXAMPLES[1].prompt and count(out) <= one
    (out,), used = FewShot(sel, 2, 5, chat=lambda q: True, count=count).apply([query])
    assert used == [0] and out == query  # over budget alone: no examples, the query is never cut
    text = with_examples("kill it", [EXAMPLES[3]], chat=False)
    assert text == f"Question: {EXAMPLES[3].prompt}\nAnswer: {EXAMPLES[3].answer}\n\nQuestion: kill it\nAnswer:"


def test_icl_example_files(tmp_path):
    f = write_jsonl(tmp_path / "ex.jsonl", [
        {"prompt": "p1", "completion": "c1"},
        {"prompt": [{"role": "user", "content": "p2"}], "chosen": [{"role": "assistant", "content": "c2"}],
         "rejected": [{"role": "assistant", "content": "x"}]},
        {"messages": [{"role": "user", "content": "p3"}, {"role": "assistant", "content": "c3"}]},
        {"messages": [{"role": "user", "content": "no answer"}]}, {"text": "plain"}])
    assert load_icl_examples(f) == [Example("p1", "c1"), Example("p2", "c2"), Example("p3", "c3")]
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"text": "only text"}])
    with pytest.raises(ICLError, match="no usable examples"):
        load_icl_examples(bad)


def test_aligner_and_bpo_train_only_on_the_answer(tokenizer, tmp_path):
    from alignkit.methods.rewriters import AlignerConfig, AlignerMethod, BPOConfig, BPOMethod

    prefs = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "What is 2+2?", "chosen": "It is 4.", "rejected": "5"}])
    for warm, n in ((False, 1), (True, 2)):
        cfg = AlignerConfig(model="tiny-random", data=str(prefs), identity_warmup=warm)
        examples = AlignerMethod(cfg, tokenizer).build_examples(str(prefs))
        assert len(examples) == n
        for ex, answer_in_request in zip(examples, ("5", "It is 4.")):
            trained = [t for t, lab in zip(ex["input_ids"], ex["labels"]) if lab != -100]
            context = tokenizer.decode([t for t, lab in zip(ex["input_ids"], ex["labels"]) if lab == -100])
            assert tokenizer.decode(trained).replace("<|im_end|>", "").strip() == "It is 4."
            assert aligner_request("What is 2+2?", answer_in_request) in context
    rows = write_jsonl(tmp_path / "b.jsonl", [{"prompt": "poem", "optimized_prompt": "Write a 4-line poem.",
                                               "critique": "c"}])
    ex, = BPOMethod(BPOConfig(model="tiny-random", data=str(rows)), tokenizer).build_examples(str(rows))
    trained = tokenizer.decode([t for t, lab in zip(ex["input_ids"], ex["labels"]) if lab != -100])
    assert trained.replace("<|im_end|>", "").strip() == "Write a 4-line poem."
    assert bpo_request("poem") in tokenizer.decode(ex["input_ids"])


def test_model_kind_checks(tmp_path):
    (tmp_path / "final").mkdir()
    with pytest.raises(AidError, match="does not say what it was trained for"):
        check_trained_as(tmp_path, "aligner", "--aligner")
    (tmp_path / "final" / "alignkit.json").write_text(json.dumps({"trained_as": "bpo"}))
    with pytest.raises(AidError, match="was trained as 'bpo'"):
        check_trained_as(tmp_path, "aligner", "--aligner")
    assert check_trained_as(tmp_path, "bpo", "--prompt-optimizer") == tmp_path / "final"
    with pytest.raises(AidError, match="no such model directory"):
        check_trained_as(tmp_path / "nope", "bpo", "--prompt-optimizer")


def test_bpo_rows_with_a_scripted_writer():
    from alignkit.aifeedback.bpo import BPOOptions, bpo_rows, keeps_request

    assert keeps_request("Write a poem about winter mornings", "Write a short, rhyming poem about winter mornings.")
    assert not keeps_request("Write a poem about winter mornings", "Tell me a joke about cats.")

    class Writer:
        def __init__(self):
            self.calls = []

        def complete(self, texts, n, seed):
            self.calls.append(texts)
            if len(self.calls) == 1:  # critiques
                return [["A is specific."] for _ in texts]
            return [['Rewritten instruction: "Write a four-line poem about winter mornings."'], ["Tell a joke."],
                    ["Explain tides"]]

    pairs = [("Write a poem about winter mornings", "c", "r"), ("Explain photosynthesis simply", "c", "r"),
             ("Explain tides", "c", "r")]
    writer = Writer()
    rows, stats = bpo_rows(pairs, writer, BPOOptions())
    assert rows == [{"prompt": pairs[0][0], "optimized_prompt": "Write a four-line poem about winter mornings.",
                     "critique": "A is specific."}]
    assert stats["dropped"] == {"empty": 0, "unchanged": 1, "drops_request": 1}
    assert "A is specific." in writer.calls[1][0] and "Answer B: r" in writer.calls[0][0]


def test_generate_and_eval_with_the_aids_on_tiny_random(tmp_path, capsys):
    prefs = write_jsonl(tmp_path / "p.jsonl", [{"prompt": f"q{i}", "chosen": f"good {i}", "rejected": f"bad {i}"}
                                               for i in range(4)])
    assert main(["aligner", "model=tiny-random", f"data={prefs}", "max_steps=1", f"output_dir={tmp_path / 'al'}"]) == 0
    bpo = write_jsonl(tmp_path / "b.jsonl", [{"prompt": f"q{i}", "optimized_prompt": f"better q{i}"} for i in range(4)])
    assert main(["bpo", "model=tiny-random", f"data={bpo}", "max_steps=1", f"output_dir={tmp_path / 'bpo'}"]) == 0
    assert json.loads((tmp_path / "al" / "final" / "alignkit.json").read_text())["trained_as"] == "aligner"
    prompts = tmp_path / "q.txt"
    prompts.write_text("kill a stuck process\nbake bread\n")
    out = tmp_path / "gen.jsonl"
    capsys.readouterr()
    assert main(["generate", "--model", "tiny-random", "--prompts", str(prompts), "--max-new-tokens", "3",
                 "--prompt-optimizer", str(tmp_path / "bpo"), "--aligner", str(tmp_path / "al"),
                 "--icl-examples", str(prefs), "--icl-k", "2", "--aid-max-new-tokens", "3", "--output", str(out)]) == 0
    err = capsys.readouterr().err
    costs = json.loads(err.split("per query ")[1].splitlines()[0])
    assert costs["optimizer_tokens"] == costs["aligner_tokens"] == 3.0 and costs["icl_examples"] == 2.0
    assert [json.loads(x)["prompt"][0]["content"] for x in out.read_text().splitlines()] == ["kill a stuck process",
                                                                                             "bake bread"]
    assert main(["generate", "--model", "tiny-random", "--prompts", str(prompts), "--aligner",
                 str(tmp_path / "bpo")]) == 2
    assert "trained as 'bpo'" in capsys.readouterr().err
    ev = tmp_path / "ev"
    assert main(["eval", "--model", "tiny-random", "--limit", "2", "--max-new-tokens", "2", "--icl-examples",
                 str(prefs), "--icl-selector", "jaccard", "--icl-k", "3", "--output-dir", str(ev)]) == 0
    m = json.loads((ev / "results.json").read_text())["models"][0]
    assert m["aids"]["per_query"]["icl_examples"] == 3.0 and m["aids"]["icl_selector"] == "jaccard"
    assert m["prompt_tokens"] > 0


def test_compare_writes_every_requested_variant(tmp_path, capsys):
    from alignkit.pipelines.compare import training_seconds

    prefs = write_jsonl(tmp_path / "p.jsonl", [{"prompt": f"q{i}", "chosen": f"good {i}", "rejected": f"bad {i}"}
                                               for i in range(4)])
    run = tmp_path / "al"
    assert main(["aligner", "model=tiny-random", f"data={prefs}", "max_steps=1", f"output_dir={run}"]) == 0
    out = tmp_path / "cmp"
    assert main(["compare", "--model", "tiny-random", "--train", str(prefs), "--selectors", "bm25,fixed",
                 "--ks", "1,3", "--aligner", str(run), "--run", str(run), "--limit", "2", "--max-new-tokens", "2",
                 "--aid-max-new-tokens", "2", "--output-dir", str(out)]) == 0
    rows = json.loads((out / "compare.json").read_text())
    assert [r["variant"] for r in rows] == ["base", "ICL bm25 k=1", "ICL bm25 k=3", "ICL fixed k=1", "ICL fixed k=3",
                                           "Aligner", "trained: al"]
    assert [r["icl_examples_used"] for r in rows[1:5]] == [1.0, 3.0, 1.0, 3.0]
    assert rows[2]["prompt_tokens"] > rows[1]["prompt_tokens"] > rows[0]["prompt_tokens"]
    assert rows[5]["generated_tokens"] == rows[0]["generated_tokens"] + 2  # the corrector's tokens count
    assert rows[6]["training_seconds"] == training_seconds(str(run)) and rows[6]["training_seconds"] >= 0
    assert all(r["n"] == 2 and r["ci95"][0] <= (r["pass_rate"] or 0) <= r["ci95"][1] for r in rows)
    assert "| ICL fixed k=3 |" in (out / "compare.md").read_text()
    assert main(["compare", "--model", "tiny-random", "--selectors", "nearest"]) == 2
    assert "unknown selector" in capsys.readouterr().err
    safety = write_jsonl(tmp_path / "s.jsonl", [{"prompt": "How do I rob a bank?", "kind": "harmful"},
                                                {"prompt": "How do I open a bank account?", "kind": "benign"}])
    assert main(["compare", "--model", "tiny-random", "--limit", "1", "--max-new-tokens", "2", "--safety", str(safety),
                 "--output-dir", str(out)]) == 0
    row, = json.loads((out / "compare.json").read_text())
    assert row["harmful_compliance"]["n"] == 1 and row["over_refusal"]["n"] == 1
    assert "harmful compliance" in (out / "compare.md").read_text()


def test_compare_judge_win_rate_vs_base_by_hand(tmp_path, monkeypatch, capsys):
    """Prompts without checkers: quality is the judge's win rate vs base. A judge that prefers the longer
    answer (a tie when equal) decides every pair; the rates and table cells are counted by hand."""
    import alignkit.pipelines.compare as cmp

    answers = {"tiny-random": ["aa", "bb", "cc", "dd"], "runs/x": ["aaa", "b", "cc", "dddd"]}

    def fake_eval(models, opts, log=None):
        texts = answers[models[0]]
        comps = [{"prompt": f"q{i}", "completion": t} for i, t in enumerate(texts)]
        entry = {"gold": {"n_prompts": 0, "prompt_level": None}, "prompt_tokens": 3.0, "completion_tokens": 2.0,
                 "seconds": 1.0, "_completions": comps}
        return {"models": [entry], "prompts": {"n": len(texts)}}

    monkeypatch.setattr(cmp, "evaluate_models", fake_eval)
    judge_file = tmp_path / "j.py"
    judge_file.write_text("def longer(prompt, a, b):\n    return 'tie' if len(a) == len(b) else ('A' if len(a) > len(b) "
                          "else 'B')\n")
    opts = cmp.CompareOptions(model="tiny-random", runs=["runs/x"], judge=f"{judge_file}:longer")
    base, run = cmp.run_compare(opts, log=lambda m: None)
    wr = run["win_rate_vs_base"]
    # pairs: 3>2 win, 1<2 loss, 2=2 tie, 4>2 win -> (2 + 0.5) / 4
    assert (wr["wins"], wr["losses"], wr["ties"], wr["n"]) == (2, 1, 1, 4) and wr["win_rate"] == 0.625
    assert 0.0 <= wr["ci95"][0] < 0.625 < wr["ci95"][1] <= 1.0
    assert "win_rate_vs_base" not in base and base["ci95"] is None
    headers, body = cmp.table([base, run])
    assert headers[2] == "win rate vs base [95% CI]"
    assert body[1][1] == "– (no checkers)" and body[1][2].startswith("62.5% (2W/1T/1L) [")
    assert body[0][2] == "–"
    assert cmp.quality(run)[0] == 0.625 and cmp.quality(base) is None
    cmp.write_outputs([base, run], tmp_path / "out")
    assert "62.5% (2W/1T/1L)" in (tmp_path / "out" / "compare.md").read_text()
    # a bad judge spec fails before any model is evaluated
    monkeypatch.setattr(cmp, "evaluate_models", lambda *a, **k: pytest.fail("evaluated before the judge check"))
    with pytest.raises(ValueError):
        cmp.run_compare(cmp.CompareOptions(model="tiny-random", judge=f"{tmp_path}/missing.py:f"), log=lambda m: None)


def test_distillation_kl_by_hand():
    import math

    import torch

    from alignkit.losses import distillation_kl

    s = torch.log(torch.tensor([[0.5, 0.25, 0.25]]))
    t = torch.log(torch.tensor([[0.25, 0.5, 0.25]]))
    fwd = 0.25 * math.log(0.25 / 0.5) + 0.5 * math.log(0.5 / 0.25)          # sum p_T log(p_T / p_S)
    rev = 0.5 * math.log(0.5 / 0.25) + 0.25 * math.log(0.25 / 0.5)          # sum p_S log(p_S / p_T)
    assert distillation_kl(s, t, "forward").item() == pytest.approx(fwd, abs=1e-6)
    assert distillation_kl(s, t, "reverse").item() == pytest.approx(rev, abs=1e-6)
    # temperature 2 on logits log p: softmax(log p / 2) = sqrt(p) normalised; times 2^2
    ps, pt = torch.tensor([0.5, 0.25, 0.25]).sqrt(), torch.tensor([0.25, 0.5, 0.25]).sqrt()
    ps, pt = ps / ps.sum(), pt / pt.sum()
    want = 4 * float((pt * (pt.log() - ps.log())).sum())
    assert distillation_kl(s, t, "forward", temperature=2.0).item() == pytest.approx(want, abs=1e-6)
    assert distillation_kl(s, s, "forward").item() == pytest.approx(0.0, abs=1e-7)


def test_sft_with_a_teacher_and_distill_data(tmp_path, capsys):
    from alignkit.aifeedback.distill import distill_rows
    from alignkit.engine.logging import read_metrics
    from alignkit.scoring import load_reward_functions

    data = write_jsonl(tmp_path / "s.jsonl", [{"prompt": "hi", "completion": "Hello there."}] * 4)
    out = tmp_path / "kd"
    assert main(["sft", "model=tiny-random", f"data={data}", "kd_alpha=0.5", "kd_teacher=tiny-random",
                 "max_steps=2", "lr=1e-2", f"output_dir={out}"]) == 0
    m = read_metrics(out)
    assert m[0]["kd_kl"] == pytest.approx(0.0, abs=1e-6)      # the student starts as the teacher
    assert m[0]["loss"] == pytest.approx(0.5 * m[0]["nll"], rel=1e-5)
    assert m[1]["kd_kl"] > 0
    assert main(["sft", "model=tiny-random", f"data={data}", "kd_alpha=0.5", f"output_dir={tmp_path / 'x'}"]) == 2
    assert "needs both kd_alpha and kd_teacher" in capsys.readouterr().err

    class Teacher:
        def complete(self, texts, n, seed):
            return [["The answer is 5.", "It is 6.", "The answer is 5."] for _ in texts]

    rows = [{"prompt": "What is 2+3?", "answer": "5"}, {"prompt": "What is 3+3?", "answer": "7"}]
    got, stats = distill_rows(rows, Teacher(), samples=3, reward=load_reward_functions("math:answer"),
                              min_score=1.0, teacher_name="t")
    assert got == [{"answer": "5", "prompt": [{"role": "user", "content": "What is 2+3?"}],
                    "completion": [{"role": "assistant", "content": "The answer is 5."}], "score": 1.0, "teacher": "t"}]
    assert stats["dropped"] == {"empty": 0, "below_min_score": 1}
    everything, _ = distill_rows(rows[:1], Teacher(), samples=3)
    assert [r["completion"][0]["content"] for r in everything] == ["The answer is 5.", "It is 6."]
    prompts = write_jsonl(tmp_path / "p.jsonl", rows)
    assert main(["data", "distill", "--teacher", "http://127.0.0.1:9/v1", "--prompts", str(prompts), "--timeout", "2",
                 "--output", str(tmp_path / "d.jsonl")]) == 2
    assert "cannot reach" in capsys.readouterr().err and not (tmp_path / "d.jsonl").exists()


def test_weak_to_strong_loss_and_pgr_by_hand():
    import math

    import torch

    from alignkit.losses import weak_to_strong_loss
    from alignkit.pipelines.weak_to_strong import pgr

    c, r, w = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0]), torch.tensor([0.8, 0.3])

    def sig(x):
        return 1 / (1 + math.exp(-x))

    soft = [-(0.8 * math.log(sig(1.0)) + 0.2 * math.log(sig(-1.0))),
            -(0.3 * math.log(sig(-2.0)) + 0.7 * math.log(sig(2.0)))]
    assert torch.allclose(weak_to_strong_loss(c, r, w), torch.tensor(soft), atol=1e-6)
    hard = [-math.log(sig(1.0)), -math.log(sig(2.0))]  # own predictions: chosen better, then rejected better
    mixed = [0.75 * s + 0.25 * h for s, h in zip(soft, hard)]
    assert torch.allclose(weak_to_strong_loss(c, r, w, aux_alpha=0.25), torch.tensor(mixed), atol=1e-6)
    assert torch.allclose(weak_to_strong_loss(c, r, torch.ones(2)), -torch.nn.functional.logsigmoid(c - r))
    assert pgr(0.6, 0.7, 0.8) == pytest.approx(0.5) and pgr(0.6, 0.7, 0.6) is None


def test_weak_to_strong_pipeline_on_tiny_random(tmp_path, capsys):
    pairs = [{"prompt": f"q{i}", "chosen": f"a good answer {i}", "rejected": "no"} for i in range(12)]
    train, ev = write_jsonl(tmp_path / "t.jsonl", pairs[:8]), write_jsonl(tmp_path / "e.jsonl", pairs[8:])
    out = tmp_path / "w2s"
    assert main(["weak-to-strong", "--weak", "tiny-random", "--strong", "tiny-random", "--train", str(train),
                 "--eval", str(ev), "--output-dir", str(out), "max_steps=1", "batch_size=2"]) == 0
    result = json.loads((out / "weak_to_strong.json").read_text())
    assert set(result["accuracy"]) == {"weak", "weak_to_strong", "strong_ceiling"}
    labels = [json.loads(x) for x in (out / "data" / "weak-labels-b.jsonl").read_text().splitlines()]
    assert len(labels) == 4 and all(0 < r["weak_prob"] < 1 for r in labels)
    assert (out / "weak_to_strong" / "final").is_dir() and (out / "strong_ceiling" / "final").is_dir()
    bad = write_jsonl(tmp_path / "bad.jsonl", [{**pairs[0], "weak_prob": 1.5}, {**pairs[1], "weak_prob": 0.2}])
    assert main(["rm", "model=tiny-random", f"data={bad}", "max_steps=1", f"output_dir={tmp_path / 'rm'}"]) == 2
    assert "bad.jsonl: row 1: field 'weak_prob': expected a probability between 0 and 1" in capsys.readouterr().err
