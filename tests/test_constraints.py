"""Constraint checkers (each on a passing and a failing answer), validation, instruction files, scoring."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from alignkit.evaluation import (
    DEFAULT_INSTRUCTIONS,
    REGISTRY,
    ConstraintError,
    InstructionFileError,
    check_constraint,
    constraint_reward,
    constraint_types,
    describe_constraint,
    load_instructions,
    score_responses,
    validate_constraint,
)
from alignkit.evaluation.constraints import count_paragraphs, count_sentences, count_words

# type -> (params, passing answer, failing answer)
CASES = {
    "max_words": ({"max": 5}, "One two three four five.", "One two three four five six."),
    "min_words": ({"min": 4}, "Cats don't like baths.", "Cats hate baths."),
    "sentence_count": ({"min": 2, "max": 2}, "It rains. We stay in!", "It rains. We stay in. Then we read."),
    "include_keywords": ({"keywords": ["practice", "Patience"]}, "Practice daily with patience.",
                         "Practicing needs patience."),  # 'practice' only inside another word
    "forbidden_words": ({"words": ["rain", "wet"]}, "Grey clouds over a brainy town.", "The RAIN falls."),
    "keyword_frequency": ({"keyword": "cat", "min": 3}, "Cat? A cat! My cat.", "cat cat category concat"),
    "lowercase": ({}, "all quiet here, 42 times.", "all quiet here, Mostly."),
    "uppercase": ({}, "STOP! DANGER AHEAD 100 M.", "STOP! Danger ahead."),
    "json_format": ({"keys": ["title", "year"]}, '```json\n{"title": "Dune", "year": 1965}\n```',
                    'Here it is: {"title": "Dune", "year": 1965}'),
    "bullet_count": ({"count": 3}, "Tips:\n* sleep\n- eat\n  • walk\n**Bold** line", "* one\n* two\n1. three"),
    "starts_with": ({"phrase": "Mars is"}, "  mars is red.", "The planet Mars is red."),
    "ends_with": ({"phrase": "Enjoy your tea!"}, "Steep it.\nEnjoy your tea!  \n", "Enjoy your tea! Bye."),
    "no_commas": ({}, "No commas at all here.", "One, two."),
    "title": ({}, "<<Morning Tide>>\nWaves come in.", "<< >> and <<broken\ntitle>>"),
    "paragraph_count": ({"count": 2}, "First part.\nStill first.\n\n  \nSecond part.", "Only one\nparagraph here."),
    "quotation": ({}, '  "Dream big, start small."\n', '"Dream big," she said.'),
    "postscript": ({"marker": "P.S."}, "See you soon.\nP.S. bring cake", "See you soon. PS bring cake"),
    "placeholder_count": ({"min": 2}, "Dear [name], meet at [time].", "Dear [name], meet at [ ]."),
    "highlighted_sections": ({"min": 2}, "Eat *oats* and **fruit**.", "Eat *oats* and * * fruit."),
    # the kinds added with the generated set (issue 12)
    "bullet_list": ({"count": 3, "marker": "-"}, "Intro:\n- a\n- b\n  - c\n**Bold** line", "- a\n- b\n* c"),
    "numbered_list": ({"count": 3}, "Steps:\n1. Boil\n2) Pour\n  3. Drink", "1. Boil\n3. Pour\n4. Drink"),
    "repeat_request": ({"text": "Describe owls. Use 20 words."}, "Describe owls.\n  Use 20 words.\nOwls hoot.",
                       "Describe owls. Owls hoot."),
    "separated_paragraphs": ({"count": 2}, "First part.\n  ***  \nSecond part.", "First.\n***\n\n***\nSecond."),
    "letter_frequency": ({"letter": "z", "min": 3}, "Zebras zigzag lazily.", "Zebras run fast."),
    "no_digits": ({}, "Twenty-one owls, not twenty-two.", "We saw 21 owls."),
    "first_word": ({"word": "yes"}, "Yes, of course.", "Yesterday was fine."),
    "last_word": ({"word": "tomorrow"}, "See you tomorrow!", "Tomorrow, then."),
    "ends_with_question": ({}, "Ready? Shall we go?  \n", "Shall we go? Yes."),
    "max_characters": ({"max": 10}, "  Short one \n", "A bit too long"),
    "section_count": ({"count": 2, "label": "Section"}, "## Section 1\nIntro\n**Section 2**\nMore",
                      "Section 1\nx\nSection 3\ny"),
    "max_sentence_words": ({"max": 4}, "Owls hunt at night. They fly silently.",
                           "Owls hunt at night. They fly without a sound."),
}
NEW_KINDS = ["bullet_list", "numbered_list", "repeat_request", "separated_paragraphs", "letter_frequency",
             "no_digits", "first_word", "last_word", "ends_with_question", "max_characters", "section_count",
             "max_sentence_words"]


def test_cases_cover_every_registered_type():
    assert sorted(CASES) == constraint_types()
    assert len(REGISTRY) >= 25 and set(NEW_KINDS) <= set(REGISTRY)


@pytest.mark.parametrize("kind", sorted(CASES))
def test_checker_pass_and_fail(kind):
    params, good, bad = CASES[kind]
    constraint = validate_constraint({"type": kind, **params})
    assert check_constraint(good, constraint) is True, (kind, good)
    assert check_constraint(bad, constraint) is False, (kind, bad)
    # the checkers are plain functions too, and every type describes itself
    assert REGISTRY[kind].check(good, **params) is True
    assert describe_constraint(constraint)


def test_text_conventions():
    assert count_words("don't stop, well-known 3.5 x") == 6  # don't | stop | well-known | 3 | 5 | x
    assert count_sentences("Hi there. \"Really?\" he asked.\nA line without a stop") == 4
    assert count_sentences("Pi is 3.14 exactly.") == 1
    assert count_paragraphs("\n\na\n\n\n b \n") == 2
    ranged = validate_constraint({"type": "sentence_count", "max": 2})
    assert check_constraint("One. Two.", ranged) and not check_constraint("One. Two. Three.", ranged)
    assert check_constraint("[1, 2]", {"type": "json_format"})
    assert not check_constraint("[1, 2]", {"type": "json_format", "keys": ["a"]})
    assert not check_constraint("123", {"type": "lowercase"})  # no letters at all


@pytest.mark.parametrize("kind, params, good, bad", [
    # each new checker on more edges: (type, params, passing answers, failing answers)
    ("bullet_list", {"count": 2, "marker": "*"}, ["* a\n* b", "Intro\n  * a\n* b\n1. not a bullet"],
     ["* a", "* a\n* b\n* c", "*a\n*b", "* a\n• b", "- a\n- b"]),
    ("numbered_list", {"count": 2}, ["1. a\n2. b", "Two:\n 1) a\n 2) b\nDone."],
     ["1. a", "2. a\n1. b", "1. a\n2. b\n3. c", "1.a\n2.b", "one. a\ntwo. b"]),
    ("repeat_request", {"text": "Say hi, then stop."}, ["Say hi, then stop. Hi!", "Say  hi,\nthen stop.\n\nHi."],
     ["Say hi, then stop.", "Say hi, then stop. ...", "say hi, then stop. Hi!", "Hi! Say hi, then stop."]),
    ("separated_paragraphs", {"count": 3}, ["a\n***\nb\n***\nc", "one two\n\n***\n\nthree\n***\nfour"],
     ["a\n***\nb", "a *** b *** c", "***\na\n***\nb\n***\nc", "a\n***\nb\n***\nc\n***"]),
    ("separated_paragraphs", {"count": 2, "separator": "---"}, ["a\n---\nb"], ["a\n***\nb"]),
    ("letter_frequency", {"letter": "Q", "max": 1}, ["quiet", "no such letter"], ["Quick queue"]),
    ("letter_frequency", {"letter": "k", "min": 2, "max": 2}, ["Kick"], ["kick kick", "sky"]),
    ("no_digits", {}, ["seven", "Room ten."], ["Room 7", "x0", "", "   "]),
    ("first_word", {"word": "Honestly"}, ["honestly!", "  'Honestly', he said."], ["Honest man.", "Well, honestly."]),
    ("last_word", {"word": "done"}, ["We are done.", "DONE!!", "All done\n"], ["done deal", "undone", "done-ish", ""]),
    ("ends_with_question", {}, ["Why?", "ok?\n\n"], ["Why?!", "Why.", "Is it? No", ""]),
    ("max_characters", {"max": 5}, ["12345", "  ab \n"], ["123456", "ab cd e"]),
    ("section_count", {"count": 3, "label": "PART"}, ["PART 1\na\nPART 2\nb\nPART 3\nc", "# PART 1\n## PART 2\n* PART 3"],
     ["Part 1\nPart 2\nPart 3", "PART 1\nPART 2", "PART 1 PART 2 PART 3", "PART 1\nPART 2\nPART 3\nPART 4"]),
    ("max_sentence_words", {"max": 3}, ["Yes. No. Maybe so!", "Short line\nAnother one"],
     ["", "One two three four.", "Fine. But this one is long."]),
])
def test_new_checker_edges(kind, params, good, bad):
    constraint = validate_constraint({"type": kind, **params})
    for text in good:
        assert check_constraint(text, constraint) is True, (kind, text)
    for text in bad:
        assert check_constraint(text, constraint) is False, (kind, text)


@pytest.mark.parametrize("bad, message", [
    ({"type": "bullet_list", "count": 2, "marker": "+"}, "'marker' must be one of"),
    ({"type": "bullet_list", "count": 2}, "missing parameter 'marker'"),
    ({"type": "letter_frequency", "letter": "zz", "min": 1}, "single letter"),
    ({"type": "letter_frequency", "letter": "7", "min": 1}, "single letter"),
    ({"type": "letter_frequency", "letter": "z"}, "needs 'min', 'max' or both"),
    ({"type": "first_word", "word": "two words"}, "single word"),
    ({"type": "last_word", "word": "end."}, "single word"),
    ({"type": "repeat_request"}, "missing parameter 'text'"),
    ({"type": "separated_paragraphs", "count": 2, "separator": ""}, "non-empty string"),
    ({"type": "section_count", "count": 2, "label": 3}, "non-empty string"),

    ({"type": "lowercas"}, "unknown constraint type 'lowercas' (did you mean 'lowercase'?)"),
    ({"max": 3}, "missing 'type'"),
    ("max_words", "must be an object"),
    ({"type": "max_words"}, "missing parameter 'max'"),
    ({"type": "max_words", "max": -1}, "whole number >= 0"),
    ({"type": "max_words", "max": "10"}, "whole number >= 0"),
    ({"type": "max_words", "max": True}, "whole number >= 0"),
    ({"type": "max_words", "max": 10, "min": 2}, "unknown parameter 'min'"),
    ({"type": "include_keywords", "keywords": []}, "non-empty list"),
    ({"type": "ends_with", "phrase": "  "}, "non-empty string"),
    ({"type": "sentence_count"}, "needs 'min', 'max' or both"),
    ({"type": "sentence_count", "min": 3, "max": 2}, "larger than 'max'"),
])
def test_validate_constraint_errors(bad, message):
    with pytest.raises(ConstraintError, match=message.replace("(", r"\(").replace(")", r"\)").replace("?", r"\?")):
        validate_constraint(bad)


def _write(tmp_path, rows, name="ins.jsonl"):
    p = tmp_path / name
    p.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return p


def test_instruction_file_errors_name_the_row(tmp_path):
    good = {"prompt": "Say hi.", "constraints": [{"type": "no_commas"}]}
    cases = [
        ([good, {"prompt": "x", "constraints": [{"type": "no_commas"}, {"type": "shouty"}]}],
         "row 2: constraint 2: unknown constraint type 'shouty'"),
        ([good, good, {"prompt": "x", "constraints": {"type": "no_commas"}}], "row 3: field 'constraints' must be a list"),
        ([good, {"constraints": []}], "row 2: field 'prompt': missing"),
        ([good, "{not json"], "row 2: not valid JSON"),
        ([{**good, "id": "a"}, {**good, "id": "a"}], "row 2: duplicate id 'a' (also on row 1)"),
        ([{**good, "split": 3}], "row 1: field 'split' must be a non-empty string"),
        ([{**good, "split": "train"}], "no rows in split 'test' (splits in the file: train"),
    ]
    for i, (rows, message) in enumerate(cases):
        path = _write(tmp_path, rows, f"f{i}.jsonl")
        with pytest.raises(InstructionFileError) as e:
            load_instructions(path, "test")
        assert str(path) in str(e.value) and message in str(e.value), (message, str(e.value))
    with pytest.raises(InstructionFileError, match="not found"):
        load_instructions(tmp_path / "missing.jsonl")


def test_splits_and_defaults(tmp_path):
    path = _write(tmp_path, [
        {"prompt": "a", "constraints": [{"type": "no_commas"}], "split": "train"},
        {"prompt": "b", "constraints": [{"type": "no_commas"}], "split": "test", "topic": "x"},
        {"prompt": [{"role": "user", "content": "c"}], "reference": "ref"},  # no split: in every split
    ])
    assert [i.prompt for i in load_instructions(path, "train")][0] == "a"
    test = load_instructions(path, "test")
    assert [i.id for i in test] == ["row-2", "row-3"] and test[0].columns["topic"] == "x"
    assert test[1].constraints == [] and test[1].reference == "ref"
    assert len(load_instructions(path, "all")) == len(load_instructions(path, None)) == 3


def test_shipped_set():
    from alignkit.evaluation.instruction_set import HELDOUT_KINDS

    every = load_instructions(None, "all")
    assert len(every) >= 550
    assert len({i.id for i in every}) == len(every)
    train, test = load_instructions(None, "train"), load_instructions(None, "test")
    assert len(train) + len(test) == len(every) and len(test) >= 150 and len(train) >= 400
    assert not {i.prompt for i in train} & {i.prompt for i in test}
    for split in (train, test):
        assert all(1 <= len(i.constraints) <= 3 for i in split)
    test_types = Counter(c["type"] for i in test for c in i.constraints)
    train_types = Counter(c["type"] for i in train for c in i.constraints)
    assert set(test_types) == set(REGISTRY), set(REGISTRY) - set(test_types)  # every type is measured
    assert set(train_types) == set(REGISTRY) - set(HELDOUT_KINDS)  # ... and all but the held-out ones trained
    assert DEFAULT_INSTRUCTIONS.endswith("instructions.jsonl")


def test_load_instructions_filters_held_out_rows(tmp_path):
    rows = [{"prompt": p, "constraints": [{"type": "no_commas"}], "split": "test", "family": f, "heldout": h}
            for p, f, h in [("a", "direct", None), ("b", "spec", "family"), ("c", "direct", "kind"), ("d", None, None)]]
    path = _write(tmp_path, rows)
    ids = lambda **kw: [i.prompt for i in load_instructions(path, "test", **kw)]  # noqa: E731
    assert ids() == ["a", "b", "c", "d"]
    assert ids(heldout="family") == ["b"] and ids(heldout="kind") == ["c"]
    assert ids(heldout="any") == ["b", "c"] and ids(heldout="none") == ["a", "d"]
    assert ids(family="direct") == ["a", "c"] and ids(family="direct", heldout="none") == ["a"]
    ins = load_instructions(path, "test", heldout="family")[0]
    assert (ins.family, ins.heldout) == ("spec", "family")
    assert load_instructions(path, "test")[3].family is None
    with pytest.raises(ValueError, match="heldout must be"):
        load_instructions(path, "test", heldout="families")
    with pytest.raises(InstructionFileError, match="no rows in split 'test' with family='rules'"):
        load_instructions(path, "test", family="rules")
    with pytest.raises(InstructionFileError, match="no rows in split 'train'"):  # the split error comes first
        load_instructions(path, "train", heldout="kind")
    bad = _write(tmp_path, [{**rows[0], "heldout": True}], "bad.jsonl")
    with pytest.raises(InstructionFileError, match="row 1: field 'heldout' must be a non-empty string or null"):
        load_instructions(bad, "test")


def test_score_responses_levels():
    from alignkit.evaluation.instructions import Instruction

    ins = [Instruction("a", "p", [validate_constraint({"type": "no_commas"}), validate_constraint({"type": "lowercase"})]),
           Instruction("b", "p", [validate_constraint({"type": "no_commas"})]),
           Instruction("c", "p", [])]  # not scored
    s = score_responses(ins, ["all lower, one comma", "fine", "whatever"])
    assert s["n_prompts"] == 2 and s["n_instructions"] == 3
    assert s["prompt_level"] == 0.5 and s["instruction_level"] == pytest.approx(2 / 3)
    assert s["per_type"]["no_commas"] == {"pass_rate": 0.5, "passed": 1, "total": 2}
    assert s["per_type"]["lowercase"]["pass_rate"] == 1.0
    assert s["details"][0] == {"id": "a", "passed": [False, True], "all": False}
    with pytest.raises(ValueError):
        score_responses(ins, ["one"])


def test_constraint_reward_is_a_reward_function():
    cons = [[{"type": "no_commas"}, {"type": "lowercase"}], [{"type": "uppercase"}], []]
    out = constraint_reward(["p"] * 3, ["no commas here", [{"role": "assistant", "content": "LOUD"}], "x"],
                            constraints=cons, split=["test"] * 3)
    assert out == [1.0, 1.0, 0.0]
    assert constraint_reward(["p"], ["a, b"], constraints=[[{"type": "no_commas"}, {"type": "lowercase"}]]) == [0.5]
    with pytest.raises(ValueError, match="constraints"):
        constraint_reward(["p"], ["x"])
