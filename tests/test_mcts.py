"""Step-level tree search on a toy tree by hand, and the ``alignkit mcts-dpo`` pipeline (resumable)."""

from __future__ import annotations

import json
import math

import pytest

from alignkit.cli import main
from alignkit.reasoning.mcts import Node, puct_score, search, select, sibling_pairs, ucb1_score
from tests.helpers import write_jsonl

TREE = {(): ["A", "B"], ("A",): ["A1", "A2", "A1"], ("B",): ["B1"]}
VALUE = {"A": 1.0, "B": 0.0, "A1": 0.5, "A2": 1.0, "B1": 0.0}


def toy_search(simulations: int, rule: str = "puct") -> tuple[Node, list]:
    calls = []

    def expand_fn(steps, sim):
        calls.append(("expand", steps, sim))
        return TREE[steps]

    def value_fn(prefixes, sim):
        calls.append(("value", tuple(prefixes), sim))
        return [VALUE[p[-1]] for p in prefixes]

    root = search(Node(), expand_fn, value_fn, simulations=simulations, c=1.0, rule=rule,
                  is_terminal=lambda s: s == "A2")
    return root, calls


def test_selection_and_backup_on_a_toy_tree_by_hand():
    root, calls = toy_search(3)
    a, b = root.children
    a1, a2 = a.children  # the duplicate "A1" was dropped; priors 1/2
    assert a1.prior == a2.prior == 0.5 and a2.terminal and not a1.terminal
    # sim 0: expand the root; A = 1, B = 0; root backed up with their mean 0.5
    # sim 1: PUCT at the root (N = 1): A 1 + 0.5 * 1 / 2 = 1.25 > B 0 + 0.25 -> expand A: A1 = 0.5, A2 = 1;
    #        path (root, A) backed up with 0.75
    # sim 2: root N = 2: A 1.75/2 + 0.5 * sqrt(2) / 3 = 1.111 > B 0 + 0.5 * sqrt(2) / 2 = 0.354; at A (N = 2):
    #        A2 1 + 0.5 * sqrt(2) / 2 = 1.354 > A1 0.5 + 0.354 -> A2 is terminal: valued again (1.0), backed up
    assert [c[0] for c in calls] == ["expand", "value", "expand", "value", "value"]
    assert calls[-1] == ("value", (("A", "A2"),), 2)
    assert (root.visits, root.value_sum) == (3, 2.25)
    assert (a.visits, a.value_sum) == (3, 2.75)
    assert (b.visits, b.value_sum) == (1, 0.0)
    assert (a1.visits, a1.value_sum, a2.visits, a2.value_sum) == (1, 0.5, 2, 2.0)
    assert puct_score(a, root.visits, 1.0) == pytest.approx(2.75 / 3 + 0.5 * math.sqrt(3) / 4)
    assert [n.steps for n in select(root)] == [(), ("A",), ("A", "A2")]
    pairs = sibling_pairs(root)
    assert [(p["prefix_steps"], p["chosen_step"], p["rejected_step"]) for p in pairs] == [
        ([], "A", "B"), (["A"], "A2", "A1")]
    assert pairs[0]["gap"] == pytest.approx(2.75 / 3) and pairs[1]["gap"] == pytest.approx(0.5)
    assert sibling_pairs(root, min_gap=0.6) == pairs[:1]


def test_ucb1_visits_unvisited_children_first():
    root = Node(visits=4, children=[Node(("x",), visits=2, value_sum=2.0), Node(("y",))])
    assert ucb1_score(root.children[1], 4, 1.0) == math.inf
    assert select(root, rule="ucb1")[-1].steps == ("y",)
    assert ucb1_score(root.children[0], 4, 2.0) == pytest.approx(1 + 2 * math.sqrt(math.log(4) / 2))
    with pytest.raises(ValueError):
        select(root, rule="best")


class ScriptedSampler:
    """Next steps and rollouts of a fixed 'model': after the right first step everything is right."""

    calls = 0

    def request(self, prompt):
        return [{"role": "user", "content": prompt}]

    def continue_prefixes(self, prompts, prefixes, n, seed, max_new_tokens=None):
        ScriptedSampler.calls += 1
        out = []
        for prefix in prefixes:
            if max_new_tokens is not None:  # expansion: candidate next steps
                nxt = ["Step 1: 2 + 3 = 5.", "Step 1: 2 + 4 = 6.", "Step 1: 2 + 3 = 5."] if not prefix else \
                    ["Answer: 10\nmore", "Answer: 11"]
                out.append(nxt[:n])
            else:
                right = any("2 + 3" in s for s in prefix)
                out.append(["Answer: 10" if right else "Answer: 12"] * n)
        return out


@pytest.fixture
def scripted(monkeypatch):
    monkeypatch.setattr("alignkit.pipelines.mcts_dpo.loop.make_sampler", lambda cfg, model, tok: ScriptedSampler())
    monkeypatch.setattr("alignkit.cli.write_run_report", lambda out: None)
    ScriptedSampler.calls = 0


def test_mcts_dpo_pipeline_runs_and_resumes(tmp_path, scripted, capsys):
    data = write_jsonl(tmp_path / "math.jsonl", [{"id": f"p{i}", "prompt": f"Q{i}", "answer": "10"} for i in range(2)])
    out = tmp_path / "run"
    args = ["mcts-dpo", "model=tiny-random", f"data={data}", f"output_dir={out}", "simulations=3", "branching=3",
            "batch_size=2", "max_steps=1", "max_length=64", "min_gap=0.5"]
    assert main([*args, "iterations=1"]) == 0
    pairs = [json.loads(x) for x in (out / "iter-1" / "pairs.jsonl").read_text().splitlines()]
    assert len(pairs) == 4  # 2 per problem: the first step, then the answer after the right first step
    # largest gap first: the answers after the right step (1 vs 0), then the first steps (2.5/3 vs 0: the
    # right step was valued 1, backed up with the mean 0.5 of its two answers, then with the right answer's 1)
    assert pairs[0]["prefix_steps"] == ["Step 1: 2 + 3 = 5."] and pairs[0]["chosen_step"] == "Answer: 10"
    assert pairs[0]["rejected_step"] == "Answer: 11" and pairs[0]["gap"] == 1.0
    assert pairs[1]["prefix_steps"] == [] and pairs[1]["chosen_step"] == "Step 1: 2 + 3 = 5."
    assert pairs[1]["rejected_step"] == "Step 1: 2 + 4 = 6." and pairs[1]["gap"] == pytest.approx(2.5 / 3)
    assert (out / "iter-1" / "model" / "final").is_dir() and (out / "config.yaml").is_file()
    searched = ScriptedSampler.calls
    # resume with one more iteration: iteration 1 is kept (no sampling), iteration 2 searches from its model
    assert main([*args, "iterations=2"]) == 2  # an existing run needs resume=true
    assert "resume=true" in capsys.readouterr().err
    assert main([*args, "iterations=2", "resume=true"]) == 0
    assert ScriptedSampler.calls == 2 * searched
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and rows[1]["pairs"] == 4
    assert (out / "final").exists()
    summary = json.loads((out / "iter-2" / "summary.json").read_text())
    assert summary["start_model"].endswith("iter-1/model/final")
    # an interrupted iteration reuses its trees: drop iteration 2's summary and model, run again
    (out / "iter-2" / "summary.json").unlink()
    calls = ScriptedSampler.calls
    assert main([*args, "iterations=2", "resume=true"]) == 0
    assert ScriptedSampler.calls == calls


def test_mcts_dpo_stops_without_pairs_and_rejects_bad_data(tmp_path, scripted, capsys):
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "Q"}])
    assert main(["mcts-dpo", "model=tiny-random", f"data={bad}", f"output_dir={tmp_path / 'r'}"]) == 2
    err = capsys.readouterr().err
    assert "row 1" in err and "field 'answer'" in err
    data = write_jsonl(tmp_path / "math.jsonl", [{"prompt": "Q", "answer": "10"}])
    assert main(["mcts-dpo", "model=tiny-random", f"data={data}", f"output_dir={tmp_path / 'r2'}", "simulations=1",
                 "batch_size=4"]) == 1
    assert "fewer than one optimizer step" in capsys.readouterr().err
