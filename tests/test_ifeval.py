"""IFEval-format files: the reader and its one-line errors, the IFEval paper's loose variants, strict and
loose accuracy at prompt and instruction level with Wilson intervals (hand-computed), skipped checkers
(unknown id, rejected kwargs, missing NLTK data, package not installed) reported and never fatal, the
real if-verifiable checkers when installed, and `alignkit eval --ifeval` end to end on tiny-random."""

from __future__ import annotations

import json

import pytest

from alignkit.data import DataError
from alignkit.evaluation.ifeval import (
    IFEVAL_MISSING,
    check_ifeval,
    checker_registry,
    load_ifeval,
    loose_variants,
)
from alignkit.evaluation.stats import wilson_interval


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# ----------------------------------------------------------------------------- fake checkers


class _Base:
    def __init__(self, iid):
        self.iid = iid
        self.kw = {}

    def build_description(self, **kw):
        self.kw.update(kw)
        return ""

    def get_instruction_args(self):
        return self.kw


class NoStar(_Base):
    """Passes when the text has no '*'."""

    def check_following(self, text):
        return "*" not in text


class StartsWith(_Base):
    def build_description(self, *, word):
        self.kw["word"] = word

    def check_following(self, text):
        return text.startswith(self.kw["word"])


class NeedsPunkt(_Base):
    def check_following(self, text):
        raise LookupError("\n****\n  Resource \x1b[93mpunkt_tab\x1b[0m not found.\n  Please use the NLTK Downloader")


FAKE = {"fake:no_star": NoStar, "fake:starts_with": StartsWith, "fake:punkt": NeedsPunkt}


# ----------------------------------------------------------------------------- reader


def test_reader_reads_rows_and_drops_none_kwargs(tmp_path):
    f = _write(tmp_path / "b.jsonl", [
        {"key": 7, "prompt": "Say hi.", "instruction_id_list": ["fake:starts_with"],
         "kwargs": [{"word": "Hi", "num_words": None}]},
        {"prompt": "Write.", "instruction_id_list": ["fake:no_star", "fake:no_star"]},  # kwargs left out
    ])
    rows = load_ifeval(f)
    assert [r.key for r in rows] == ["7", "row-2"] and rows[0].row == 1
    assert rows[0].kwargs == [{"word": "Hi"}] and rows[1].kwargs == [{}, {}]


@pytest.mark.parametrize("row, field", [
    ({"instruction_id_list": ["a"], "kwargs": [{}]}, "prompt"),
    ({"prompt": "  ", "instruction_id_list": ["a"], "kwargs": [{}]}, "prompt"),
    ({"prompt": "p", "kwargs": [{}]}, "instruction_id_list"),
    ({"prompt": "p", "instruction_id_list": [], "kwargs": []}, "instruction_id_list"),
    ({"prompt": "p", "instruction_id_list": ["a", 3], "kwargs": [{}, {}]}, "instruction_id_list"),
    ({"prompt": "p", "instruction_id_list": ["a"], "kwargs": {"x": 1}}, "kwargs"),
    ({"prompt": "p", "instruction_id_list": ["a", "b"], "kwargs": [{}]}, "kwargs"),
])
def test_reader_errors_name_file_row_and_field(tmp_path, row, field):
    good = {"prompt": "ok", "instruction_id_list": ["a"], "kwargs": [{}]}
    f = _write(tmp_path / "bad.jsonl", [good, row])
    with pytest.raises(DataError) as e:
        load_ifeval(f)
    msg = str(e.value)
    assert "bad.jsonl" in msg and "row 2" in msg and f"field '{field}'" in msg and "\n" not in msg
    assert e.value.row == 2 and e.value.field == field


def test_reader_missing_file_and_csv(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load_ifeval(tmp_path / "none.jsonl")
    f = tmp_path / "b.csv"
    f.write_text('prompt,instruction_id_list,kwargs\nHello,"[""fake:no_star""]","[{}]"\n')
    (r,) = load_ifeval(f)
    assert r.instruction_ids == ["fake:no_star"] and r.kwargs == [{}]


# ----------------------------------------------------------------------------- loose variants


def test_loose_variants_as_in_the_paper():
    v = loose_variants("Sure!\n**Body** text\nBye")
    assert v[0] == "Sure!\n**Body** text\nBye"
    assert set(v) == {"Sure!\n**Body** text\nBye", "Sure!\nBody text\nBye", "**Body** text\nBye",
                      "Body text\nBye", "Sure!\n**Body** text", "Sure!\nBody text", "**Body** text", "Body text"}


# ----------------------------------------------------------------------------- scoring


def _rows(tmp_path, rows):
    return load_ifeval(_write(tmp_path / "b.jsonl", rows))


def test_strict_loose_prompt_and_instruction_level_by_hand(tmp_path):
    rows = _rows(tmp_path, [
        {"prompt": "p1", "instruction_id_list": ["fake:no_star", "fake:starts_with"], "kwargs": [{}, {"word": "Yes"}]},
        {"prompt": "p2", "instruction_id_list": ["fake:no_star"], "kwargs": [{}]},
        {"prompt": "p3", "instruction_id_list": ["fake:starts_with"], "kwargs": [{"word": "Dear"}]},
        {"prompt": "p4", "instruction_id_list": ["fake:no_star"], "kwargs": [{}]},
    ])
    responses = [
        "Yes, done.",                 # both pass strictly
        "a *bold* claim",             # no_star: strict fail, loose pass (stars removed)
        "Sure, here it is:\nDear Sam,\nhi",  # starts_with: strict fail, loose pass (first line removed)
        "",                           # empty: fails strict and loose
    ]
    r = check_ifeval(rows, responses, registry=FAKE)
    # instructions: 5; strict passes: 2 (row 1); loose passes: 4 (rows 1-3)
    assert r["instruction_strict"]["k"] == 2 and r["instruction_strict"]["n"] == 5
    assert r["instruction_loose"]["k"] == 4 and r["instruction_loose"]["n"] == 5
    # prompts: 4; strict: row 1 only; loose: rows 1-3
    assert (r["prompt_strict"]["k"], r["prompt_strict"]["n"]) == (1, 4)
    assert (r["prompt_loose"]["k"], r["prompt_loose"]["n"]) == (3, 4)
    assert r["prompt_loose"]["rate"] == 0.75
    assert r["prompt_strict"]["ci95"] == pytest.approx(list(wilson_interval(1, 4)))
    # Wilson 95 % for 2/5 by hand: p=.4, z²=3.8415; centre (.4+.38415)/1.7683=.44345,
    # half 1.95996/1.7683*sqrt(.048+.038415)=.32589 -> [.11762, .76932]
    assert r["instruction_strict"]["ci95"] == pytest.approx([0.11762, 0.76932], abs=1e-4)
    assert r["per_instruction"]["fake:no_star"] == {"strict": 1, "loose": 2, "n": 3}
    assert r["skipped"]["count"] == 0 and r["items"][1]["prompt_loose"] is True


def test_skipped_checkers_are_reported_not_fatal(tmp_path):
    rows = _rows(tmp_path, [
        {"prompt": "p1", "instruction_id_list": ["fake:no_star", "fake:punkt"], "kwargs": [{}, {}]},
        {"prompt": "p2", "instruction_id_list": ["nobody:knows"], "kwargs": [{}]},
        {"prompt": "p3", "instruction_id_list": ["fake:starts_with"], "kwargs": [{"bogus": 1}]},
        {"prompt": "p4", "instruction_id_list": ["fake:no_star"], "kwargs": [{}]},
    ])
    r = check_ifeval(rows, ["fine", "x", "y", "ok"], registry=FAKE)
    sk = r["skipped"]
    assert sk["count"] == 3
    reasons = {s["instruction_id"]: s["reason"] for s in sk["items"]}
    assert "NLTK data 'punkt_tab'" in reasons["fake:punkt"] and "not installed" in reasons["fake:punkt"]
    assert "unknown instruction id 'nobody:knows'" in reasons["nobody:knows"]
    assert "rejected the kwargs" in reasons["fake:starts_with"]
    # the checked instructions: row 1's no_star and row 4's: both pass
    assert (r["instruction_strict"]["k"], r["instruction_strict"]["n"]) == (2, 2)
    # only row 4 had every instruction checked
    assert (r["prompt_strict"]["k"], r["prompt_strict"]["n"]) == (1, 1) and r["prompts_with_skips"] == 3
    assert r["items"][0]["prompt_strict"] is None


def test_without_the_package_everything_is_skipped(tmp_path, monkeypatch):
    import alignkit.evaluation.ifeval as mod

    monkeypatch.setattr(mod, "checker_registry", lambda: None)
    rows = _rows(tmp_path, [{"prompt": "p", "instruction_id_list": ["a", "b"], "kwargs": [{}, {}]}])
    r = mod.check_ifeval(rows, ["x"])
    assert r["skipped"]["count"] == 2 and r["skipped"]["reasons"] == {IFEVAL_MISSING: 2}
    assert r["instruction_strict"]["n"] == 0 and r["prompt_strict"]["rate"] is None and r["package"] is None


def test_real_checkers_when_installed(tmp_path, monkeypatch):
    pytest.importorskip("if_verifiable")
    import nltk

    downloads = []
    monkeypatch.setattr(nltk, "download", lambda *a, **k: downloads.append(a))
    import alignkit.evaluation.ifeval as mod

    monkeypatch.setattr(mod, "_REGISTRY", None)
    registry = checker_registry()
    assert "punctuation:no_comma" in registry and "count:word_count_range" in registry  # IFEval + IFBench
    rows = _rows(tmp_path, [
        {"prompt": "Answer without commas.", "instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]},
        {"prompt": "All lowercase and end with 'bye.'", "instruction_id_list":
         ["change_case:english_lowercase", "startend:end_checker"], "kwargs": [{}, {"end_phrase": "bye."}]},
        {"prompt": "Two sentences.", "instruction_id_list": ["length_constraints:number_sentences"],
         "kwargs": [{"num_sentences": 2, "relation": "at least"}]},
    ])
    responses = ["Yes, of course", "this is all written in lowercase english words, and it ends the way the user asked. bye.",
                 "One. Two."]
    r = check_ifeval(rows, responses, registry)
    assert r["items"][0]["instructions"][0] == {"id": "punctuation:no_comma", "strict": False, "loose": False}
    assert r["items"][1]["prompt_strict"] is True
    sentences = r["items"][2]["instructions"][0]
    try:
        nltk.data.find("tokenizers/punkt_tab")
        has_punkt = True
    except LookupError:
        has_punkt = False
    if has_punkt:
        assert sentences["strict"] is True
    else:
        assert "NLTK data" in sentences["skipped"] and r["skipped"]["count"] == 1
    assert downloads == []  # nothing was fetched


# ----------------------------------------------------------------------------- the command


def test_eval_cli_ifeval_tiny_random(tmp_path, capsys, monkeypatch):
    import alignkit.evaluation.ifeval as mod
    from alignkit.commands import eval as eval_cmd

    monkeypatch.setattr(mod, "_REGISTRY", dict(FAKE))
    f = _write(tmp_path / "bench.jsonl", [
        {"key": 1, "prompt": "Write a line.", "instruction_id_list": ["fake:no_star", "unknown:id"],
         "kwargs": [{}, {}]},
        {"key": 2, "prompt": "Write another line.", "instruction_id_list": ["fake:no_star"], "kwargs": [{}]},
    ])
    out = tmp_path / "out"
    rc = eval_cmd.main(["--model", "tiny-random", "--ifeval", str(f), "--max-new-tokens", "4",
                        "--output-dir", str(out)])
    assert rc == 0
    res = json.loads((out / "results.json").read_text())
    ife = res["models"][0]["ifeval"]
    assert res["prompts"]["split"] == "ifeval" and res["prompts"]["n"] == 2
    assert ife["skipped"]["count"] == 1 and ife["instruction_strict"]["n"] == 2 and ife["prompt_strict"]["n"] == 1
    md = (out / "results.md").read_text()
    assert "IFEval prompt-level loose" in md and "1 instruction(s) skipped" in md
    comps = [json.loads(x) for x in next(out.glob("completions-1-*.jsonl")).read_text().splitlines()]
    assert comps[0]["instructions"][1]["skipped"].startswith("unknown instruction id")
    capsys.readouterr()
    bad = _write(tmp_path / "bad.jsonl", [{"prompt": "p", "instruction_id_list": "oops"}])
    assert eval_cmd.main(["--model", "tiny-random", "--ifeval", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "bad.jsonl: row 1: field 'instruction_id_list'" in err
    assert eval_cmd.main(["--model", "tiny-random", "--ifeval", str(f), "--math"]) == 2
