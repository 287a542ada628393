"""Repairs (alignkit.evaluation.repair): each edit by hand, and the rule that a repair is returned only
when every constraint then passes."""

import json

import pytest

from alignkit.evaluation.constraints import REGISTRY, check_constraint
from alignkit.evaluation.repair import REPAIRS, complete_sentences, number_words, repair

ANSWER = ("Lighthouse keepers maintain the light, which guides ships at night. They clean the lens and log the "
          "weather. In 1890 most lights burned oil. Today many are automated.")


def test_every_repair_names_a_registered_constraint():
    assert set(REPAIRS) <= set(REGISTRY)


@pytest.mark.parametrize("constraint, want", [
    ({"type": "lowercase"}, ANSWER.lower()),
    ({"type": "uppercase"}, ANSWER.upper()),
    ({"type": "no_commas"}, ANSWER.replace(", ", " ")),
    ({"type": "ends_with", "phrase": "Over and out."}, ANSWER + " Over and out."),
    ({"type": "ends_with_question"}, ANSWER + " Would you like to know more?"),
    ({"type": "quotation"}, f'"{ANSWER}"'),
    ({"type": "first_word", "word": "Well"}, "Well l" + ANSWER[1:]),
    ({"type": "starts_with", "phrase": "My answer:"}, "My answer: l" + ANSWER[1:]),
    ({"type": "postscript", "marker": "P.S."}, ANSWER + "\n\nP.S. Thank you for reading."),
    ({"type": "placeholder_count", "min": 2}, ANSWER + "\n\n[name] [date]"),
    ({"type": "title"}, "<<Lighthouse Keepers Maintain The>>\n\n" + ANSWER),
    ({"type": "max_words", "max": 20}, "Lighthouse keepers maintain the light, which guides ships at night. They "
                                       "clean the lens and log the weather."),
    ({"type": "sentence_count", "max": 1}, "Lighthouse keepers maintain the light, which guides ships at night."),
    ({"type": "forbidden_words", "words": ["oil"]}, ANSWER.replace(" In 1890 most lights burned oil.", "")),
    ({"type": "no_digits"}, ANSWER.replace("1890", "one thousand eight hundred ninety")),
    ({"type": "include_keywords", "keywords": ["careful"]}, ANSWER + " Keep in mind: careful."),
    ({"type": "bullet_list", "count": 3, "marker": "-"},
     "- Lighthouse keepers maintain the light, which guides ships at night.\n- They clean the lens and log the "
     "weather.\n- In 1890 most lights burned oil."),
    ({"type": "numbered_list", "count": 2},
     "1. Lighthouse keepers maintain the light, which guides ships at night.\n2. They clean the lens and log "
     "the weather."),
    ({"type": "separated_paragraphs", "count": 2},
     "Lighthouse keepers maintain the light, which guides ships at night. They clean the lens and log the "
     "weather.\n\n***\n\nIn 1890 most lights burned oil. Today many are automated."),
    ({"type": "section_count", "count": 3},
     "Section 1\nLighthouse keepers maintain the light, which guides ships at night. They clean the lens and log "
     "the weather.\n\nSection 2\nIn 1890 most lights burned oil.\n\nSection 3\nToday many are automated."),
    ({"type": "highlighted_sections", "min": 2}, "*Lighthouse* *keepers*" + ANSWER[len("Lighthouse keepers"):]),
])
def test_each_repair_by_hand(constraint, want):
    assert not check_constraint(ANSWER, constraint)  # the case really needs a repair
    assert repair(ANSWER, [constraint]) == want
    assert check_constraint(want, constraint)


def test_json_repair_puts_the_sentences_under_the_keys():
    got = repair(ANSWER, [{"type": "json_format", "keys": ["title", "summary"]}])
    value = json.loads(got)
    assert value == {"title": "Lighthouse keepers maintain the light, which guides ships at night. They clean the "
                              "lens and log the weather.",
                     "summary": "In 1890 most lights burned oil. Today many are automated."}


def test_repeat_request_goes_first():
    ask = "Tell me about lighthouses."
    assert repair(ANSWER, [{"type": "repeat_request", "text": ask}]) == ask + "\n\n" + ANSWER


def test_several_constraints_apply_in_order_and_all_pass():
    cons = [{"type": "uppercase"}, {"type": "ends_with", "phrase": "Over and out."}, {"type": "max_words", "max": 14}]
    got = repair(ANSWER, cons)
    assert got == "LIGHTHOUSE KEEPERS MAINTAIN THE LIGHT, WHICH GUIDES SHIPS AT NIGHT. OVER AND OUT."
    assert all(check_constraint(got, c) for c in cons)


def test_a_length_limit_broken_by_an_addition_is_retried_with_fewer_sentences():
    # max 20 words: the cut keeps sentences 1-2 (18 words), the end phrase makes 21; one sentence fewer fits
    cons = [{"type": "max_words", "max": 20}, {"type": "ends_with", "phrase": "Over and out."}]
    assert repair(ANSWER, cons) == "Lighthouse keepers maintain the light, which guides ships at night. Over and out."


def test_no_repair_when_none_exists_or_edits_fight():
    assert repair(ANSWER, [{"type": "min_words", "min": 500}]) is None  # nothing to add that is an answer
    assert repair(ANSWER, [{"type": "letter_frequency", "letter": "z", "min": 3}]) is None  # no repair for it
    assert repair(ANSWER, [{"type": "bullet_count", "count": 9}]) is None  # only 4 sentences
    # a word limit the appended end phrase then breaks: the final check refuses it
    assert repair(ANSWER, [{"type": "max_words", "max": 12}, {"type": "ends_with", "phrase": "Over and out."}]) is None
    assert repair("", [{"type": "lowercase"}]) is None


def test_passing_answer_comes_back_unchanged():
    assert repair(ANSWER, [{"type": "min_words", "min": 5}]) == ANSWER


def test_truncated_answer_loses_its_unfinished_sentence():
    cut = ANSWER + " The job was lonely but"
    assert complete_sentences(cut) == ANSWER
    assert complete_sentences("no sentence end at all") == "no sentence end at all"
    assert repair(cut, [{"type": "lowercase"}], truncated=True) == ANSWER.lower()
    assert repair(cut, [{"type": "lowercase"}], truncated=False) == cut.lower()


@pytest.mark.parametrize("n, words", [(0, "zero"), (7, "seven"), (19, "nineteen"), (40, "forty"), (42, "forty-two"),
                                      (300, "three hundred"), (1905, "one thousand nine hundred five")])
def test_number_words(n, words):
    assert number_words(n) == words
