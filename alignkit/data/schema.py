"""Data kinds, row validation and loading (README "Data formats").

Kinds and their fields (each text field is a non-empty string or a non-empty list of chat messages
``{"role": "system"|"user"|"assistant"|"tool", "content": str}``, the same formats as TRL):

=====================  =======================================  ==========================
kind                   fields                                   used by
=====================  =======================================  ==========================
``lm``                 ``text`` or ``messages``                 sft, ift
``prompt_completion``  ``prompt``, ``completion``               sft, ift
``preference``         ``prompt``, ``chosen``, ``rejected``     rm, dpo family, ift
``unpaired``           ``prompt``, ``completion``, ``label``    kto
``prompt``             ``prompt``                               ppo, grpo, online-dpo, ...
=====================  =======================================  ==========================

Preference rows in the layouts people download (see :func:`split_preference`):

* ``prompt`` + ``chosen``/``rejected`` answers (strings or assistant messages): as they are;
* ``prompt`` (string or messages) + ``chosen``/``rejected`` as whole conversations that start with the
  prompt's turns (UltraFeedback-binarized): the shared leading messages are the prompt, and they must
  match the ``prompt`` column;
* no ``prompt``, ``chosen``/``rejected`` whole conversations (TRL's implicit prompt): the shared leading
  messages are the prompt;
* no ``prompt``, ``chosen``/``rejected`` plain-text transcripts (HH-RLHF's ``\n\nHuman: ...
  \n\nAssistant: ...``): split after the last ``Assistant:`` marker of the shared text, or, without
  markers, at the longest common prefix (backed up to a word boundary).
``label`` accepts a bool, ``"true"``/``"false"`` (any case), ``1``/``0`` or ``"1"``/``"0"``.
Extra columns are kept in each row (online methods hand them to reward functions).

Each row's kind is detected on its own among the kinds the method accepts (as TRL does per example),
so a file may mix them (``messages`` rows beside ``prompt``/``completion`` rows, say). A row that fits
none of them is checked against the kind of the file's first valid row, so its error names the field
it lacks.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alignkit.data.io import DataError, iter_records

logger = logging.getLogger("alignkit.data")

KINDS = ("lm", "prompt_completion", "preference", "unpaired", "prompt")
ROLES = ("system", "user", "assistant", "tool")
KIND_FIELDS = {
    "lm": ("text|messages",),
    "prompt_completion": ("prompt", "completion"),
    "preference": ("prompt", "chosen", "rejected"),
    "unpaired": ("prompt", "completion", "label"),
    "prompt": ("prompt",),
}
KIND_NAMES = {
    "lm": "language-modelling",
    "prompt_completion": "prompt-completion",
    "preference": "preference",
    "unpaired": "unpaired preference",
    "prompt": "prompt-only",
}

FIELD_TYPE_MSG = "expected a non-empty string or a list of chat messages"


@dataclass
class LoadedRows:
    """Validated rows of one data file.

    ``rows[i]`` came from 1-based row ``row_numbers[i]`` of ``path`` and is of kind ``kinds[i]``;
    ``kind`` is the kind of the first row (of every row unless the file mixes kinds); ``skipped``
    counts rows skipped under ``skip_invalid`` (the tokenisers add the rows they skip), and ``errors``
    holds the error of each skipped row.
    """

    path: str
    kind: str
    rows: list[dict[str, Any]]
    row_numbers: list[int]
    skipped: int = 0
    errors: list[DataError] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.kinds:
            self.kinds = [self.kind] * len(self.rows)

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[tuple[int, dict[str, Any]]]:
        return iter(zip(self.row_numbers, self.rows))

    def with_kinds(self) -> Iterator[tuple[int, dict[str, Any], str]]:
        return iter(zip(self.row_numbers, self.rows, self.kinds))

    def record_skip(self, err: DataError) -> None:
        self.skipped += 1
        self.errors.append(err)


# ----------------------------------------------------------------------------- field checks


def _present(row: dict, key: str) -> bool:
    return row.get(key) is not None


def check_messages(value: list, field_name: str, *, path=None, row=None) -> list[dict[str, Any]]:
    """Validate a list of chat messages; return normalised copies (``None``-valued keys dropped,
    as Arrow-backed formats fill keys that only some messages have with ``None``)."""
    if not value:
        raise DataError(FIELD_TYPE_MSG + " (got an empty list)", path=path, row=row, field=field_name)
    out = []
    for i, msg in enumerate(value, start=1):
        if not isinstance(msg, dict):
            raise DataError(f"message {i}: expected an object with 'role' and 'content', got "
                            f"{type(msg).__name__}", path=path, row=row, field=field_name)
        role = msg.get("role")
        if not isinstance(role, str):
            raise DataError(f"message {i}: missing 'role'", path=path, row=row, field=field_name)
        if role not in ROLES:
            raise DataError(f"message {i}: role '{role}' is not one of {', '.join(ROLES)}",
                            path=path, row=row, field=field_name)
        content = msg.get("content")
        if not isinstance(content, str):
            what = "missing 'content'" if content is None else \
                f"'content' must be a string, got {type(content).__name__}"
            raise DataError(f"message {i}: {what}", path=path, row=row, field=field_name)
        out.append({k: v for k, v in msg.items() if v is not None})
    return out


def check_text_field(row: dict, name: str, *, path=None, row_no=None, completion: bool = False):
    """Validate ``row[name]``: a non-empty string or a non-empty list of chat messages.

    ``completion=True`` also rejects a message list whose contents are all empty ("empty completion").
    """
    if not _present(row, name):
        raise DataError("missing", path=path, row=row_no, field=name)
    value = row[name]
    if isinstance(value, str):
        if not value.strip():
            what = "empty completion" if completion else "empty string"
            raise DataError(f"{what}; {FIELD_TYPE_MSG}", path=path, row=row_no, field=name)
        return value
    if isinstance(value, (list, tuple)):
        msgs = check_messages(list(value), name, path=path, row=row_no)
        if completion and not any(m["content"].strip() for m in msgs):
            raise DataError("empty completion: every message has empty content", path=path, row=row_no,
                            field=name)
        return msgs
    raise DataError(f"{FIELD_TYPE_MSG}, got {type(value).__name__}", path=path, row=row_no, field=name)


def parse_label(value: Any, *, path=None, row=None, field_name: str = "label") -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in {"true", "false", "1", "0"}:
        return value.strip().lower() in {"true", "1"}
    if value is None:
        raise DataError("missing", path=path, row=row, field=field_name)
    raise DataError(f"expected a boolean (true/false or 1/0), got {value!r}", path=path, row=row,
                    field=field_name)


def extract_prompt(chosen: list[dict], rejected: list[dict]) -> tuple[list[dict], list[dict], list[dict]]:
    """TRL's implicit-prompt format: split two conversations into (common leading messages,
    rest of chosen, rest of rejected)."""
    n = 0
    while n < min(len(chosen), len(rejected)) and chosen[n] == rejected[n]:
        n += 1
    return chosen[:n], chosen[n:], rejected[n:]


ASSISTANT_MARKERS = ("\n\nAssistant:", "\nAssistant:", "\n\nassistant:", "\nassistant:")


def split_text_prompt(chosen: str, rejected: str) -> tuple[str, str, str]:
    """Plain-text pairs with an implicit shared prompt -> ``(prompt, chosen rest, rejected rest)``:
    the prompt ends after the last assistant-turn marker inside the longest common prefix (HH-RLHF), or,
    with no marker there, at the common prefix itself, moved back so that a partly shared word (and
    the whitespace before it) goes to both answers."""
    n = 0
    limit = min(len(chosen), len(rejected))
    while n < limit and chosen[n] == rejected[n]:
        n += 1
    common = chosen[:n]
    cut = max((common.rfind(m) + len(m) for m in ASSISTANT_MARKERS if m in common), default=-1)
    if cut < 0:
        cut = n
        while cut > 0 and not common[cut - 1].isspace():  # they differ inside a word: it is theirs
            cut -= 1
        while cut > 0 and common[cut - 1].isspace():  # and so is the space before it (one token with it)
            cut -= 1
    return chosen[:cut], chosen[cut:], rejected[cut:]


def _starts_with_turns(value: Any) -> bool:
    """A message list that holds the conversation (it opens with a non-assistant turn)."""
    return isinstance(value, list) and bool(value) and value[0]["role"] != "assistant"


def split_preference(row: dict, chosen: Any, rejected: Any, *, path=None, row_no=None) -> tuple[Any, Any, Any]:
    """``(prompt, chosen, rejected)`` of a validated preference row in any layout of the module
    docstring. Raises :class:`DataError` when no prompt can be found or it contradicts the column."""
    loc = {"path": path, "row": row_no}
    prompt = check_text_field(row, "prompt", path=path, row_no=row_no) if _present(row, "prompt") else None
    if prompt is not None and not (_starts_with_turns(chosen) and _starts_with_turns(rejected)):
        return prompt, chosen, rejected
    if isinstance(chosen, list) and isinstance(rejected, list):
        shared, c, r = extract_prompt(chosen, rejected)
    elif isinstance(chosen, str) and isinstance(rejected, str) and prompt is None:
        shared, c, r = split_text_prompt(chosen, rejected)
    else:
        raise DataError("missing (a prompt may only be left out when 'chosen' and 'rejected' are both "
                        "whole conversations, or both plain-text transcripts)", field="prompt", **loc)
    if not shared:
        raise DataError("missing, and 'chosen' and 'rejected' share no leading messages (or text) to use as the "
                        "prompt", field="prompt", **loc)
    if prompt is not None:
        given = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        if [(m["role"], m["content"].strip()) for m in given] != [(m["role"], m["content"].strip())
                                                                 for m in shared]:
            raise DataError("does not match the conversation that 'chosen' and 'rejected' start with (their "
                            "shared leading messages)", field="prompt", **loc)
    for name, rest in (("chosen", c), ("rejected", r)):
        empty = not rest.strip() if isinstance(rest, str) else not any(m["content"].strip() for m in rest)
        if empty:
            raise DataError("empty completion: nothing follows the prompt it shares with the other response",
                            field=name, **loc)
    return shared, c, r


# ----------------------------------------------------------------------------- kinds


def _shapes(row: dict) -> list[str]:
    """Kinds whose fields this row has, most specific first (loosely, so that a row with one field
    missing still gets the error of the kind it was meant to be)."""
    out = []
    if _present(row, "completion") and "label" in row:
        out.append("unpaired")
    if _present(row, "chosen") or _present(row, "rejected"):
        out.append("preference")
    if _present(row, "completion"):
        out.append("prompt_completion")
    if _present(row, "text") or _present(row, "messages"):
        out.append("lm")
    if _present(row, "prompt"):
        out.append("prompt")
    return out


def _normalise_kinds(kinds: str | Iterable[str]) -> tuple[str, ...]:
    ks = (kinds,) if isinstance(kinds, str) else tuple(kinds)
    for k in ks:
        if k not in KINDS:
            raise ValueError(f"unknown data kind {k!r}; expected one of {', '.join(KINDS)}")
    if not ks:
        raise ValueError("no data kinds given")
    return ks


def detect_kind(row: dict, accepted_kinds: str | Iterable[str]) -> str | None:
    """The kind of ``row`` among ``accepted_kinds`` (most specific match first), or ``None``.

    A paired preference row is also returned as ``"preference"`` when ``"unpaired"`` is accepted but
    ``"preference"`` is not: :func:`load_examples` then converts each pair into two unpaired rows.
    A row with more fields than a kind needs still matches it (a preference file serves as a prompt
    file), so the order of ``accepted_kinds`` does not matter.
    """
    accepted = _normalise_kinds(accepted_kinds)
    shapes = _shapes(row)
    for k in shapes:
        if k in accepted:
            return k
    if "preference" in shapes and "unpaired" in accepted:
        return "preference"
    return None


def _describe(kind: str) -> str:
    fields = " or ".join(f"'{f}'" for f in KIND_FIELDS[kind][0].split("|")) if kind == "lm" else \
        ", ".join(f"'{f}'" for f in KIND_FIELDS[kind])
    return f"{KIND_NAMES[kind]} data needs {fields}"


def _no_kind_error(row: dict, accepted: tuple[str, ...], path, row_no) -> DataError:
    first = accepted[0]
    if first == "lm":
        missing = "text"
    else:
        missing = next((f for f in KIND_FIELDS[first] if not _present(row, f)), KIND_FIELDS[first][0])
        if first == "preference" and missing == "prompt":
            missing = "chosen"
    others = "; ".join(_describe(k) for k in accepted)
    present = ", ".join(f"'{k}'" for k in row) or "none"
    return DataError(f"missing ({others}; the row has fields {present})", path=path, row=row_no, field=missing)


def validate_row(row: dict, kind: str, *, path=None, row_no=None) -> dict[str, Any]:
    """Check ``row`` against ``kind``; return a normalised copy (messages cleaned, ``label`` a bool,
    an implicit preference prompt extracted). Raises :class:`DataError` naming the field."""
    out = dict(row)
    loc = {"path": path, "row_no": row_no}
    if kind == "lm":
        if _present(row, "messages"):
            out["messages"] = check_text_field(row, "messages", **loc)
            if isinstance(out["messages"], str):
                raise DataError("expected a list of chat messages, got a string (use 'text' for plain text)",
                                path=path, row=row_no, field="messages")
        elif _present(row, "text"):
            if not isinstance(row["text"], str):
                raise DataError(f"expected a non-empty string (use 'messages' for chat messages), got "
                                f"{type(row['text']).__name__}", path=path, row=row_no, field="text")
            out["text"] = check_text_field(row, "text", **loc)
        else:
            raise DataError(f"missing ({_describe('lm')})", path=path, row=row_no, field="text")
    elif kind == "prompt_completion":
        out["prompt"] = check_text_field(row, "prompt", **loc)
        out["completion"] = check_text_field(row, "completion", completion=True, **loc)
    elif kind == "preference":
        chosen = check_text_field(row, "chosen", completion=True, **loc)
        rejected = check_text_field(row, "rejected", completion=True, **loc)
        out["prompt"], out["chosen"], out["rejected"] = split_preference(row, chosen, rejected, path=path,
                                                                         row_no=row_no)
    elif kind == "unpaired":
        out["prompt"] = check_text_field(row, "prompt", **loc)
        out["completion"] = check_text_field(row, "completion", completion=True, **loc)
        out["label"] = parse_label(row.get("label"), path=path, row=row_no)
    elif kind == "prompt":
        out["prompt"] = check_text_field(row, "prompt", **loc)
    else:
        raise ValueError(f"unknown data kind {kind!r}")
    return out


def _skip_or_raise(loaded_errors: list[DataError], err: DataError, skip_invalid: bool) -> None:
    if not skip_invalid:
        raise err
    loaded_errors.append(err)


def load_examples(path: str | Path, kinds: str | Iterable[str], skip_invalid: bool = False,
                  safety_pairs: str | None = None) -> LoadedRows:
    """Read and validate a data file whose rows are one of ``kinds``.

    ``safety_pairs`` (``helpful``, ``harmless`` or ``safe_first``): rows in the safety preference layout
    (``response_0``/``response_1``, PKU-SafeRLHF) become preference rows under that view
    (:mod:`alignkit.data.safety`); without it such rows are read as the kinds they match.

    Each row's kind is detected among ``kinds``; a row that fits none is validated against the first
    valid row's kind (for a precise error). A malformed row raises :class:`DataError` (file, 1-based row, field) unless ``skip_invalid``, which skips and
    counts it (and logs a warning with the count). When ``kinds`` accepts ``"unpaired"`` but not
    ``"preference"``, a paired preference file is converted (see :func:`preference_to_unpaired`).
    """
    accepted = _normalise_kinds(kinds)
    errors: list[DataError] = []
    rows: list[dict] = []
    numbers: list[int] = []
    row_kinds: list[str] = []
    kind: str | None = None
    total = 0
    if safety_pairs is not None:
        from alignkit.data.safety import is_safety_pair, safety_to_preference
    for row_no, rec in iter_records(path):
        total += 1
        if isinstance(rec, DataError):
            _skip_or_raise(errors, rec, skip_invalid)
            continue
        try:
            if safety_pairs is not None and is_safety_pair(rec):
                rec = safety_to_preference(rec, safety_pairs, path, row_no)
            k = detect_kind(rec, accepted) or kind
            if k is None:
                raise _no_kind_error(rec, accepted, path, row_no)
            norm = validate_row(rec, k, path=path, row_no=row_no)
        except DataError as err:
            _skip_or_raise(errors, err, skip_invalid)
            continue
        kind = kind or k
        rows.append(norm)
        numbers.append(row_no)
        row_kinds.append(k)
    if not rows:
        if total == 0:
            raise DataError("no rows", path=path)
        raise DataError(f"no valid rows: all {total} rows were invalid and skipped; the first error was: "
                        f"{errors[0]}", path=path)
    loaded = LoadedRows(path=str(path), kind=kind, rows=rows, row_numbers=numbers, skipped=len(errors),
                        errors=errors, kinds=row_kinds)
    if errors:
        logger.warning("%s: skipped %d invalid row(s) of %d (skip_invalid=true); first: %s", path, len(errors),
                       total, errors[0])
    if "preference" in row_kinds and "preference" not in accepted and "unpaired" in accepted:
        loaded = preference_to_unpaired(loaded)
    return loaded


def preference_to_unpaired(loaded: LoadedRows) -> LoadedRows:
    """Paired preference rows -> unpaired rows (for KTO): each pair gives ``(prompt, chosen, True)``
    then ``(prompt, rejected, False)``; both keep the pair's row number and extra columns. Rows that
    are unpaired already (a mixed file) stay as they are."""
    if "preference" not in loaded.kinds:
        raise ValueError(f"expected preference rows, got {loaded.kind!r}")
    rows, numbers = [], []
    for row_no, row, kind in loaded.with_kinds():
        if kind == "unpaired":
            rows.append(row)
            numbers.append(row_no)
            continue
        if kind != "preference":
            raise ValueError(f"expected preference or unpaired rows, got {kind!r}")
        extra = {k: v for k, v in row.items() if k not in ("prompt", "chosen", "rejected")}
        rows.append({**extra, "prompt": row["prompt"], "completion": row["chosen"], "label": True})
        rows.append({**extra, "prompt": row["prompt"], "completion": row["rejected"], "label": False})
        numbers += [row_no, row_no]
    return LoadedRows(path=loaded.path, kind="unpaired", rows=rows, row_numbers=numbers, skipped=loaded.skipped,
                      errors=list(loaded.errors))
