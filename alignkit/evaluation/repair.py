"""Repairs: the smallest mechanical edit of an answer that makes it meet its constraints.

Each checker in :mod:`alignkit.evaluation.constraints` that has an obvious fix gets a repair here
(lowercase the text, append the end phrase, turn sentences into exactly N bullets, ...). The demo uses
them on the *training* prompts' own samples: the repaired answer is the chosen side of a preference pair
whose rejected side is the unrepaired sample, so the pair differs only where the constraint is decided
(a minimal-edit pair). A 135M model passes about 10 % of its own samples and never samples some kinds
(all capitals, quotation marks, ``***`` separators), so best-vs-worst pairs among samples carry no
signal for them; a repaired sample does. Held-out prompts are never repaired or trained on.

:func:`repair` returns the edited text only when the result passes every constraint (checked with the
same checkers the evaluation uses), else ``None``: some constraints (a minimum word count, a letter
frequency) have no edit that keeps the answer an answer, and those samples are left alone.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from alignkit.evaluation.constraints import (
    _WORD,
    _phrase_pattern,
    check_constraint,
    count_words,
    sentences,
    validate_constraint,
)

__all__ = ["REPAIRS", "repair", "complete_sentences", "number_words"]

_LIST_MARK = re.compile(r"^\s*(?:[*\-•]|\d+[.)]|#+)\s+")
_ENDS_SENTENCE = re.compile(r"[.!?][\"'”’)\]]?\s*$")


def complete_sentences(text: str) -> str:
    """``text`` without a trailing unfinished sentence (an answer cut off by the token limit): up to its
    last sentence end. Unchanged when it ends a sentence or holds no sentence end at all."""
    text = text.rstrip()
    if not text or _ENDS_SENTENCE.search(text):
        return text
    ends = list(re.finditer(r"[.!?][\"'”’)\]]?(?=\s)", text))
    return text[:ends[-1].end()].rstrip() if ends else text


def _plain_sentences(text: str) -> list[str]:
    """The answer's sentences with list markers and markdown headers removed."""
    return [s for s in (_LIST_MARK.sub("", s).strip() for s in sentences(text)) if _WORD.search(s)]


def _groups(items: list[str], n: int) -> list[list[str]] | None:
    """``items`` split into ``n`` consecutive, non-empty groups as even as possible (None if too few)."""
    if n < 1 or len(items) < n:
        return None
    size, extra = divmod(len(items), n)
    out, start = [], 0
    for i in range(n):
        end = start + size + (1 if i < extra else 0)
        out.append(items[start:end])
        start = end
    return out


_ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen " \
        "sixteen seventeen eighteen nineteen".split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_words(n: int) -> str:
    """``n`` (0..9999) spelled out in English: 42 -> "forty-two", 1905 -> "one thousand nine hundred five"."""
    if not 0 <= n <= 9999:
        raise ValueError(f"number_words covers 0..9999, got {n}")
    if n < 20:
        return _ONES[n]
    if n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else "-" + _ONES[n % 10])
    if n < 1000:
        return _ONES[n // 100] + " hundred" + ("" if n % 100 == 0 else " " + number_words(n % 100))
    return number_words(n // 1000) + " thousand" + ("" if n % 1000 == 0 else " " + number_words(n % 1000))


# ------------------------------------------------------------------------------------------ the repairs
# Each takes (text, **constraint params) and returns the edited text, or None when it has no
# edit. They are applied in REPAIRS' order: cut first, then restructure, then add, then change
# characters, then wrap, so that a later edit does not undo an earlier one.
Repair = Callable[..., "str | None"]


def _drop_sentences(text: str, bad: Callable[[str], bool]) -> str | None:
    lines = []
    for line in text.splitlines():
        kept = [s for s in re.split(r"(?<=[.!?])\s+", line) if not bad(s)]
        if kept or not line.strip():
            lines.append(" ".join(kept))
    out = "\n".join(lines).strip()
    return out if _WORD.search(out) else None


def _forbidden_words(text: str, words: list[str], **_: Any) -> str | None:
    patterns = [_phrase_pattern(w) for w in words]
    return _drop_sentences(text, lambda s: any(p.search(s) for p in patterns))


def _keyword_frequency(text: str, keyword: str, min: int | None = None, max: int | None = None,
                       **_: Any) -> str | None:
    if max is None:
        return text
    pattern = _phrase_pattern(keyword)
    kept, seen = [], 0
    for s in _plain_sentences(text):
        n = len(pattern.findall(s))
        if seen + n <= max:
            kept.append(s)
            seen += n
    return " ".join(kept) or None


def _first_sentences_within(text: str, fits: Callable[[str], bool]) -> str | None:
    kept: list[str] = []
    for s in _plain_sentences(text):
        if not fits(" ".join(kept + [s])):
            break
        kept.append(s)
    return " ".join(kept) or None


def _max_words(text: str, max: int, **_: Any) -> str | None:
    return text if count_words(text) <= max else _first_sentences_within(text, lambda t: count_words(t) <= max)


def _max_characters(text: str, max: int, **_: Any) -> str | None:
    return text if len(text.strip()) <= max else _first_sentences_within(text, lambda t: len(t) <= max)


def _sentence_count(text: str, min: int | None = None, max: int | None = None, **_: Any) -> str | None:
    found = _plain_sentences(text)
    if max is not None and len(found) > max:
        return " ".join(found[:max])
    return text


def _max_sentence_words(text: str, max: int, **_: Any) -> str | None:
    kept = [s for s in _plain_sentences(text) if count_words(s) <= max]
    return " ".join(kept) or None


def _joined(text: str, n: int, render: Callable[[int, list[str]], str], sep: str) -> str | None:
    groups = _groups(_plain_sentences(text), n)
    return None if groups is None else sep.join(render(i, g) for i, g in enumerate(groups, 1))


def _listed(text: str, count: int, mark: Callable[[int], str]) -> str | None:
    """The first ``count`` sentences, one per line, each after ``mark(i)`` (None if too few)."""
    items = _plain_sentences(text)
    return None if len(items) < count else "\n".join(f"{mark(i)} {s}" for i, s in enumerate(items[:count], 1))


def _bullet_count(text: str, count: int, marker: str = "*", **_: Any) -> str | None:
    return _listed(text, count, lambda i: marker.strip())


def _numbered_list(text: str, count: int, **_: Any) -> str | None:
    return _listed(text, count, lambda i: f"{i}.")


def _paragraph_count(text: str, count: int, **_: Any) -> str | None:
    return _joined(text, count, lambda i, g: " ".join(g), "\n\n")


def _separated_paragraphs(text: str, count: int, separator: str = "***", **_: Any) -> str | None:
    return _joined(text, count, lambda i, g: " ".join(g), f"\n\n{separator.strip()}\n\n")


def _section_count(text: str, count: int, label: str = "Section", **_: Any) -> str | None:
    return _joined(text, count, lambda i, g: f"{label.strip()} {i}\n" + " ".join(g), "\n\n")


def _highlighted_sections(text: str, min: int, **_: Any) -> str | None:
    done: set[str] = set()

    def mark(m: re.Match) -> str:
        word = m.group(0)
        if len(done) >= min or len(word) < 4 or word.lower() in done:
            return word
        done.add(word.lower())
        return f"*{word}*"

    # only words outside any markdown emphasis already there
    out = re.sub(r"(?<![*\w])[A-Za-z]{4,}(?![*\w])", mark, text)
    return out if len(done) >= min else None


def _title(text: str, **_: Any) -> str | None:
    found = _plain_sentences(text)
    first = _WORD.findall(found[0] if found else text)[:4]
    if not first:
        return None
    return "<<" + " ".join(w.capitalize() for w in first) + ">>\n\n" + text.strip()


def _repeat_request(text: str, text_: str = "", **_: Any) -> str | None:
    return text_.strip() + "\n\n" + text.strip()


def _starts_with(text: str, phrase: str, **_: Any) -> str | None:
    if text.lstrip().lower().startswith(phrase.strip().lower()):
        return text
    return phrase.strip() + " " + _lower_first(text.strip())


def _first_word(text: str, word: str, **_: Any) -> str | None:
    found = _WORD.findall(text)
    if found and found[0].lower() == word.strip().lower():
        return text
    return word.strip().capitalize() + " " + _lower_first(text.strip())


def _lower_first(text: str) -> str:
    """``The keeper`` -> ``the keeper`` (so a prepended word reads on), but ``I`` and acronyms stay."""
    m = re.match(r"([A-Z])([a-z])", text)
    return text[0].lower() + text[1:] if m else text


def _placeholder_count(text: str, min: int, **_: Any) -> str | None:
    names = ["name", "date", "place", "time", "address", "email", "phone", "city", "company", "topic"]
    if min > len(names):
        return None
    return text.strip() + "\n\n" + " ".join(f"[{n}]" for n in names[:min])


def _include_keywords(text: str, keywords: list[str], **_: Any) -> str | None:
    missing = [k for k in keywords if not _phrase_pattern(k).search(text)]
    if not missing:
        return text
    return text.strip() + " Keep in mind: " + " and ".join(missing) + "."


def _postscript(text: str, marker: str, **_: Any) -> str | None:
    return text.strip() + f"\n\n{marker.strip()} Thank you for reading."


def _ends_with_question(text: str, **_: Any) -> str | None:
    return text if text.rstrip().endswith("?") else text.rstrip() + " Would you like to know more?"


def _ends_with(text: str, phrase: str, **_: Any) -> str | None:
    if text.rstrip().lower().endswith(phrase.strip().lower()):
        return text
    return text.rstrip() + " " + phrase.strip()


def _last_word(text: str, word: str, **_: Any) -> str | None:
    found = _WORD.findall(text)
    if found and found[-1].lower() == word.strip().lower():
        return text
    return text.rstrip() + " " + word.strip().capitalize() + "."


def _no_commas(text: str, **_: Any) -> str | None:
    return re.sub(r"\s*,\s*", " ", text).replace(" .", ".")


def _no_digits(text: str, **_: Any) -> str | None:
    if re.search(r"\d{5,}|\d[.,]\d", text):
        return None
    return re.sub(r"\d+", lambda m: number_words(int(m.group(0))), text)


def _lowercase(text: str, **_: Any) -> str | None:
    return text.lower()


def _uppercase(text: str, **_: Any) -> str | None:
    return text.upper()


def _quotation(text: str, **_: Any) -> str | None:
    inner = text.strip().strip("\"“”")
    return f"\"{inner}\"" if inner else None


def _json_format(text: str, keys: list[str] | None = None, **_: Any) -> str | None:
    try:
        json.loads(text.strip())
        return text
    except ValueError:
        pass
    found = _plain_sentences(text)
    if not found:
        return None
    if not keys:
        return json.dumps({"answer": " ".join(found)}, ensure_ascii=False)
    groups = _groups(found, len(keys)) or [[s] for s in found] + [[] for _ in keys[len(found):]]
    return json.dumps({k: " ".join(g) for k, g in zip(keys, groups)}, ensure_ascii=False, indent=1)


REPAIRS: dict[str, Repair] = {
    # cut
    "forbidden_words": _forbidden_words, "keyword_frequency": _keyword_frequency, "max_words": _max_words,
    "max_characters": _max_characters, "sentence_count": _sentence_count,
    "max_sentence_words": _max_sentence_words,
    # restructure
    "bullet_count": _bullet_count, "bullet_list": _bullet_count, "numbered_list": _numbered_list,
    "paragraph_count": _paragraph_count, "separated_paragraphs": _separated_paragraphs,
    "section_count": _section_count,
    # add
    "include_keywords": _include_keywords, "highlighted_sections": _highlighted_sections,
    "placeholder_count": _placeholder_count, "title": _title, "repeat_request": _repeat_request,
    "starts_with": _starts_with, "first_word": _first_word, "postscript": _postscript,
    "ends_with_question": _ends_with_question, "ends_with": _ends_with, "last_word": _last_word,
    # change characters
    "no_commas": _no_commas, "no_digits": _no_digits, "lowercase": _lowercase, "uppercase": _uppercase,
    # wrap
    "quotation": _quotation, "json_format": _json_format,
}
_ORDER = {name: i for i, name in enumerate(REPAIRS)}


_CUTS = {"max_words", "max_characters", "sentence_count", "max_sentence_words"}


def repair(response: str, constraints: list[dict[str, Any]], truncated: bool = False) -> str | None:
    """The answer edited to meet every constraint, or ``None`` when no edit here gets it there.

    A ``truncated`` answer (cut off by the token limit) first loses its unfinished last sentence. Each
    failing constraint's repair runs once, in :data:`REPAIRS` order; the result must pass *all*
    constraints (the evaluation's checkers), else ``None``. When a length limit is among them and the
    additions (an end phrase, a postscript) push the answer over it, the answer is tried again with one
    sentence fewer, down to one. Already-passing answers come back unchanged.
    """
    checked = [validate_constraint(c) for c in constraints]
    if not checked:
        return None
    text = complete_sentences(response) if truncated else response.strip()
    if not _WORD.search(text):
        return None
    got = _apply(text, checked)
    if got is not None or not any(c["type"] in _CUTS for c in checked):
        return got
    found = _plain_sentences(text)
    for n in range(len(found) - 1, 0, -1):
        got = _apply(" ".join(found[:n]), checked)
        if got is not None:
            return got
    return None


def _apply(text: str, checked: list[dict[str, Any]]) -> str | None:
    for c in sorted(checked, key=lambda c: _ORDER.get(c["type"], len(_ORDER))):
        if check_constraint(text, c):
            continue
        fix = REPAIRS.get(c["type"])
        if fix is None:
            return None
        params = {k: v for k, v in c.items() if k != "type"}
        if "text" in params:  # repeat_request's parameter; `text` is the answer here
            params["text_"] = params.pop("text")
        edited = fix(text, **params)
        if edited is None:
            return None
        text = edited
    return text if all(check_constraint(text, c) for c in checked) else None
