"""Instruction sets: loading and validating them, and scoring responses against their constraints.

An instruction file is any data file (README "Data formats") (``.jsonl`` normally) with one prompt per row::

    {"id": "haiku-1", "split": "test", "prompt": "Write ...",
     "constraints": [{"type": "max_words", "max": 40}, {"type": "no_commas"}]}

* ``prompt`` (required): a string or a list of chat messages.
* ``constraints``: a list of constraint records (see :mod:`alignkit.evaluation.constraints`); a row
  without constraints is still generated for (reward, KL, win rate) but not scored for pass rates.
* ``split``: a name such as ``"train"`` or ``"test"``; a row without one belongs to every split.
* ``id``: unique; defaults to ``row-N``. ``reference``: an optional reference answer (a string) for
  win rates against references. Any other field is kept and handed to reward functions as a column.

The shipped set (:data:`DEFAULT_INSTRUCTIONS`) has a ``train`` and a held-out ``test`` split: train
on one and measure on the other.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

from alignkit.evaluation.constraints import ConstraintError, check_constraint, validate_constraint

__all__ = [
    "DEFAULT_INSTRUCTIONS",
    "Instruction",
    "InstructionFileError",
    "check_instruction",
    "load_instructions",
    "score_responses",
]

DEFAULT_INSTRUCTIONS = str(files("alignkit") / "assets" / "eval" / "instructions.jsonl")


class InstructionFileError(ValueError):
    """A malformed instruction file: the message names the file, the row and what is wrong."""


@dataclass
class Instruction:
    id: str
    prompt: str | list[dict]
    constraints: list[dict[str, Any]]
    split: str | None = None
    row: int = 0
    reference: str | None = None
    columns: dict[str, Any] = field(default_factory=dict)  # every other field of the row


def _row_error(path: Any, row: int, msg: str) -> InstructionFileError:
    return InstructionFileError(f"{path}: row {row}: {msg}")


def load_instructions(path: str | Path | None = None, split: str | None = "test") -> list[Instruction]:
    """Read and validate an instruction file (default: the shipped set) and keep the rows of ``split``
    (``None`` or ``"all"``: every row). Raises :class:`InstructionFileError`."""
    from alignkit.data.io import DataError, iter_records
    from alignkit.data.schema import check_text_field

    path = DEFAULT_INSTRUCTIONS if path is None else str(path)
    out: list[Instruction] = []
    seen: dict[str, int] = {}
    splits: set[str] = set()
    try:
        records = list(iter_records(path))
    except DataError as e:
        raise InstructionFileError(str(e)) from None
    for row_no, rec in records:
        if isinstance(rec, DataError):
            raise InstructionFileError(str(rec))
        try:
            prompt = check_text_field(rec, "prompt", path=path, row_no=row_no)
        except DataError as e:
            raise InstructionFileError(str(e)) from None
        raw = rec.get("constraints")
        if raw is None:
            raw = []
        if not isinstance(raw, list):
            raise _row_error(path, row_no, f"field 'constraints' must be a list of constraint objects, "
                             f"got {type(raw).__name__}")
        constraints = []
        for i, c in enumerate(raw, start=1):
            try:
                constraints.append(validate_constraint(c))
            except ConstraintError as e:
                raise _row_error(path, row_no, f"constraint {i}: {e}") from None
        row_split = rec.get("split")
        if row_split is not None and (not isinstance(row_split, str) or not row_split.strip()):
            raise _row_error(path, row_no, f"field 'split' must be a non-empty string, got {row_split!r}")
        if row_split is not None:
            splits.add(row_split)
        rid = rec.get("id")
        rid = f"row-{row_no}" if rid is None else str(rid)
        if rid in seen:
            raise _row_error(path, row_no, f"duplicate id '{rid}' (also on row {seen[rid]})")
        seen[rid] = row_no
        reference = rec.get("reference")
        if reference is not None and not isinstance(reference, str):
            raise _row_error(path, row_no, "field 'reference' must be a string")
        if split not in (None, "all") and row_split is not None and row_split != split:
            continue
        columns = {k: v for k, v in rec.items() if k not in ("prompt", "constraints")}
        out.append(Instruction(rid, prompt, constraints, row_split, row_no, reference, columns))
    if not records:
        raise InstructionFileError(f"{path}: no rows")
    if not out:
        known = ", ".join(sorted(splits)) or "none"
        raise InstructionFileError(f"{path}: no rows in split '{split}' (splits in the file: {known}; 'all' takes every row)")
    return out


def check_instruction(instruction: Instruction, response: str) -> list[bool]:
    """Pass/fail of each of the instruction's constraints on ``response``."""
    return [check_constraint(response, c) for c in instruction.constraints]


def score_responses(instructions: list[Instruction], responses: list[str]) -> dict[str, Any]:
    """Strict pass rates of ``responses`` (one per instruction, in order).

    Returns ``{"prompt_level", "instruction_level", "n_prompts", "n_instructions", "per_type",
    "details"}``: ``prompt_level`` is the fraction of scored prompts whose constraints *all* pass,
    ``instruction_level`` the fraction of individual constraints that pass, ``per_type[TYPE]`` =
    ``{"pass_rate", "passed", "total"}`` counts constraints of that type, and ``details`` lists one
    ``{"id", "passed": [bool, ...], "all": bool}`` per scored prompt. Prompts without constraints
    are not scored; with none scored the rates are ``None``.
    """
    if len(instructions) != len(responses):
        raise ValueError(f"{len(instructions)} instructions but {len(responses)} responses")
    per_type: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    details = []
    prompts_passed = passed_total = n_total = 0
    for ins, resp in zip(instructions, responses):
        if not ins.constraints:
            continue
        results = check_instruction(ins, resp)
        for c, ok in zip(ins.constraints, results):
            per_type[c["type"]][0] += int(ok)
            per_type[c["type"]][1] += 1
        passed_total += sum(results)
        n_total += len(results)
        prompts_passed += int(all(results))
        details.append({"id": ins.id, "passed": results, "all": all(results)})
    n_prompts = len(details)
    return {
        "prompt_level": prompts_passed / n_prompts if n_prompts else None,
        "instruction_level": passed_total / n_total if n_total else None,
        "n_prompts": n_prompts,
        "n_instructions": n_total,
        "per_type": {t: {"pass_rate": p / n, "passed": p, "total": n} for t, (p, n) in sorted(per_type.items())},
        "details": details,
    }
