"""Win-rate bookkeeping, perplexity and KL against hand computations, and `alignkit eval` end to end
on tiny-random."""

from __future__ import annotations

import json
import math

import pytest
import torch

from alignkit.evaluation.winrate import JudgeError, load_judge, normalise_verdict, pairwise_winrate
from tests.helpers import sft_rows, write_jsonl


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """tiny-random is far faster on one thread than on two contended ones."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ------------------------------------------------------------------------------------------ win rate
PROMPTS = ["p1", "p2", "p3", "p4"]


def always_a(prompt, a, b):
    return "A"


def longer(prompt, a, b):
    """A consistent judge: the longer answer wins, equal lengths tie."""
    return "A" if len(a) > len(b) else "B" if len(b) > len(a) else "tie"


def test_always_first_position_judge_gives_only_ties():
    wr = pairwise_winrate(PROMPTS, ["x"] * 4, ["yy"] * 4, always_a)
    assert (wr.wins, wr.losses, wr.ties, wr.inconsistent) == (0, 0, 4, 4)
    assert wr.win_rate == 0.5 and wr.first_position_rate == 1.0
    assert wr.outcomes == ["tie"] * 4


def test_consistent_judge_gives_wins_and_losses():
    wr = pairwise_winrate(PROMPTS, ["long answer", "long answer", "s", "same"], ["short", "tiny", "longer", "same"],
                          longer)
    assert (wr.wins, wr.losses, wr.ties, wr.inconsistent) == (2, 1, 1, 0)
    assert wr.outcomes == ["win", "win", "loss", "tie"]
    assert wr.win_rate == pytest.approx((2 + 0.5) / 4)
    assert wr.first_position_rate == 0.5  # unbiased: of 6 decisive verdicts, 3 picked the first answer
    assert pairwise_winrate(PROMPTS[:1], ["long answer"], ["x"], longer).win_rate == 1.0


def test_half_decisive_pairs_are_inconsistent_ties():
    calls = []

    def first_order_only(prompt, a, b):  # decisive when A's answer comes first, "tie" when swapped
        calls.append((a, b))
        return "A" if a == "mine" else "TIE"

    wr = pairwise_winrate(["p"], ["mine"], ["theirs"], first_order_only)
    assert calls == [("mine", "theirs"), ("theirs", "mine")]  # both orders asked
    assert (wr.wins, wr.ties, wr.inconsistent) == (0, 1, 1) and wr.win_rate == 0.5
    assert pairwise_winrate([], [], [], always_a).win_rate is None


def test_verdicts_and_errors():
    assert [normalise_verdict(v) for v in ("a", " B ", "Tie")] == ["A", "B", "tie"]
    with pytest.raises(JudgeError, match="pair 2: the judge returned 'maybe'"):
        pairwise_winrate(["p", "q"], ["a", "b"], ["c", "d"], lambda p, a, b: "A" if p == "p" else "maybe")
    with pytest.raises(ValueError, match="lengths differ"):
        pairwise_winrate(["p"], ["a", "b"], ["c"], always_a)


def test_load_judge(tmp_path):
    f = tmp_path / "judges.py"
    f.write_text("def shortest(prompt, a, b):\n    return 'A' if len(a) < len(b) else 'B'\n")
    assert load_judge(f"{f}:shortest")("p", "x", "yy") == "A"
    assert load_judge("json:dumps") is json.dumps  # package.module:FUNC
    with pytest.raises(JudgeError, match="eval trains none"):
        load_judge("judge:self")  # model judges: tests/test_eval_judge.py
    with pytest.raises(JudgeError, match="no function 'nope'"):
        load_judge(f"{f}:nope")
    with pytest.raises(JudgeError, match="file not found"):
        load_judge(f"{tmp_path / 'missing.py'}:f")
    with pytest.raises(JudgeError, match="FILE.py:FUNC"):
        load_judge("no_colon")


# ------------------------------------------------------------------------------------------ metrics
@pytest.fixture(scope="module")
def tiny():
    from alignkit.models import build_tiny_random, load_tokenizer

    return build_tiny_random(), load_tokenizer("tiny-random")


def _scrambled(seed: int):
    from alignkit.models import build_tiny_random

    model = build_tiny_random()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 2:
                p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    return model


def test_perplexity_matches_full_logits(tmp_path, tiny):
    from alignkit.data import load_examples, tokenize_sft
    from alignkit.evaluation.metrics import perplexity

    model, tok = _scrambled(1), tiny[1]
    path = write_jsonl(tmp_path / "heldout.jsonl", sft_rows(7, chat=False))
    got = perplexity(model, tok, str(path), batch_size=3, max_length=128)

    nll, n = 0.0, 0
    examples = tokenize_sft(load_examples(path, ("lm", "prompt_completion", "preference")), tok, 128)
    with torch.no_grad():
        for ex in examples:  # one at a time, no padding, full [T, V] logits
            ids = torch.tensor([ex["input_ids"]])
            logp = torch.log_softmax(model(input_ids=ids).logits[0, :-1].double(), dim=-1)
            labels = torch.tensor(ex["labels"][1:])
            keep = labels != -100
            nll -= float(logp[keep].gather(-1, labels[keep].unsqueeze(-1)).sum())
            n += int(keep.sum())
    assert got["tokens"] == n and got["examples"] == 7
    assert got["perplexity"] == pytest.approx(math.exp(nll / n), rel=1e-4)


def test_kl_estimate_matches_hand_computation(tiny):
    from alignkit.evaluation.metrics import kl_estimate
    from alignkit.generation import generate_with_ids

    ref, tok = tiny
    model = _scrambled(2)
    gens = generate_with_ids(model, tok, ["Say hi.", "Count to three please."], max_new_tokens=6, batch_size=2)
    assert all(1 <= len(c) <= 6 for c in gens.completion_ids)
    got = kl_estimate(model, ref, gens.prompt_ids, gens.completion_ids, pad_id=tok.pad_token_id, batch_size=2)

    total, per_seq = 0.0, []
    with torch.no_grad():
        for p, c in zip(gens.prompt_ids, gens.completion_ids):
            ids = torch.tensor([p + c])
            lp = [torch.log_softmax(m(input_ids=ids).logits[0].double(), -1) for m in (model, ref)]
            s = sum(float(lp[0][len(p) - 1 + t, tok_id] - lp[1][len(p) - 1 + t, tok_id]) for t, tok_id in enumerate(c))
            per_seq.append(s)
            total += s
    tokens = sum(len(c) for c in gens.completion_ids)
    assert got["tokens"] == tokens and got["sequences"] == 2
    assert got["kl"] == pytest.approx(total / tokens, abs=1e-4)
    assert got["kl_seq"] == pytest.approx(sum(per_seq) / 2, abs=1e-4)
    same = kl_estimate(ref, ref, gens.prompt_ids, gens.completion_ids, pad_id=tok.pad_token_id)
    assert same["kl"] == pytest.approx(0.0, abs=1e-6)


# ------------------------------------------------------------------------------------------ CLI
FOUR = [
    {"id": "a", "split": "test", "prompt": "Describe a cat without commas.", "constraints": [{"type": "no_commas"}]},
    {"id": "b", "split": "test", "prompt": "Write in lowercase about tea.",
     "constraints": [{"type": "lowercase"}, {"type": "max_words", "max": 50}]},
    {"id": "c", "split": "train", "prompt": "Not evaluated.", "constraints": [{"type": "uppercase"}]},
    {"id": "d", "split": "test", "prompt": "Return JSON with key name.", "constraints": [{"type": "json_format"}]},
    {"id": "e", "split": "test", "prompt": "Say hello.", "constraints": [{"type": "ends_with", "phrase": "Bye."}]},
]


def test_eval_end_to_end(tmp_path, capsys):
    from alignkit.cli import main

    prompts = write_jsonl(tmp_path / "ins.jsonl", FOUR)
    heldout = write_jsonl(tmp_path / "heldout.jsonl", sft_rows(4))
    judge = tmp_path / "judge.py"
    judge.write_text("def longer(prompt, a, b):\n    return 'A' if len(a) > len(b) else 'B' if len(b) > len(a) "
                     "else 'tie'\n")
    out = tmp_path / "eval"
    code = main(["eval", "--model", "tiny-random", "--model", "tiny-random", "--prompts", str(prompts),
                 "--output-dir", str(out), "--max-new-tokens", "8", "--batch-size", "4",
                 "--reference", "tiny-random", "--eval-data", str(heldout), "--judge", f"{judge}:longer",
                 "--reward", "alignkit.evaluation.constraints:constraint_reward", "--device", "cpu"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    results = json.loads((out / "results.json").read_text())
    assert results["prompts"]["n"] == 4 and results["prompts"]["split"] == "test"
    assert [m["name"] for m in results["models"]] == ["tiny-random (#1)", "tiny-random (#2)"]
    for m in results["models"]:
        gold = m["gold"]
        assert 0.0 <= gold["prompt_level"] <= 1.0 and 0.0 <= gold["instruction_level"] <= 1.0
        assert set(gold["per_type"]) == {"no_commas", "lowercase", "max_words", "json_format", "ends_with"}
        assert all(0.0 <= t["pass_rate"] <= 1.0 and t["total"] == 1 for t in gold["per_type"].values())
        assert gold["n_prompts"] == 4 and gold["n_instructions"] == 5
        assert m["perplexity"]["perplexity"] > 1 and m["perplexity"]["examples"] == 4
        assert m["kl"]["kl"] == pytest.approx(0.0, abs=1e-5)  # tiny-random vs itself
        assert 0.0 <= m["reward"]["mean"] <= 1.0 and m["reward"]["n"] == 4
        lines = (out / m["completions_file"]).read_text().splitlines()
        assert [json.loads(x)["id"] for x in lines] == ["a", "b", "d", "e"]
    # identical models give identical answers: the consistent judge ties every pair
    wr = results["win_rate"]
    assert (wr["n"], wr["ties"], wr["inconsistent"], wr["win_rate"]) == (4, 4, 0, 0.5)
    md = (out / "results.md").read_text()
    assert "| metric | tiny-random (#1) | tiny-random (#2) |" in md and "no_commas" in md and "win rate" in md
    # piped stdout: a plain-text table, no rich box characters
    assert "gold prompt-level strict (4 prompts)" in captured.out and "┃" not in captured.out


def test_eval_dtype_loads_every_model_in_it(tmp_path, capsys, monkeypatch):
    import alignkit.evaluation.runner as runner
    from alignkit.cli import main

    seen = []
    real = runner._load

    def spy(spec, device, dtype="float32"):
        model, tok = real(spec, device, dtype)
        seen.append({p.dtype for p in model.parameters()})
        return model, tok

    monkeypatch.setattr(runner, "_load", spy)
    prompts = write_jsonl(tmp_path / "ins.jsonl", FOUR)
    args = ["eval", "--model", "tiny-random", "--prompts", str(prompts), "--max-new-tokens", "4",
            "--reference", "tiny-random", "--device", "cpu"]
    assert main(args + ["--output-dir", str(tmp_path / "a"), "--dtype", "bfloat16"]) == 0, capsys.readouterr().err
    assert seen == [{torch.bfloat16}] * 2  # the reference and the model
    assert main(args + ["--output-dir", str(tmp_path / "b")]) == 0
    assert seen[2:] == [{torch.float32}] * 2  # float32 by default
    assert main(args + ["--dtype", "float16"]) == 2  # argparse refuses it
    assert "invalid choice" in capsys.readouterr().err


def test_eval_input_errors(tmp_path, capsys):
    from alignkit.commands.eval import default_output_dir, main

    bad = write_jsonl(tmp_path / "bad.jsonl", FOUR[:1] + [{"prompt": "x", "constraints": [{"type": "allcaps"}]}])
    assert main(["--model", "tiny-random", "--prompts", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "row 2: constraint 1: unknown constraint type 'allcaps'" in err
    assert main(["--model", "tiny-random", "--judge", "judge:self"]) == 2
    assert "eval trains none" in capsys.readouterr().err
    good = write_jsonl(tmp_path / "good.jsonl", FOUR)
    assert main(["--model", "tiny-random", "--prompts", str(good), "--split", "dev"]) == 2
    assert "no rows in split 'dev'" in capsys.readouterr().err
    assert main(["--model", "tiny-random", "--reward", "a.py:f", "--reward-weights", "1", "2"]) == 2
    assert main(["--help"]) == 0 and "position-inconsistent" in capsys.readouterr().out

    run = tmp_path / "run"
    (run / "final").mkdir(parents=True)
    (run / "metrics.jsonl").write_text("")
    assert default_output_dir(str(run)) == run / "eval"
    assert str(default_output_dir("tiny-random")) == "eval-results"


def test_win_rate_against_reference_answers(tmp_path):
    from alignkit.evaluation.runner import EvalOptions, evaluate_models, write_results

    rows = [{"prompt": "Say hi.", "reference": "Hello! " * 50, "constraints": [{"type": "no_commas"}]},
            {"prompt": "Say bye.", "reference": "Bye."}]  # no constraints: generated and judged, not scored
    prompts = write_jsonl(tmp_path / "refs.jsonl", rows)
    judge = tmp_path / "judge.py"
    judge.write_text("def longer(prompt, a, b):\n    return 'A' if len(a) > len(b) else 'B' if len(b) > len(a) "
                     "else 'tie'\n")
    results = evaluate_models(["tiny-random"], EvalOptions(prompts=str(prompts), judge=f"{judge}:longer",
                                                           max_new_tokens=4, device="cpu"), log=lambda _: None)
    wr = results["win_rate"]
    assert wr["model_b"] == "reference answers" and wr["n"] == 2
    assert wr["losses"] >= 1 and wr["wins"] + wr["losses"] + wr["ties"] == 2  # the 350-character reference wins
    assert results["models"][0]["gold"]["n_prompts"] == 1
    paths = write_results(results, tmp_path / "out")
    assert "reference answers" in paths["results.md"].read_text()


def test_cluster_bootstrap_rate_by_hand():
    from alignkit.evaluation.stats import cluster_bootstrap_rate

    # clusters A = [1, 1, 1] and B = [0]: resamples AA (6/6), AB and BA (3/4 each), BB (0/2), each 1/4 likely;
    # the 2.5 % and 97.5 % quantiles are 0 and 1, the point estimate 3/4 (not the mean of cluster means, 1/2)
    assert cluster_bootstrap_rate([1, 1, 1, 0], ["A", "A", "A", "B"]) == (0.75, 0.0, 1.0)
    # three clusters of one prompt each: the plain bootstrap of a proportion; the 27 resamples' rates are
    # {0: 1, 1/3: 6, 2/3: 12, 1: 8} (zeros drawn ~ Binomial(3, 1/3)), so at level 0.5 the quartiles are the
    # 7th and 21st smallest: 1/3 and 1
    rate, lo, hi = cluster_bootstrap_rate([1, 1, 0], [1, 2, 3], level=0.5)
    assert (rate, lo, hi) == (2 / 3, 1 / 3, 1.0)
    # a cluster of wordings that agree widens the interval against treating them as independent prompts
    values, same = [1] * 6 + [0] * 6 + [1] * 6 + [0] * 6, [i // 6 for i in range(24)]
    _, lo_c, hi_c = cluster_bootstrap_rate(values, same)
    _, lo_i, hi_i = cluster_bootstrap_rate(values, list(range(24)))
    assert hi_c - lo_c > 1.5 * (hi_i - lo_i)
    with pytest.raises(ValueError):
        cluster_bootstrap_rate([1, 0], ["a"])


def test_paired_bootstrap_exact_by_hand():
    """Differences [1, 0, 0]: a resample's mean is (times item 0 is drawn) / 3, Binomial(3, 1/3):
    P = 8/27, 12/27, 6/27, 1/27 for means 0, 1/3, 2/3, 1. The CDF reaches 0.025 at 0 and 0.975 only at 1
    (26/27 = 0.963 before), so the 95 % interval is [0, 1]; an 80 % one is [0, 2/3] (CDF 0.1 at 0, 0.9 at 2/3)."""
    from alignkit.evaluation.stats import paired_bootstrap

    assert paired_bootstrap([0, 1, 0], [1, 1, 0]) == pytest.approx((1 / 3, 0.0, 1.0))
    assert paired_bootstrap([0, 1, 0], [1, 1, 0], level=0.8) == pytest.approx((1 / 3, 0.0, 2 / 3))
    # no change anywhere: a point interval at 0
    assert paired_bootstrap([1, 0, 1, 1], [1, 0, 1, 1]) == (0.0, 0.0, 0.0)
    # sampled (n > 7): a clear gain has an interval above zero and contains the mean
    d, lo, hi = paired_bootstrap([0] * 20, [1] * 12 + [0] * 8)
    assert d == pytest.approx(0.6) and 0 < lo < 0.6 < hi <= 1
    with pytest.raises(ValueError):
        paired_bootstrap([1], [1, 0])
