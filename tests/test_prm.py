"""``alignkit prm`` (process reward model), the step rule, and ``reward=prm:PATH``."""

from __future__ import annotations

import math

import pytest
import torch

from alignkit.cli import main
from alignkit.config import load_config
from alignkit.engine.logging import read_metrics
from alignkit.engine.trainer import Trainer
from alignkit.methods.prm import PRM, PRMConfig, first_error
from alignkit.models import load_tokenizer
from alignkit.reasoning.prm import read_stepwise, token_scores, tokenize_stepwise
from alignkit.reasoning.steps import encode_steps, split_steps
from tests.helpers import write_jsonl

COMMON = ["model=tiny-random", "max_length=96"]


def stepwise_rows(n: int = 6) -> list[dict]:
    rows = []
    for i in range(n):
        a = 3 + i
        rows.append({"prompt": f"Ana has {a} apples and gets 2 more, then doubles them. How many?\n",
                     "completions": [f"Step 1: {a} + 2 = {a + 2}.", f"Step 2: {a + 2} * 2 = {2 * (a + 2) + i % 2}.",
                                     f"Answer: {2 * (a + 2) + i % 2}"],
                     "labels": [True, i % 2 == 0, i % 2 == 0]})
    return rows


@pytest.fixture(scope="module", autouse=True)
def _fast():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("alignkit.cli.write_run_report", lambda out: None)
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_jsonl(tmp_path_factory.mktemp("prmdata") / "steps.jsonl", stepwise_rows())


def test_split_steps_and_separator_positions_by_hand():
    assert split_steps("Step 1: a\n\n  Step 2: b  \nAnswer: 3\n") == ["Step 1: a", "Step 2: b", "Answer: 3"]
    tok = load_tokenizer("tiny-random")
    steps = ["Step 1: 2 + 3 = 5.", "Answer: 5"]
    ids, ends = encode_steps(tok, steps)
    first = tok("Step 1: 2 + 3 = 5.\n", add_special_tokens=False)["input_ids"]
    second = tok("Answer: 5\n", add_special_tokens=False)["input_ids"]
    assert ids == first + second
    assert ends == [len(first) - 1, len(first) + len(second) - 1]
    assert tok.decode(ids[ends[0]]).endswith("\n") and tok.decode(ids[ends[1]]).endswith("\n")
    # the pieces are what the joined text tokenises to (byte-level BPE splits after a newline)
    assert ids == tok("Step 1: 2 + 3 = 5.\nAnswer: 5\n", add_special_tokens=False)["input_ids"]


def test_tokenized_positions_point_at_each_step_end(data):
    tok = load_tokenizer("tiny-random")
    ex = tokenize_stepwise(read_stepwise(data), tok, 96)[0]
    prompt = tok(stepwise_rows()[0]["prompt"])["input_ids"]
    assert ex["input_ids"][:len(prompt)] == prompt
    _, ends = encode_steps(tok, stepwise_rows()[0]["completions"])
    assert ex["step_positions"] == [len(prompt) + e for e in ends]
    assert ex["step_labels"] == [1, 1, 1]
    assert len(ex["input_ids"]) == ex["step_positions"][-1] + 1
    # truncation drops the steps that do not fit
    short = tokenize_stepwise(read_stepwise(data), tok, ex["step_positions"][1] + 1)[0]
    assert short["step_positions"] == ex["step_positions"][:2]


def test_first_error():
    assert first_error([1, 1, 0, 1]) == 2 and first_error([1, 1]) == 2 and first_error([0]) == 0


def test_first_step_loss_and_metrics_by_hand_then_cli_run_and_reward(data, tmp_path):
    out = tmp_path / "prm"
    cfg = load_config(PRMConfig, None, [*COMMON, f"data={data}", f"output_dir={out}", "max_steps=3",
                                        "batch_size=6", "lr=1e-3"])
    trainer = Trainer(PRM, cfg)
    model = trainer.accelerator.unwrap_model(trainer.model)
    model.eval()
    bce, right, first_ok, n = 0.0, 0, 0, 0
    with torch.no_grad():
        for ex in trainer.examples:
            ids = torch.tensor([ex["input_ids"]])
            z = token_scores(model, ids, torch.ones_like(ids))[0, ex["step_positions"]].tolist()
            preds = []
            for zk, y in zip(z, ex["step_labels"]):
                p = 1 / (1 + math.exp(-zk))
                bce += -(y * math.log(p) + (1 - y) * math.log(1 - p))
                right += int((zk > 0) == bool(y))
                preds.append(int(zk > 0))
                n += 1
            first_ok += int(first_error(ex["step_labels"]) == first_error(preds))
    model.train()
    trainer.fit()
    first = read_metrics(out)[0]
    assert first["loss"] == pytest.approx(bce / n, abs=1e-5)
    assert first["step_accuracy"] == pytest.approx(right / n, abs=1e-6)
    assert first["first_error_accuracy"] == pytest.approx(first_ok / 6, abs=1e-6)
    assert (out / "final").is_dir() and (out / "config.yaml").is_file()

    # the CLI writes a run directory too, and its model is a reward=prm: source
    cli_out = tmp_path / "cli"
    assert main(["prm", *COMMON, f"data={data}", f"output_dir={cli_out}", "max_steps=2", "batch_size=3"]) == 0
    assert (cli_out / "final").is_dir() and (cli_out / "metrics.jsonl").is_file()

    from alignkit.reward_model import load_reward_model
    from alignkit.scoring import load_reward_source

    rm = load_reward_model(out)
    prompt, completion = "Ben has 4 pens.\n", "Step 1: 4 + 1 = 5.\n\nAnswer: 5"
    p_ids = rm.tokenizer(prompt)["input_ids"]
    s_ids, ends = encode_steps(rm.tokenizer, split_steps(completion))
    ids = torch.tensor([p_ids + s_ids])
    with torch.no_grad():
        z = token_scores(rm.model, ids, torch.ones_like(ids))[0, [len(p_ids) + e for e in ends]]
    probs = torch.sigmoid(z).tolist()
    one_line = torch.tensor([p_ids + encode_steps(rm.tokenizer, ["no steps here"])[0]])
    with torch.no_grad():
        prose = float(torch.sigmoid(token_scores(rm.model, one_line, torch.ones_like(one_line))[0, -1]))
    for agg, want in (("min", min(probs)), ("prod", probs[0] * probs[1])):
        source = load_reward_source(f"prm:{out}?agg={agg}")
        got = source([prompt, prompt], [completion, "no steps here"])
        assert got[0] == pytest.approx(want, abs=1e-5)
        assert got[1] == pytest.approx(prose, abs=1e-5)  # one line = one step


def test_bad_reward_specs():
    from alignkit.rewards import RewardError
    from alignkit.scoring import load_reward_source

    with pytest.raises(RewardError, match="agg must be"):
        load_reward_source("prm:/nowhere?agg=mean")
    with pytest.raises(RewardError, match="no such"):
        load_reward_source("prm:/nowhere")


@pytest.mark.parametrize("change, field, reason", [
    (lambda r: r["labels"].pop(), "labels", "2 labels for 3 steps"),
    (lambda r: r["labels"].__setitem__(1, "yes"), "labels", "label 2: expected true or false"),
    (lambda r: r["completions"].__setitem__(0, "  "), "completions", "step 1"),
    (lambda r: r.pop("labels"), "labels", "missing"),
])
def test_malformed_rows_exit_2_naming_file_row_and_field(tmp_path, capsys, change, field, reason):
    rows = stepwise_rows(4)
    change(rows[2])
    bad = write_jsonl(tmp_path / "bad.jsonl", rows)
    assert main(["prm", *COMMON, f"data={bad}", f"output_dir={tmp_path / 'r'}"]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "row 3" in err and f"field '{field}'" in err and reason in err
    assert not (tmp_path / "r").exists()
