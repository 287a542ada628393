"""The shipped instruction-following set (``alignkit/assets/eval/instructions.jsonl``), generated.

``python -m alignkit.evaluation.instruction_set`` rewrites the file; ``--check`` only compares it with
what the generator makes now (exit 1 when they differ). Generation is deterministic: fixed seeds,
fixed tables, no network, nothing read but ``instructions-v1.jsonl`` (the original hand-written
64-prompt set, kept as it was: its 32 ``test`` rows are copied verbatim, with the same ids).

Every prompt is put together from three tables written for this project:

* a **topic** (a noun phrase and a word that goes with it, e.g. ``("tide pools", "tide")``); train and
  test draw from disjoint topic lists;
* a **family**: the wording style that frames the request — ``direct`` (a task sentence, then one
  sentence per constraint), ``context`` (a line about who is asking first), ``question`` (the task as a
  question), ``rules`` (the constraints as a bulleted list of rules), and ``spec`` (a terse form,
  ``Topic: ...`` / ``Length: ...`` lines) which is **never used for training**; ``v1`` marks the
  original hand-written test rows;
* for each constraint, a **phrasing** drawn from several wordings of that kind: the first ones are
  train wordings, the last two test wordings, so train and test never say a constraint the same way.

Rows carry two extra fields besides ``id``, ``split``, ``prompt`` and ``constraints``:

* ``family``: the wording family above;
* ``heldout``: ``"family"`` for a test row in the held-out ``spec`` family (its constraint kinds are
  all seen in training), ``"kind"`` for a test row that uses a constraint kind never seen in training
  (:data:`HELDOUT_KINDS`; those rows use the seen families), ``null`` otherwise (every train row, and
  the test rows whose wording family and kinds training has seen, though not their sentences).

The set's guarantees, checked by :func:`check_rows` (and the tests): no two prompts are identical;
no sentence of a test prompt occurs in any train prompt (:func:`sentence_overlap`); the held-out
family and kinds are absent from training; every constraint validates.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path
from typing import Any

from alignkit.evaluation.constraints import validate_constraint

__all__ = [
    "FAMILIES",
    "HELDOUT_FAMILY",
    "HELDOUT_KINDS",
    "SEEN_KINDS",
    "V1_INSTRUCTIONS",
    "build_rows",
    "check_rows",
    "render_jsonl",
    "sentence_overlap",
    "split_sentences",
    "write_set",
]

_ASSETS = files("alignkit") / "assets" / "eval"
V1_INSTRUCTIONS = str(_ASSETS / "instructions-v1.jsonl")
OUTPUT = str(_ASSETS / "instructions.jsonl")

SEED = 12
N_TRAIN = 500
TRAIN_ROUNDS = 5  # each (kind, family) pair is drawn up to this often for train rows
HELDOUT_FAMILY_ROWS = 42
HELDOUT_KIND_ROWS_PER_FAMILY = 3  # per held-out kind and seen family

SEEN_FAMILIES = ("direct", "context", "question", "rules")
HELDOUT_FAMILY = "spec"
FAMILIES = (*SEEN_FAMILIES, HELDOUT_FAMILY)
HELDOUT_KINDS = ("last_word", "letter_frequency", "max_characters")

# ------------------------------------------------------------------------------------ topics
# (noun phrase, a word that belongs to it); train and test topics are disjoint
TRAIN_TOPICS = [
    ("beekeeping", "honey"), ("the water cycle", "water"), ("night markets", "market"),
    ("learning to swim", "swim"), ("baking sourdough bread", "dough"), ("tide pools", "tide"),
    ("composting at home", "compost"), ("the first day at a new job", "job"), ("paper airplanes", "paper"),
    ("hiking in the mountains", "trail"), ("keeping a houseplant alive", "plant"), ("solar panels", "solar"),
    ("the invention of the printing press", "printing"), ("packing for a long trip", "suitcase"),
    ("chess openings", "chess"), ("city parks", "park"), ("old railway stations", "train"),
    ("writing a thank-you card", "card"), ("migrating birds", "birds"), ("growing tomatoes", "tomato"),
    ("public transport", "bus"), ("learning to knit", "yarn"), ("board game nights", "game"),
    ("the life of an ant colony", "ants"), ("visiting a museum", "museum"), ("street food", "food"),
    ("camping in the rain", "tent"), ("the history of maps", "maps"), ("training a puppy", "puppy"),
    ("a village bakery", "bakery"), ("wind turbines", "wind"), ("a school science fair", "science"),
    ("ice skating", "ice"), ("bird watching", "binoculars"), ("a neighbourhood garden", "garden"),
    ("saving energy at home", "energy"), ("making soup", "soup"), ("the northern lights", "lights"),
    ("a long train journey", "journey"), ("clouds and weather", "clouds"), ("learning a musical instrument", "music"),
    ("a family picnic", "picnic"), ("keeping chickens", "eggs"), ("deep sea creatures", "deep"),
    ("cycling to work", "commute"), ("a rainy day indoors", "indoors"), ("the art of letter writing", "letter"),
    ("a farmers' market", "farmers"), ("building a sandcastle", "sand"), ("making friends in a new town", "friends"),
    ("the phases of the moon", "phases"), ("kites", "kite"), ("the human heart", "blood"),
    ("wildflowers", "flowers"), ("a power cut at night", "candles"), ("an old clock tower", "clock"),
    ("repairing a bicycle tyre", "tyre"), ("penguins", "penguins"), ("winter in the countryside", "frost"),
    ("a first cooking lesson", "recipe"),
]
TEST_TOPICS = [
    ("lighthouses", "light"), ("coral reefs", "coral"), ("learning to juggle", "juggling"),
    ("a second-hand bookshop", "books"), ("the life of a honeybee queen", "queen"), ("volunteering at a shelter", "shelter"),
    ("a thunderstorm over the sea", "thunder"), ("pottery classes", "clay"), ("the first telephone", "telephone"),
    ("owls", "owls"), ("a bus trip across the country", "road"), ("fixing a leaking tap", "tap"),
    ("glaciers", "glacier"), ("a local football club", "football"), ("origami", "fold"),
    ("the history of chocolate", "chocolate"), ("a quiet fishing village", "boats"), ("running a first marathon", "marathon"),
    ("hot air balloons", "balloon"), ("a rooftop vegetable patch", "vegetables"), ("sign language", "hands"),
    ("desert foxes", "foxes"), ("a jazz concert", "jazz"), ("taking care of an aquarium", "fish"),
    ("the invention of glasses", "lenses"), ("a snowy mountain hut", "snow"), ("tree rings", "rings"),
    ("a lost umbrella", "umbrella"), ("learning to cook rice", "rice"), ("an autumn harvest festival", "harvest"),
]

# ------------------------------------------------------------------------------------ frames
TASKS = [
    "Write a short piece about {t}.", "Describe {t} for someone who has never thought about it.",
    "Explain {t} to a beginner.", "Tell me something interesting about {t}.", "Write a brief blog post on {t}.",
    "Give a friendly overview of {t}.", "Share some practical advice about {t}.", "Write a short speech about {t}.",
    "Summarise what people should know about {t}.", "Write a few lines for a newsletter about {t}.",
]
QUESTIONS = [
    "What should a newcomer know about {t}?", "Why do people find {t} interesting?",
    "How would you explain {t} to a child?", "What makes {t} worth learning about?",
    "Can you tell me a little about {t}?", "What are the main things to understand about {t}?",
]
PERSONAS = {
    "train": ["I write a newsletter for a small village.", "I am preparing notes for a school club.",
              "My grandmother asked me to help her with something.", "I run a weekend workshop for adults.",
              "I am making a poster for the local library."],
    "test": ["I teach an evening class for retired people.", "A colleague wants something to read on the bus.",
             "I am putting together a pamphlet for tourists.", "My nephew is curious and keeps asking questions."],
}
SPEC_TASKS = ["a short explanation", "a brief description", "some practical advice", "a short article",
              "a summary for beginners", "a friendly note"]

# ------------------------------------------------------------------------------------ parameter pools
GENERIC_WORDS = ["simple", "history", "future", "careful", "surprising", "daily", "community", "balance",
                 "patience", "curious", "season", "weekend", "neighbour", "memory", "quiet", "bright",
                 "tradition", "safety", "practice", "together"]
OPENINGS = ["In short", "Here is", "Picture this", "To begin", "Good question", "Let me explain",
            "First of all", "Simply put", "Quick answer", "Believe it or not"]
FIRST_WORDS = ["Yes", "Today", "Honestly", "Well", "Certainly", "Basically", "Interestingly", "Sure", "Listen"]
CLOSINGS = ["That is all.", "Thanks for reading!", "The end.", "Any questions?", "Hope this helps.",
            "See you soon!", "Over and out.", "Stay curious!"]
LAST_WORDS = ["tomorrow", "together", "forever", "again", "home", "now", "everywhere", "done"]
JSON_KEYS = [["title", "summary"], ["name", "reason", "example"], ["topic", "facts"], ["question", "answer"],
             ["pros", "cons"], ["main_idea", "details", "tip"], ["heading", "points"]]
RARE_LETTERS = ["z", "q", "x", "j", "k", "v"]
SECTION_LABELS = ["Section", "SECTION", "Part", "PART"]


def _q(words: list[str], joiner: str) -> str:
    quoted = [f'"{w}"' for w in words]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + f" {joiner} " + quoted[-1]


def _range_words(p: dict) -> str:
    lo, hi = p.get("min"), p.get("max")
    if lo is not None and hi is not None:
        return f"exactly {lo}" if lo == hi else f"between {lo} and {hi}"
    return f"at least {lo}" if lo is not None else f"no more than {hi}"


# ------------------------------------------------------------------------------------ kinds
# Each kind: sample(rng, topic_word) -> params; say(params) -> wordings (all but the last two are
# train wordings, the last two test wordings; a held-out kind has test wordings only); spec(params)
# -> its line in the held-out "spec" family; slots: what it occupies (two kinds sharing a slot are
# never combined in one prompt, because they would fight or make each other trivial).
class Kind:
    def __init__(self, sample: Callable[[random.Random, str], dict], say: Callable[[dict], list[str]],
                 spec: Callable[[dict], str] | None, slots: set[str]):
        self.sample, self.say, self.spec, self.slots = sample, say, spec, slots


def _n(lo: int, hi: int, step: int = 1) -> Callable[[random.Random], int]:
    return lambda rng: rng.randrange(lo, hi + 1, step)


def _sentence_params(rng: random.Random, _w: str) -> dict:
    n = rng.randint(2, 5)
    return rng.choice([{"min": n, "max": n}, {"max": min(n, 4)}, {"min": max(n, 3)}])


def _json_params(rng: random.Random, _w: str) -> dict:
    return {"keys": list(rng.choice(JSON_KEYS))} if rng.random() < 0.7 else {}


def _json_say(p: dict) -> list[str]:
    if p.get("keys"):
        k = _q(p["keys"], "and")
        return [f"Reply with a JSON object that has the keys {k}, and put nothing outside it.",
                f"Format the answer as JSON: one object with the keys {k}.",
                f"Give only a JSON object whose keys are {k}.",
                f"Output a single JSON object containing the keys {k} and no other text.",
                f"Answer in JSON, using an object with the keys {k}."]
    return ["Reply with valid JSON and nothing else.", "Format your entire answer as JSON.",
            "The output must be a JSON document with no surrounding text.",
            "Express the answer as JSON, with no text around it.", "Write the whole answer as valid JSON."]


def _kw(p: dict, key: str, joiner: str) -> tuple[str, str]:
    ws = p[key]
    return ("the word" if len(ws) == 1 else "the words"), _q(ws, joiner)


_ALL = {"length", "sentences", "kw", "forbid", "topic_kw", "case", "structure", "start", "end", "commas",
        "digits", "placeholder", "highlight", "letters", "title"}

KINDS: dict[str, Kind] = {
    "max_words": Kind(
        lambda rng, w: {"max": _n(20, 90, 5)(rng)},
        lambda p: [f"Keep the whole answer to {p['max']} words or fewer.",
                   f"Your reply must not go over {p['max']} words.",
                   f"Stay within a limit of {p['max']} words.",
                   f"Do not write more than {p['max']} words in total.",
                   f"The answer may be {p['max']} words long at the very most."],
        lambda p: f"Length: no more than {p['max']} words", {"length"}),
    "min_words": Kind(
        lambda rng, w: {"min": _n(40, 120, 10)(rng)},
        lambda p: [f"Write no fewer than {p['min']} words.", f"Make the answer {p['min']} words long or longer.",
                   f"Aim for a minimum of {p['min']} words.",
                   f"The response should contain {p['min']} words or more.",
                   f"Go into detail: {p['min']} words is the minimum."],
        lambda p: f"Length: {p['min']} words or more", {"length"}),
    "sentence_count": Kind(
        _sentence_params,
        lambda p: [f"Write {_range_words(p)} sentences in total.", f"Your reply should have {_range_words(p)} sentences.",
                   f"Structure the answer as {_range_words(p)} sentences.",
                   f"The whole response must contain {_range_words(p)} sentences.",
                   f"Count your sentences: there must be {_range_words(p)}."],
        lambda p: f"Sentences: {_range_words(p)}", {"sentences", "structure"}),
    "include_keywords": Kind(
        lambda rng, w: {"keywords": rng.sample(GENERIC_WORDS, rng.choice([1, 1, 2]))},
        lambda p: [f"Be sure to use {_kw(p, 'keywords', 'and')[0]} {_kw(p, 'keywords', 'and')[1]}.",
                   f"Work {_kw(p, 'keywords', 'and')[0]} {_kw(p, 'keywords', 'and')[1]} into your answer.",
                   f"Your text has to contain {_kw(p, 'keywords', 'and')[0]} {_kw(p, 'keywords', 'and')[1]}.",
                   f"Somewhere in the response, include {_kw(p, 'keywords', 'and')[0]} {_kw(p, 'keywords', 'and')[1]}.",
                   f"Mention {_kw(p, 'keywords', 'and')[0]} {_kw(p, 'keywords', 'and')[1]} at some point."],
        lambda p: f"Must include: {_kw(p, 'keywords', 'and')[1]}", {"kw"}),
    "forbidden_words": Kind(
        lambda rng, w: {"words": [w] if rng.random() < 0.7 else [w, rng.choice(["very", "really", "thing"])]},
        lambda p: [f"Never use {_kw(p, 'words', 'or')[0]} {_kw(p, 'words', 'or')[1]}.",
                   f"Avoid {_kw(p, 'words', 'or')[0]} {_kw(p, 'words', 'or')[1]} completely.",
                   f"Do not let {_kw(p, 'words', 'or')[0]} {_kw(p, 'words', 'or')[1]} appear anywhere.",
                   f"Leave out {_kw(p, 'words', 'or')[0]} {_kw(p, 'words', 'or')[1]} entirely.",
                   f"Under no circumstances write {_kw(p, 'words', 'or')[0]} {_kw(p, 'words', 'or')[1]}."],
        lambda p: f"Banned words: {_kw(p, 'words', 'or')[1]}", {"forbid", "topic_kw"}),
    "keyword_frequency": Kind(
        lambda rng, w: {"keyword": w, "min": rng.randint(2, 4)},
        lambda p: [f"Use the word \"{p['keyword']}\" {p['min']} times or more.",
                   f"Repeat the word \"{p['keyword']}\" at least {p['min']} times.",
                   f"The word \"{p['keyword']}\" should come up no fewer than {p['min']} times.",
                   f"Say \"{p['keyword']}\" at least {p['min']} times in your reply.",
                   f"Include the word \"{p['keyword']}\" a minimum of {p['min']} times."],
        lambda p: f"Word \"{p['keyword']}\": at least {p['min']} times", {"kw", "topic_kw"}),
    "lowercase": Kind(
        lambda rng, w: {},
        lambda p: ["Write everything in lowercase, without a single capital letter.",
                   "Do not use any capital letters anywhere.", "Only lowercase letters are allowed in your reply.",
                   "Keep every letter lowercase, including the first one.", "No uppercase letters at all, please."],
        lambda p: "Case: lowercase only", {"case"}),
    "uppercase": Kind(
        lambda rng, w: {},
        lambda p: ["Write your whole reply in capital letters.", "Use uppercase letters only.",
                   "Every letter must be a capital.", "Type the entire answer in block capitals.",
                   "Make all the letters uppercase, with no lowercase ones."],
        lambda p: "Case: all capitals", {"case"}),
    "json_format": Kind(_json_params, _json_say,
                        lambda p: "Format: a JSON object with keys " + _q(p["keys"], "and") if p.get("keys")
                        else "Format: JSON only", set(_ALL)),
    "bullet_count": Kind(
        lambda rng, w: {"count": rng.randint(2, 6)},
        lambda p: [f"Give exactly {p['count']} bullet points.",
                   f"Present the answer as a bulleted list of exactly {p['count']} items.",
                   f"Use {p['count']} bullet points, no more and no fewer.",
                   f"Your reply must contain exactly {p['count']} markdown bullets.",
                   f"Organise the content into precisely {p['count']} bullet points."],
        lambda p: f"Bullets: exactly {p['count']}", {"structure"}),
    "bullet_list": Kind(
        lambda rng, w: {"count": rng.randint(2, 6), "marker": rng.choice(["*", "-"])},
        lambda p: [f"Write exactly {p['count']} bullet points, each starting with \"{p['marker']} \".",
                   f"List {p['count']} points as markdown bullets that begin with \"{p['marker']} \", and no other bullets.",
                   f"Format the answer as exactly {p['count']} lines that start with the marker \"{p['marker']} \".",
                   f"Make a list of precisely {p['count']} items, using \"{p['marker']} \" as the bullet marker.",
                   f"Give {p['count']} bullets marked with \"{p['marker']} \", exactly that many."],
        lambda p: f"Bullets: exactly {p['count']}, marked \"{p['marker']} \"", {"structure"}),
    "numbered_list": Kind(
        lambda rng, w: {"count": rng.randint(3, 7)},
        lambda p: [f"Answer with a numbered list of exactly {p['count']} items.",
                   f"Give {p['count']} numbered points, counting up from one.",
                   f"Write a numbered list with {p['count']} entries.",
                   f"Present your answer as a numbered list of precisely {p['count']} items.",
                   f"Number your points from 1 to {p['count']}, one per line."],
        lambda p: f"List: numbered, {p['count']} items", {"structure", "digits"}),
    "starts_with": Kind(
        lambda rng, w: {"phrase": rng.choice(OPENINGS)},
        lambda p: [f"Begin your reply with the words \"{p['phrase']}\".",
                   f"The first words of your answer must be \"{p['phrase']}\".", f"Open with \"{p['phrase']}\".",
                   f"Start the response with the exact phrase \"{p['phrase']}\".",
                   f"Your answer has to begin with \"{p['phrase']}\"."],
        lambda p: f"Opening words: \"{p['phrase']}\"", {"start"}),
    "first_word": Kind(
        lambda rng, w: {"word": rng.choice(FIRST_WORDS)},
        lambda p: [f"Make \"{p['word']}\" the very first word of your answer.",
                   f"The first word you write must be \"{p['word']}\".", f"Begin with the single word \"{p['word']}\".",
                   f"Your response should open with the word \"{p['word']}\".", f"Let the first word be \"{p['word']}\"."],
        lambda p: f"First word: \"{p['word']}\"", {"start"}),
    "ends_with": Kind(
        lambda rng, w: {"phrase": rng.choice(CLOSINGS)},
        lambda p: [f"Close your answer with the exact words \"{p['phrase']}\"",
                   f"The last thing you write must be \"{p['phrase']}\"", f"Finish the reply with \"{p['phrase']}\"",
                   f"End the response with this phrase and nothing after it: \"{p['phrase']}\"",
                   f"Your final words must be exactly \"{p['phrase']}\""],
        lambda p: f"Closing words: \"{p['phrase']}\"", {"end"}),
    "last_word": Kind(
        lambda rng, w: {"word": rng.choice(LAST_WORDS)},
        lambda p: [f"Make sure the very last word of your answer is \"{p['word']}\".",
                   f"Your response must end on the word \"{p['word']}\".",
                   f"The final word of the reply should be \"{p['word']}\"."],
        None, {"end"}),
    "no_commas": Kind(
        lambda rng, w: {},
        lambda p: ["Leave out commas entirely.", "Write without using a single comma.", "Commas are not allowed.",
                   "Make sure there is no comma anywhere in the reply.", "Avoid all commas in what you write."],
        lambda p: "Punctuation: no commas", {"commas"}),
    "title": Kind(
        lambda rng, w: {},
        lambda p: ["Add a title in double angular brackets, like <<My Title>>.",
                   "Put a title at the top, wrapped as <<title>>.", "Start with a title enclosed in << and >>.",
                   "Give the piece a title surrounded by double angle brackets, for example <<A New Day>>.",
                   "Include a title written between << and >>."],
        lambda p: "Title: required, in <<double angular brackets>>", {"start", "title"}),
    "paragraph_count": Kind(
        lambda rng, w: {"count": rng.randint(2, 4)},
        lambda p: [f"Split the answer into {p['count']} paragraphs with a blank line between them.",
                   f"Write {p['count']} paragraphs, separated by empty lines.", f"Use exactly {p['count']} paragraphs.",
                   f"Organise your reply as precisely {p['count']} paragraphs divided by blank lines.",
                   f"The response needs {p['count']} paragraphs, no more and no fewer, with an empty line between each."],
        lambda p: f"Paragraphs: {p['count']}, a blank line between them", {"structure"}),
    "separated_paragraphs": Kind(
        lambda rng, w: {"count": rng.randint(2, 4)},
        lambda p: [f"Write {p['count']} paragraphs and put a line containing only *** between each pair.",
                   f"Answer in {p['count']} paragraphs separated by the divider ***.",
                   f"Use {p['count']} paragraphs, divided from each other by a *** line.",
                   f"Give exactly {p['count']} paragraphs, with the markdown divider *** on its own line between them.",
                   f"Separate your {p['count']} paragraphs using *** lines."],
        lambda p: f"Paragraphs: {p['count']}, divided by *** lines", {"structure"}),
    "section_count": Kind(
        lambda rng, w: {"count": rng.randint(2, 4), "label": rng.choice(SECTION_LABELS)},
        lambda p: [f"Divide the answer into {p['count']} sections, each starting with a line such as \"{p['label']} 1\".",
                   f"Write {p['count']} sections and mark the start of each one with {p['label']} X, where X is its number.",
                   f"Organise the reply as {p['count']} sections headed {p['label']} 1, {p['label']} 2 and so on.",
                   f"Split your response into exactly {p['count']} parts, labelling each with \"{p['label']} N\" "
                   "where N counts from 1.",
                   f"Use {p['count']} sections, numbered in the form {p['label']} 1."],
        lambda p: f"Sections: {p['count']}, headed \"{p['label']} 1\", \"{p['label']} 2\" and onwards",
        {"structure", "digits", "case"}),
    "quotation": Kind(
        lambda rng, w: {},
        lambda p: ["Put your whole answer inside double quotation marks.",
                   "Enclose the entire response in double quotes.",
                   "Your reply must begin and end with a double quote character.",
                   "Wrap everything you write in a pair of double quotation marks.",
                   "Surround the full answer with double quotes."],
        lambda p: "Wrapping: the whole answer inside double quotes", {"start", "end", "structure", "title"}),
    "postscript": Kind(
        lambda rng, w: {"marker": rng.choice(["P.S.", "P.S.", "P.P.S."])},
        lambda p: [f"After the main text, add a postscript beginning with \"{p['marker']}\"",
                   f"Include a postscript at the bottom, introduced by \"{p['marker']}\"",
                   f"Close with a note that starts with \"{p['marker']}\"",
                   f"At the very end, write a postscript that opens with \"{p['marker']}\"",
                   f"Add a final line beginning with \"{p['marker']}\""],
        lambda p: f"Postscript: starting with \"{p['marker']}\"", {"end"}),
    "placeholder_count": Kind(
        lambda rng, w: {"min": rng.randint(2, 4)},
        lambda p: [f"Include at least {p['min']} placeholders in square brackets, like [name].",
                   f"Leave {p['min']} or more blanks written in square brackets, for example [date].",
                   f"Use square-bracket placeholders such as [place], at least {p['min']} of them.",
                   f"Put in no fewer than {p['min']} placeholders enclosed in square brackets, such as [address].",
                   f"The text must contain {p['min']} or more bracketed placeholders like [company]."],
        lambda p: f"Placeholders: at least {p['min']}, in square brackets like [name]", {"placeholder"}),
    "highlighted_sections": Kind(
        lambda rng, w: {"min": rng.randint(2, 3)},
        lambda p: [f"Highlight at least {p['min']} phrases with markdown asterisks, like *this*.",
                   f"Mark {p['min']} or more key parts in *italics* using asterisks.",
                   f"Use asterisks to emphasise at least {p['min']} sections, for example *key point*.",
                   f"Emphasise no fewer than {p['min']} parts of the reply with markdown, such as *important*.",
                   f"Wrap at least {p['min']} phrases in single asterisks to highlight them."],
        lambda p: f"Highlights: at least {p['min']}, like *this*", {"highlight"}),
    "repeat_request": Kind(
        lambda rng, w: {},
        lambda p: ["Before answering, repeat the request above word for word.",
                   "First copy the request exactly as written, then answer it.",
                   "Start by restating the request without changing a word, then respond.",
                   "Begin your reply with an exact copy of the request, and only then answer.",
                   "Repeat everything before this sentence verbatim first, then give your answer."],
        lambda p: "Before answering: copy the lines above exactly",
        {"start", "case", "commas", "digits", "length", "forbid", "sentences", "structure", "letters", "title"}),
    "letter_frequency": Kind(
        lambda rng, w: {"letter": rng.choice(RARE_LETTERS), "min": rng.randint(2, 5)},
        lambda p: [f"Use the letter \"{p['letter']}\" at least {p['min']} times.",
                   f"Make sure the letter {p['letter']} appears {p['min']} times or more.",
                   f"Your answer should contain the letter \"{p['letter']}\" no fewer than {p['min']} times."],
        None, {"letters"}),
    "no_digits": Kind(
        lambda rng, w: {},
        lambda p: ["Do not write any digits; spell numbers out as words.", "Avoid numerals completely.",
                   "No digits may appear in your reply.", "Write every number in words, so that no digit appears.",
                   "Keep the response free of digits."],
        lambda p: "Numbers: spelled out, no digits", {"digits"}),
    "ends_with_question": Kind(
        lambda rng, w: {},
        lambda p: ["Finish your reply with a question.",
                   "The last sentence must be a question ending in a question mark.",
                   "End by asking the reader a question.", "Close the response with a question mark.",
                   "Make your final sentence a question."],
        lambda p: "Ending: a question", {"end"}),
    "max_characters": Kind(
        lambda rng, w: {"max": _n(150, 400, 50)(rng)},
        lambda p: [f"Keep the answer to {p['max']} characters or fewer, spaces included.",
                   f"Use no more than {p['max']} characters in total.",
                   f"The response may be at most {p['max']} characters long."],
        None, {"length"}),
    "max_sentence_words": Kind(
        lambda rng, w: {"max": rng.randint(8, 15)},
        lambda p: [f"Keep every sentence to {p['max']} words or fewer.",
                   f"No sentence may be longer than {p['max']} words.",
                   f"Write short sentences of at most {p['max']} words each.",
                   f"Each sentence should contain no more than {p['max']} words.",
                   f"Limit all of your sentences to {p['max']} words apiece."],
        lambda p: f"Sentence length: at most {p['max']} words each", {"sentences"}),
}
# pairs that share no slot but still do not go together
# (a title or postscript line is a sentence and a paragraph of its own for the mechanical counts)
CONFLICTS = {frozenset(p) for p in [("lowercase", "postscript"), ("sentence_count", "min_words"),
                                    ("lowercase", "title"), ("sentence_count", "title"),
                                    ("sentence_count", "postscript"), ("paragraph_count", "title"),
                                    ("paragraph_count", "postscript")]}
SEEN_KINDS = tuple(k for k in KINDS if k not in HELDOUT_KINDS)


def _compatible(kind: str, chosen: list[str]) -> bool:
    for other in chosen:
        if kind == other or KINDS[kind].slots & KINDS[other].slots or frozenset((kind, other)) in CONFLICTS:
            return False
    return True


def _wordings(kind: str, params: dict, split: str) -> list[str]:
    said = KINDS[kind].say(params)
    if kind in HELDOUT_KINDS:
        return said
    return said[:-2] if split == "train" else said[-2:]


# ------------------------------------------------------------------------------------ one row
def _make_row(rng: random.Random, split: str, family: str, kinds: list[str]) -> tuple[str, list[dict]]:
    """(prompt, constraints) for ``kinds`` (the first is the primary one; extras are added here)."""
    topic, word = rng.choice(TRAIN_TOPICS if split == "train" else TEST_TOPICS)
    kinds = list(kinds)
    if "json_format" not in kinds:
        n_extra = rng.choices([0, 1, 2], weights=[35, 45, 20])[0]
        pool = [k for k in SEEN_KINDS if k != "json_format"]
        for _ in range(n_extra):
            options = [k for k in pool if _compatible(k, kinds)]
            if options:
                kinds.append(rng.choice(options))
    kinds.sort(key=lambda k: k == "repeat_request")  # the repeat instruction comes last
    params = [KINDS[k].sample(rng, word) for k in kinds]
    if family == HELDOUT_FAMILY:
        lines = [f"Topic: {topic}", f"Task: {rng.choice(SPEC_TASKS)}"]
        lines += [KINDS[k].spec(p) for k, p in zip(kinds, params)]
        prompt = "\n".join(lines)
        body = "\n".join(lines[:-1])
    else:
        said = [rng.choice(_wordings(k, p, split)) for k, p in zip(kinds, params)]
        if family == "question":
            head = rng.choice(QUESTIONS).format(t=topic)
        else:
            head = rng.choice(TASKS).format(t=topic)
            if family == "context":
                head = rng.choice(PERSONAS[split]) + " " + head
        if family == "rules":
            lead = head[:-1] + (", and follow these rules:" if len(said) > 1 else ", and follow this rule:")
            parts = [lead] + [f"- {s}" for s in said]
            prompt, body = "\n".join(parts), "\n".join(parts[:-1])
        else:
            parts = [head, *said]
            prompt, body = " ".join(parts), " ".join(parts[:-1])
    constraints = []
    for k, p in zip(kinds, params):
        if k == "repeat_request":
            p = {"text": body}
        constraints.append({"type": k, **p})
    return prompt, constraints


# ------------------------------------------------------------------------------------ the set
def _v1_test_rows(path: str | Path = V1_INSTRUCTIONS) -> list[dict]:
    rows = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            rec = json.loads(line)
            if rec.get("split") == "test":
                rows.append({**rec, "family": "v1", "heldout": None})
    return rows


def build_rows(seed: int = SEED) -> list[dict]:
    """Every row of the shipped set, in file order: the v1 test rows, the new test rows, the train rows."""
    seen_prompts: set[str] = set()
    rows: list[dict] = []

    def add(rng: random.Random, split: str, family: str, kinds: list[str], heldout: str | None) -> None:
        for _ in range(100):
            prompt, constraints = _make_row(rng, split, family, kinds)
            if prompt not in seen_prompts:
                break
        else:  # pragma: no cover - the tables are large enough
            raise RuntimeError(f"could not make a new prompt for {kinds} in {family}")
        seen_prompts.add(prompt)
        n = sum(r["split"] == split for r in rows) + 1
        rows.append({"id": f"{split}-{n:03d}", "split": split, "prompt": prompt, "constraints": constraints,
                     "family": family, "heldout": heldout})

    for row in _v1_test_rows():
        seen_prompts.add(row["prompt"])
        rows.append(row)
    if len(rows) != 32:  # ids test-01..test-32 are the v1 rows' (two digits); new ones start at test-033
        raise AssertionError(f"{V1_INSTRUCTIONS}: expected 32 test rows, found {len(rows)}")
    test_rng = random.Random(seed * 1000 + 1)
    jobs: list[tuple[str, list[str], str | None]] = []
    jobs += [(f, [k], None) for k in SEEN_KINDS for f in SEEN_FAMILIES]
    jobs += [(HELDOUT_FAMILY, [SEEN_KINDS[i % len(SEEN_KINDS)]], "family") for i in range(HELDOUT_FAMILY_ROWS)]
    jobs += [(f, [k], "kind") for k in HELDOUT_KINDS for f in SEEN_FAMILIES
             for _ in range(HELDOUT_KIND_ROWS_PER_FAMILY)]
    for family, kinds, heldout in jobs:
        add(test_rng, "test", family, kinds, heldout)
    train_rng = random.Random(seed * 1000 + 2)
    combos = [(f, k) for k in SEEN_KINDS for f in SEEN_FAMILIES] * TRAIN_ROUNDS
    train_rng.shuffle(combos)
    for family, kind in combos[:N_TRAIN]:
        add(train_rng, "train", family, [kind], None)
    return rows


def render_jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


# ------------------------------------------------------------------------------------ integrity
_SPLIT = re.compile(r"[.!?\n]+")


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def split_sentences(prompt: str, min_words: int = 2) -> list[str]:
    """The prompt cut at every ``.``, ``!``, ``?`` and line break, each piece lowercased with its
    whitespace collapsed and the quotes, dashes and spaces around it stripped; pieces with fewer than
    ``min_words`` words are dropped (the ``S`` of ``P.S.`` is not a sentence)."""
    out = []
    for piece in _SPLIT.split(prompt):
        piece = _norm(piece).strip(" \"'“”‘’-*:,;()")
        if len(re.findall(r"\w+", piece)) >= min_words:
            out.append(piece)
    return out


def sentence_overlap(train_prompts: list[str], test_prompts: list[str], min_words: int = 2) -> list[str]:
    """The test sentences (:func:`split_sentences`) that occur anywhere in a train prompt (substring
    match on lowercased, whitespace-collapsed text); empty when the splits share no sentence."""
    train_text = "\n".join(_norm(p) for p in train_prompts)
    found = []
    for s in sorted({s for p in test_prompts for s in split_sentences(p, min_words)}):
        if s in train_text:
            found.append(s)
    return found


def check_rows(rows: list[dict]) -> list[str]:
    """Everything wrong with a set of rows (empty when it keeps the set's guarantees)."""
    problems = []
    prompts = [r["prompt"] for r in rows]
    if len(set(prompts)) != len(prompts):
        problems.append("two rows have the same prompt")
    ids = [r["id"] for r in rows]
    if len(set(ids)) != len(ids):
        problems.append("two rows have the same id")
    train = [r for r in rows if r["split"] == "train"]
    test = [r for r in rows if r["split"] == "test"]
    for s in sentence_overlap([r["prompt"] for r in train], [r["prompt"] for r in test]):
        problems.append(f"test sentence also in train: {s!r}")
    for r in train:
        if r.get("family") == HELDOUT_FAMILY or r.get("heldout") is not None:
            problems.append(f"{r['id']}: held-out row in train")
        if {c["type"] for c in r["constraints"]} & set(HELDOUT_KINDS):
            problems.append(f"{r['id']}: held-out kind in train")
    for r in rows:
        try:
            for c in r["constraints"]:
                validate_constraint(c)
        except ValueError as e:
            problems.append(f"{r['id']}: {e}")
        kinds = {c["type"] for c in r["constraints"]}
        if r.get("heldout") == "kind" and not kinds & set(HELDOUT_KINDS):
            problems.append(f"{r['id']}: marked heldout=kind without a held-out kind")
        if r.get("heldout") != "kind" and kinds & set(HELDOUT_KINDS):
            problems.append(f"{r['id']}: held-out kind in a row not marked heldout=kind")
        if (r.get("heldout") == "family") != (r.get("family") == HELDOUT_FAMILY):
            problems.append(f"{r['id']}: heldout=family must mark exactly the {HELDOUT_FAMILY!r} rows")
    return problems


def write_set(path: str | Path = OUTPUT, seed: int = SEED) -> list[dict]:
    """Generate the set, check it and write it to ``path`` (the shipped file by default)."""
    from alignkit.files import write_text

    rows = build_rows(seed)
    problems = check_rows(rows)
    if problems:
        raise ValueError("the generated set breaks its guarantees:\n" + "\n".join(problems[:20]))
    write_text(path, render_jsonl(rows))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m alignkit.evaluation.instruction_set", description=__doc__.split("\n")[0])
    ap.add_argument("--output", default=OUTPUT, help="where to write the set (default: the shipped file)")
    ap.add_argument("--check", action="store_true", help="only compare the file with a fresh generation")
    args = ap.parse_args(argv)
    if args.check:
        same = Path(args.output).read_text(encoding="utf-8") == render_jsonl(build_rows())
        print(f"{args.output}: {'up to date' if same else 'differs from the generator; rerun without --check'}")
        return 0 if same else 1
    rows = write_set(args.output)
    counts: dict[Any, int] = {}
    for r in rows:
        key = (r["split"], r.get("heldout"))
        counts[key] = counts.get(key, 0) + 1
    print(f"wrote {len(rows)} rows to {args.output}: " + ", ".join(f"{s}/{h or 'seen'} {n}" for (s, h), n in sorted(
        counts.items(), key=lambda kv: (kv[0][0], str(kv[0][1])))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
