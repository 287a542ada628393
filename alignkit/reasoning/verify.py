"""Verifiable math rewards: pull the final answer out of a completion and check it against the row's
``answer`` column (README "Reasoning data and verifiable math rewards").

Extraction (:func:`extract_answer`), first rule that applies:

1. the content of the last ``\\boxed{...}`` (or ``\\fbox{...}``), braces matched;
2. the rest of the line after the last ``Answer:`` (any case, markdown bold allowed: ``**Answer:** 42``);
   when that line is empty, the next non-empty line;
3. the rest of the line after the last ``####`` (GSM8K's convention);
4. the last number in the text.

Normalisation (:func:`parse_number`): ``$`` signs, thousands separators (``1,234``, also LaTeX
``1{,}234`` / ``1\\,234``), a trailing period, unit words (``42 apples``), ``%``, ``\\text{...}``,
``\\frac{a}{b}``, fractions ``3/4``, decimals, negative numbers (ASCII or Unicode minus), a remark in
parentheses after the number. An equation keeps what follows its last ``=`` (``12 / 4 = 3`` is 3). A
segment counts as a number only when it is one number with at most words around it: ``2\\sqrt{2}`` or
``2 + 3`` are *not* numbers.

Comparison (:func:`answers_match`): two numbers are compared exactly (as fractions: ``0.75`` equals
``3/4``, ``1,000`` equals ``1000.0``). When either side is not a plain number, the comparison is
symbolic with the ``math-verify`` package (``pip install 'alignkit[math]'``) when it is installed
(``\\frac{1}{\\sqrt{2}}`` equals ``\\sqrt{2}/2``), and otherwise a plain string comparison after removing
spaces, ``$`` and a trailing period. ``symbolic=False`` forces the plain fallback, ``symbolic=True``
requires math-verify.

Reward functions (TRL's signature ``f(prompts, completions, **columns) -> list[float]``), named in a
``reward=`` spec as ``math:answer`` and ``math:format`` (:data:`MATH_REWARDS`):

``math:answer`` (:func:`math_answer`)
    1.0 when the extracted answer equals the row's ``answer`` column, else 0.0.
``math:format`` (:func:`math_format`)
    the step format of :func:`format_score`: 0.5 for the steps plus 0.5 for the answer line, with half
    credit for each part when it is there but out of order.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

from alignkit.rewards import completion_text

__all__ = [
    "MATH_REWARDS",
    "answers_match",
    "extract_answer",
    "format_number",
    "format_score",
    "is_correct",
    "math_answer",
    "math_format",
    "math_verify_available",
    "parse_number",
]

# one number: an optional minus, digits with optional thousands separators and decimals (or ".5"), and an
# optional "/ denominator"; not glued to a letter, digit or decimal point on either side
_INT = r"(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)"
_NUM = re.compile(rf"(?<![\w.,])(-)?({_INT}(?:\.\d+)?|\.\d+)(?:\s*/\s*({_INT}(?:\.\d+)?))?(?![\d.]\d)")
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*\{")
_ANSWER = re.compile(r"answer\s*\**\s*[:：]\**[ \t]*([^\n]*)", re.IGNORECASE)
_HASHES = re.compile(r"####[ \t]*([^\n]*)")
_FRAC = re.compile(r"\\[dt]?frac\s*\{\s*([^{}]*?)\s*\}\s*\{\s*([^{}]*?)\s*\}")
_TEXT = re.compile(r"\\(?:text|textbf|mathrm|mbox)\s*\{[^{}]*\}")


# ----------------------------------------------------------------------------- extraction


def _boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` with its braces matched (None without one)."""
    last = None
    for m in _BOXED.finditer(text):
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        if depth == 0:
            last = text[m.end():i - 1]
    return last


def extract_answer(text: str) -> str | None:
    """The final answer of a completion as a string (see the module docstring for the rules), or None
    when the text holds no boxed answer, no ``Answer:``/``####`` line and no number."""
    if not isinstance(text, str):
        text = completion_text(text)
    boxed = _boxed(text)
    if boxed is not None and boxed.strip():
        return boxed.strip()
    for pattern in (_ANSWER, _HASHES):
        matches = list(pattern.finditer(text))
        if matches:
            m = matches[-1]
            value = m.group(1).strip().strip("*").strip()
            if not value:  # "Answer:" alone on its line: the answer is on the next non-empty line
                rest = [line.strip().strip("*").strip() for line in text[m.end():].splitlines()]
                value = next((line for line in rest if line), "")
            if value:
                return value
    numbers = list(_NUM.finditer(_clean(text)))
    return numbers[-1].group(0).strip() if numbers else None


# ----------------------------------------------------------------------------- normalisation


def _clean(text: str) -> str:
    s = text.replace("\u2212", "-").replace("\u2013", "-").replace("{,}", ",").replace("\\,", "").replace("\\!", "")
    s = s.replace("\\$", "").replace("$", "").replace("\\%", "%").replace("\\left", "").replace("\\right", "")
    s = _TEXT.sub(" ", s)
    return _FRAC.sub(lambda m: f"({m.group(1)})/({m.group(2)})" if not (_plain(m.group(1)) and _plain(m.group(2)))
                     else f"{m.group(1)}/{m.group(2)}", s)


def _plain(s: str) -> bool:
    return re.fullmatch(r"-?\d+(?:\.\d+)?", s.strip()) is not None


def _to_fraction(text: str) -> Fraction:
    return Fraction(text.replace(",", ""))


def parse_number(text: Any) -> Fraction | None:
    """The value of an answer segment that is one number (see the module docstring), or None.

    >>> parse_number("$1,234.50."), parse_number("\\\\frac{3}{4}"), parse_number("-5 apples")
    (Fraction(2469, 2), Fraction(3, 4), Fraction(-5, 1))
    """
    if text is None:
        return None
    s = _clean(str(text)).replace("*", " ")
    if "=" in s:
        s = s.rsplit("=", 1)[1]
    m = _NUM.search(s)
    if m is None:
        return None
    before, after = s[:m.start()], re.sub(r"\s\([^()]*\)", " ", s[m.end():])  # "42 (from step 3)" is 42
    # words around the number are fine ("Tom has 42 marbles."); more maths is not ("2\sqrt{2}", "2 + 3")
    if re.search(r"[\d\\^{}+*/=]", before) or re.search(r"[\d\\^{}+*/=(\[]", after):
        return None
    if before.rstrip().endswith("-") or re.search(r"\w-\s*$", before):
        return None
    try:
        value = _to_fraction(m.group(2))
        if m.group(3) is not None:
            den = _to_fraction(m.group(3))
            if den == 0:
                return None
            value /= den
    except (ValueError, ZeroDivisionError):
        return None
    return -value if m.group(1) else value


def format_number(value: Fraction) -> str:
    """A canonical string: ``42``, ``-3``, ``0.75`` (finite decimals) or ``1/3``."""
    if value.denominator == 1:
        return str(value.numerator)
    den = value.denominator
    while den % 2 == 0:
        den //= 2
    while den % 5 == 0:
        den //= 5
    if den == 1:  # a finite decimal
        digits = 0
        while (value * 10 ** digits).denominator != 1:
            digits += 1
        scaled = abs(value.numerator * 10 ** digits // value.denominator)
        whole, frac = divmod(scaled, 10 ** digits)
        return f"{'-' if value < 0 else ''}{whole}.{frac:0{digits}d}"
    return f"{value.numerator}/{value.denominator}"


# ----------------------------------------------------------------------------- comparison

_MATH_VERIFY: list[Any] = []


def _math_verify() -> Any:
    """The ``math_verify`` module, imported on first use, or None when it is not installed."""
    if not _MATH_VERIFY:
        try:
            import math_verify
        except ImportError:
            math_verify = None
        _MATH_VERIFY.append(math_verify)
    return _MATH_VERIFY[0]


def math_verify_available() -> bool:
    """Whether the optional ``math-verify`` package (extra ``alignkit[math]``) can be imported."""
    return _math_verify() is not None


def _symbolic_equal(mv: Any, predicted: str, gold: str) -> bool:
    # math-verify's timeouts use signal.alarm, which only works in the main thread
    main = threading.current_thread() is threading.main_thread()
    timeout = 5 if main else None

    def parse(s: str) -> Any:
        return mv.parse("$" + s.replace("$", "") + "$", parsing_timeout=timeout)

    try:
        g, p = parse(gold), parse(predicted)
        return bool(g) and bool(p) and bool(mv.verify(g, p, timeout_seconds=timeout))
    except Exception:  # noqa: BLE001 - an unparsable or timed-out answer is simply not correct
        return False


def _canonical(text: str) -> str:
    return re.sub(r"\s+", "", str(text)).replace("$", "").rstrip(".").lower()


def answers_match(predicted: str | None, gold: Any, *, symbolic: bool | None = None) -> bool:
    """Whether an extracted answer equals the reference ``gold`` (see the module docstring).

    ``symbolic``: None (default) uses math-verify for non-numeric answers when it is installed, False
    never does (plain string fallback), True requires it (``RuntimeError`` when it is missing)."""
    if predicted is None or not str(predicted).strip():
        return False
    gold = str(gold)
    g, p = parse_number(gold), parse_number(predicted)
    if g is not None and p is not None:
        return g == p
    mv = None if symbolic is False else _math_verify()
    if symbolic is True and mv is None:
        raise RuntimeError("symbolic answer checking needs the math-verify package: pip install 'alignkit[math]'")
    if mv is not None:
        return _symbolic_equal(mv, str(predicted), gold)
    return _canonical(predicted) == _canonical(gold)


def is_correct(completion: Any, gold: Any, *, symbolic: bool | None = None) -> bool:
    """Extract the final answer of ``completion`` (a string or assistant messages) and compare it."""
    return answers_match(extract_answer(completion_text(completion)), gold, symbolic=symbolic)


# ----------------------------------------------------------------------------- step format

_STEP_LINE = re.compile(r"step\s+(\d+)\s*:\s*\S", re.IGNORECASE)
_ANSWER_LINE = re.compile(r"answer\s*:\s*(.*)", re.IGNORECASE)
_LIST_MARK = re.compile(r"^(?:[-*\u2022]|\d+[.)])\s+")  # "1. Step 1: ..." and "- Step 1: ..." count as step lines


def format_score(text: Any) -> float:
    """How well ``text`` follows the step format ``Step 1: ...`` / ``Step 2: ...`` / ``Answer: N``.

    Two halves, each worth 0.5 (markdown ``*`` around a line's start and a list marker such as ``1.`` or
    ``-`` before ``Step`` are ignored; other lines between the steps are allowed):

    * steps: 0.5 when there are lines ``Step k: <text>`` numbered 1, 2, ..., m in order and all before
      the last ``Answer:`` line; 0.25 when there are step lines but the numbering skips, repeats or
      runs backwards, or a step comes after the answer; 0 without step lines;
    * answer: 0.5 when the last non-empty line is ``Answer: <something with a digit>``; 0.25 when an
      ``Answer:`` line is there but is not the last line or holds no digit; 0 without one.

    So 1.0 is the full format, 0.5 e.g. steps without an answer line, 0 plain prose.
    """
    lines = [_LIST_MARK.sub("", line.strip().strip("*").strip()).strip("*") for line in
             completion_text(text).splitlines()]
    lines = [line for line in lines if line]
    steps = [(i, int(m.group(1))) for i, line in enumerate(lines) if (m := _STEP_LINE.match(line))]
    answers = [i for i, line in enumerate(lines) if _ANSWER_LINE.match(line)]
    score = 0.0
    if steps:
        in_order = [k for _, k in steps] == list(range(1, len(steps) + 1))
        before_answer = not answers or all(i < answers[-1] for i, _ in steps)
        score += 0.5 if in_order and before_answer else 0.25
    if answers:
        last = answers[-1]
        content = _ANSWER_LINE.match(lines[last]).group(1)
        score += 0.5 if last == len(lines) - 1 and re.search(r"\d", content) else 0.25
    return score


# ----------------------------------------------------------------------------- reward functions


def math_answer(prompts: Sequence[Any], completions: Sequence[Any], answer: Sequence[Any] | None = None,
                **columns: Any) -> list[float]:
    """``reward=math:answer``: 1.0 when a completion's final answer equals its row's ``answer``, else 0.0.

    Needs an ``answer`` column in the data (``alignkit data math`` writes one)."""
    if answer is None:
        raise ValueError("math:answer needs an 'answer' column in the data (the reference answer of each row, "
                         "as `alignkit data math` writes it)")
    if len(answer) != len(completions):
        raise ValueError(f"{len(answer)} answers for {len(completions)} completions")
    scores = []
    for i, (completion, gold) in enumerate(zip(completions, answer)):
        if gold is None or not str(gold).strip():
            raise ValueError(f"completion {i}: its data row has no 'answer'")
        scores.append(1.0 if is_correct(completion, gold) else 0.0)
    return scores


def math_format(prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> list[float]:
    """``reward=math:format``: :func:`format_score` of each completion (0, 0.25, 0.5, 0.75 or 1)."""
    return [format_score(c) for c in completions]


#: the ``math:NAME`` reward specs
MATH_REWARDS = {"answer": math_answer, "format": math_format}
