"""Verifiable instruction constraints: pure checker functions, a registry by type name, validation.

Every checker is a pure function ``check(response: str, **params) -> bool``. Checks are *strict*: the
response is judged exactly as the model wrote it (surrounding whitespace aside), with no lenient
variants (IFEval's "loose" score also retries after dropping the first/last line or markdown
asterisks; alignkit reports the strict score only). Text conventions shared by the checkers:

* **word**: a run of letters/digits (``\\w``), optionally joined by apostrophes or hyphens
  (``don't`` and ``well-known`` are one word each; ``3.5`` is two).
* **sentence**: text ending in ``.``, ``!`` or ``?`` (optionally followed by a closing quote or
  bracket) and then whitespace or the end, or ending at a line break; a piece counts only if it
  holds a word. Abbreviations such as "e.g." therefore end a sentence: the count is mechanical.
* **keyword match**: case-insensitive, whole words (``cat`` does not match ``category``); a keyword
  may be a phrase of several words.
* **paragraph**: a block of text separated from the next by one or more blank lines.
* **bullet**: a line that starts (after indentation) with ``*``, ``-`` or ``•`` followed by a space;
  numbered lists are not bullets.
* phrases in ``starts_with`` / ``ends_with`` compare case-insensitively after stripping the
  response's leading / trailing whitespace; everything else must match character for character.
* ``json_format`` accepts the JSON document alone or wrapped in one markdown code fence
  (```` ```json ... ``` ````), nothing else around it.
* **numbered item**: a line that starts (after indentation) with a number and ``.`` or ``)`` and a
  space (``1. milk``, ``2) eggs``); ``numbered_list`` wants them numbered 1, 2, 3, ... in order.
* **separator line** (``separated_paragraphs``): a line holding only the separator (``***``), spaces
  around it aside; the parts between such lines are the paragraphs and each must hold a word.
* **section header** (``section_count``): a line starting with the label and a number
  (``Section 1``, case-sensitive), optionally after markdown heading or bold marks (``## ``, ``**``).
* ``first_word`` / ``last_word`` compare the first / last *word* (see above) case-insensitively, so
  trailing punctuation does not matter (``... for tomorrow!`` ends with the word ``tomorrow``).
* ``repeat_request`` compares with runs of whitespace collapsed, otherwise character for character,
  and wants an answer (a word) after the repeated text.

Constraint records (one per entry of an instruction's ``constraints`` list) are dicts
``{"type": NAME, **params}``; :func:`validate_constraint` checks the name, the parameter names and
their types, and :func:`check_constraint` applies one to a response. ``constraint_reward`` is a reward
function in the reward-function signature (README "Reward functions") (``reward=alignkit.evaluation.constraints:constraint_reward``):
the fraction of a row's ``constraints`` column that the completion satisfies.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "REGISTRY",
    "ConstraintError",
    "ConstraintType",
    "check_constraint",
    "constraint_reward",
    "constraint_types",
    "count_bullets",
    "count_letter",
    "count_numbered_items",
    "count_paragraphs",
    "count_sentences",
    "count_words",
    "describe_constraint",
    "validate_constraint",
]


class ConstraintError(ValueError):
    """A malformed constraint record (unknown type, missing or mistyped parameter)."""


# ------------------------------------------------------------------------------------ text helpers
_WORD = re.compile(r"\w+(?:['’-]\w+)*")
_SENTENCE_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"'”’)\]]))\s+")
_BULLET = re.compile(r"^\s*[*\-•]\s+\S", re.MULTILINE)
_PARAGRAPH_BREAK = re.compile(r"\n[ \t\r\f\v]*\n")
_TITLE = re.compile(r"<<[^<>\n]*[^\s<>][^<>\n]*>>")
_PLACEHOLDER = re.compile(r"\[[^\[\]\n]*[^\s\[\]][^\[\]\n]*\]")
_HIGHLIGHT = re.compile(r"\*[^\n*]*[^\s*][^\n*]*\*")
_NUMBERED = re.compile(r"^\s*(\d+)[.)][ \t]+\S", re.MULTILINE)
_FENCE = re.compile(r"^```[A-Za-z]*[ \t]*\n(.*)\n```$", re.DOTALL)


def words(text: str) -> list[str]:
    return _WORD.findall(text)


def count_words(text: str) -> int:
    return len(words(text))


def sentences(text: str) -> list[str]:
    out = []
    for line in text.splitlines():
        out.extend(p for p in _SENTENCE_END.split(line.strip()) if _WORD.search(p))
    return out


def count_sentences(text: str) -> int:
    return len(sentences(text))


def count_bullets(text: str) -> int:
    return len(_BULLET.findall(text))


def bullet_markers(text: str) -> list[str]:
    """The marker (``*``, ``-`` or ``•``) of each bullet line, in order."""
    return re.findall(r"^\s*([*\-•])\s+\S", text, re.MULTILINE)


def numbered_items(text: str) -> list[int]:
    """The numbers of the numbered-list lines (``1. ...``, ``2) ...``), in order."""
    return [int(n) for n in _NUMBERED.findall(text)]


def count_numbered_items(text: str) -> int:
    return len(numbered_items(text))


def count_letter(text: str, letter: str) -> int:
    """How often ``letter`` occurs, case-insensitively."""
    return text.lower().count(letter.lower())


def count_paragraphs(text: str) -> int:
    return sum(1 for p in _PARAGRAPH_BREAK.split(text.strip()) if p.strip())


def _phrase_pattern(phrase: str) -> re.Pattern:
    return re.compile(r"(?<!\w)" + re.escape(phrase.strip()) + r"(?!\w)", re.IGNORECASE)


def count_phrase(text: str, phrase: str) -> int:
    return len(_phrase_pattern(phrase).findall(text))


# ------------------------------------------------------------------------------------ registry
@dataclass(frozen=True)
class Param:
    kind: str  # "count" (int >= 0), "text" (non-empty str), "texts" (non-empty list of non-empty str)
    required: bool = True


@dataclass(frozen=True)
class ConstraintType:
    """A registered constraint: its checker, parameters and a one-line description template."""

    name: str
    check: Callable[..., bool]
    params: dict[str, Param] = field(default_factory=dict)
    describe: Callable[..., str] = lambda **_: ""
    validate: Callable[[dict], None] | None = None  # cross-parameter checks


REGISTRY: dict[str, ConstraintType] = {}


def register(name: str, params: dict[str, Param] | None = None, describe: Callable[..., str] | None = None,
             validate: Callable[[dict], None] | None = None):
    def deco(fn: Callable[..., bool]) -> Callable[..., bool]:
        if name in REGISTRY:
            raise ValueError(f"constraint type {name!r} registered twice")
        REGISTRY[name] = ConstraintType(name, fn, dict(params or {}), describe or (lambda **_: name), validate)
        return fn

    return deco


def constraint_types() -> list[str]:
    return sorted(REGISTRY)


def _range_check(p: dict) -> None:
    lo, hi = p.get("min"), p.get("max")
    if lo is None and hi is None:
        raise ConstraintError("needs 'min', 'max' or both")
    if lo is not None and hi is not None and lo > hi:
        raise ConstraintError(f"'min' ({lo}) is larger than 'max' ({hi})")


def _in_range(n: int, min: int | None = None, max: int | None = None) -> bool:
    return (min is None or n >= min) and (max is None or n <= max)


def _range_text(what: str, min: int | None = None, max: int | None = None) -> str:
    if min is not None and max is not None:
        return f"exactly {min} {what}" if min == max else f"between {min} and {max} {what}"
    return f"at least {min} {what}" if min is not None else f"at most {max} {what}"


COUNT, TEXT, TEXTS = Param("count"), Param("text"), Param("texts")
OPT_COUNT, OPT_TEXT, OPT_TEXTS = Param("count", required=False), Param("text", required=False), Param("texts", required=False)


# ------------------------------------------------------------------------------------ checkers
@register("max_words", {"max": COUNT}, lambda max: f"at most {max} words")
def max_words(response: str, max: int) -> bool:
    """At most ``max`` words."""
    return count_words(response) <= max


@register("min_words", {"min": COUNT}, lambda min: f"at least {min} words")
def min_words(response: str, min: int) -> bool:
    """At least ``min`` words."""
    return count_words(response) >= min


@register("sentence_count", {"min": OPT_COUNT, "max": OPT_COUNT},
          lambda min=None, max=None: _range_text("sentences", min, max), _range_check)
def sentence_count(response: str, min: int | None = None, max: int | None = None) -> bool:
    """Between ``min`` and ``max`` sentences (either bound may be left out)."""
    return _in_range(count_sentences(response), min, max)


@register("include_keywords", {"keywords": TEXTS},
          lambda keywords: "mention " + ", ".join(repr(k) for k in keywords))
def include_keywords(response: str, keywords: list[str]) -> bool:
    """Every keyword appears (case-insensitive, whole words)."""
    return all(_phrase_pattern(k).search(response) for k in keywords)


@register("forbidden_words", {"words": TEXTS},
          lambda words: "never use " + ", ".join(repr(w) for w in words))
def forbidden_words(response: str, words: list[str]) -> bool:
    """None of the words appears (case-insensitive, whole words)."""
    return not any(_phrase_pattern(w).search(response) for w in words)


@register("keyword_frequency", {"keyword": TEXT, "min": OPT_COUNT, "max": OPT_COUNT},
          lambda keyword, min=None, max=None: f"use {keyword!r} " + _range_text("times", min, max),
          _range_check)
def keyword_frequency(response: str, keyword: str, min: int | None = None, max: int | None = None) -> bool:
    """``keyword`` occurs between ``min`` and ``max`` times (case-insensitive, whole words)."""
    return _in_range(count_phrase(response, keyword), min, max)


@register("lowercase", {}, lambda: "all lowercase letters")
def lowercase(response: str) -> bool:
    """No uppercase letter anywhere (and at least one letter)."""
    return any(c.isalpha() for c in response) and response == response.lower()


@register("uppercase", {}, lambda: "all capital letters")
def uppercase(response: str) -> bool:
    """No lowercase letter anywhere (and at least one letter)."""
    return any(c.isalpha() for c in response) and response == response.upper()


@register("json_format", {"keys": OPT_TEXTS},
          lambda keys=None: "valid JSON" + (" with keys " + ", ".join(repr(k) for k in keys) if keys else ""))
def json_format(response: str, keys: list[str] | None = None) -> bool:
    """The whole response is one JSON document (optionally in a single markdown code fence); with
    ``keys``, a JSON object holding every one of them at the top level."""
    text = response.strip()
    fenced = _FENCE.match(text)
    if fenced:
        text = fenced.group(1).strip()
    try:
        value = json.loads(text)
    except ValueError:
        return False
    if keys:
        return isinstance(value, dict) and all(k in value for k in keys)
    return True


@register("bullet_count", {"count": COUNT}, lambda count: f"exactly {count} bullet points")
def bullet_count(response: str, count: int) -> bool:
    """Exactly ``count`` markdown bullet lines (``* ``, ``- `` or ``• ``)."""
    return count_bullets(response) == count


@register("starts_with", {"phrase": TEXT}, lambda phrase: f"start with {phrase!r}")
def starts_with(response: str, phrase: str) -> bool:
    """The response begins with ``phrase`` (case-insensitive, leading whitespace ignored)."""
    return response.lstrip().lower().startswith(phrase.strip().lower())


@register("ends_with", {"phrase": TEXT}, lambda phrase: f"end with {phrase!r}")
def ends_with(response: str, phrase: str) -> bool:
    """The response ends with ``phrase``, nothing after it (case-insensitive, trailing whitespace ignored)."""
    return response.rstrip().lower().endswith(phrase.strip().lower())


@register("no_commas", {}, lambda: "no commas")
def no_commas(response: str) -> bool:
    """Not a single comma."""
    return "," not in response


@register("title", {}, lambda: "a title in <<double angular brackets>>")
def title(response: str) -> bool:
    """Contains a title wrapped in double angular brackets, e.g. ``<<Morning Tide>>``."""
    return _TITLE.search(response) is not None


@register("paragraph_count", {"count": COUNT}, lambda count: f"exactly {count} paragraphs")
def paragraph_count(response: str, count: int) -> bool:
    """Exactly ``count`` paragraphs separated by blank lines."""
    return count_paragraphs(response) == count


@register("quotation", {}, lambda: "wrapped in double quotation marks")
def quotation(response: str) -> bool:
    """The whole response is wrapped in double quotation marks."""
    text = response.strip()
    return len(text) >= 2 and text[0] in "\"“" and text[-1] in "\"”"


@register("postscript", {"marker": TEXT}, lambda marker: f"a postscript starting with {marker!r}")
def postscript(response: str, marker: str) -> bool:
    """A line starts with ``marker`` (e.g. ``P.S.``), case-sensitive."""
    return re.search(r"^\s*" + re.escape(marker.strip()), response, re.MULTILINE) is not None


@register("placeholder_count", {"min": COUNT}, lambda min: f"at least {min} [placeholders]")
def placeholder_count(response: str, min: int) -> bool:
    """At least ``min`` placeholders in square brackets, e.g. ``[name]``."""
    return len(_PLACEHOLDER.findall(response)) >= min


@register("highlighted_sections", {"min": COUNT}, lambda min: f"at least {min} *highlighted* sections")
def highlighted_sections(response: str, min: int) -> bool:
    """At least ``min`` markdown-highlighted spans, ``*like this*`` (``**bold**`` counts too)."""
    return len(_HIGHLIGHT.findall(response)) >= min


# ------------------------------------------------------------------------------------ checkers (v2 set)
def _one_word(key: str) -> Callable[[dict], None]:
    def check(p: dict) -> None:
        if _WORD.fullmatch(p[key].strip()) is None:
            raise ConstraintError(f"'{key}' must be a single word, got {p[key]!r}")
    return check


def _bullet_marker_check(p: dict) -> None:
    if p["marker"].strip() not in ("*", "-", "•"):
        raise ConstraintError(f"'marker' must be one of '*', '-', '•', got {p['marker']!r}")


def _letter_check(p: dict) -> None:
    letter = p["letter"]
    if len(letter) != 1 or not letter.isalpha():
        raise ConstraintError(f"'letter' must be a single letter, got {letter!r}")
    _range_check(p)


@register("bullet_list", {"count": COUNT, "marker": TEXT},
          lambda count, marker: f"exactly {count} bullet points marked {marker.strip() + ' '!r}",
          _bullet_marker_check)
def bullet_list(response: str, count: int, marker: str) -> bool:
    """Exactly ``count`` bullet lines, every one of them with ``marker`` (``*``, ``-`` or ``•``): a bullet
    with another marker fails the check."""
    found = bullet_markers(response)
    return len(found) == count and all(m == marker.strip() for m in found)


@register("numbered_list", {"count": COUNT}, lambda count: f"a numbered list of exactly {count} items")
def numbered_list(response: str, count: int) -> bool:
    """Exactly ``count`` numbered items, numbered 1, 2, ..., ``count`` in order."""
    return numbered_items(response) == list(range(1, count + 1))


def _collapse(text: str) -> str:
    return " ".join(text.split())


@register("repeat_request", {"text": TEXT}, lambda text: "repeat the request word for word first, then answer")
def repeat_request(response: str, text: str) -> bool:
    """The response starts with ``text`` (whitespace runs collapsed, otherwise exact) and goes on to an
    answer that holds at least one word."""
    got, want = _collapse(response), _collapse(text)
    return got.startswith(want) and _WORD.search(got[len(want):]) is not None


@register("separated_paragraphs", {"count": COUNT, "separator": OPT_TEXT},
          lambda count, separator="***": f"exactly {count} paragraphs separated by {separator} lines")
def separated_paragraphs(response: str, count: int, separator: str = "***") -> bool:
    """Exactly ``count`` parts between separator lines (``***`` alone on its line); every part holds a
    word, so a leading, trailing or doubled separator fails."""
    line = re.compile(r"^[ \t]*" + re.escape(separator.strip()) + r"[ \t]*$", re.MULTILINE)
    parts = line.split(response.strip())
    return len(parts) == count and all(_WORD.search(p) for p in parts)


@register("letter_frequency", {"letter": TEXT, "min": OPT_COUNT, "max": OPT_COUNT},
          lambda letter, min=None, max=None: f"use the letter {letter!r} " + _range_text("times", min, max),
          _letter_check)
def letter_frequency(response: str, letter: str, min: int | None = None, max: int | None = None) -> bool:
    """The letter occurs between ``min`` and ``max`` times (case-insensitive)."""
    return _in_range(count_letter(response, letter), min, max)


@register("no_digits", {}, lambda: "no digits")
def no_digits(response: str) -> bool:
    """Not a single digit 0-9 (numbers spelled out) and at least one word."""
    return _WORD.search(response) is not None and re.search(r"[0-9]", response) is None


@register("first_word", {"word": TEXT}, lambda word: f"first word {word!r}", _one_word("word"))
def first_word(response: str, word: str) -> bool:
    """The first word is ``word`` (case-insensitive; ``Yes,`` and ``yes!`` both start with ``yes``)."""
    found = words(response)
    return bool(found) and found[0].lower() == word.strip().lower()


@register("last_word", {"word": TEXT}, lambda word: f"last word {word!r}", _one_word("word"))
def last_word(response: str, word: str) -> bool:
    """The last word is ``word`` (case-insensitive; punctuation after it is allowed)."""
    found = words(response)
    return bool(found) and found[-1].lower() == word.strip().lower()


@register("ends_with_question", {}, lambda: "end with a question")
def ends_with_question(response: str) -> bool:
    """The response's last character (trailing whitespace aside) is a question mark."""
    return response.rstrip().endswith("?")


@register("max_characters", {"max": COUNT}, lambda max: f"at most {max} characters")
def max_characters(response: str, max: int) -> bool:
    """At most ``max`` characters, spaces and line breaks included (surrounding whitespace aside)."""
    return len(response.strip()) <= max


@register("section_count", {"count": COUNT, "label": OPT_TEXT},
          lambda count, label="Section": f"exactly {count} sections headed {label!r} 1..{count}")
def section_count(response: str, count: int, label: str = "Section") -> bool:
    """Exactly ``count`` section headers ``LABEL 1`` ... ``LABEL count`` in order, each at the start of a
    line (optionally after ``#``/``*`` markdown marks); the label is case-sensitive."""
    header = re.compile(r"^[ \t]*(?:[#*]+[ \t]*)?" + re.escape(label.strip()) + r"[ \t]+(\d+)\b", re.MULTILINE)
    return [int(n) for n in header.findall(response)] == list(range(1, count + 1))


@register("max_sentence_words", {"max": COUNT}, lambda max: f"no sentence longer than {max} words")
def max_sentence_words(response: str, max: int) -> bool:
    """At least one sentence, and none longer than ``max`` words."""
    found = sentences(response)
    return bool(found) and all(count_words(s) <= max for s in found)


# ------------------------------------------------------------------------------------ validation
def _check_param(name: str, spec: Param, value: Any) -> Any:
    if spec.kind == "count":
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ConstraintError(f"parameter '{name}' must be a whole number >= 0, got {value!r}")
        return value
    if spec.kind == "text":
        if not isinstance(value, str) or not value.strip():
            raise ConstraintError(f"parameter '{name}' must be a non-empty string, got {value!r}")
        return value
    if spec.kind == "texts":
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
            raise ConstraintError(f"parameter '{name}' must be a non-empty list of non-empty strings, got {value!r}")
        return list(value)
    raise AssertionError(spec.kind)  # pragma: no cover


def validate_constraint(constraint: Any) -> dict[str, Any]:
    """Check one constraint record; return a clean copy. Raises :class:`ConstraintError`."""
    if not isinstance(constraint, dict):
        raise ConstraintError(f"a constraint must be an object {{\"type\": ..., params}}, got {type(constraint).__name__}")
    kind = constraint.get("type")
    if not isinstance(kind, str) or not kind:
        raise ConstraintError("missing 'type'")
    ctype = REGISTRY.get(kind)
    if ctype is None:
        close = difflib.get_close_matches(kind, REGISTRY, n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ConstraintError(f"unknown constraint type '{kind}'{hint}; known types: {', '.join(constraint_types())}")
    params = {k: v for k, v in constraint.items() if k != "type"}
    unknown = [k for k in params if k not in ctype.params]
    if unknown:
        allowed = ", ".join(ctype.params) or "none"
        raise ConstraintError(f"type '{kind}': unknown parameter '{unknown[0]}' (parameters: {allowed})")
    clean: dict[str, Any] = {}
    for name, spec in ctype.params.items():
        if params.get(name) is None:
            if spec.required:
                raise ConstraintError(f"type '{kind}': missing parameter '{name}'")
            continue
        try:
            clean[name] = _check_param(name, spec, params[name])
        except ConstraintError as e:
            raise ConstraintError(f"type '{kind}': {e}") from None
    if ctype.validate is not None:
        try:
            ctype.validate(clean)
        except ConstraintError as e:
            raise ConstraintError(f"type '{kind}': {e}") from None
    return {"type": kind, **clean}


def check_constraint(response: str, constraint: dict[str, Any]) -> bool:
    """Apply one (validated) constraint record to a response."""
    params = {k: v for k, v in constraint.items() if k != "type"}
    return bool(REGISTRY[constraint["type"]].check(response, **params))


def describe_constraint(constraint: dict[str, Any]) -> str:
    params = {k: v for k, v in constraint.items() if k != "type"}
    return REGISTRY[constraint["type"]].describe(**params)


def constraint_reward(prompts: list, completions: list[str], constraints: list | None = None,
                      **_columns: Any) -> list[float]:
    """Reward function (README "Reward functions" signature): the fraction of each row's ``constraints`` satisfied
    (0..1; 0.0 for a row without constraints). Rows come from an instruction file, whose
    ``constraints`` column arrives as a keyword list."""
    if constraints is None:
        raise ValueError("constraint_reward needs a 'constraints' column (use an alignkit instruction file)")
    out = []
    for completion, cons in zip(completions, constraints):
        text = completion if isinstance(completion, str) else _last_content(completion)
        checked = [validate_constraint(c) for c in (cons or [])]
        out.append(sum(check_constraint(text, c) for c in checked) / len(checked) if checked else 0.0)
    return out


def _last_content(messages: Any) -> str:
    if isinstance(messages, list) and messages and isinstance(messages[-1], dict):
        return str(messages[-1].get("content", ""))
    return str(messages)
