"""``alignkit self-reward`` on tiny-random with deterministic generation and stub judges: one full iteration
(with the SFT+EFT stage) writing every file, resume after a crash mid-iteration, ties/unparsable dropped,
an iteration without pairs stopping cleanly, and the command line."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest
import torch

from alignkit.aifeedback.pairs import forced_rate, histogram, parse_rate, select_pair
from alignkit.cli import main
from alignkit.data import load_examples
from alignkit.generation import texts as generation
from alignkit.methods import reference
from alignkit.pipelines.self_reward import loop as sr
from tests.helpers import write_jsonl

SEEDS = ["What is the capital of France?", "Write a haiku about the sea.", "Explain why the sky is blue.",
         "Give me three tips for learning to cook."]
TOPICS = ["volcanoes form", "bees make honey", "tides change", "bread rises", "magnets attract iron",
          "rainbows appear", "glaciers move", "plants drink water", "clocks keep time", "bridges stay up"]


@pytest.fixture(autouse=True)
def fast(tmp_path, monkeypatch):
    """One thread, reference log-probs cached in the test's directory, no report.html."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    monkeypatch.setattr(reference, "ref_cache_dir", lambda: tmp_path / "refcache")
    monkeypatch.setattr("alignkit.cli.write_run_report", lambda out: None)
    yield
    torch.set_num_threads(n)


@dataclass
class FakeGen:
    """Deterministic stand-in for model generation: distinct new requests for prompt-synthesis calls,
    answers of varying length (by position and seed) otherwise. Records every call."""

    calls: list = field(default_factory=list)

    def __call__(self, model, tokenizer, prompts, *, max_new_tokens, temperature=0.0, top_p=1.0, seed=None,
                 batch_size=8, chat_template="auto"):
        kind = "synth" if isinstance(prompts[0], str) and "Write one new request" in prompts[0] else "answer"
        self.calls.append((kind, len(prompts), seed))
        s = seed or 0
        if kind == "synth":
            return [f"Please explain in a few sentences how {TOPICS[(s + i) % len(TOPICS)]} (case {s % 97}-{i})."
                    for i in range(len(prompts))]
        return [" ".join(["word"] * (1 + (s + i) % 4)) + f" [{i}]" for i in range(len(prompts))]

    def count(self, kind):
        return sum(1 for k, _, _ in self.calls if k == kind)


@dataclass
class Score:
    score: float | None
    samples: list
    raw: list


class LengthJudge:
    """Scores an answer by its word count (capped at 5); the last of the samples is always unparsable,
    so the parse rate is (n-1)/n. Prompts containing TIE score everything 3, NOPARSE nothing."""

    name = "length"

    def __init__(self, n=3):
        self.n = n
        self.calls = 0

    def score(self, prompts, completions):
        self.calls += 1
        out = []
        for p, c in zip(prompts, completions):
            text = p if isinstance(p, str) else p[-1]["content"]
            if "NOPARSE" in text:
                out.append(Score(None, [None] * self.n, ["no score here"] * self.n))
                continue
            v = 3.0 if "TIE" in text else float(min(5, len(c.split())))
            samples = [v] * (self.n - 1) + [None]
            out.append(Score(v, samples, [f"ok\nScore: {v:g}"] * (self.n - 1) + ["garbled"]))
        return out


def factory_of(judge):
    calls = []

    def factory(spec, **kwargs):
        calls.append((spec, kwargs))
        return judge

    factory.calls = calls
    return factory


def _config(tmp_path, out, **kw):
    seeds = write_jsonl(tmp_path / "seeds.jsonl", [{"prompt": s} for s in SEEDS])
    keys = dict(model="tiny-random", data=str(seeds), output_dir=str(out), max_steps=1, batch_size=2,
                max_length=64, lr=1e-3, candidates=3, judge_samples=3, new_prompts=3, few_shot=2,
                max_new_tokens=8, prompt_max_new_tokens=64, iterations=1)
    keys.update(kw)
    return sr.SelfRewardConfig(**keys)


def test_one_iteration_with_sft_and_eft_writes_every_file(tmp_path, monkeypatch):
    gen = FakeGen()
    monkeypatch.setattr(generation, "generate_texts", gen)
    sft = write_jsonl(tmp_path / "sft.jsonl", [{"prompt": q, "completion": "A short answer."} for q in SEEDS])
    eft = write_jsonl(tmp_path / "eft.jsonl", [
        {"prompt": SEEDS[0], "completion": "Paris.", "score": 4},
        {"prompt": SEEDS[1], "completion": "The sea.", "score": 1, "justification": "Not a haiku."},
    ])
    out = tmp_path / "run"
    judge = LengthJudge()
    factory = factory_of(judge)
    cfg = _config(tmp_path, out, sft_data=str(sft), eft_data=str(eft), sft_max_steps=1, max_length=400)
    result = sr.run_self_reward(cfg, judge_factory=factory)

    assert result.iterations == 1 and not result.interrupted
    # SFT + EFT stage: seed instructions plus judge-format examples ending in "Score: N"
    sft_rows = [json.loads(line) for line in (out / "sft-data.jsonl").read_text().splitlines()]
    assert len(sft_rows) == 6
    eft_rows = sft_rows[4:]
    assert eft_rows[0]["completion"][0]["content"].endswith("Score: 4")
    assert eft_rows[1]["completion"][0]["content"] == "Not a haiku.\nScore: 1"
    assert "Checklist" in eft_rows[0]["prompt"][0]["content"]  # the judges' own pointwise prompt
    assert (out / "sft" / "final" / "config.json").is_file()

    it = out / "iter-1"
    for name in ("prompts.jsonl", "candidates.jsonl", "scores.jsonl", "pairs.jsonl", "summary.json"):
        assert (it / name).is_file(), name
    assert (it / "model" / "final" / "config.json").is_file()
    assert (it / "model" / "metrics.jsonl").read_text().strip()

    prompts = load_examples(it / "prompts.jsonl", "prompt")
    assert len(prompts) == 3 and all("Please explain" in r["prompt"] for r in prompts.rows)
    cands = [json.loads(line) for line in (it / "candidates.jsonl").read_text().splitlines()]
    assert [len(r["candidates"]) for r in cands] == [3, 3, 3]
    scores = [json.loads(line) for line in (it / "scores.jsonl").read_text().splitlines()]
    assert all(len(r["scores"]) == 3 and len(r["samples"][0]) == 3 for r in scores)
    pairs = load_examples(it / "pairs.jsonl", "preference")
    assert len(pairs) == 3
    for row in pairs.rows:
        assert row["prompt"][0]["role"] == "user" and row["chosen"][0]["role"] == "assistant"
        assert row["chosen_score"] > row["rejected_score"]
        assert len(row["chosen"][0]["content"].split()) > len(row["rejected"][0]["content"].split())

    summary = json.loads((it / "summary.json").read_text())
    assert summary["pairs"] == {"kept": 3, "dropped": {"unparsable": 0, "tie": 0, "identical": 0}}
    assert summary["judge_parse_rate"] == pytest.approx(2 / 3)
    assert sum(summary["score_histogram"].values()) == 9
    assert summary["mean_chosen_score"] > summary["mean_rejected_score"]
    assert summary["prompts"]["kept"] == 3 and summary["model"] == "iter-1/model/final"
    assert "loss" in summary["dpo"]
    # the judge was the model itself, built with the loop's judge settings
    spec, kwargs = factory.calls[0]
    assert spec == "self" and kwargs["policy"] is not None and kwargs["judge_samples"] == 3
    assert kwargs["force_score"] is False
    # the DPO run started from the SFT model
    assert f"model: {out / 'sft' / 'final'}" in (it / "model" / "config.yaml").read_text()
    assert (out / "final").resolve() == (it / "model" / "final").resolve()
    assert json.loads((out / "metrics.jsonl").read_text().splitlines()[0])["pairs"] == 3


def test_resume_after_crash_mid_iteration(tmp_path, monkeypatch):
    gen = FakeGen()
    monkeypatch.setattr(generation, "generate_texts", gen)

    ref_out = tmp_path / "ref"
    sr.run_self_reward(_config(tmp_path, ref_out, iterations=2, lora={"r": 4}),
                       judge_factory=factory_of(LengthJudge()))

    # the same run, crashing in iteration 2 right after its candidates are written (in the judge)
    out = tmp_path / "run"

    def crashing(spec, **kwargs):
        if (out / "iter-1" / "summary.json").is_file():
            raise RuntimeError("simulated crash")
        return LengthJudge()

    with pytest.raises(RuntimeError, match="simulated crash"):
        sr.run_self_reward(_config(tmp_path, out, iterations=2, lora={"r": 4}), judge_factory=crashing)
    assert (out / "iter-2" / "candidates.jsonl").is_file()
    assert not (out / "iter-2" / "scores.jsonl").exists() and not (out / "iter-2" / "summary.json").exists()
    first = (out / "iter-1" / "summary.json").stat().st_mtime_ns

    # without resume=true the existing run is refused
    with pytest.raises(sr.ConfigError, match="resume=true"):
        sr.run_self_reward(_config(tmp_path, out, iterations=2, lora={"r": 4}), judge_factory=factory_of(LengthJudge()))

    gen.calls.clear()
    result = sr.run_self_reward(_config(tmp_path, out, iterations=2, lora={"r": 4}, resume=True),
                                judge_factory=factory_of(LengthJudge()))
    assert result.iterations == 2
    assert gen.calls == []  # neither iteration 1 nor iteration 2's prompts/candidates were generated again
    assert (out / "iter-1" / "summary.json").stat().st_mtime_ns == first
    for k in (1, 2):
        assert (out / f"iter-{k}" / "pairs.jsonl").read_text() == (ref_out / f"iter-{k}" / "pairs.jsonl").read_text()
    # LoRA across iterations: iteration 2's adapter sits on iteration 1's model (merged)
    assert (out / "iter-2" / "model" / "final" / "adapter_config.json").is_file()
    meta = json.loads((out / "iter-2" / "model" / "final" / "alignkit.json").read_text())
    assert meta["base_model"] == str((out / "iter-1" / "model" / "final").resolve())
    from alignkit.models import load_trained

    model, _ = load_trained(out / "final")  # resolves the adapter chain
    assert model is not None


def test_ties_and_unparsable_are_dropped(tmp_path, monkeypatch):
    monkeypatch.setattr(generation, "generate_texts", FakeGen())
    seeds = write_jsonl(tmp_path / "s.jsonl", [{"prompt": "TIE: name a fruit."}, {"prompt": "NOPARSE: say hi."},
                                               {"prompt": "Count to three."}])
    out = tmp_path / "run"
    cfg = _config(tmp_path, out, data=str(seeds), new_prompts=0, batch_size=1)
    sr.run_self_reward(cfg, judge_factory=factory_of(LengthJudge()))
    summary = json.loads((out / "iter-1" / "summary.json").read_text())
    assert summary["pairs"] == {"kept": 1, "dropped": {"unparsable": 1, "tie": 1, "identical": 0}}
    assert summary["score_histogram"]["unparsable"] == 3
    pairs = [json.loads(line) for line in (out / "iter-1" / "pairs.jsonl").read_text().splitlines()]
    assert [p["prompt"][0]["content"] for p in pairs] == ["Count to three."]


def test_iteration_without_pairs_stops_with_a_message(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(generation, "generate_texts", FakeGen())
    monkeypatch.setattr(sr, "_load_judge", factory_of(LengthJudge()))
    seeds = write_jsonl(tmp_path / "s.jsonl", [{"prompt": "TIE one"}, {"prompt": "NOPARSE two"}])
    out = tmp_path / "run"
    rc = main(["self-reward", "model=tiny-random", f"data={seeds}", f"output_dir={out}", "new_prompts=0",
               "candidates=2", "max_new_tokens=8", "batch_size=1"])
    err = capsys.readouterr().err
    assert rc == 1
    assert "no preference pairs" in err and "1 had all candidates scored equally" in err
    assert "Traceback" not in err
    assert (out / "iter-1" / "pairs.jsonl").read_text() == ""
    assert not (out / "iter-1" / "summary.json").exists()


def test_pair_selection_rules():
    assert select_pair(["a", "bb", "ccc"], [1.0, 3.0, 2.0]) == (1, 0)
    assert select_pair(["a", "b"], [2.0, 2.0]) == "tie"
    assert select_pair(["a", "b", "c"], [None, 4.0, None]) == "unparsable"
    assert select_pair(["same", "same "], [1.0, 5.0]) == "identical"
    assert select_pair(["x", "y", "z"], [5.0, 5.0, 1.0]) == (0, 2)  # first of the best
    assert histogram([0.2, 2.5, 4.4, None, 5]) == {"0": 1, "1": 0, "2": 0, "3": 1, "4": 1, "5": 1, "unparsable": 1}
    assert parse_rate([[1.0, None], [2.0, 3.0]]) == 0.75
    raw = [["Score: 1", "no score\n[score forced] Score: 2"]]  # alignkit.judges' force_score mark
    assert parse_rate([[1.0, 2.0]], raw) == 0.5 and forced_rate([[1.0, 2.0]], raw) == 0.5


def test_cli_help_and_config_errors(tmp_path, capsys):
    assert main(["self-reward", "--help"]) == 0
    text = capsys.readouterr().out
    for key in ("iterations", "candidates", "judge_samples", "new_prompts", "few_shot", "eft_data", "loss", "beta",
                "lora.r"):
        assert key in text, key
    assert "default 4" in text.split("candidates", 1)[1].splitlines()[0]

    assert main(["self-reward", "model=tiny-random", "candidate=3"]) == 2
    assert "did you mean 'candidates'" in capsys.readouterr().err
    assert main(["self-reward", "model=tiny-random", f"output_dir={tmp_path / 'x'}"]) == 2
    assert "needs seed prompts" in capsys.readouterr().err
    assert main(["self-reward", "model=tiny-random", "candidates=1"]) == 2
    assert "candidates" in capsys.readouterr().err
    seeds = write_jsonl(tmp_path / "s.jsonl", [{"prompt": "hi there"}])
    assert main(["self-reward", "model=tiny-random", f"data={seeds}", f"output_dir={tmp_path / 'y'}",
                 f"eft_data={tmp_path / 'missing.jsonl'}"]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["self-reward", "model=tiny-random", f"data={seeds}", f"output_dir={tmp_path / 'j'}",
                 "judge=ftp://judge"]) == 2
    assert "judge" in capsys.readouterr().err
    bad = write_jsonl(tmp_path / "eft.jsonl", [{"prompt": "q", "completion": "a", "score": 9}])
    assert main(["self-reward", "model=tiny-random", f"data={seeds}", f"output_dir={tmp_path / 'z'}",
                 f"eft_data={bad}"]) == 2
    err = capsys.readouterr().err
    assert "row 1" in err and "score" in err
