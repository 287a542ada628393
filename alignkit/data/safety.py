"""Safety data layouts (README "Data formats", safety rows) and their conversions.

Two layouts, as the public safety sets write them:

* **safety preference** (BeaverTails / PKU-SafeRLHF): ``prompt``, ``response_0``, ``response_1``,
  ``better_response_id`` (0/1: the more *helpful* one), ``safer_response_id`` (0/1: the more *harmless*
  one), ``is_response_0_safe``, ``is_response_1_safe`` (bools). Safe RLHF's dual labels.
* **safety label**: ``prompt``, ``response``, ``is_safe`` (bool), optionally ``category``.

A safety preference row becomes an ordinary preference row (``prompt``, ``chosen``, ``rejected``)
under one of three views (:data:`SAFETY_VIEWS`, the ``safety_pairs`` key of rm/dpo/kto):

``helpful``     chosen = the better response (Safe RLHF's reward-model data)
``harmless``    chosen = the safer response (its cost-model pairs, seen from the safe side)
``safe_first``  safer first, then better: if exactly one response is safe it is chosen; if both are safe
                the better one; if both are unsafe the safer one

For the cost model (:func:`load_cost_rows`) a pair is ordered the other way round: ``chosen`` holds the
*more harmful* response (the one whose cost should be higher), with ``chosen_unsafe`` /
``rejected_unsafe`` flags for the sign term; a safety label row becomes one response with ``label`` =
unsafe. Booleans accept what ``label`` accepts (true/false, 1/0, their strings); ids accept 0/1 and
``"0"``/``"1"``. A row whose safer response is marked unsafe while the other one is marked safe
contradicts itself and is malformed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alignkit.data.io import DataError, iter_records
from alignkit.data.schema import LoadedRows, check_text_field, parse_label

SAFETY_VIEWS = ("helpful", "harmless", "safe_first")
PAIR_FIELDS = ("prompt", "response_0", "response_1", "better_response_id", "safer_response_id",
               "is_response_0_safe", "is_response_1_safe")
LABEL_FIELDS = ("prompt", "response", "is_safe")


def is_safety_pair(row: dict) -> bool:
    """Whether ``row`` is meant as a safety preference row (it has a ``response_0`` or ``response_1``)."""
    return "response_0" in row or "response_1" in row


def is_safety_label(row: dict) -> bool:
    return "is_safe" in row and "response" in row


@dataclass
class SafetyPair:
    """A validated safety preference row: the two responses, which is better, which is safer, and
    whether each is safe; ``extra`` holds the row's other columns."""

    prompt: Any
    responses: tuple[Any, Any]
    better: int
    safer: int
    safe: tuple[bool, bool]
    extra: dict[str, Any]


def _response_id(value: Any, field: str, path, row_no) -> int:
    if isinstance(value, bool) or value is None:
        raise DataError("missing" if value is None else f"expected 0 or 1, got {value!r}",
                        path=path, row=row_no, field=field)
    if isinstance(value, (int, float)) and value in (0, 1):
        return int(value)
    if isinstance(value, str) and value.strip() in ("0", "1"):
        return int(value.strip())
    raise DataError(f"expected 0 or 1, got {value!r}", path=path, row=row_no, field=field)


def parse_safety_pair(row: dict, path=None, row_no=None) -> SafetyPair:
    """Validate a safety preference row (every field of :data:`PAIR_FIELDS`); raises :class:`DataError`."""
    loc = {"path": path, "row_no": row_no}
    prompt = check_text_field(row, "prompt", **loc)
    responses = (check_text_field(row, "response_0", completion=True, **loc),
                 check_text_field(row, "response_1", completion=True, **loc))
    better = _response_id(row.get("better_response_id"), "better_response_id", path, row_no)
    safer = _response_id(row.get("safer_response_id"), "safer_response_id", path, row_no)
    safe = tuple(parse_label(row.get(f"is_response_{i}_safe"), path=path, row=row_no,
                             field_name=f"is_response_{i}_safe") for i in (0, 1))
    if not safe[safer] and safe[1 - safer]:
        raise DataError(f"says response_{safer} is safer, but is_response_{safer}_safe is false and "
                        f"is_response_{1 - safer}_safe is true", path=path, row=row_no, field="safer_response_id")
    extra = {k: v for k, v in row.items() if k not in PAIR_FIELDS}
    return SafetyPair(prompt, responses, better, safer, (bool(safe[0]), bool(safe[1])), extra)


def chosen_index(pair: SafetyPair, view: str) -> int:
    """Index (0/1) of the chosen response of ``pair`` under ``view`` (see the module docstring)."""
    if view == "helpful":
        return pair.better
    if view == "harmless":
        return pair.safer
    if view == "safe_first":
        if pair.safe[0] != pair.safe[1]:
            return 0 if pair.safe[0] else 1
        return pair.better if all(pair.safe) else pair.safer
    raise ValueError(f"unknown safety view {view!r}; expected one of {', '.join(SAFETY_VIEWS)}")


def safety_to_preference(row: dict, view: str, path=None, row_no=None) -> dict[str, Any]:
    """A safety preference row -> a preference row ``{prompt, chosen, rejected, ...}`` under ``view``;
    the other columns are kept, plus ``chosen_safe`` / ``rejected_safe``."""
    pair = parse_safety_pair(row, path, row_no)
    c = chosen_index(pair, view)
    return {**pair.extra, "prompt": pair.prompt, "chosen": pair.responses[c], "rejected": pair.responses[1 - c],
            "chosen_safe": pair.safe[c], "rejected_safe": pair.safe[1 - c]}


def cost_pair_row(row: dict, path=None, row_no=None) -> dict[str, Any]:
    """A safety preference row -> the cost model's pair: ``chosen`` = the more harmful response."""
    pair = parse_safety_pair(row, path, row_no)
    harmful = 1 - pair.safer
    return {**pair.extra, "prompt": pair.prompt, "chosen": pair.responses[harmful],
            "rejected": pair.responses[pair.safer], "chosen_unsafe": not pair.safe[harmful],
            "rejected_unsafe": not pair.safe[pair.safer]}


def parse_safety_label(row: dict, path=None, row_no=None) -> dict[str, Any]:
    """A safety label row -> an unpaired row ``{prompt, completion, label}`` with ``label`` = *unsafe*
    (the cost model's sign: +1 for unsafe), the other columns kept."""
    loc = {"path": path, "row_no": row_no}
    prompt = check_text_field(row, "prompt", **loc)
    response = check_text_field(row, "response", completion=True, **loc)
    safe = parse_label(row.get("is_safe"), path=path, row=row_no, field_name="is_safe")
    extra = {k: v for k, v in row.items() if k not in LABEL_FIELDS}
    if "category" in row and row["category"] is not None and not isinstance(row["category"], str):
        raise DataError(f"expected a string, got {type(row['category']).__name__}", path=path, row=row_no,
                        field="category")
    return {**extra, "prompt": prompt, "completion": response, "label": not safe}


def load_cost_rows(path: str | Path, skip_invalid: bool = False) -> LoadedRows:
    """Rows of a cost-model file: safety preference rows (kind ``preference``, ordered by
    :func:`cost_pair_row`) and/or safety label rows (kind ``unpaired``, :func:`parse_safety_label`).
    Any other row is malformed (file, row, field)."""
    rows, numbers, kinds, errors = [], [], [], []
    total = 0
    for row_no, rec in iter_records(path):
        total += 1
        try:
            if isinstance(rec, DataError):
                raise rec
            if is_safety_pair(rec):
                rows.append(cost_pair_row(rec, path, row_no))
                kinds.append("preference")
            elif "is_safe" in rec or "response" in rec:
                rows.append(parse_safety_label(rec, path, row_no))
                kinds.append("unpaired")
            else:
                present = ", ".join(f"'{k}'" for k in rec) or "none"
                raise DataError(f"missing (cost data needs the safety preference fields {', '.join(PAIR_FIELDS)}, "
                                f"or the safety label fields {', '.join(LABEL_FIELDS)}; the row has {present})",
                                path=path, row=row_no, field="response_0")
        except DataError as err:
            if not skip_invalid:
                raise
            errors.append(err)
            continue
        numbers.append(row_no)
    if not rows:
        if total == 0:
            raise DataError("no rows", path=path)
        raise DataError(f"no valid rows: all {total} rows were invalid; the first error was: {errors[0]}", path=path)
    return LoadedRows(path=str(path), kind=kinds[0], rows=rows, row_numbers=numbers, skipped=len(errors),
                      errors=errors, kinds=kinds)


def rows_of_kind(loaded: LoadedRows, kind: str) -> LoadedRows | None:
    """The rows of ``loaded`` of one kind (None when there are none), keeping their row numbers."""
    picked = [(n, r) for n, r, k in loaded.with_kinds() if k == kind]
    if not picked:
        return None
    return LoadedRows(path=loaded.path, kind=kind, rows=[r for _, r in picked], row_numbers=[n for n, _ in picked],
                      skipped=loaded.skipped, errors=list(loaded.errors))
