"""Majority vote, kappas and the export's preference rows against values computed by hand."""

from __future__ import annotations

import pytest

from alignkit.annotate.agreement import borda, cohen_kappa, fleiss_kappa, majority, mean_pairwise_cohen
from alignkit.annotate.export import preference_rows


def test_majority_needs_a_unique_top():
    assert majority(["A", "A", "B"]) == ("A", pytest.approx(2 / 3))
    assert majority(["A", "B"]) == (None, 0.5)
    assert majority(["tie", "tie", "A", "B"]) == ("tie", 0.5)
    assert majority([]) == (None, 0.0)


def test_cohen_kappa_by_hand():
    a = ["A", "A", "B", "B", "A", "tie"]
    b = ["A", "B", "B", "B", "A", "A"]
    # p_o = 4/6; p_e = (3*3 [A] + 2*3 [B] + 1*0 [tie]) / 36 = 15/36; kappa = (24/36 - 15/36) / (21/36) = 9/21
    assert cohen_kappa(a, b) == pytest.approx(9 / 21)
    assert cohen_kappa(["A", "B"], ["A", "B"]) == pytest.approx(1.0)
    # p_o = 0, p_e = (1*1 + 1*1) / 4 = 0.5 -> -1
    assert cohen_kappa(["A", "B"], ["B", "A"]) == pytest.approx(-1.0)
    assert cohen_kappa(["A", "A"], ["A", "A"]) is None  # p_e = 1: undefined
    with pytest.raises(ValueError):
        cohen_kappa(["A"], [])


def test_fleiss_kappa_by_hand():
    # P_i = 1, 0, 1 -> P = 2/3; p(A) = p(B) = 1/2 -> P_e = 1/2; kappa = (2/3 - 1/2) / (1/2) = 1/3
    assert fleiss_kappa([["A", "A"], ["A", "B"], ["B", "B"], ["A"]]) == pytest.approx(1 / 3)
    # varying raters: item 1 has 3 labels A,A,B -> P_1 = (2*1 + 0) / (3*2) = 1/3; item 2 B,B -> 1
    # P = 2/3; totals A 2, B 3 of 5 -> P_e = 4/25 + 9/25 = 13/25; kappa = (2/3 - 13/25) / (12/25) = 11/36
    assert fleiss_kappa([["A", "A", "B"], ["B", "B"]]) == pytest.approx(11 / 36)
    assert fleiss_kappa([["A"]]) is None


def test_fleiss_kappa_matches_the_published_example():
    """Fleiss (1971) as reproduced on Wikipedia: 10 subjects, 14 raters, 5 categories, kappa = 0.210."""
    table = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
             [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    items = [[cat for cat, n in enumerate(row) for _ in range(n)] for row in table]
    assert fleiss_kappa(items) == pytest.approx(0.210, abs=5e-4)


def test_mean_pairwise_cohen():
    labels = {"r1": {1: "A", 2: "B"}, "r2": {1: "A", 2: "B"}, "r3": {1: "B", 2: "A"}}
    mean, pairs = mean_pairwise_cohen(labels)
    assert pairs == 3 and mean == pytest.approx((1.0 - 1.0 - 1.0) / 3)


def test_borda():
    # n = 3: first place 2 points, second 1, last 0
    assert borda([[2, 0, 1], [2, 1, 0], [0, 2, 1]], 3) == [3, 1, 5]


def _j(task_id, choice, ranking=None, n=2):
    cands = [f"t{task_id}c{i}" for i in range(n)]
    return {"task_id": task_id, "prompt": f"p{task_id}", "candidates": cands, "choice": choice, "ranking": ranking}


JUDGED = [
    _j(1, "A"), _j(1, "A"), _j(1, "B"),  # A wins 2/3
    _j(2, "A"), _j(2, "B"),  # no majority
    _j(3, "tie"), _j(3, "tie"), _j(3, "A"),  # tie majority
    _j(4, "both_bad"), _j(4, "A"), _j(4, "both_bad"),  # both bad
    _j(5, "B"), _j(5, "skip"),  # B wins 1/1
    _j(6, "rank", [2, 0, 1], 3), _j(6, "rank", [2, 1, 0], 3), _j(6, "rank", [0, 2, 1], 3),
]


def test_preference_rows_by_majority():
    rows, counts = preference_rows(JUDGED)
    by_task = {r["task_id"]: r for r in rows}
    assert set(by_task) == {1, 5, 6}
    assert (by_task[1]["chosen"], by_task[1]["rejected"]) == ("t1c0", "t1c1")
    assert by_task[1]["agreement"] == pytest.approx(0.6667) and by_task[1]["votes"] == 3
    assert (by_task[5]["chosen"], by_task[5]["rejected"], by_task[5]["votes"]) == ("t5c1", "t5c0", 1)
    # Borda [3, 1, 5]: best 2 against worst 1; all three rankings put 2 above 1
    assert (by_task[6]["chosen"], by_task[6]["rejected"], by_task[6]["agreement"]) == ("t6c2", "t6c1", 1.0)
    assert counts == {"rows": 3, "dropped_no_majority": 1, "dropped_tie": 1, "dropped_both_bad": 1, "tasks": 6}
    assert all("tie" not in r for r in rows)


def test_preference_rows_min_agreement_ties_and_all_pairs():
    rows, counts = preference_rows(JUDGED, min_agreement=0.7)
    # task 1 (A by 2/3) and task 3 (tie by 2/3) fall below 0.7
    assert {r["task_id"] for r in rows} == {5, 6} and counts["dropped_low_agreement"] == 2
    rows, counts = preference_rows(JUDGED, ties="keep")
    tie = [r for r in rows if r["tie"]]
    assert len(tie) == 1 and tie[0]["task_id"] == 3 and counts["kept_tie"] == 1
    assert all(r["tie"] is False for r in rows if r["task_id"] != 3)
    rows, _ = preference_rows([j for j in JUDGED if j["task_id"] == 6], ranking_pairs="all")
    # pair (0,1): votes 0, 1, 0 -> 0 wins 2/3; (0,2): 2, 2, 0 -> 2 wins 2/3; (1,2): 2, 2, 2
    got = {(r["chosen"], r["rejected"]): r["agreement"] for r in rows}
    assert got == {("t6c0", "t6c1"): 0.6667, ("t6c2", "t6c0"): 0.6667, ("t6c2", "t6c1"): 1.0}
    with pytest.raises(ValueError):
        preference_rows(JUDGED, ties="maybe")
