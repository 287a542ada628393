"""Reasoning data and verifiable math rewards (issue 17, parts 1-2): the answer extractor and verifier on a
table of strings (with and without math-verify), the step-format score, the generated set (determinism,
disjoint splits, every reference solution re-computed and verified), the GSM8K reader, the ``math:`` spec,
``alignkit data math``, a GRPO run with ``reward=math:answer`` and ``alignkit eval --math``."""

from __future__ import annotations

import json
import math
import re
from fractions import Fraction

import pytest

from alignkit.cli import main
from alignkit.data.io import DataError
from alignkit.evaluation.stats import wilson_interval
from alignkit.reasoning import mathset, verify
from alignkit.reasoning.mathset import LEVELS, generate_problems, read_gsm8k, split_seed, templates
from alignkit.reasoning.verify import (
    answers_match,
    extract_answer,
    format_number,
    format_score,
    is_correct,
    math_answer,
    math_format,
    parse_number,
)
from alignkit.rewards import FunctionReward, RewardError
from alignkit.scoring import load_reward_functions, load_reward_source
from tests.helpers import write_jsonl

HAS_MATH_VERIFY = verify.math_verify_available()


@pytest.fixture(params=["math-verify", "numeric"])
def backend(request, monkeypatch):
    """Run a test with math-verify (when installed) and with the plain numeric fallback."""
    if request.param == "math-verify":
        if not HAS_MATH_VERIFY:
            pytest.skip("math-verify is not installed (pip install 'alignkit[math]')")
    else:
        monkeypatch.setattr(verify, "_MATH_VERIFY", [None])
    return request.param


@pytest.fixture(autouse=True)
def no_report(monkeypatch):
    monkeypatch.setattr("alignkit.cli.write_run_report", lambda out: None)


# ----------------------------------------------------------------------------- extraction

@pytest.mark.parametrize("text, expected", [
    ("so the total is \\boxed{42}.", "42"),
    ("\\boxed{1,234} apples", "1,234"),
    ("\\boxed{\\frac{3}{4}}", "\\frac{3}{4}"),
    ("Answer: 7\nbut really \\boxed{8}", "8"),  # boxed beats Answer:
    ("first \\boxed{1} then \\boxed{2}", "2"),  # the last boxed
    ("Step 1: 3 + 4 = 7\nAnswer: 7", "7"),
    ("**Answer:** 42 apples.", "42 apples."),
    ("answer: -5 degrees", "-5 degrees"),
    ("Answer:\n\n  19", "19"),  # the answer on the next line
    ("Answer: 1\nAnswer: 2", "2"),
    ("Natalia sold 72 clips.\n#### 72", "72"),
    ("Answer: 9\n#### 10", "9"),  # Answer: beats ####
    ("12 + 5 = 17, then 17 * 2 = 34 marbles", "34"),  # the last number
    ("we get 3/4 of it", "3/4"),
    ("It is −7 outside", "-7"),
    ("no number at all", None),
    ("", None),
])
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("42", Fraction(42)),
    ("$1,234.50.", Fraction(2469, 2)),
    ("1{,}234", Fraction(1234)),
    ("-5 apples", Fraction(-5)),
    ("\u22127", Fraction(-7)),
    ("3/4", Fraction(3, 4)),
    ("\\frac{3}{4}", Fraction(3, 4)),
    ("\\dfrac{-6}{8}", Fraction(-3, 4)),
    ("0.75", Fraction(3, 4)),
    (".5", Fraction(1, 2)),
    ("50%", Fraction(50)),
    ("12 / 4 = 3", Fraction(3)),
    ("Tom has 42 marbles.", Fraction(42)),
    ("42 (from step 3)", Fraction(42)),
    ("\\text{about } 8 \\text{ litres}", Fraction(8)),
    ("2\\sqrt{2}", None),  # more than a number: left to the symbolic check
    ("2 + 3", None),
    ("5/0", None),
    ("forty-two", None),
    (None, None),
])
def test_parse_number(text, expected):
    assert parse_number(text) == expected


def test_format_number():
    assert [format_number(Fraction(x)) for x in ("42", "-3", "0.75", "-2.5", "1/3", "1000.0")] == \
        ["42", "-3", "0.75", "-2.5", "1/3", "1000"]


# ----------------------------------------------------------------------------- verification

# (completion, gold, correct): the same verdict with math-verify and with the numeric fallback
TABLE = [
    ("\\boxed{42}", "42", True),
    ("Answer: 1,234", "1234", True),  # thousands separator
    ("Answer: $1,000.", "1000", True),  # dollar sign, trailing period
    ("Answer: 18 litres", "18", True),  # unit
    ("Answer: 3/4", "0.75", True),  # fraction vs decimal
    ("\\boxed{\\frac{3}{4}}", "3/4", True),
    ("Answer: 0.5", "1/2", True),
    ("Answer: -5", "-5", True),  # negative
    ("Answer: 5", "-5", False),
    ("Step 1: 2 + 3 = 5\nStep 2: 5 * 4 = 20\nAnswer: 20", "20", True),
    ("Step 1: 2 + 3 = 5\nStep 2: 5 * 4 = 20\nAnswer: 21", "20", False),
    ("The result: 12 + 5 = 17", "17", True),  # no answer line: the last number
    ("Answer: 17\nCheck: 12 + 5 = 18", "18", False),  # the answer line wins over later numbers
    ("#### 72", "72", True),
    ("I think it is twenty", "20", False),  # no number
    ("", "3", False),
    ("Answer: 42 (see step 3)", "42", True),
    ("Answer: 4.0", "4", True),
    ("Answer: 4.01", "4", False),
]


@pytest.mark.parametrize("completion, gold, correct", TABLE)
def test_verifier_table(backend, completion, gold, correct):
    assert is_correct(completion, gold) is correct
    assert math_answer(["q"], [completion], answer=[gold]) == [1.0 if correct else 0.0]
    # the chat form of a completion gives the same verdict
    assert math_answer(["q"], [[{"role": "assistant", "content": completion}]], answer=[gold]) == \
        [1.0 if correct else 0.0]


SYMBOLIC = [  # (completion, gold): equal only symbolically
    ("\\boxed{\\frac{1}{\\sqrt{2}}}", "\\frac{\\sqrt{2}}{2}"),
    ("Answer: 2 + 3", "5"),
    ("\\boxed{\\sqrt{4}}", "2"),
]


@pytest.mark.parametrize("completion, gold", SYMBOLIC)
def test_symbolic_answers_need_math_verify(backend, completion, gold):
    assert is_correct(completion, gold) is (backend == "math-verify")


def test_numeric_fallback_compares_plain_strings(monkeypatch):
    monkeypatch.setattr(verify, "_MATH_VERIFY", [None])
    assert answers_match("x + 1", "x+1")  # spaces do not matter
    assert not answers_match("x + 2", "x+1")
    with pytest.raises(RuntimeError, match="math-verify"):
        answers_match("\\sqrt{4}", "2", symbolic=True)
    assert not answers_match(None, "2") and not answers_match("  ", "2")


@pytest.mark.skipif(not HAS_MATH_VERIFY, reason="math-verify is not installed")
def test_symbolic_false_skips_math_verify():
    assert answers_match("\\sqrt{4}", "2") and not answers_match("\\sqrt{4}", "2", symbolic=False)
    assert answers_match("\\sqrt{4}", "2", symbolic=True)


def test_math_answer_needs_an_answer_column():
    with pytest.raises(ValueError, match="'answer' column"):
        math_answer(["q"], ["Answer: 3"])
    with pytest.raises(ValueError, match="completion 1: its data row has no 'answer'"):
        math_answer(["q", "q"], ["Answer: 3", "Answer: 4"], answer=["3", None])


# ----------------------------------------------------------------------------- step format

@pytest.mark.parametrize("text, score", [
    ("Step 1: 2 + 3 = 5\nStep 2: 5 * 2 = 10\nAnswer: 10", 1.0),
    ("**Step 1:** 2 + 3 = 5\n\nsome words\n**Answer:** 5", 1.0),  # bold, lines between
    ("1. Step 1: 2 + 3 = 5\n- Step 2: 5 + 1 = 6\nAnswer: 6", 1.0),  # list markers
    ("1. 2 + 3 = 5\n2. 5 + 1 = 6\nAnswer: 6", 0.5),  # a numbered list is not the step format
    ("Step 1: 2 + 3 = 5\nStep 2: 5 * 2 = 10", 0.5),  # steps, no answer line
    ("Answer: 10", 0.5),  # answer line, no steps
    ("Step 1: a\nStep 3: b\nAnswer: 10", 0.75),  # numbering skips
    ("Step 2: a\nStep 1: b\nAnswer: 10", 0.75),  # backwards
    ("Step 1: a\nAnswer: 10\nStep 2: b", 0.5),  # step after the answer (0.25) and answer not last (0.25)
    ("Step 1: a\nAnswer: ten", 0.75),  # answer without a digit
    ("Step 1:\nAnswer: 4", 0.5),  # an empty step is not a step
    ("The answer is 10.", 0.0),
    ("", 0.0),
])
def test_format_score(text, score):
    assert format_score(text) == score
    assert math_format(["q"], [[{"role": "assistant", "content": text}]]) == [score]


# ----------------------------------------------------------------------------- the generated set

def test_generator_is_deterministic_and_seeded():
    a = generate_problems(40, steps="1-5", levels="1-3", split="train", seed=3)
    b = generate_problems(40, steps="1-5", levels="1-3", split="train", seed=3)
    c = generate_problems(40, steps="1-5", levels="1-3", split="train", seed=4)
    assert a == b
    assert [r["prompt"] for r in a] != [r["prompt"] for r in c]
    assert len({r["prompt"] for r in a}) == 40  # distinct problems
    assert {r["steps"] for r in a} == {1, 2, 3, 4, 5} and {r["level"] for r in a} == {1, 2, 3}
    for r in a:
        assert set(r) == {"id", "prompt", "completion", "answer", "steps", "level", "template", "split"}
        assert isinstance(r["prompt"], str) and isinstance(r["answer"], str) and r["answer"].isdigit()


def test_splits_use_disjoint_templates_and_seeds():
    train_t = {t.name for t in templates("train")}
    test_t = {t.name for t in templates("test")}
    assert train_t and test_t and not train_t & test_t
    train_seeds = {split_seed("train", s) for s in range(500)}
    test_seeds = {split_seed("test", s) for s in range(500)}
    assert len(train_seeds) == len(test_seeds) == 500 and not train_seeds & test_seeds
    train = generate_problems(300, steps="1-3", split="train", seed=0)
    test = generate_problems(300, steps="1-3", split="test", seed=0)
    assert {r["template"] for r in train} == train_t and {r["template"] for r in test} == test_t
    assert not {r["prompt"] for r in train} & {r["prompt"] for r in test}
    # no opening sentence of a test story appears in any training prompt
    openings = {t.start.split("{")[0] for t in templates("test") if not t.start.startswith("{")}
    assert openings and not any(o in r["prompt"] for o in openings for r in train)
    with pytest.raises(ValueError, match="split"):
        split_seed("dev", 0)


_STEP = re.compile(r"^Step (\d+): .*, so (\d+) ([-+*/]) (\d+) = (\d+)\.$")


def test_every_reference_solution_is_right_and_verifies():
    """Re-compute each step of each generated solution by hand and verify its answer and format."""
    ops = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b,
           "/": lambda a, b: a // b if a % b == 0 else None}
    rows = [r for split in ("train", "test") for r in generate_problems(400, steps="1-5", levels="1-3",
                                                                        split=split, seed=7)]
    for r in rows:
        lines = r["completion"].split("\n")
        assert len(lines) == r["steps"] + 1 and lines[-1] == f"Answer: {r['answer']}"
        start = int(re.search(r"\d+", r["prompt"]).group(0))  # the opening sentence's quantity
        value = start
        for k, line in enumerate(lines[:-1], start=1):
            m = _STEP.match(line)
            assert m, line
            step, a, op, b, c = int(m.group(1)), int(m.group(2)), m.group(3), int(m.group(4)), int(m.group(5))
            assert step == k and a == value and ops[op](a, b) == c and 1 <= c <= LEVELS[r["level"]].cap
            assert str(b) in r["prompt"]
            value = c
        assert str(value) == r["answer"]
        assert is_correct(r["completion"], r["answer"]), r
        assert math_answer([r["prompt"]], [r["completion"]], answer=[r["answer"]]) == [1.0]
        assert format_score(r["completion"]) == 1.0
        assert r["prompt"].rstrip().endswith(mathset.INSTRUCTION)


def test_generator_ranges_and_errors():
    rows = generate_problems(50, steps="2-3", levels="2", split="test", seed=1, instruction=False)
    assert {r["steps"] for r in rows} <= {2, 3} and {r["level"] for r in rows} == {2}
    assert all(mathset.INSTRUCTION not in r["prompt"] for r in rows)
    for bad in ("0-2", "4-2", "6", "two"):
        with pytest.raises(ValueError, match="steps"):
            generate_problems(3, steps=bad)
    with pytest.raises(ValueError, match="level"):
        generate_problems(3, levels="4")
    with pytest.raises(ValueError, match="distinct problems"):  # level 1, one step: a finite space
        generate_problems(100000, steps="1", split="test")


# ----------------------------------------------------------------------------- GSM8K files

GSM = [
    {"question": "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in "
                 "May. How many clips did Natalia sell altogether in April and May?",
     "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\n"
               "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.\n#### 72"},
    {"question": "A shop sells 1,000 pens a day. How many in 2 days?", "answer": "1000*2=2000\n#### 2,000"},
]


def test_gsm8k_reader(tmp_path):
    path = write_jsonl(tmp_path / "gsm.jsonl", GSM)
    rows = read_gsm8k(path)
    assert [r["answer"] for r in rows] == ["72", "2000"]
    assert rows[0]["completion"] == ("Step 1: Natalia sold 48/2 = 24 clips in May.\n"
                                     "Step 2: Natalia sold 48+24 = 72 clips altogether in April and May.\n"
                                     "Answer: 72")
    assert rows[0]["steps"] == 2 and rows[0]["template"] == "gsm8k" and rows[0]["level"] is None
    assert rows[0]["prompt"].startswith(GSM[0]["question"]) and mathset.INSTRUCTION in rows[0]["prompt"]
    assert all(is_correct(r["completion"], r["answer"]) and format_score(r["completion"]) == 1.0 for r in rows)
    assert read_gsm8k(path, instruction=False)[1]["prompt"] == GSM[1]["question"] + "\n"


@pytest.mark.parametrize("bad, field, reason", [
    ({"question": "Q?", "answer": "no final line"}, "answer", "'#### N'"),
    ({"question": "Q?", "answer": "x\n#### many"}, "answer", "'#### many' is not a number"),
    ({"answer": "#### 3"}, "question", "missing"),
    ({"question": "  ", "answer": "#### 3"}, "question", "empty string"),
    ({"question": "Q?", "answer": 3}, "answer", "got int"),
])
def test_gsm8k_malformed_row(tmp_path, capsys, bad, field, reason):
    path = write_jsonl(tmp_path / "bad.jsonl", [GSM[0], bad])
    with pytest.raises(DataError) as e:
        read_gsm8k(path)
    assert (e.value.row, e.value.field) == (2, field) and reason in str(e.value)
    assert str(e.value).startswith(f"{path}: row 2: field '{field}': ")
    # the command prints it as one line and exits with 2
    assert main(["data", "math", "--from-gsm8k", str(path), "--output", str(tmp_path / "o.jsonl")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {e.value}"]


# ----------------------------------------------------------------------------- the command

def test_data_math_command(tmp_path, capsys):
    out = tmp_path / "math.jsonl"
    assert main(["data", "math", "--n", "30", "--steps", "2-4", "--split", "test", "--seed", "5",
                 "--output", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows == generate_problems(30, steps="2-4", split="test", seed=5)
    assert "wrote 30 rows" in capsys.readouterr().err
    # the file reads back as prompt-completion data and as prompt-only data
    from alignkit.data import load_examples

    assert load_examples(out, ("prompt_completion",)).kind == "prompt_completion"
    assert load_examples(out, ("prompt",)).kind == "prompt"

    gsm = write_jsonl(tmp_path / "gsm.jsonl", GSM)
    conv = tmp_path / "conv.jsonl"
    assert main(["data", "math", "--from-gsm8k", str(gsm), "--n", "1", "--output", str(conv)]) == 0
    assert [json.loads(line)["answer"] for line in conv.read_text().splitlines()] == ["72"]

    assert main(["data", "math", "--steps", "1-9", "--output", str(tmp_path / "x.jsonl")]) == 2
    assert "steps must lie within 1-5" in capsys.readouterr().err
    assert main(["data", "math", "--n", "0", "--output", str(tmp_path / "x.jsonl")]) == 2
    assert main(["data", "math", "--output", str(tmp_path / "x.txt")]) == 2
    assert main(["data", "math", "--help"]) == 0


# ----------------------------------------------------------------------------- reward specs

def test_math_reward_specs():
    src = load_reward_source("math:answer")
    assert isinstance(src, FunctionReward) and src.name == "math_answer" and src.func is math_answer
    assert load_reward_source(" math:format ").func is math_format
    with pytest.raises(RewardError) as e:
        load_reward_source("math:accuracy")
    assert str(e.value) == "unknown math reward 'math:accuracy'; valid: math:answer, math:format"
    assert "\n" not in str(e.value)
    # a weighted pair: answer right (1) + half the format (0.5 * 0.5), answer wrong (0) + full format (0.5 * 1)
    rewards = load_reward_functions("[math:answer, math:format]", [1.0, 0.5])
    total, per = rewards(["q", "q"], ["Answer: 4", "Step 1: 2 + 2 = 5\nAnswer: 5"], {"answer": ["4", "4"]})
    assert [float(x) for x in total] == [1.25, 0.5]
    assert {k: [float(x) for x in v] for k, v in per.items()} == {"math_answer": [1.0, 0.0],
                                                                   "math_format": [0.5, 1.0]}


def test_grpo_with_math_answer(tmp_path):
    data = tmp_path / "math.jsonl"
    assert main(["data", "math", "--n", "8", "--steps", "1-2", "--output", str(data)]) == 0
    out = tmp_path / "run"
    assert main(["grpo", "model=tiny-random", f"data={data}", f"output_dir={out}", "reward=[math:answer, math:format]",
                 "max_steps=2", "batch_size=2", "num_generations=2", "max_new_tokens=4", "max_length=192"]) == 0
    from alignkit.engine.logging import read_metrics

    rows = read_metrics(out)
    assert [r["step"] for r in rows] == [1, 2]
    for r in rows:
        assert 0.0 <= r["rewards/math_answer"] <= 1.0 and 0.0 <= r["rewards/math_format"] <= 1.0
        assert math.isfinite(r["loss"])
    assert "math:answer" in (out / "config.yaml").read_text()


# ----------------------------------------------------------------------------- eval

def test_wilson_interval_by_hand():
    # 3 of 5, z = 1.96: centre (0.6 + 0.38415) / 1.76829 = 0.55656, half 1.10842 * sqrt(0.048 + 0.038415) = 0.32583
    lo, hi = wilson_interval(3, 5)
    assert lo == pytest.approx(0.2307, abs=1e-4) and hi == pytest.approx(0.8824, abs=1e-4)
    # 0 of 10: [0, z^2 / (n + z^2)] = [0, 3.8415 / 13.8415]
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.27753), abs=1e-5)
    assert wilson_interval(10, 10) == pytest.approx((0.72247, 1.0), abs=1e-5)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(6, 5)


def test_eval_math_accuracy_with_interval(tmp_path, monkeypatch, capsys):
    """Five problems, answered by a stub generator: three right (boxed, Answer:, last number), one wrong, one
    without a number: 3/5 and the Wilson interval computed by hand."""
    import alignkit.generation as generation
    from alignkit.generation import Generations

    problems = generate_problems(5, steps="2", split="test", seed=2)
    path = write_jsonl(tmp_path / "problems.jsonl", problems)
    answers = [f"\\boxed{{{problems[0]['answer']}}}", f"Step 1: ok\nAnswer: {problems[1]['answer']}",
               f"so it is {problems[2]['answer']}", f"Answer: {int(problems[3]['answer']) + 1}", "no idea"]
    by_prompt = {p["prompt"]: a for p, a in zip(problems, answers)}

    def fake_generate(model, tok, prompts, **kw):
        asked = [p[-1]["content"] if isinstance(p, list) else p for p in prompts]  # a user turn under the template
        texts = [by_prompt[p] for p in asked]
        return Generations(texts, [[1]] * len(texts), [[2, 3]] * len(texts), [False] * len(texts))

    monkeypatch.setattr(generation, "generate_with_ids", fake_generate)
    out = tmp_path / "eval"
    assert main(["eval", "--model", "tiny-random", "--math", str(path), "--output-dir", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    m = res["models"][0]["math"]
    assert (m["correct"], m["n"], m["accuracy"]) == (3, 5, 0.6)
    assert m["ci95"] == pytest.approx([0.2307, 0.8824], abs=1e-4)
    assert m["format"] == pytest.approx((0 + 1.0 + 0 + 0.5 + 0) / 5)  # only rows 2 and 4 have the format
    assert res["prompts"]["n"] == 5 and res["math"]["n"] == 5
    printed = capsys.readouterr().out
    assert "math accuracy (5 problems, 95% Wilson interval)" in printed and "60.0% (3/5) [23.1%, 88.2%]" in printed
    assert "gold prompt-level" not in printed  # no instruction constraints were asked
    comps = [json.loads(line) for line in next(out.glob("completions-1-*.jsonl")).read_text().splitlines()]
    assert [c["correct"] for c in comps] == [True, True, True, False, False]
    assert comps[4]["extracted"] is None and comps[0]["answer"] == problems[0]["answer"]
    assert "60.0% (3/5)" in (out / "results.md").read_text()


def test_eval_math_default_set_on_tiny_random(tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["eval", "--model", "tiny-random", "--math", "--limit", "6", "--max-new-tokens", "6",
                 "--output-dir", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    m = res["models"][0]["math"]
    comps = [json.loads(line) for line in next(out.glob("completions-1-*.jsonl")).read_text().splitlines()]
    # the count is that of the completions that verify, and the interval is Wilson's for it
    k = sum(is_correct(c["completion"], c["answer"]) for c in comps)
    assert m["n"] == 6 and m["correct"] == k
    assert m["ci95"] == pytest.approx(list(wilson_interval(k, 6)))
    default = generate_problems(100, steps="2-3", split="test", seed=0)[:6]
    assert [c["answer"] for c in comps] == [p["answer"] for p in default]
    assert "generated math set" in res["prompts"]["file"]

    assert main(["eval", "--model", "tiny-random", "--math", "--prompts", "x.jsonl"]) == 2
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "2+2?", "answer": "4"}, {"prompt": "3+3?"}])
    assert main(["eval", "--model", "tiny-random", "--math", str(bad)]) == 2
    assert f"{bad}: row 2: field 'answer': missing" in capsys.readouterr().err
