"""A procedurally generated reasoning set: multi-step arithmetic word problems with a known integer answer
and a reference step-by-step solution, plus a reader for GSM8K-style files (README "Reasoning data and
verifiable math rewards").

A problem starts from a quantity ("Ana has 12 marbles.") and applies 1-5 operations to it, one sentence
each (add, subtract, multiply by a small factor, divide exactly), then asks for the result. The
reference solution has one line per operation and a final answer line::

    Step 1: Ana wins 5 more marbles in a game, so 12 + 5 = 17.
    Step 2: Ana splits the marbles into 3 equal bags and keeps one bag, so 17 ... (only exact divisions)
    Answer: 51

Every intermediate value is a positive integer. Difficulty: ``steps`` (the number of operations, 1-5) and
``level`` (number sizes, :data:`LEVELS`: 1 = start values up to 20 and results up to 200, 2 = up to 100 /
2,000, 3 = up to 999 / 50,000).

Splits: ``train`` and ``test`` use disjoint story templates (:data:`TEMPLATES`; a test problem's story never
appears in training) and disjoint random seeds (:func:`split_seed`: ``2*seed`` for train, ``2*seed + 1``
for test, so no seed of one split is a seed of the other). The same arguments always give the same rows.

Rows (:func:`generate_problems`, :func:`read_gsm8k`) serve as prompt-completion data (``alignkit sft``)
and as prompt-only data with a reward column (``alignkit grpo ... reward=math:answer``)::

    {"id", "prompt": question + format instruction, "completion": reference solution,
     "answer": "51", "steps": 2, "level": 1, "template": "marbles", "split": "train"}
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignkit.data.io import DataError, iter_records
from alignkit.reasoning.verify import format_number, parse_number

__all__ = [
    "DEFAULT_EVAL",
    "INSTRUCTION",
    "LEVELS",
    "SPLITS",
    "TEMPLATES",
    "Level",
    "Template",
    "generate_problems",
    "load_math_problems",
    "parse_range",
    "read_gsm8k",
    "split_seed",
    "templates",
]

SPLITS = ("train", "test")

#: appended to every question (``instruction=False`` leaves it out)
INSTRUCTION = ('Solve it step by step: write each step on its own line as "Step 1: ...", "Step 2: ...", '
               'and finish with a line "Answer: N".')


@dataclass(frozen=True)
class Level:
    start: tuple[int, int]  # the starting quantity
    amount: tuple[int, int]  # what is added or taken away
    factor: tuple[int, int]  # multipliers and divisors
    cap: int  # no intermediate value above this


LEVELS = {
    1: Level(start=(2, 20), amount=(1, 10), factor=(2, 5), cap=200),
    2: Level(start=(10, 100), amount=(5, 60), factor=(2, 9), cap=2000),
    3: Level(start=(100, 999), amount=(20, 500), factor=(2, 12), cap=50000),
}

OPS = ("add", "sub", "mul", "div")
_SYMBOL = {"add": "+", "sub": "-", "mul": "*", "div": "/"}


@dataclass(frozen=True)
class Template:
    """One story: the opening sentence, one sentence per operation, and the question ({who}, {n})."""

    name: str
    split: str
    start: str
    add: str
    sub: str
    mul: str
    div: str
    question: str


TEMPLATES = (
    # ---- train
    Template("marbles", "train", "{who} has {n} marbles.",
             "{who} wins {n} more marbles in a game.", "{who} gives {n} marbles to a friend.",
             "{who} trades them for a bag holding {n} times as many marbles.",
             "{who} splits the marbles into {n} equal bags and keeps one bag.",
             "How many marbles does {who} have now?"),
    Template("library", "train", "A school library has {n} books.",
             "It receives a donation of {n} books.", "Students borrow {n} books and never return them.",
             "After a fundraiser the library has {n} times as many books as before.",
             "The books are shared equally among {n} classrooms, and the library keeps one share.",
             "How many books does the library have now?"),
    Template("cookies", "train", "{who} bakes {n} cookies.",
             "{who} bakes another {n} cookies.", "{who} sells {n} cookies at the market.",
             "{who} gets a big order and bakes until there are {n} times as many cookies.",
             "{who} packs the cookies equally into {n} boxes and keeps only one box.",
             "How many cookies does {who} have now?"),
    Template("savings", "train", "{who} has saved {n} dollars.",
             "{who} earns {n} dollars from a weekend job.", "{who} spends {n} dollars on a book.",
             "A prize makes {who}'s savings {n} times as large.",
             "{who} splits the money equally into {n} envelopes and keeps just one envelope.",
             "How many dollars does {who} have now?"),
    Template("sheep", "train", "A farmer named {who} has {n} sheep.",
             "{n} lambs are born on the farm.", "{who} sells {n} sheep.",
             "{who} buys more sheep until the flock is {n} times as big.",
             "{who} divides the flock into {n} equal groups and keeps only one group.",
             "How many sheep does {who} have now?"),
    Template("stamps", "train", "{who} owns {n} stamps.",
             "{who} buys {n} more stamps.", "{who} swaps away {n} stamps.",
             "A relative's gift leaves {who} with {n} times as many stamps.",
             "{who} sorts the stamps into {n} equal albums and sells all but one album.",
             "How many stamps does {who} own now?"),
    Template("warehouse", "train", "A warehouse holds {n} boxes.",
             "A truck delivers {n} more boxes.", "{n} boxes are shipped to a shop.",
             "The stock grows to {n} times as many boxes.",
             "The boxes are split equally among {n} warehouses, and this one keeps one part.",
             "How many boxes are in the warehouse now?"),
    Template("tulips", "train", "{who} plants {n} tulips.",
             "{who} plants {n} more tulips.", "Rabbits eat {n} of the tulips.",
             "By spring there are {n} times as many tulips.",
             "{who} splits the tulips into {n} equal bunches and keeps one bunch in the garden.",
             "How many tulips are in {who}'s garden now?"),
    # ---- test (never used for training data)
    Template("bus", "test", "A bus leaves the station with {n} passengers.",
             "At the next stop {n} people get on.", "At the following stop {n} people get off.",
             "In the city centre so many people get on that there are {n} times as many passengers.",
             "The passengers are moved equally onto {n} buses, and we follow one of them.",
             "How many passengers are on the bus now?"),
    Template("tank", "test", "A tank holds {n} litres of water.",
             "{n} litres are pumped in.", "{n} litres leak out.",
             "A storm fills the tank to {n} times the water it had.",
             "The water is poured equally into {n} tanks, and we keep watching one tank.",
             "How many litres of water are in the tank now?"),
    Template("points", "test", "{who} starts a game with {n} points.",
             "{who} scores {n} points.", "{who} loses {n} points as a penalty.",
             "A bonus round multiplies {who}'s points by {n}.",
             "A trap divides {who}'s points by {n}.",
             "How many points does {who} have now?"),
    Template("apples", "test", "{who} picks {n} apples.",
             "{who} picks {n} more apples.", "{who} gives {n} apples to the neighbours.",
             "Friends bring baskets and the pile grows to {n} times as many apples.",
             "{who} shares the apples equally among {n} families and keeps one family's share.",
             "How many apples does {who} have now?"),
)

NAMES = ("Ana", "Ben", "Carla", "David", "Elena", "Farid", "Grace", "Hugo", "Ines", "Jonas", "Kira", "Liam",
         "Maya", "Noah", "Olga", "Pablo", "Rosa", "Sam", "Tara", "Yusuf")

#: the problems ``alignkit eval --math`` uses without a file: 100 held-out 2-3-step problems, level 1
DEFAULT_EVAL = {"n": 100, "steps": (2, 3), "levels": (1, 1), "split": "test", "seed": 0}


def templates(split: str) -> list[Template]:
    """The story templates of ``split`` (``train`` or ``test``); the two lists share none."""
    if split not in SPLITS:
        raise ValueError(f"unknown split '{split}'; expected one of {', '.join(SPLITS)}")
    return [t for t in TEMPLATES if t.split == split]


def split_seed(split: str, seed: int) -> int:
    """The random seed a split is generated from: ``2*seed`` (train) or ``2*seed + 1`` (test)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split '{split}'; expected one of {', '.join(SPLITS)}")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    return 2 * seed + SPLITS.index(split)


def parse_range(text: Any, lo: int, hi: int, name: str) -> tuple[int, int]:
    """``"3"`` -> (3, 3), ``"2-4"`` -> (2, 4), within [lo, hi]; a (a, b) pair is checked as is."""
    if isinstance(text, (tuple, list)) and len(text) == 2:
        a, b = int(text[0]), int(text[1])
    elif isinstance(text, int):
        a = b = text
    else:
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", str(text))
        if not m:
            raise ValueError(f"{name} must be a number or a range like {lo}-{hi}, got '{text}'")
        a = int(m.group(1))
        b = int(m.group(2)) if m.group(2) else a
    if not lo <= a <= b <= hi:
        raise ValueError(f"{name} must lie within {lo}-{hi} (low to high), got {a}-{b}")
    return a, b


def _operation(rng: random.Random, value: int, level: Level) -> tuple[str, int, int]:
    """One feasible operation on ``value``: (op, operand, result), all results in [1, cap]."""
    (alo, ahi), (flo, fhi) = level.amount, level.factor
    options = []
    if value + alo <= level.cap:
        options.append("add")
    if value - alo >= 1:
        options.append("sub")
    if value * flo <= level.cap:
        options.append("mul")
    divisors = [d for d in range(flo, fhi + 1) if value % d == 0]
    if divisors:
        options.append("div")
    op = rng.choice(options)
    if op == "add":
        n = rng.randint(alo, min(ahi, level.cap - value))
        return op, n, value + n
    if op == "sub":
        n = rng.randint(alo, min(ahi, value - 1))
        return op, n, value - n
    if op == "mul":
        n = rng.randint(flo, min(fhi, level.cap // value))
        return op, n, value * n
    n = rng.choice(divisors)
    return op, n, value // n


def _problem(rng: random.Random, template: Template, steps: int, level_no: int, instruction: bool) -> dict:
    level = LEVELS[level_no]
    who = rng.choice(NAMES)
    value = rng.randint(*level.start)
    sentences = [template.start.format(who=who, n=value)]
    lines = []
    for k in range(1, steps + 1):
        op, n, result = _operation(rng, value, level)
        sentence = getattr(template, op).format(who=who, n=n)
        sentences.append(sentence)
        lines.append(f"Step {k}: {sentence.rstrip('.')}, so {value} {_SYMBOL[op]} {n} = {result}.")
        value = result
    sentences.append(template.question.format(who=who))
    prompt = " ".join(sentences)
    if instruction:
        prompt += "\n" + INSTRUCTION
    return {"prompt": prompt + "\n", "completion": "\n".join(lines + [f"Answer: {value}"]), "answer": str(value),
            "steps": steps, "level": level_no, "template": template.name}


def generate_problems(n: int, *, steps: Any = (2, 4), levels: Any = (1, 1), split: str = "train", seed: int = 0,
                      instruction: bool = True) -> list[dict]:
    """``n`` distinct problems of ``split``; the number of steps and the level of each are drawn uniformly
    from the ranges ``steps`` (within 1-5) and ``levels`` (within 1-3), as ``(low, high)`` or ``"2-4"``.
    Deterministic for the arguments. Raises ``ValueError`` for bad arguments or when the ranges cannot
    give ``n`` distinct problems."""
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    smin, smax = parse_range(steps, 1, 5, "steps")
    lmin, lmax = parse_range(levels, 1, max(LEVELS), "level")
    pool = templates(split)
    rng = random.Random(split_seed(split, seed))
    rows: list[dict] = []
    seen: set[str] = set()
    misses = 0  # draws in a row that repeated an earlier problem
    while len(rows) < n:
        row = _problem(rng, rng.choice(pool), rng.randint(smin, smax), rng.randint(lmin, lmax), instruction)
        if row["prompt"] in seen:
            misses += 1
            if misses > 2000:
                raise ValueError(f"only {len(rows)} distinct problems found with steps {smin}-{smax} and level "
                                 f"{lmin}-{lmax} (2000 draws in a row repeated one); ask for fewer or widen the ranges")
            continue
        misses = 0
        seen.add(row["prompt"])
        rows.append({"id": f"math-{split}-{seed}-{len(rows) + 1}", **row, "split": split})
    return rows


# ----------------------------------------------------------------------------- GSM8K-style files

_CALC = re.compile(r"<<[^<>]*>>")


def read_gsm8k(path: str | Path, *, instruction: bool = True) -> list[dict]:
    """Rows of a GSM8K-style file (``question``; ``answer`` = solution lines, then ``#### N``) in the
    layout of :func:`generate_problems`: the solution lines (calculator annotations ``<<48/2=24>>``
    removed) become ``Step k:`` lines, ``#### N`` the ``Answer:`` line and the ``answer`` column (commas
    dropped: ``#### 1,234`` gives ``"1234"``). ``level`` is None and ``template`` is ``"gsm8k"``.

    Any data file type works (README "Data formats"). A malformed row raises :class:`DataError` naming
    the file, the row and the field."""
    rows = []
    for row_no, rec in iter_records(path):
        if isinstance(rec, DataError):
            raise rec
        question = rec.get("question")
        if not isinstance(question, str) or not question.strip():
            reason = ("missing" if question is None else "empty string" if isinstance(question, str)
                      else f"expected a non-empty string, got {type(question).__name__}")
            raise DataError(reason, path=path, row=row_no, field="question")
        solution = rec.get("answer")
        if not isinstance(solution, str) or "####" not in solution:
            got = "missing" if solution is None else (
                "no '#### N' line" if isinstance(solution, str) else f"got {type(solution).__name__}")
            raise DataError(f"expected a solution ending in '#### N' ({got})", path=path, row=row_no, field="answer")
        body, _, final = solution.rpartition("####")
        value = parse_number(final.strip())
        if value is None:
            raise DataError(f"'#### {final.strip()}' is not a number", path=path, row=row_no, field="answer")
        answer = format_number(value)
        steps = [_CALC.sub("", line).strip() for line in body.splitlines()]
        steps = [s for s in steps if s]
        prompt = question.strip() + ("\n" + INSTRUCTION if instruction else "") + "\n"
        completion = "\n".join([f"Step {k}: {s}" for k, s in enumerate(steps, start=1)] + [f"Answer: {answer}"])
        rows.append({"id": str(rec.get("id", f"gsm8k-{row_no}")), "prompt": prompt, "completion": completion,
                     "answer": answer, "steps": len(steps), "level": None, "template": "gsm8k"})
    if not rows:
        raise DataError("no rows", path=path)
    return rows


def load_math_problems(spec: str | Path | None = None) -> tuple[list[dict], str]:
    """The problems of ``alignkit eval --math [FILE]`` and a description of where they came from.

    ``None`` (or ``"default"``): the generated :data:`DEFAULT_EVAL` set (test split). A file: rows with
    ``prompt`` and ``answer`` (what ``alignkit data math`` writes), or GSM8K rows (``question``,
    ``answer`` with ``#### N``), read with :func:`read_gsm8k`."""
    from alignkit.data.schema import check_text_field

    if spec is None or (str(spec) == "default" and not Path(str(spec)).exists()):
        d = DEFAULT_EVAL
        rows = generate_problems(d["n"], steps=d["steps"], levels=d["levels"], split=d["split"], seed=d["seed"])
        steps = "-".join(str(s) for s in sorted(set(d["steps"])))
        level = "-".join(str(x) for x in sorted(set(d["levels"])))
        return rows, (f"generated math set (split {d['split']}, seed {d['seed']}, {d['n']} problems, "
                      f"steps {steps}, level {level})")
    records = []
    for row_no, rec in iter_records(spec):
        if isinstance(rec, DataError):
            raise rec
        records.append((row_no, rec))
    if not records:
        raise DataError("no rows", path=spec)
    if "question" in records[0][1] and "prompt" not in records[0][1]:
        return read_gsm8k(spec), f"{spec} (GSM8K layout)"
    rows = []
    for row_no, rec in records:
        check_text_field(rec, "prompt", path=spec, row_no=row_no)
        gold = rec.get("answer")
        if gold is None or isinstance(gold, (dict, list)) or not str(gold).strip():
            raise DataError("missing" if gold is None else "expected the reference answer as a string or number",
                            path=spec, row=row_no, field="answer")
        rows.append({**rec, "id": str(rec.get("id", f"row-{row_no}")), "answer": str(gold).strip()})
    return rows, str(spec)
