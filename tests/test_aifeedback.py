"""``alignkit data`` builders (backtranslate, critique-revise, rlaif, eft) with stub generation/judges,
the prompt-synthesis filters, and the command line's help and errors."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
import torch

from alignkit.aifeedback import judging
from alignkit.aifeedback.critique import clean_revision
from alignkit.aifeedback.instructions import PromptFilter, clean_generated_prompt, synthesize_prompts
from alignkit.cli import main
from alignkit.data import load_examples
from alignkit.generation import texts as generation
from tests.helpers import write_jsonl


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _last_user(p):
    return p if isinstance(p, str) else [m for m in p if m["role"] == "user"][-1]["content"]


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


# ----------------------------------------------------------------------------- prompt synthesis


def test_clean_and_filter_generated_prompts():
    assert clean_generated_prompt('New request: "How do tides work?"') == "How do tides work?"
    assert clean_generated_prompt("5. Name three rivers in Asia.\n6. Another one") == "Name three rivers in Asia."
    assert clean_generated_prompt("**Request:** Describe a cat.") == "Describe a cat."
    flt = PromptFilter(["What is the capital of France?"], min_words=3, max_words=12)
    offered = ["", "Hi", " ".join(["long"] * 13), "what is the capital of France",
               "Describe a rainy day in the city.", "Describe a rainy day in the city!",
               "Describe a rainy day in the city, please.", "How do magnets work?",
               "What is the capital of France?\nParis is the capital."]
    kept = [flt.offer(x) for x in offered + [None]]
    assert kept == [False, False, False, False, True, False, False, True, False, False]
    assert dict(flt.dropped) == {"truncated": 1, "empty": 1, "too_short": 1, "too_long": 1, "seed_copy": 2, "duplicate": 1,
                                 "near_duplicate": 1}


def test_synthesize_prompts_rounds_and_few_shot():
    seen = []

    def gen(requests, seed):
        seen.append((len(requests), seed))
        assert all(r.count("\n1. ") == 1 and "\n3. " not in r for r in requests)  # few_shot=2 examples each
        return ["Same question here?"] * (len(requests) - 1) + [f"A different question number {seed}?"]

    syn = synthesize_prompts(gen, ["seed one two", "seed three four", "seed five six"], 3, few_shot=2, seed=7,
                             max_rounds=3)
    # round 1 asks for 2 x 3 and keeps 2 (the rest are duplicates); round 2 asks for max(4, 2 x 1)
    assert seen == [(6, 700), (4, 701)]
    assert syn.prompts == ["Same question here?", "A different question number 700?",
                           "A different question number 701?"]
    assert syn.as_dict()["dropped"]["duplicate"] > 0


# ----------------------------------------------------------------------------- builders


def test_backtranslate_keeps_well_rated_pairs(tmp_path, monkeypatch):
    def fake(model, tok, prompts, *, max_new_tokens, temperature=0.0, top_p=1.0, seed=None, batch_size=8,
             chat_template="auto"):
        out = []
        for p in prompts:
            text = _last_user(p)
            if text.startswith("The text below"):
                body = text.split("<text>\n", 1)[1].split("\n</text>")[0]
                out.append("" if "EMPTY" in body else f"Instruction: Tell me about {body.split()[0]}.")
            else:
                body = text.split("<response>\n", 1)[1]
                score = "5" if "great" in body else ("2" if "poor" in body else "?")
                out.append(f"Reason given.\nScore: {score}")
        return out

    monkeypatch.setattr(generation, "generate_texts", fake)
    texts = tmp_path / "texts.txt"
    texts.write_text("Bees are great pollinators.\n\nRivers are poor at flying.\n\nClouds hold water.\n\n"
                     "EMPTY text here\n\nStars are great and bright.\n")
    out = tmp_path / "bt.jsonl"
    rc = main(["data", "backtranslate", "--model", "tiny-random", "--input", str(texts), "--output", str(out),
               "--threshold", "4"])
    assert rc == 0
    loaded = load_examples(out, "prompt_completion")
    assert [r["prompt"][0]["content"] for r in loaded.rows] == ["Tell me about Bees.", "Tell me about Stars."]
    assert loaded.rows[0]["completion"][0]["content"] == "Bees are great pollinators."
    assert all(r["score"] == 5 for r in loaded.rows)

    # the same from a JSONL file with --field, as plain strings
    src = write_jsonl(tmp_path / "t.jsonl", [{"body": "Owls are great hunters."}])
    out2 = tmp_path / "bt2.jsonl"
    assert main(["data", "backtranslate", "--model", "tiny-random", "--input", str(src), "--field", "body",
                 "--output", str(out2), "--chat-template", "never"]) == 0
    assert _rows(out2) == [{"prompt": "Tell me about Owls.", "completion": "Owls are great hunters.", "score": 5.0}]


def test_critique_revise_writes_preference_rows(tmp_path, monkeypatch):
    calls = []

    def fake(model, tok, prompts, *, max_new_tokens, temperature=0.0, top_p=1.0, seed=None, batch_size=8,
             chat_template="auto"):
        calls.append(prompts)
        out = []
        for p in prompts:
            if isinstance(p, str):
                out.append(f"Draft answer to {p}")
            elif "principle" in p[-1]["content"]:
                assert "Be kind." in p[-1]["content"] or "Be brief." in p[-1]["content"]
                out.append("The draft is vague.")
            else:
                original = p[1]["content"]
                out.append(original if "same" in original else f"Here is the improved answer: Better {original}")
        return out

    monkeypatch.setattr(generation, "generate_texts", fake)
    prompts = tmp_path / "p.txt"
    prompts.write_text("Explain rain\nsame thing\nDescribe snow\n")
    principles = tmp_path / "pr.txt"
    principles.write_text("# my principles\nBe kind.\n\nBe brief.\n")
    out = tmp_path / "cr.jsonl"
    assert main(["data", "critique-revise", "--model", "tiny-random", "--prompts", str(prompts),
                 "--principles", str(principles), "--output", str(out)]) == 0
    loaded = load_examples(out, "preference")
    assert len(loaded) == 2  # "same thing" was not changed by its revision
    row = loaded.rows[0]
    assert row["rejected"][0]["content"] == "Draft answer to Explain rain"
    assert row["chosen"][0]["content"] == "Better Draft answer to Explain rain"
    assert row["critique"] == "The draft is vague." and row["principle"] in ("Be kind.", "Be brief.")
    assert len(calls) == 3  # answer, critique, revision: one batched call each
    assert clean_revision("Revised answer: fine.") == "fine."


@dataclass
class Score:
    score: float | None
    samples: list
    raw: list


class CharJudge:
    name = "chars"

    def score(self, prompts, completions):
        return [Score(float(len(c)), [float(len(c))], ["x"]) for c in completions]


class LongerWins:
    name = "longer"

    def compare(self, prompts, a, b):
        return ["A" if len(x) > len(y) else "B" if len(y) > len(x) else "tie" for x, y in zip(a, b)]


def test_rlaif_pointwise_with_real_generation(tmp_path, monkeypatch):
    made = []

    def load(spec, **kw):
        made.append((spec, kw))
        return CharJudge()

    monkeypatch.setattr(judging, "load_pointwise", load)
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "Say something."}, {"prompt": "Name a colour."}])
    out = tmp_path / "rl.jsonl"
    assert main(["data", "rlaif", "--model", "tiny-random", "--judge", "judge:some/judge-model", "--prompts",
                 str(prompts), "--output", str(out), "--candidates", "3", "--max-new-tokens", "8",
                 "--temperature", "1.0", "--top-p", "1.0", "--judge-samples", "2"]) == 0
    loaded = load_examples(out, "preference")
    assert len(loaded) == 2
    for r in loaded.rows:
        assert r["chosen_score"] > r["rejected_score"]
        assert len(r["chosen"][0]["content"]) > len(r["rejected"][0]["content"])
    assert made[0][0] == "judge:some/judge-model" and made[0][1]["judge_samples"] == 2


def test_rlaif_pairwise_round_robin(tmp_path, monkeypatch):
    def fake(model, tok, prompts, *, max_new_tokens, temperature=0.0, top_p=1.0, seed=None, batch_size=8,
             chat_template="auto"):
        # per prompt: 3 candidates "a", "bbb", "cc"; the prompt "same" gets equal-length answers (a tie)
        return [("x" if "same" in _last_user(p) else ["a", "bbb", "cc"][i % 3]) for i, p in enumerate(prompts)]

    monkeypatch.setattr(generation, "generate_texts", fake)
    monkeypatch.setattr(judging, "load_pairwise", lambda spec, **kw: LongerWins())
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "Q one"}, {"prompt": "same"}])
    out = tmp_path / "pw.jsonl"
    assert main(["data", "rlaif", "--model", "tiny-random", "--judge", "self", "--pairwise", "--prompts",
                 str(prompts), "--output", str(out), "--candidates", "3"]) == 0
    rows = _rows(out)
    assert len(rows) == 1
    assert rows[0]["chosen"][0]["content"] == "bbb" and rows[0]["rejected"][0]["content"] == "a"
    assert (rows[0]["chosen_score"], rows[0]["rejected_score"]) == (2.0, 0.0)


def test_eft_builder(tmp_path):
    src = write_jsonl(tmp_path / "r.jsonl", [{"prompt": "2+2?", "completion": "4", "score": 5},
                                             {"prompt": "2+2?", "completion": "fish", "score": 0}])
    out = tmp_path / "eft.jsonl"
    assert main(["data", "eft", "--input", str(src), "--output", str(out)]) == 0
    loaded = load_examples(out, "prompt_completion")
    assert loaded.rows[0]["completion"][0]["content"].endswith("Score: 5")
    assert loaded.rows[1]["completion"][0]["content"].startswith("It is not relevant")
    assert "<answer>\nfish\n</answer>" in loaded.rows[1]["prompt"][0]["content"]


# ----------------------------------------------------------------------------- command line


def test_data_cli_help_and_errors(tmp_path, capsys):
    assert main(["data", "--help"]) == 0
    text = capsys.readouterr().out
    assert all(b in text for b in ("backtranslate", "critique-revise", "rlaif", "eft"))
    for builder in ("backtranslate", "critique-revise", "rlaif", "eft"):
        assert main(["data", builder, "--help"]) == 0
        assert "--output" in capsys.readouterr().out
    assert main(["--help"]) == 0 and "data" in capsys.readouterr().out

    assert main(["data"]) == 2
    assert main(["data", "backtranslat"]) == 2
    assert "invalid choice" in capsys.readouterr().err
    p = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "hi"}])
    cases = [
        (["backtranslate", "--input", str(tmp_path / "nope.txt"), "--output", str(tmp_path / "o.jsonl")], "not found"),
        (["backtranslate", "--input", str(p), "--output", str(tmp_path / "o.jsonl"), "--threshold", "7"],
         "between 1 and 5"),
        (["backtranslate", "--input", str(p), "--output", str(tmp_path / "o.jsonl")], "no text field"),
        (["critique-revise", "--prompts", str(p), "--output", str(tmp_path / "o.json")], ".jsonl"),
        (["critique-revise", "--prompts", str(p), "--output", str(tmp_path / "o.jsonl"), "--principles",
          str(tmp_path / "none.txt")], "principles file not found"),
        (["rlaif", "--prompts", str(p), "--output", str(tmp_path / "o.jsonl"), "--judge", "judge:"], "judge"),
        (["rlaif", "--prompts", str(p), "--output", str(tmp_path / "o.jsonl"), "--judge", "self",
          "--candidates", "1"], "at least 2"),
        (["rlaif", "--prompts", str(tmp_path / "missing.jsonl"), "--output", str(tmp_path / "o.jsonl"),
          "--judge", "self"], "not found"),
        (["eft", "--input", str(p), "--output", str(tmp_path / "o.jsonl")], "field 'completion'"),
        (["critique-revise", "--prompts", str(p), "--output", str(tmp_path / "o.jsonl"), "--model",
          str(tmp_path / "no-model")], "error"),
    ]
    for args, message in cases:
        assert main(["data", *args]) == 2, args
        err = capsys.readouterr().err
        assert message in err, (args, err)
        assert "Traceback" not in err
    assert not (tmp_path / "o.jsonl").exists()
