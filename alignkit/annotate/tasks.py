"""Reading task files: a prompt and 2..N candidate answers per task.

A file may hold any of these row shapes (SPEC section 3 files: .jsonl, .json, .csv, .parquet, saved
datasets; each field a string or chat messages):

* ``prompt`` + ``candidates`` (or ``completions`` / ``responses``): a list of 2..9 answers, one task;
* ``prompt`` + ``chosen`` + ``rejected`` (what ``alignkit data`` and ``alignkit demo`` write), to be
  judged again: the two answers are the candidates (the original label kept in the task's metadata);
* ``prompt`` + ``completion`` (what ``alignkit generate`` writes): rows with the same prompt are one
  task whose candidates are their distinct completions (generate the file several times with
  ``--temperature`` and different ``--seed``, concatenated, to get several answers per prompt).

Other columns go into the task's metadata. A malformed row is a :class:`DataError` naming file, row and
field.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from alignkit.annotate.db import TaskIn
from alignkit.data.io import DataError, read_rows
from alignkit.data.schema import check_text_field, split_preference

MAX_CANDIDATES = 9  # keys 1..9 pick them in the ranking view
LIST_FIELDS = ("candidates", "completions", "responses")
KNOWN = {"prompt", "chosen", "rejected", "completion", *LIST_FIELDS}


class TaskFile:
    """The tasks of a file plus what was left out (prompts with fewer than two distinct answers)."""

    def __init__(self, tasks: list[TaskIn], single: int) -> None:
        self.tasks, self.single = tasks, single


def _key(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _meta(row: dict[str, Any], row_no: int) -> dict[str, Any]:
    extra = {k: v for k, v in row.items() if k not in KNOWN and v is not None}
    extra["row"] = row_no
    return extra


def _candidates(row: dict[str, Any], field: str, path: Path, row_no: int) -> list[Any]:
    value = row[field]
    if not isinstance(value, (list, tuple)) or not 2 <= len(value) <= MAX_CANDIDATES:
        raise DataError(f"expected a list of 2 to {MAX_CANDIDATES} answers", path=path, row=row_no, field=field)
    out = []
    for i, cand in enumerate(value):
        holder = {f"{field}[{i}]": cand}
        out.append(check_text_field(holder, f"{field}[{i}]", path=path, row_no=row_no, completion=True))
    if len({_key(c) for c in out}) < 2:
        raise DataError("all answers are the same; nothing to compare", path=path, row=row_no, field=field)
    return out


def read_task_file(path: str | Path) -> TaskFile:
    """The tasks in ``path`` (see the module docstring). Raises :class:`DataError` on a bad row."""
    p = Path(path)
    rows = read_rows(p)
    if not rows:
        raise DataError("no rows (the file is empty)", path=p)
    out: list[TaskIn] = []
    grouped: dict[str, TaskIn] = {}  # prompt -> task gathering completions
    for row_no, row in rows:
        field = next((f for f in LIST_FIELDS if row.get(f) is not None), None)
        if field is not None:
            prompt = check_text_field(row, "prompt", path=p, row_no=row_no)
            out.append(TaskIn(prompt, _candidates(row, field, p, row_no), p.name, _meta(row, row_no)))
        elif row.get("chosen") is not None or row.get("rejected") is not None:
            chosen = check_text_field(row, "chosen", path=p, row_no=row_no, completion=True)
            rejected = check_text_field(row, "rejected", path=p, row_no=row_no, completion=True)
            prompt, chosen, rejected = split_preference(row, chosen, rejected, path=p, row_no=row_no)
            meta = {**_meta(row, row_no), "original_chosen": 0}
            out.append(TaskIn(prompt, [chosen, rejected], p.name, meta))
        elif row.get("completion") is not None:
            prompt = check_text_field(row, "prompt", path=p, row_no=row_no)
            completion = check_text_field(row, "completion", path=p, row_no=row_no, completion=True)
            task = grouped.get(_key(prompt))
            if task is None:
                task = grouped[_key(prompt)] = TaskIn(prompt, [], p.name, _meta(row, row_no))
                out.append(task)
            if _key(completion) not in {_key(c) for c in task.candidates}:
                if len(task.candidates) >= MAX_CANDIDATES:
                    raise DataError(f"more than {MAX_CANDIDATES} distinct completions for this prompt",
                                    path=p, row=row_no, field="completion")
                task.candidates.append(completion)
        else:
            raise DataError("expected 'candidates' (a list), 'chosen' and 'rejected', or 'completion' beside "
                            "'prompt'", path=p, row=row_no)
    kept = [t for t in out if len(t.candidates) >= 2]
    return TaskFile(kept, single=len(out) - len(kept))


def text_of(value: Any) -> str:
    """Plain text of a prompt or answer: a string as it is, messages as their contents (an answer's
    assistant turns; a prompt's turns prefixed by role when there are several)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        if len(value) == 1 or all(m.get("role") == "assistant" for m in value):
            return "\n\n".join(str(m.get("content", "")) for m in value)
        return "\n\n".join(f"{m.get('role', '')}: {m.get('content', '')}" for m in value)
    return str(value)
