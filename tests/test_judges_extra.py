"""The judges the survey names: G-Eval (expected score from score-token probabilities), FLASK-style
per-skill rubric, critique-then-verdict pairwise (Auto-J style) and the multi-persona debate (ChatEval
style); parsing and aggregation on fixed outputs with hand-computed results, the spec syntax, and the
local backend's probability hook on tiny-random (shape and normalisation only)."""

from __future__ import annotations

import math

import pytest

from alignkit.judges import (
    DEFAULT_SKILLS,
    CallableBackend,
    CritiquePairwiseJudge,
    DebateJudge,
    GEvalJudge,
    JudgeError,
    LLMJudge,
    RubricJudge,
    ScorePairwiseJudge,
    expected_score,
    parse_final_verdict,
    parse_skill_scores,
    split_critique,
)
from alignkit.judges.rubric import normalise_skills
from alignkit.scoring import load_judge, load_pairwise_judge, parse_judge_spec, reward_from_spec

# ----------------------------------------------------------------------------- G-Eval


def test_expected_score_by_hand():
    # 1*0.1 + 2*0.2 + 3*0.3 + 4*0.4 = 3.0; unnormalised weights are renormalised
    assert expected_score({1: 0.1, 2: 0.2, 3: 0.3, 4: 0.4, 5: 0.0}) == pytest.approx(3.0)
    assert expected_score({1: 2.0, 5: 2.0}) == pytest.approx(3.0)
    with pytest.raises(ValueError):
        expected_score({1: 0.0, 2: 0.0})


def test_geval_weights_scores_with_fixed_probabilities():
    table = {"short": {1: 0.5, 2: 0.5}, "good": {4: 0.25, 5: 0.75}, "even": {v: 1.0 for v in range(1, 6)}}

    def probs(text, reply, label):
        assert label == "Score" and reply == ""
        return next(p for key, p in table.items() if f"<answer>\n{key}\n</answer>" in text)

    backend = CallableBackend(lambda t, i: "never sampled", probabilities=probs)
    judge = GEvalJudge(backend)
    out = judge.score(["q", "q", "q"], ["short", "good", "even"])
    # 0.5*1 + 0.5*2 = 1.5;  0.25*4 + 0.75*5 = 4.75;  uniform over 1..5 = 3
    assert [s.score for s in out] == pytest.approx([1.5, 4.75, 3.0])
    assert "p(5)=0.750" in out[1].raw[0]
    assert judge.stats == {"items": 3, "weighted": 3, "sampled": 0, "unparsable": 0}
    assert sum(judge.last_probs[0].values()) == pytest.approx(1.0)


def test_geval_falls_back_to_sampled_scores_without_probabilities():
    replies = ["Score: 4", "Score: 2", "no score"]
    judge = GEvalJudge(CallableBackend(lambda t, i: replies[i]), judge_samples=3)
    (s,) = judge.score(["q"], ["a"])
    assert s.score == pytest.approx(3.0) and s.samples == [4.0, 2.0, None]  # (4 + 2) / 2
    assert judge.stats["sampled"] == 1 and judge.stats["unparsable"] == 1


def test_callable_probabilities_back_force_score():
    backend = CallableBackend(lambda t, i: "rambling", probabilities=lambda t, r, label: {2: 0.1, 4: 0.6, 5: 0.3})
    judge = LLMJudge(backend, judge_samples=1, force_score=True)
    (s,) = judge.score(["q"], ["a"])
    assert s.score == 4.0 and judge.stats["forced"] == 1


# ----------------------------------------------------------------------------- FLASK rubric


def test_parse_skill_scores_spellings_and_failures():
    text = ("Comprehension is fine.\n"
            "Comprehension: 4\n"
            "**Readability**: 5/5\n"
            "3. completeness - 2 (misses a part)\n"
            "Conciseness: 7\n"           # out of range -> None
            "Correctness: 3\nCorrectness: 4\n")  # conflicting -> None
    got = parse_skill_scores(text, DEFAULT_SKILLS)
    assert got == {"Comprehension": 4.0, "Correctness": None, "Completeness": 2.0, "Readability": 5.0,
                   "Conciseness": None}
    assert parse_skill_scores("Readability: 8/10", ["Readability"]) == {"Readability": None}
    assert parse_skill_scores(None, ["Readability"]) == {"Readability": None}


def test_rubric_aggregates_mean_and_min():
    reply = "Comprehension: 4\nCorrectness: 2\nCompleteness: 3\nReadability: 5\nConciseness: 1"
    mean = RubricJudge(CallableBackend(lambda t, i: reply)).score(["q"], ["a"])[0]
    assert mean.score == pytest.approx(3.0)  # (4 + 2 + 3 + 5 + 1) / 5
    low = RubricJudge(CallableBackend(lambda t, i: reply), aggregate="min").score(["q"], ["a"])[0]
    assert low.score == 1.0


def test_rubric_custom_skills_samples_and_per_skill_means():
    replies = ["Factuality: 5\nHarmlessness: 3", "Factuality: 4\n(harmlessness not rated)"]
    seen = []
    judge = RubricJudge(CallableBackend(lambda t, i: seen.append(t) or replies[i]),
                        skills="factuality, harmlessness", judge_samples=2)
    (s,) = judge.score(["q"], ["a"])
    # sample 1: (5 + 3) / 2 = 4; sample 2: only factuality, 4; the answer: (4 + 4) / 2 = 4
    assert s.samples == [4.0, 4.0] and s.score == 4.0
    assert judge.last_skills == [{"Factuality": 4.5, "Harmlessness": 3.0}]
    assert "Factuality: N\nHarmlessness: N" in seen[0] and "- Harmlessness:" in seen[0]
    assert judge.stats["skills_unparsable"] == 1


def test_rubric_force_fills_missing_skills_by_label():
    asked = []

    def probs(text, reply, label):
        asked.append(label)
        return {3: 1.0} if label == "Readability" else {5: 1.0}

    judge = RubricJudge(CallableBackend(lambda t, i: "Comprehension: 1", probabilities=probs),
                        skills=["Comprehension", "Readability", "Conciseness"], force_score=True)
    (s,) = judge.score(["q"], ["a"])
    assert asked == ["Readability", "Conciseness"]  # only the missing ones
    assert s.score == pytest.approx(3.0)  # (1 + 3 + 5) / 3
    assert judge.stats["forced"] == 2 and "Readability: 3" in s.raw[0]


def test_skill_names_normalised_and_checked():
    assert normalise_skills("logical_robustness, READABILITY,readability") == ("Logical robustness", "Readability")
    with pytest.raises(JudgeError):
        normalise_skills(" , ")
    with pytest.raises(JudgeError):
        normalise_skills("x{y}")


# ----------------------------------------------------------------------------- critique-first pairwise


@pytest.mark.parametrize("text, expected", [
    ("Critique: A follows the limit, B does not.\nFinal verdict: A", "A"),
    ("Winner: A\nOn reflection B misses nothing.\nFinal verdict: B", "B"),  # the last statement wins
    ("So, the final decision is Response 2.", "B"),
    ("The decision is a hard one.\nFinal verdict: tie", "tie"),
    ("Final verdict: [[A]]", "A"),
    ("both answers are fine", None),
    ("The decision is a hard one.", None),
])
def test_parse_final_verdict(text, expected):
    assert parse_final_verdict(text) == expected


def test_split_critique():
    assert split_critique("A keeps to 50 words.\nB does not.\nFinal verdict: A") == \
        ("A keeps to 50 words.\nB does not.", "A")


def test_critique_judge_both_orders():
    def judge_fn(text, i):
        # prefers the answer containing "good", wherever it is shown, after a critique
        a = text.split("<answer_a>")[1].split("</answer_a>")[0]
        return "Critique: one is good.\nWinner: A (at first sight)\nFinal verdict: " + ("A" if "good" in a else "B")

    judge = CritiquePairwiseJudge(CallableBackend(judge_fn))
    assert judge.compare(["q", "q"], ["good", "bad"], ["bad", "good"]) == ["A", "B"]
    seen = []
    always_first = CritiquePairwiseJudge(CallableBackend(lambda t, i: seen.append(t) or "Critique.\nFinal verdict: A"))
    d = always_first.compare_detailed(["q"], ["x"], ["y"])[0]
    assert (d.forward, d.backward, d.verdict) == ("A", "B", "tie") and always_first.stats["inconsistent"] == 1
    assert len(seen) == 2 and all("Before you decide, write a critique" in t for t in seen)
    assert "<answer_a>\nx\n" in seen[0] and "<answer_a>\ny\n" in seen[1]


# ----------------------------------------------------------------------------- debate


def test_debate_rounds_see_others_and_majority_vote():
    calls = []

    def fn(text, i):
        calls.append(text)
        persona = text.split("You are ")[1].split(",")[0]
        if "In the previous round" not in text:  # round 1: User and Expert say A, Critic says B
            return f"{persona} argues.\nWinner: " + ("B" if persona == "Critic" else "A")
        assert f"[{persona}]" not in text  # a persona sees the others, not itself
        return f"{persona} again.\nWinner: " + ("B" if persona == "Critic" else "A")

    judge = DebateJudge(CallableBackend(fn), personas=3, rounds=2, both_orders=False)
    (d,) = judge.compare_detailed(["q"], ["x"], ["y"])
    assert d.verdict == "A" and len(d.raw) == 6 and len(calls) == 6  # 3 personas x 2 rounds
    assert "[Critic]: Critic argues." in calls[3]  # round 2, User's prompt quotes the critic
    assert judge.stats["votes"] == 3 and judge.stats["changed_mind"] == 0


def test_debate_changed_minds_ties_and_order_swap():
    def fn(text, i):  # everyone says A in round 1, the critic is persuaded to B in round 2 -> 2 A vs 1 B
        second = "In the previous round" in text
        critic = text.startswith("You are Critic")
        return "Winner: " + ("B" if (second and critic) else "A")

    judge = DebateJudge(CallableBackend(fn), personas=3, rounds=2)  # both orders
    (d,) = judge.compare_detailed(["q"], ["x"], ["y"])
    # forward: A wins; backward (y shown first): A wins = y -> mapped to "B"; order flips -> tie
    assert (d.forward, d.backward, d.verdict) == ("A", "B", "tie")
    assert judge.stats["changed_mind"] == 2 and judge.stats["inconsistent"] == 1
    even = DebateJudge(CallableBackend(lambda t, i: "Winner: " + ("A" if t.startswith("You are User") else "B")),
                       personas=2, rounds=1, both_orders=False)
    assert even.compare(["q"], ["x"], ["y"]) == ["tie"]  # 1 vs 1
    with pytest.raises(JudgeError):
        DebateJudge(CallableBackend(lambda t, i: ""), personas=9)


# ----------------------------------------------------------------------------- specs


def test_method_specs():
    backend_fn = CallableBackend(lambda t, i: "")
    assert parse_judge_spec("judge:self?method=FLASK&skills=a,b").options == {"method": "flask", "skills": "a,b"}
    with pytest.raises(JudgeError, match="did you mean 'geval'"):
        parse_judge_spec("judge:self?method=gevl")
    with pytest.raises(JudgeError, match="belongs to method=debate"):
        parse_judge_spec("judge:self?method=flask&rounds=2")
    with pytest.raises(JudgeError, match="aggregate"):
        parse_judge_spec("judge:self?method=flask&aggregate=max")
    assert isinstance(load_judge("judge:self?method=geval"), GEvalJudge)
    flask = load_judge("judge:self?method=flask&skills=readability,conciseness&aggregate=min&samples=2")
    assert isinstance(flask, RubricJudge) and flask.skills == ("Readability", "Conciseness")
    assert flask.aggregate == "min" and flask.judge_samples == 2
    with pytest.raises(JudgeError, match="pairwise"):
        load_judge("judge:self?method=debate")
    assert isinstance(load_pairwise_judge("judge:self?method=critique"), CritiquePairwiseJudge)
    debate = load_pairwise_judge("judge:self?method=debate&personas=4&rounds=3")
    assert isinstance(debate, DebateJudge) and len(debate.personas) == 4 and debate.rounds == 3
    assert isinstance(load_pairwise_judge("judge:self?method=geval"), ScorePairwiseJudge)
    assert isinstance(reward_from_spec("judge:self?method=geval").judge, GEvalJudge)
    assert backend_fn.score_probabilities(["x"], [""], 1, 5) == [None]


# ----------------------------------------------------------------------------- local probability hook


def test_local_score_probabilities_tiny_random():
    from alignkit.models import load_trained

    model, tok = load_trained("tiny-random")
    judge = load_judge("judge:self?method=geval", policy=model, tokenizer=tok)
    probs = judge.backend.score_probabilities(["Rate this.", "Rate that, please."], ["", "It is fine."], 1, 5)
    assert len(probs) == 2
    for p in probs:
        assert sorted(p) == [1, 2, 3, 4, 5] and math.isclose(sum(p.values()), 1.0, rel_tol=1e-9)
        assert all(0.0 <= v <= 1.0 for v in p.values())
    out = judge.score(["What is 2+2?"], ["4"])
    assert 1.0 <= out[0].score <= 5.0 and judge.stats["weighted"] == 1
    # force_scores is the argmax of the same distribution
    forced = judge.backend.force_scores(["Rate that, please."], ["It is fine."], 1, 5)
    assert forced == [max(probs[1], key=probs[1].get)]


def test_forced_verdicts_fill_missing_ones_only():
    labels = []

    def probs(text, reply, label):
        labels.append(label)
        return {"A": 0.2, "B": 0.7}

    replies = {0: "I cannot decide.", 1: "Final verdict: A"}
    backend = CallableBackend(lambda t, i: replies[0] if "<answer_a>\nx\n" in t else replies[1], probabilities=probs)
    judge = CritiquePairwiseJudge(backend, force_verdict=True)
    (d,) = judge.compare_detailed(["q"], ["x"], ["y"])
    # forward (x first): forced "B" (= y); backward (y first): parsed "A" (= y) -> "B": both say y
    assert (d.forward, d.backward, d.verdict) == ("B", "B", "B")
    assert labels == ["Final verdict"] and judge.stats["forced"] == 1 and judge.stats["unparsable"] == 1
    assert d.raw[0].endswith("[score forced] Final verdict: B")
    off = CritiquePairwiseJudge(backend)
    assert off.compare(["q"], ["x"], ["y"]) == ["tie"]  # without forcing the first order has no verdict
    seen = []
    debate = DebateJudge(CallableBackend(lambda t, i: seen.append(t) or "no verdict",
                                         probabilities=lambda t, r, lab: {"A": 1.0}),
                         personas=3, rounds=2, both_orders=False, force_verdict=True)
    (v,) = debate.compare_detailed(["q"], ["x"], ["y"])
    assert v.verdict == "A" and debate.stats["forced"] == 6  # 3 personas x 2 rounds
    assert "[Critic]: no verdict\n[score forced] Winner: A" in seen[3]  # round 2 quotes the forced vote
    assert isinstance(load_pairwise_judge("judge:self?method=debate&force_verdict=1"), DebateJudge)
    assert load_pairwise_judge("judge:self?force_verdict=1").force_verdict is True
