"""The generated instruction set (issue 12): sizes, held-out groups, no train/test sentence overlap,
validity, and that the generator reproduces the shipped file exactly."""

from __future__ import annotations

import copy
import json
import re
from collections import Counter
from pathlib import Path

import pytest

from alignkit.evaluation import DEFAULT_INSTRUCTIONS, REGISTRY, load_instructions, validate_constraint
from alignkit.evaluation.instruction_set import (
    HELDOUT_FAMILY,
    HELDOUT_KINDS,
    KINDS,
    SEEN_FAMILIES,
    SEEN_KINDS,
    build_rows,
    check_rows,
    main,
    render_jsonl,
    sentence_overlap,
    write_set,
)
from alignkit.evaluation.instructions import INSTRUCTIONS_V1


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return [json.loads(line) for line in Path(DEFAULT_INSTRUCTIONS).read_text(encoding="utf-8").splitlines()]


def _split(rows, name):
    return [r for r in rows if r["split"] == name]


def test_generator_reproduces_the_shipped_file(tmp_path, capsys):
    shipped = Path(DEFAULT_INSTRUCTIONS).read_text(encoding="utf-8")
    assert render_jsonl(build_rows()) == shipped
    assert build_rows() == build_rows()  # deterministic
    out = tmp_path / "set.jsonl"
    write_set(out)
    assert out.read_text(encoding="utf-8") == shipped
    assert main(["--check", "--output", str(out)]) == 0
    out.write_text(shipped.replace("test-033", "test-xyz", 1), encoding="utf-8")
    assert main(["--check", "--output", str(out)]) == 1
    assert "differs from the generator" in capsys.readouterr().out
    assert render_jsonl(build_rows(seed=13)) != shipped  # the seed matters


def test_sizes_and_groups(rows):
    train, test = _split(rows, "train"), _split(rows, "test")
    assert len(train) + len(test) == len(rows)
    assert 400 <= len(train) <= 600 and len(test) >= 150
    groups = Counter(r["heldout"] for r in test)
    assert groups["family"] >= 30 and groups["kind"] >= 30 and groups[None] >= 100
    assert all(r["heldout"] is None for r in train)
    kinds = {c["type"] for r in rows for c in r["constraints"]}
    assert len(kinds) >= 25 and kinds == set(REGISTRY)
    assert len(HELDOUT_KINDS) >= 2
    # the loader returns the same rows, split by split and group by group
    assert [i.id for i in load_instructions(DEFAULT_INSTRUCTIONS, "train")] == [r["id"] for r in train]
    assert [i.id for i in load_instructions(DEFAULT_INSTRUCTIONS, "test")] == [r["id"] for r in test]
    for group in ("family", "kind"):
        loaded = load_instructions(None, "test", heldout=group)
        assert len(loaded) == groups[group] and all(i.heldout == group for i in loaded)
    assert all(r["id"].startswith(r["split"] + "-") for r in rows)


def test_every_seen_kind_in_every_seen_family_on_both_sides(rows):
    for split in ("train", "test"):
        pairs = {(r["family"], c["type"]) for r in _split(rows, split) if r["heldout"] is None
                 for c in r["constraints"]}
        missing = {(f, k) for f in SEEN_FAMILIES for k in SEEN_KINDS} - pairs
        assert not missing, (split, sorted(missing)[:5])
    spec_kinds = {c["type"] for r in rows if r["family"] == HELDOUT_FAMILY for c in r["constraints"]}
    assert spec_kinds == set(SEEN_KINDS)  # the unseen wording is measured on every seen kind
    for kind in HELDOUT_KINDS:
        fams = {r["family"] for r in rows if kind in {c["type"] for c in r["constraints"]}}
        assert fams == set(SEEN_FAMILIES)  # ... and the unseen kinds in the seen wording families


def test_held_out_family_and_kinds_absent_from_train(rows):
    train = _split(rows, "train")
    assert not [r["id"] for r in train if r["family"] == HELDOUT_FAMILY]
    assert not [r["id"] for r in train if {c["type"] for c in r["constraints"]} & set(HELDOUT_KINDS)]
    for r in _split(rows, "test"):
        kinds = {c["type"] for c in r["constraints"]}
        assert (r["heldout"] == "family") == (r["family"] == HELDOUT_FAMILY), r["id"]
        assert (r["heldout"] == "kind") == bool(kinds & set(HELDOUT_KINDS)), r["id"]
        if r["heldout"] == "family":
            assert kinds <= set(SEEN_KINDS)
        if r["heldout"] == "kind":
            assert r["family"] in SEEN_FAMILIES
    # the held-out family's wording ("Length: ...", "Case: ...") appears nowhere in training
    assert not [r["id"] for r in train if re.search(r"^(Topic|Task|Length|Case): ", r["prompt"], re.M)]


def _sentences(prompt: str) -> list[str]:
    """Independent of the generator's splitter: cut at . ! ? and line breaks, normalise, keep pieces of
    two words or more (the lone 'S' of 'P.S.' is not a sentence)."""
    out = []
    for piece in re.split(r"[.!?\n]", prompt):
        piece = " ".join(piece.lower().split()).strip(" \"-:,")
        if len(piece.split()) >= 2:
            out.append(piece)
    return out


def test_no_test_sentence_occurs_in_any_train_prompt(rows):
    train_text = "\n".join(" ".join(r["prompt"].lower().split()) for r in _split(rows, "train"))
    shared = sorted({s for r in _split(rows, "test") for s in _sentences(r["prompt"]) if s in train_text})
    assert not shared, shared[:10]
    prompts = [r["prompt"] for r in rows]
    assert len(set(prompts)) == len(prompts)  # no two prompts identical
    assert len({" ".join(p.lower().split()) for p in prompts}) == len(prompts)  # not even up to case/spacing
    assert sentence_overlap([r["prompt"] for r in _split(rows, "train")],
                            [r["prompt"] for r in _split(rows, "test")]) == []


def test_overlap_detector_finds_a_shared_sentence():
    train = ["Describe owls. Keep the whole answer to 40 words or fewer."]
    assert sentence_overlap(train, ["Explain glaciers. Keep the whole answer to 40 words or fewer."]) == [
        "keep the whole answer to 40 words or fewer"]
    assert sentence_overlap(train, ["Explain glaciers. Use 40 words."]) == []
    assert sentence_overlap(train, ["Add a postscript starting with \"P.S.\""]) == []  # 'S' is not a sentence


def test_every_row_validates_and_is_consistent(rows):
    assert check_rows(rows) == []
    for r in rows:
        assert 1 <= len(r["constraints"]) <= 3, r["id"]
        for c in r["constraints"]:
            assert validate_constraint(c) == c, r["id"]
        kinds = [c["type"] for c in r["constraints"]]
        assert len(set(kinds)) == len(kinds), r["id"]
        assert r["family"] in (*SEEN_FAMILIES, HELDOUT_FAMILY, "v1")
        if "repeat_request" in kinds:  # the text to repeat is the prompt up to the repeat instruction
            assert kinds[-1] == "repeat_request"
            text = r["constraints"][-1]["text"]
            assert r["prompt"].startswith(text) and len(r["prompt"]) > len(text) + 10, r["id"]
        if "json_format" in kinds:
            assert kinds == ["json_format"] or r["family"] == "v1"
    # no prompt asks for two kinds that fight over the same part of the answer
    for r in rows:
        if r["family"] == "v1":
            continue
        kinds = [c["type"] for c in r["constraints"]]
        for i, a in enumerate(kinds):
            for b in kinds[i + 1:]:
                assert not KINDS[a].slots & KINDS[b].slots, (r["id"], a, b)


def test_v1_test_rows_kept_verbatim(rows):
    v1 = [json.loads(line) for line in Path(INSTRUCTIONS_V1).read_text(encoding="utf-8").splitlines()]
    assert len(v1) == 64 and Counter(r["split"] for r in v1) == {"train": 32, "test": 32}
    v1_test = [r for r in v1 if r["split"] == "test"]
    assert [{k: r[k] for k in ("id", "split", "prompt", "constraints")} for r in rows[:32]] == v1_test
    assert all(r["family"] == "v1" and r["heldout"] is None for r in rows[:32])
    assert len(load_instructions(INSTRUCTIONS_V1, "train")) == 32  # the old file still loads


def test_check_rows_catches_broken_sets(rows):
    def broken(edit) -> list[str]:
        changed = copy.deepcopy(rows)
        edit(changed)
        return check_rows(changed)

    first_train = next(i for i, r in enumerate(rows) if r["split"] == "train")
    spec = next(i for i, r in enumerate(rows) if r["family"] == HELDOUT_FAMILY)
    kind = next(i for i, r in enumerate(rows) if r["heldout"] == "kind")

    def to_train(i):
        return lambda rs: rs[i].update(split="train", heldout=None)

    assert any("held-out" in p for p in broken(to_train(spec)))
    assert any("held-out kind in train" in p for p in broken(to_train(kind)))
    assert any("same prompt" in p for p in broken(lambda rs: rs[first_train].update(prompt=rs[0]["prompt"])))
    assert any("test sentence also in train" in p
               for p in broken(lambda rs: rs[first_train].update(prompt=rs[40]["prompt"] + " Extra words here.")))
    assert any("unknown constraint type" in p
               for p in broken(lambda rs: rs[50]["constraints"].append({"type": "shout"})))
    assert any("heldout=kind" in p for p in broken(lambda rs: rs[kind].update(heldout=None)))
