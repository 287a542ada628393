"""Judges: score/verdict parsing on malformed outputs, sample averaging, the pairwise position swap, the
local (judge:self, another model), HTTP (a stub OpenAI-compatible server on 127.0.0.1), reward-model and
function judges, and reward=judge:... through alignkit.rewards."""

from __future__ import annotations

import socket
import time

import pytest

from alignkit.judges import (
    API_KEY_ENV,
    POINTWISE_TEMPLATE,
    CallableBackend,
    HTTPBackend,
    JudgeError,
    JudgeScore,
    LLMJudge,
    PairwiseJudge,
    PairwiseLLMJudge,
    PointwiseJudge,
    RewardModelJudge,
    ScorePairwiseJudge,
    is_forced,
    judge_reward,
    parse_score,
    parse_verdict,
    pointwise_prompt,
)
from alignkit.scoring import (
    bind_policy,
    load_judge,
    load_pairwise_judge,
    load_reward_functions,
    parse_judge_spec,
)
from tests.helpers import StubJudgeServer


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny-model work runs faster on one thread on a busy machine; restored afterwards."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ----------------------------------------------------------------------------- parsing


@pytest.mark.parametrize("text, expected", [
    ("The answer is relevant and complete.\nScore: 4", 4.0),
    ("score:4", 4.0),
    ("SCORE = 4", 4.0),
    ("Score : 4", 4.0),
    ("**Score:** 4", 4.0),
    ("### Final score: 2", 2.0),
    ("Total score is 5", 5.0),
    ("Score: 4/5", 4.0),
    ("Score: 3 out of 5", 3.0),
    ("Score (0-5): 1", 1.0),
    ("Score: 4.", 4.0),
    ("Score: 4 - clear, but not expert", 4.0),   # trailing text on the score line
    ("Score: 4\n\nLet me know if you need more.", 4.0),  # trailing text after the score line
    ("Score: four", 4.0),
    ("Score: 0", 0.0),
    ("Score: 3.5", 3.5),                          # a fractional score in range is kept
    ("It meets items 1-3, so I'd put the score: 3 here.", 3.0),  # inline, no score line
    ("Score: N\nScore: 2", 2.0),                  # an echoed placeholder is no score
    ("Score: 3\nScore: 3", 3.0),                  # repeated, consistent
    ("Score: 3\nOn reflection...\nScore: 4", None),  # two conflicting final scores
    ("Score: 7", None),                           # out of range
    ("Score: -1", None),
    ("Score: 45", None),
    ("Score: 8/10", None),                        # another scale
    ("Score: fourteen", None),
    ("Scores: 4", None),
    ("This answer is good. 4", None),             # no score label
    ("I give it 4 points.", None),
    ("", None),
    ("   \n ", None),
    (None, None),
    (4, None),
])
def test_parse_score_table(text, expected):
    assert parse_score(text) == expected


def test_parse_score_range_arguments():
    assert parse_score("Score: 7", low=1, high=10) == 7.0
    assert parse_score("Score: 0", low=1, high=10) is None
    assert parse_score("Score: 7/10", low=1, high=10) == 7.0


@pytest.mark.parametrize("text, expected", [
    ("A is more complete.\nWinner: A", "A"),
    ("winner: b", "B"),
    ("**Winner:** [[A]]", "A"),
    ("Verdict: Answer B", "B"),
    ("Winner: tie", "tie"),
    ("Better: neither", "tie"),
    ("Winner: A\nWinner: B", None),
    ("Both are fine.", None),
    ("", None),
    (None, None),
])
def test_parse_verdict_table(text, expected):
    assert parse_verdict(text) == expected


# ----------------------------------------------------------------------------- pointwise LLM judge


def test_llm_judge_averages_parsable_samples_and_counts_failures():
    replies = {0: "Relevant, covers the question.\nScore: 4", 1: "Score: 2", 2: "I cannot decide."}
    judge = LLMJudge(CallableBackend(lambda text, i: replies[i]), judge_samples=3)
    assert isinstance(judge, PointwiseJudge)
    scores = judge.score(["What is 2+2?", [{"role": "user", "content": "Hi"}]],
                         ["4", [{"role": "assistant", "content": "Hello!"}]])
    assert [s.score for s in scores] == [3.0, 3.0]
    assert scores[0].samples == [4.0, 2.0, None]
    assert scores[0].raw == [replies[0], replies[1], replies[2]]
    assert judge.stats == {"samples": 6, "unparsable": 2, "forced": 0}

    never = LLMJudge(CallableBackend(lambda text, i: "no idea"), judge_samples=2)
    (s,) = never.score(["q"], ["a"])
    assert s == JudgeScore(score=None, samples=[None, None], raw=["no idea", "no idea"])
    reward = judge_reward(never, unparsable=-1.0)
    assert reward(["q", "q"], ["a", "b"]) == [-1.0, -1.0] and reward.name == never.name
    assert reward.stats == {"completions": 2, "unparsable": 2}
    assert judge.score([], []) == []
    with pytest.raises(ValueError, match="equally long"):
        judge.score(["q"], [])


def test_judge_prompt_holds_rubric_request_and_answer():
    text = pointwise_prompt([{"role": "user", "content": "Name a fruit."}], [{"role": "assistant", "content": "Pear"}])
    assert "Name a fruit." in text and "Pear" in text and "Score: N" in text
    assert text.count("\n1. ") == 1 and "\n5. " in text  # five additive criteria
    seen = []
    judge = LLMJudge(CallableBackend(lambda t, i: seen.append(t) or "Score: 1"), judge_samples=1)
    judge.score(["Q?"], ["A!"])
    assert seen == [POINTWISE_TEMPLATE.format(request="Q?", answer="A!")]
    with pytest.raises(JudgeError, match="must contain"):
        LLMJudge(CallableBackend(lambda t, i: ""), template="no placeholders")


# ----------------------------------------------------------------------------- pairwise


def _shown(text: str, tag: str) -> str:
    return text.split(f"<{tag}>\n")[1].split(f"\n</{tag}>")[0]


def test_pairwise_position_swap():
    always_a = PairwiseLLMJudge(CallableBackend(lambda t, i: "Winner: A"))
    assert isinstance(always_a, PairwiseJudge)
    assert always_a.compare(["q", "q"], ["short", "a much longer answer"], ["a much longer answer", "short"]) \
        == ["tie", "tie"]
    assert always_a.stats["inconsistent"] == 2

    def longer_wins(text, i):
        a, b = _shown(text, "answer_a"), _shown(text, "answer_b")
        return "Comparing.\nWinner: " + ("A" if len(a) > len(b) else "B" if len(b) > len(a) else "tie")

    judge = PairwiseLLMJudge(CallableBackend(longer_wins), judge_samples=2)
    assert judge.compare(["q"] * 3, ["a long answer", "x", "same"], ["y", "a long answer", "same"]) \
        == ["A", "B", "tie"]
    detail = judge.compare_detailed(["q"], ["a long answer"], ["y"])[0]
    assert (detail.forward, detail.backward, len(detail.raw)) == ("A", "A", 4)

    unparsable = PairwiseLLMJudge(CallableBackend(lambda t, i: "hmm"))
    assert unparsable.compare(["q"], ["a"], ["b"]) == ["tie"]

    by_score = ScorePairwiseJudge(load_judge(lambda prompts, completions, **kw: [float(len(c)) for c in completions]))
    assert by_score.compare(["q"] * 3, ["aa", "a", "b"], ["a", "aa", "c"]) == ["A", "B", "tie"]
    assert isinstance(load_pairwise_judge("format.py:word_limit"), ScorePairwiseJudge)


# ----------------------------------------------------------------------------- specs, rm and function judges


def test_specs_and_rule_judges(tmp_path):
    assert parse_judge_spec("judge:self").kind == "self"
    spec = parse_judge_spec("judge:http://127.0.0.1:8000/v1?model=m&samples=5&temperature=0.2")
    assert (spec.kind, spec.target, spec.options) == ("http", "http://127.0.0.1:8000/v1",
                                                      {"model": "m", "samples": 5, "temperature": 0.2})
    assert parse_judge_spec("judge:tiny-random").kind == "local"
    assert parse_judge_spec("rm:/some/dir").kind == "rm"
    assert parse_judge_spec("format.py:word_limit").kind == "function"
    with pytest.raises(JudgeError, match="did you mean 'samples'"):
        parse_judge_spec("judge:self?sample=3")
    with pytest.raises(JudgeError, match="only http"):
        parse_judge_spec("judge:ftp://host/v1")
    with pytest.raises(JudgeError, match="judge:self"):
        parse_judge_spec("judge:")

    fn = load_judge("format.py:one_sentence")
    scores = fn.score(["q", "q"], ["One sentence.", "Two. Sentences here."])
    assert all(s.samples == [s.score] and s.raw == [""] for s in scores)

    class Scorer:
        def score(self, prompts, texts):
            return [float(len(t)) for t in texts]

    rm = RewardModelJudge("my-rm", scorer=Scorer())
    assert [s.score for s in rm.score(["q", "q"], ["ab", [{"role": "assistant", "content": "abcd"}]])] == [2.0, 4.0]
    with pytest.raises(JudgeError, match="no such reward model"):
        load_judge(f"rm:{tmp_path / 'missing'}")
    with pytest.raises(JudgeError):
        load_judge(f"judge:{tmp_path / 'no-model-here'}")


# ----------------------------------------------------------------------------- local models


def test_self_judge_binds_the_policy_and_is_seeded():
    from alignkit.models import build_tiny_random, load_tokenizer

    tok = load_tokenizer("tiny-random")
    model = build_tiny_random()
    rewards = load_reward_functions("judge:self?samples=2&max_new_tokens=4")
    with pytest.raises(JudgeError, match="judge:self"):
        rewards(["q"], ["a"])
    assert bind_policy(rewards, model, tok) == 1
    total, _ = rewards(["What is 2+2?"], ["4"])
    assert total.tolist() == [0.0]  # a random model never writes a valid score: unparsable -> 0
    source = rewards.sources[0]
    first = source.last[0]
    assert len(first.raw) == 2 and first.score is None and source.stats == {"completions": 1, "unparsable": 1}
    again = source.judge.score(["What is 2+2?"], ["4"])[0]
    assert again.raw == first.raw  # seeded from the judged texts: the same inputs are judged the same way
    assert model.training is False  # generation restored the mode it found

    forced = load_judge("judge:self?force_score=1", policy=model, tokenizer=tok, judge_samples=1, max_new_tokens=2)
    (s,) = forced.score(["What is 2+2?"], ["4"])
    assert s.score in {0.0, 1.0, 2.0, 3.0, 4.0, 5.0} and is_forced(s.raw[0]) and parse_score(s.raw[0]) == s.score
    assert forced.stats == {"samples": 1, "unparsable": 1, "forced": 1}


# ----------------------------------------------------------------------------- HTTP


def length_score(text: str, data: dict) -> str:
    """The stub server's judge: longer answers score higher (0-5), as a 'Score: N' line."""
    answer = text.split("<answer>\n")[1].split("\n</answer>")[0] if "<answer>" in text else ""
    return f"The answer has {len(answer)} characters.\nScore: {min(5, len(answer) // 4)}"


def test_http_judge_against_stub_server(monkeypatch):
    monkeypatch.setenv(API_KEY_ENV, "sk-test-123")
    with StubJudgeServer(length_score) as server:
        judge = load_judge(f"judge:{server.url}", judge_samples=2, temperature=0.3, max_new_tokens=50, timeout=5)
        scores = judge.score(["q1", "q2"], ["abcdefgh", "abc"])
        assert [s.score for s in scores] == [2.0, 0.0]
        assert len(server.requests) == 4
        body = server.requests[0]
        assert body["model"] == "stub-judge"  # first listed model
        assert (body["temperature"], body["max_tokens"]) == (0.3, 50)
        assert "seed" in body and body["messages"][0]["role"] == "user"
        assert set(server.auth) == {"Bearer sk-test-123"}

        # same inputs -> same seeds (resumable runs); reward=judge:URL?... goes through alignkit.rewards
        rewards = load_reward_functions(f"judge:{server.url}?model=named&samples=1")
        total, _ = rewards(["q"], ["abcdefghijkl"])
        assert total.tolist() == [3.0] and server.requests[-1]["model"] == "named"
        pair = load_pairwise_judge(f"judge:{server.url}?model=named")
        assert pair.compare(["q"], ["a"], ["b"]) == ["tie"]  # the stub never writes a Winner line

    monkeypatch.delenv(API_KEY_ENV)
    with StubJudgeServer(lambda t, d: "Score: 5", fail_first=1) as server:
        backend = HTTPBackend(server.url, model="m", retries=1, timeout=5)
        assert backend.complete(["x"], 1, seed=0) == [["Score: 5"]]
        assert server.auth[-1] is None  # no key in the environment: no header


def test_http_judge_errors():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    judge = load_judge(f"judge:http://127.0.0.1:{port}/v1?model=m", judge_samples=1)
    with pytest.raises(JudgeError, match="connection refused"):
        judge.score(["q"], ["a"])
    with StubJudgeServer(lambda t, d: "Score: 1", delay=0.6) as server:
        slow = HTTPBackend(server.url, model="m", timeout=0.2, retries=0)
        t0 = time.monotonic()
        with pytest.raises(JudgeError, match="no answer within"):
            slow.complete(["x"], 1, seed=0)
        assert time.monotonic() - t0 < 5
    with StubJudgeServer(lambda t, d: "Score: 1", fail_first=5) as server:
        with pytest.raises(JudgeError, match="HTTP 503"):
            HTTPBackend(server.url, model="m", retries=1, timeout=5).complete(["x"], 1, seed=0)
    with StubJudgeServer(lambda t, d: "Score: 1", models=()) as server:
        with pytest.raises(JudgeError, match="judge_model"):
            HTTPBackend(server.url).complete(["x"], 1, seed=0)
    with pytest.raises(JudgeError, match="http"):
        HTTPBackend("localhost:8000")
