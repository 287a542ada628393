"""Step-level data from Monte-Carlo rollouts (prm-labels, step-pairs) and ``alignkit step-dpo``."""

from __future__ import annotations

import json

import pytest
import torch

from alignkit.cli import main
from alignkit.config import load_config
from alignkit.data import collate_preference
from alignkit.engine.logging import read_metrics
from alignkit.methods.step_dpo import StepDPO, StepDPOConfig
from alignkit.models import load_tokenizer
from alignkit.reasoning.labels import first_wrong_pair, prefix_values, shepherd_labels
from tests.helpers import write_jsonl

SOLUTION = ["Step 1: 2 + 3 = 5.", "Step 2: 5 * 2 = 11.", "Answer: 11"]
SCRIPT = {  # continuations sampled after k steps of SOLUTION
    0: ["Step 1: 2 + 3 = 5.\nStep 2: 5 * 2 = 10.\nAnswer: 10", "Answer: 3"],
    1: ["Step 2: 5 * 2 = 10.\nAnswer: 10", "Answer: 9"],
    2: ["Answer: 11", "Answer: 12"],
}


class ScriptedSampler:
    """Stands in for StepSampler: full solutions for an empty prefix on the first call, then SCRIPT."""

    def __init__(self, solutions=None):
        self.calls = []
        self.solutions = solutions

    def request(self, prompt):
        return [{"role": "user", "content": prompt}]

    def continue_prefixes(self, prompts, prefixes, n, seed, max_new_tokens=None):
        self.calls.append([len(p) for p in prefixes])
        if self.solutions is not None and len(self.calls) == 1:
            return [self.solutions[:n] for _ in prompts]
        return [SCRIPT[len(p)][:n] for p in prefixes]


def test_prefix_values_labels_and_first_wrong_step_by_hand():
    sampler = ScriptedSampler()
    (v,) = prefix_values(sampler, [("Q", "10", SOLUTION)], rollouts=2, seed=0, with_empty=True)
    assert sampler.calls == [[0, 1, 2]]  # one batched call for every prefix
    assert v["values"] == [0.5, 0.0, 0.0]  # after step 1: 1 of 2 right; after step 2: none; the solution: wrong
    assert shepherd_labels(v["values"], 2) == [True, False, False]
    assert shepherd_labels([1.0, 0.5, 1.0], 2, min_correct=2) == [True, False, True]
    pair, why = first_wrong_pair(SOLUTION, v["values"], v["continuations"], "10")
    assert why == "kept"
    assert pair == {"prefix_steps": ["Step 1: 2 + 3 = 5."], "chosen_step": "Step 2: 5 * 2 = 10.",
                    "rejected_step": "Step 2: 5 * 2 = 11.", "step_index": 2}
    # a first step that is already wrong pairs with a right fresh start
    wrong_start = ["Step 1: 2 + 4 = 6.", "Answer: 12"]
    pair, _ = first_wrong_pair(wrong_start, [0.0, 0.0], v["continuations"], "10")
    assert pair["prefix_steps"] == [] and pair["chosen_step"] == "Step 1: 2 + 3 = 5."
    assert pair["rejected_step"] == "Step 1: 2 + 4 = 6."
    # a right continuation that starts with the rejected step itself is no pair
    assert first_wrong_pair(SOLUTION, [0.0, 0.0, 0.0], v["continuations"], "10") == (None, "no_correct_continuation")
    assert first_wrong_pair(SOLUTION, [0.5, 0.0, 0.0], {1: ["Answer: 9"]}, "10") == (None, "no_correct_continuation")


def test_step_pairs_and_prm_labels_commands(tmp_path, monkeypatch, capsys):
    math_file = write_jsonl(tmp_path / "math.jsonl", [{"id": "p1", "prompt": "Q", "answer": "10"}])
    from alignkit.commands import reasoning_data

    monkeypatch.setattr(reasoning_data, "_sampler", lambda args: ScriptedSampler(["\n".join(SOLUTION)]))
    out = tmp_path / "pairs.jsonl"
    assert main(["data", "step-pairs", "--model", "tiny-random", "--data", str(math_file), "--rollouts", "2",
                 "--samples", "1", "--output", str(out)]) == 0
    (row,) = [json.loads(x) for x in out.read_text().splitlines()]
    assert row["prompt"] == [{"role": "user", "content": "Q"}]
    assert row["rejected_step"] == "Step 2: 5 * 2 = 11." and row["chosen_step"] == "Step 2: 5 * 2 = 10."
    labels = tmp_path / "labels.jsonl"
    assert main(["data", "prm-labels", "--model", "tiny-random", "--data", str(math_file), "--rollouts", "2",
                 "--output", str(labels)]) == 0
    (row,) = [json.loads(x) for x in labels.read_text().splitlines()]
    assert row["completions"] == SOLUTION and row["labels"] == [True, False, False]
    assert '"good_steps": 1' in capsys.readouterr().err
    # the labels train a PRM as they are
    assert main(["prm", "model=tiny-random", f"data={labels}", f"output_dir={tmp_path / 'prm'}", "max_steps=1",
                 "batch_size=1"]) == 0
    assert main(["data", "prm-labels", "--data", str(math_file), "--rollouts", "2", "--min-correct", "3",
                 "--output", str(labels)]) == 2


def test_prm_labels_real_sampling_on_tiny_random(tmp_path):
    math_file = tmp_path / "math.jsonl"
    assert main(["data", "math", "--n", "2", "--steps", "2", "--output", str(math_file)]) == 0
    out = tmp_path / "labels.jsonl"
    assert main(["data", "prm-labels", "--model", "tiny-random", "--data", str(math_file), "--rollouts", "2",
                 "--max-new-tokens", "12", "--output", str(out)]) == 0
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(rows) == 2
    for r in rows:
        assert len(r["labels"]) == len(r["completions"]) == len(r["values"]) >= 1
        assert all(isinstance(x, bool) for x in r["labels"])


def step_rows():
    return [{"prompt": "Ana has 3 apples and gets 2 more. How many?\n", "prefix_steps": ["Step 1: 3 + 2 = 5."],
             "chosen_step": "Answer: 5", "rejected_step": "Answer: 6"},
            {"prompt": [{"role": "user", "content": "Ben has 4 pens and loses 1. How many?"}], "prefix_steps": [],
             "chosen_step": "Step 1: 4 - 1 = 3.", "rejected_step": "Step 1: 4 + 1 = 5."}]


def test_step_dpo_mask_trains_only_the_step_tokens(tmp_path):
    data = write_jsonl(tmp_path / "steps.jsonl", step_rows())
    tok = load_tokenizer("tiny-random")
    cfg = load_config(StepDPOConfig, None, ["model=tiny-random", f"data={data}"])
    examples = StepDPO(cfg, tok).build_examples(str(data))
    ex = examples[0]
    prompt = tok(step_rows()[0]["prompt"])["input_ids"]
    prefix = tok("Step 1: 3 + 2 = 5.\n", add_special_tokens=False)["input_ids"]
    assert ex["prompt_ids"] == prompt + prefix  # the prefix is context
    assert ex["chosen_ids"] == tok("Answer: 5\n", add_special_tokens=False)["input_ids"]
    assert ex["rejected_ids"] == tok("Answer: 6\n", add_special_tokens=False)["input_ids"]
    chat = examples[1]
    assert tok.decode(chat["prompt_ids"]).endswith("<|im_start|>assistant\n")
    batch = collate_preference(examples, tok.pad_token_id)
    labels = batch["labels"]
    for r, (e, key) in enumerate([(examples[0], "chosen_ids"), (examples[1], "chosen_ids"),
                                  (examples[0], "rejected_ids"), (examples[1], "rejected_ids")]):
        trained = labels[r][labels[r] != -100].tolist()
        assert trained == e[key]  # exactly the step's tokens, nothing of the prompt or prefix
    assert (labels[0, :len(ex["prompt_ids"])] == -100).all()


def test_step_dpo_cli_run_and_bad_rows(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("alignkit.cli.write_run_report", lambda out: None)
    data = write_jsonl(tmp_path / "steps.jsonl", step_rows() * 2)
    out = tmp_path / "run"
    assert main(["step-dpo", "model=tiny-random", f"data={data}", f"output_dir={out}", "max_steps=2",
                 "batch_size=2", "max_length=96"]) == 0
    metrics = read_metrics(out)
    assert metrics[0]["loss"] == pytest.approx(torch.nn.functional.softplus(torch.tensor(0.0)).item(), abs=1e-4)
    assert (out / "final").is_dir() and (out / "config.yaml").is_file()
    rows = step_rows()
    rows[1]["prefix_steps"] = ["ok", 3]
    bad = write_jsonl(tmp_path / "bad.jsonl", rows)
    assert main(["step-dpo", "model=tiny-random", f"data={bad}", f"output_dir={tmp_path / 'r'}"]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "row 2" in err and "field 'prefix_steps'" in err
    rows = step_rows()
    rows[0]["chosen_step"] = ""
    bad = write_jsonl(tmp_path / "bad2.jsonl", rows)
    assert main(["step-dpo", "model=tiny-random", f"data={bad}", f"output_dir={tmp_path / 'r'}"]) == 2
    assert "row 1" in capsys.readouterr().err


def test_a_solution_ends_at_its_first_answer_line():
    from alignkit.reasoning.steps import is_final_step, solution_steps

    text = "Step 1: 2 + 3 = 5.\n**Answer: 5**\nStep 2: junk\nAnswer: 7"
    assert solution_steps(text) == ["Step 1: 2 + 3 = 5.", "**Answer: 5**"]
    assert solution_steps("a\nb\nc", max_steps=2) == ["a", "b"]
    assert is_final_step("answer: 3") and not is_final_step("The answer is 3")


def test_builder_argument_errors(tmp_path, capsys):
    math_file = write_jsonl(tmp_path / "math.jsonl", [{"prompt": "Q", "answer": "1"}])
    assert main(["data", "step-pairs", "--data", str(math_file), "--samples", "0", "--output",
                 str(tmp_path / "o.jsonl")]) == 2
    assert "--samples must be at least 1" in capsys.readouterr().err
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "Q"}])
    assert main(["data", "prm-labels", "--model", "tiny-random", "--data", str(bad), "--output",
                 str(tmp_path / "o.jsonl")]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "row 1" in err and "field 'answer'" in err
