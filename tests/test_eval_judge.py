"""`alignkit eval --judge` with model judges (judge:MODEL, judge:http://..., ?method=): spec checks before
any model loads, the win-rate bookkeeping of fixed LLM verdicts computed by hand, the HTTP judge against
the stub OpenAI-compatible server of test_judges, and one end-to-end run with tiny-random as the judge."""

from __future__ import annotations

import json
import re

import pytest

from alignkit.evaluation.winrate import (
    JudgeError,
    ModelPairwise,
    is_model_judge,
    load_judge,
    pairwise_winrate,
    prepare_judge,
)
from alignkit.judges import (
    CallableBackend,
    CritiquePairwiseJudge,
    DebateJudge,
    FunctionJudge,
    PairwiseLLMJudge,
    ScorePairwiseJudge,
)
from tests.helpers import write_jsonl
from tests.test_judges import StubJudgeServer


def _shown(text: str) -> tuple[str, str]:
    """The two answers a pairwise judge prompt shows, in the order shown."""
    a = re.search(r"<answer_a>\n(.*?)\n</answer_a>", text, re.S).group(1)
    b = re.search(r"<answer_b>\n(.*?)\n</answer_b>", text, re.S).group(1)
    return a, b


def fixed_reply(text: str, label: str = "Winner") -> str:
    """Fixed verdicts by the answers' names: "good*" beats anything, "x*" pairs -> always the first shown,
    "t*" pairs -> tie, "u*" pairs -> no verdict at all."""
    a, b = _shown(text)
    if a.startswith("good"):
        v = "A"
    elif b.startswith("good"):
        v = "B"
    elif a.startswith("x"):
        v = "A"
    elif a.startswith("t"):
        v = "tie"
    else:
        return "I cannot decide."
    return f"Some reasoning about both.\n{label}: {v}"


# pairs: win, win, loss, always-first (inconsistent), tie both orders, unparsable both orders
PROMPTS = ["p1", "p2", "p3", "p4", "p5", "p6"]
A = ["good one", "good two", "bad", "x1", "t1", "u1"]
B = ["bad", "meh", "good three", "x2", "t2", "u2"]


def check_fixed_numbers(wr) -> None:
    """By hand: wins 2 (pairs 1, 2), losses 1 (pair 3), ties 3 (4 inconsistent, 5 tie, 6 no verdict):
    win rate (2 + 3/2) / 6. Decisive verdicts: 2 per pair for pairs 1-4 = 8; first position picked once
    in each of pairs 1-3 and twice in pair 4 = 5; 5/8."""
    assert (wr.n, wr.wins, wr.losses, wr.ties, wr.inconsistent) == (6, 2, 1, 3, 1)
    assert wr.outcomes == ["win", "win", "loss", "tie", "tie", "tie"]
    assert wr.win_rate == pytest.approx(3.5 / 6)
    assert wr.first_position_rate == pytest.approx(5 / 8)


# ----------------------------------------------------------------------------- fixed verdicts


@pytest.mark.parametrize("make", [
    lambda: PairwiseLLMJudge(CallableBackend(lambda t, i: fixed_reply(t))),
    lambda: CritiquePairwiseJudge(CallableBackend(lambda t, i: fixed_reply(t, "Final verdict"))),
    lambda: DebateJudge(CallableBackend(lambda t, i: fixed_reply(t)), personas=3, rounds=2),
])
def test_fixed_llm_verdicts_give_hand_computed_win_rate(make):
    judge = ModelPairwise(make())
    wr = pairwise_winrate(PROMPTS, A, B, judge)
    check_fixed_numbers(wr)
    assert wr.judge_stats["pairs"] == 6 and wr.judge_stats["inconsistent"] == 1
    assert judge("p", "x1", "x2") == "A"  # one order of one pair: the first-shown answer
    again = pairwise_winrate(PROMPTS[:1], A[:1], B[:1], judge)
    assert again.judge_stats["pairs"] == 1  # counters of this call only, not the judge's lifetime


def test_unparsable_replies_are_counted():
    wr = pairwise_winrate(PROMPTS, A, B, ModelPairwise(PairwiseLLMJudge(CallableBackend(lambda t, i: fixed_reply(t)))))
    assert wr.judge_stats["samples"] == 12 and wr.judge_stats["unparsable"] == 2  # pair 6, both orders


def test_score_comparing_judge_has_no_position_bias():
    """Scores 3, 1 / 2, 2 / 0, 5: a win, a tie, a loss; each decisive pair gives "A" once and "B" once."""
    scores = {"a1": 3.0, "b1": 1.0, "a2": 2.0, "b2": 2.0, "a3": 0.0, "b3": 5.0}
    judge = ModelPairwise(ScorePairwiseJudge(FunctionJudge(lambda prompts, completions, **kw:
                                                           [scores[c] for c in completions])))
    wr = pairwise_winrate(["p", "q", "r"], ["a1", "a2", "a3"], ["b1", "b2", "b3"], judge)
    assert (wr.wins, wr.losses, wr.ties, wr.inconsistent) == (1, 1, 1, 0)
    assert wr.win_rate == 0.5 and wr.first_position_rate == 0.5
    assert wr.judge_stats is None


# ----------------------------------------------------------------------------- specs


def test_model_judge_specs_parse():
    assert is_model_judge("judge:tiny-random") and is_model_judge(" http://127.0.0.1:1/v1")
    assert is_model_judge("rm:runs/rm") and not is_model_judge("judges.py:longer")
    assert not is_model_judge("json:dumps")
    critique = load_judge("judge:tiny-random?method=critique&max_new_tokens=4")
    assert isinstance(critique, ModelPairwise) and isinstance(critique.judge, CritiquePairwiseJudge)
    assert critique.judge.backend.temperature == 0.0 and critique.judge.backend.max_new_tokens == 4
    debate = load_judge("judge:tiny-random?method=debate&personas=2&rounds=3&temperature=0.5")
    assert isinstance(debate.judge, DebateJudge) and len(debate.judge.personas) == 2 and debate.judge.rounds == 3
    assert debate.judge.backend.temperature == 0.5 and debate.judge.backend.max_new_tokens == 512
    plain = load_judge("judge:tiny-random", seed=7, batch_size=3)
    assert type(plain.judge) is PairwiseLLMJudge and plain.judge.seed == 7 and plain.judge.backend.batch_size == 3
    geval = load_judge("judge:tiny-random?method=geval")
    assert isinstance(geval.judge, ScorePairwiseJudge)  # pointwise methods compare scores


@pytest.mark.parametrize("spec, message", [
    ("judge:self", "eval trains none"),
    ("judge:no-such-model-here", "no such model name"),
    ("judge:tiny-random?method=critque", "unknown method 'critque' (did you mean 'critique'?)"),
    ("judge:tiny-random?method=debate&skills=a", "option 'skills' belongs to method=flask"),
    ("judge:tiny-random?rounds=x", "option rounds='x' is not a int"),
    ("judge:ftp://host/v1", "only http:// and https://"),
    ("judge:", "judge: needs a model"),
])
def test_bad_spec_is_one_line_exit_2_before_any_model_loads(spec, message, capsys, monkeypatch):
    import alignkit.evaluation.runner as runner
    import alignkit.models

    def no_loading(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(runner, "_load", no_loading)
    monkeypatch.setattr(alignkit.models, "load_trained", no_loading)
    from alignkit.commands.eval import main

    assert main(["--model", "tiny-random", "--judge", spec]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("error: ") and err.count("\n") == 1, err
    with pytest.raises(JudgeError, match=re.escape(message)):
        prepare_judge(spec)


# ----------------------------------------------------------------------------- HTTP judge


def test_http_critique_judge_fixed_verdicts():
    with StubJudgeServer(lambda text, data: fixed_reply(text, "Final verdict")) as server:
        judge = load_judge(f"judge:{server.url}?method=critique")
        check_fixed_numbers(pairwise_winrate(PROMPTS, A, B, judge))
        assert len(server.requests) == 12 and all(r["temperature"] == 0.0 for r in server.requests)
        assert all("Before you decide, write a critique" in r["messages"][-1]["content"] for r in server.requests)
        bare = load_judge(server.url)  # the bare address is a judge spec too (default A-vs-B prompt)
        assert type(bare.judge) is PairwiseLLMJudge


def test_one_model_against_reference_answers_with_http_judge(tmp_path):
    """The longer answer wins; the 350-character reference beats a 4-token answer in both orders."""
    from alignkit.evaluation.runner import EvalOptions, evaluate_models, write_results

    def longer(text, data):
        a, b = _shown(text)
        return "Winner: " + ("A" if len(a) > len(b) else "B" if len(b) > len(a) else "tie")

    rows = [{"prompt": "Say hi.", "reference": "Hello! " * 50, "constraints": [{"type": "no_commas"}]},
            {"prompt": "Say bye.", "reference": "Bye! " * 50}]
    prompts = write_jsonl(tmp_path / "refs.jsonl", rows)
    with StubJudgeServer(longer) as server:
        spec = f"judge:{server.url}?model=stub-judge"
        results = evaluate_models(["tiny-random"], EvalOptions(prompts=str(prompts), judge=spec, max_new_tokens=4,
                                                               device="cpu"), log=lambda _: None)
    wr = results["win_rate"]
    assert wr["model_b"] == "reference answers" and wr["judge"] == spec
    assert (wr["n"], wr["wins"], wr["losses"], wr["ties"], wr["inconsistent"]) == (2, 0, 2, 0, 0)
    assert wr["win_rate"] == 0.0 and wr["first_position_rate"] == 0.5
    assert wr["judge_stats"]["samples"] == 4 and wr["judge_stats"]["unparsable"] == 0
    md = write_results(results, tmp_path / "out")["results.md"].read_text()
    assert "first position picked 50.0% of decisive verdicts" in md and "0/4 replies without a verdict" in md


# ----------------------------------------------------------------------------- end to end


def test_eval_two_models_critique_judge_end_to_end(tmp_path, capsys):
    from alignkit.cli import main

    rows = [{"id": "a", "split": "test", "prompt": "Answer without commas.", "constraints": [{"type": "no_commas"}]},
            {"id": "b", "split": "test", "prompt": "Answer in lowercase.", "constraints": [{"type": "lowercase"}]}]
    prompts = write_jsonl(tmp_path / "ins.jsonl", rows)
    out = tmp_path / "eval"
    spec = "judge:tiny-random?method=critique&max_new_tokens=8"
    code = main(["eval", "--model", "tiny-random", "--model", "tiny-random", "--judge", spec, "--prompts",
                 str(prompts), "--output-dir", str(out), "--max-new-tokens", "6", "--device", "cpu"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    wr = json.loads((out / "results.json").read_text())["win_rate"]
    assert wr["model_a"] == "tiny-random (#1)" and wr["model_b"] == "tiny-random (#2)" and wr["judge"] == spec
    # identical answers: both orders show the judge the same text, so any verdict flips with the order
    assert (wr["n"], wr["wins"], wr["losses"], wr["ties"], wr["win_rate"]) == (2, 0, 0, 2, 0.5)
    assert wr["judge_stats"]["pairs"] == 2 and wr["judge_stats"]["samples"] == 4
    assert "win rate tiny-random (#1) vs tiny-random (#2)" in (out / "results.md").read_text()
