"""Label Studio and Argilla: tasks and judgements out to their JSON, and back in.

**Label Studio** (a JSON list of tasks, the format its import and "JSON" export use)::

    {"id": 7, "data": {"prompt": "...", "answer1": "...", "answer2": "...", "alignkit": {...}},
     "annotations": [{"completed_by": 3, "was_cancelled": false, "result": [
         {"from_name": "comparison", "to_name": "answer1,answer2", "type": "pairwise",
          "value": {"selected": "left"}}]}]}

``left``/``right`` are ``answer1``/``answer2`` (candidates 0 and 1). A tie or both-bad verdict is a
``choices`` result (``from_name`` ``verdict``, ``{"choices": ["tie"]}``); a ranking (N > 2 answers)
is a ``ranker`` result, ``{"ranker": {"answers": ["answer2", "answer1", "answer3"]}}``. The labelling
config that shows such tasks is :data:`LABEL_STUDIO_CONFIG`.

**Argilla** (a JSON list of records as its SDK writes them with ``to_list(flatten=False)``)::

    {"id": "7", "fields": {"prompt": "...", "response1": "...", "response2": "..."},
     "metadata": {"alignkit": "{...}"}, "status": "completed",
     "responses": {"preference": [{"value": "response1", "user_id": "alice", "status": "submitted"}]}}

Pairwise tasks answer a label question ``preference`` (``response1``, ``response2``, ``tie``,
``both_bad``); ranking tasks a ranking question ``ranking`` whose value lists the responses best first.

Both carry the exact prompt and candidates (chat messages included) under ``alignkit``, so a round
trip through either tool loses nothing; files written by the tools themselves are read from their
text fields.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

from alignkit.annotate.db import Store, TaskIn
from alignkit.annotate.tasks import text_of
from alignkit.data.io import DataError

FORMATS = ("label-studio", "argilla")

LABEL_STUDIO_CONFIG = """<View>
  <Text name="prompt" value="$prompt"/>
  <Text name="answer1" value="$answer1"/>
  <Text name="answer2" value="$answer2"/>
  <Pairwise name="comparison" toName="answer1,answer2"/>
  <Choices name="verdict" toName="prompt" choice="single"><Choice value="tie"/><Choice value="both_bad"/></Choices>
</View>"""


def _grouped(store: Store) -> tuple[list[dict[str, Any]], dict[int, list[dict[str, Any]]]]:
    by_task: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for j in store.iter_judgements():
        if j["choice"] != "skip":
            by_task[j["task_id"]].append(j)
    return list(store.iter_tasks()), by_task


def _exact(task: dict[str, Any]) -> dict[str, Any]:
    return {"prompt": task["prompt"], "candidates": task["candidates"], "source": task["source"]}


# ----------------------------------------------------------------------------- Label Studio


def _ls_result(j: dict[str, Any], n: int) -> dict[str, Any]:
    if j["choice"] in ("A", "B"):
        return {"from_name": "comparison", "to_name": "answer1,answer2", "type": "pairwise",
                "value": {"selected": "left" if j["choice"] == "A" else "right"}}
    if j["choice"] == "rank":
        return {"from_name": "ranking", "to_name": "answers", "type": "ranker",
                "value": {"ranker": {"answers": [f"answer{c + 1}" for c in j["ranking"]]}}}
    return {"from_name": "verdict", "to_name": "prompt", "type": "choices", "value": {"choices": [j["choice"]]}}


def to_label_studio(store: Store) -> list[dict[str, Any]]:
    tasks, by_task = _grouped(store)
    out = []
    for t in tasks:
        data = {"prompt": text_of(t["prompt"]), **{f"answer{i + 1}": text_of(c) for i, c in enumerate(t["candidates"])},
                "alignkit": _exact(t)}
        annotations = [{"completed_by": j["annotator_id"], "was_cancelled": False, "lead_time":
                        round(j["created_at"] - j["shown_at"], 3), "result": [_ls_result(j, len(t["candidates"]))],
                        "meta": {"annotator": j["annotator"], "reason": j["reason"]}}
                       for j in by_task.get(t["id"], [])]
        out.append({"id": t["id"], "data": data, "annotations": annotations})
    return out


def _ls_choice(results: list[dict[str, Any]], n: int) -> tuple[str, list[int] | None] | None:
    for r in results:
        value = r.get("value") or {}
        if r.get("type") == "pairwise" and value.get("selected") in ("left", "right"):
            return ("A" if value["selected"] == "left" else "B"), None
        if r.get("type") == "choices" and value.get("choices"):
            label = str(value["choices"][0]).lower().replace("-", "_").replace(" ", "_")
            if label in ("tie", "both_bad"):
                return label, None
        if r.get("type") == "ranker":
            ranked = next(iter((value.get("ranker") or {}).values()), [])
            order = [int(str(a).removeprefix("answer")) - 1 for a in ranked]
            if sorted(order) == list(range(n)):
                return "rank", order
    return None


def _ls_annotator(annotation: dict[str, Any]) -> str:
    meta, who = annotation.get("meta") or {}, annotation.get("completed_by")
    if isinstance(meta, dict) and meta.get("annotator"):
        return str(meta["annotator"])
    if isinstance(who, dict):
        return str(who.get("email") or who.get("id"))
    return f"label-studio-{who}"


def _task_from(exact: Any, prompt: Any, answers: list[Any], source: str) -> TaskIn:
    if isinstance(exact, str):
        exact = json.loads(exact)
    if isinstance(exact, dict) and "prompt" in exact and "candidates" in exact:
        return TaskIn(exact["prompt"], list(exact["candidates"]), exact.get("source") or source)
    return TaskIn(prompt, answers, source)


def from_label_studio(store: Store, items: list[Any], path: Path) -> tuple[int, int]:
    """Add the tasks and judgements of a Label Studio JSON export; returns (tasks added, judgements)."""
    tasks_added = judged = 0
    for row_no, item in enumerate(items, start=1):
        data = item.get("data") if isinstance(item, dict) else None
        if not isinstance(data, dict) or "prompt" not in data or "answer1" not in data or "answer2" not in data:
            raise DataError("expected a Label Studio task with data.prompt, data.answer1 and data.answer2",
                            path=path, row=row_no, field="data")
        answers = [data[f"answer{i}"] for i in range(1, 10) if f"answer{i}" in data]
        task = _task_from(data.get("alignkit"), data["prompt"], answers, path.name)
        tasks_added += store.add_tasks([task])[0]
        for annotation in item.get("annotations") or []:
            if annotation.get("was_cancelled"):
                continue
            parsed = _ls_choice(annotation.get("result") or [], len(task.candidates))
            if parsed is not None:
                reason = str((annotation.get("meta") or {}).get("reason", "")) if isinstance(annotation.get("meta"), dict) else ""
                judged += store.import_judgement(task, _ls_annotator(annotation), parsed[0], parsed[1], reason)
    return tasks_added, judged


# ----------------------------------------------------------------------------- Argilla

_ARGILLA_LABEL = {"A": "response1", "B": "response2", "tie": "tie", "both_bad": "both_bad"}


def to_argilla(store: Store) -> list[dict[str, Any]]:
    tasks, by_task = _grouped(store)
    out = []
    for t in tasks:
        n = len(t["candidates"])
        fields = {"prompt": text_of(t["prompt"]), **{f"response{i + 1}": text_of(c) for i, c in enumerate(t["candidates"])}}
        label, ranked = [], []
        for j in by_task.get(t["id"], []):
            base = {"user_id": j["annotator"], "status": "submitted"}
            if j["choice"] == "rank":
                ranked.append({**base, "value": [f"response{c + 1}" for c in j["ranking"]]})
            elif n == 2 or j["choice"] == "both_bad":
                label.append({**base, "value": _ARGILLA_LABEL[j["choice"]]})
        responses = {k: v for k, v in (("preference", label), ("ranking", ranked)) if v}
        out.append({"id": str(t["id"]), "fields": fields, "status": "completed" if responses else "pending",
                    "metadata": {"alignkit": json.dumps(_exact(t), ensure_ascii=False)}, "responses": responses})
    return out


def from_argilla(store: Store, items: list[Any], path: Path) -> tuple[int, int]:
    """Add the tasks and responses of Argilla records; returns (tasks added, judgements)."""
    tasks_added = judged = 0
    back = {v: k for k, v in _ARGILLA_LABEL.items()}
    for row_no, item in enumerate(items, start=1):
        fields = item.get("fields") if isinstance(item, dict) else None
        if not isinstance(fields, dict) or "prompt" not in fields or "response1" not in fields:
            raise DataError("expected an Argilla record with fields.prompt, fields.response1 and fields.response2",
                            path=path, row=row_no, field="fields")
        answers = [fields[f"response{i}"] for i in range(1, 10) if f"response{i}" in fields]
        task = _task_from((item.get("metadata") or {}).get("alignkit"), fields["prompt"], answers, path.name)
        tasks_added += store.add_tasks([task])[0]
        responses = item.get("responses") or {}
        for r in responses.get("preference") or []:
            if r.get("status", "submitted") == "submitted" and r.get("value") in back:
                judged += store.import_judgement(task, str(r.get("user_id")), back[r["value"]])
        for r in responses.get("ranking") or []:
            order = [int(str(v).removeprefix("response")) - 1 for v in r.get("value") or []]
            if r.get("status", "submitted") == "submitted" and sorted(order) == list(range(len(task.candidates))):
                judged += store.import_judgement(task, str(r.get("user_id")), "rank", order)
    return tasks_added, judged


def read_json_list(path: str | Path) -> list[Any]:
    p = Path(path)
    if not p.is_file():
        raise DataError("file not found", path=p)
    try:
        text = p.read_text(encoding="utf-8")
        value = json.loads(text) if p.suffix.lower() == ".json" else [json.loads(x) for x in text.splitlines() if x.strip()]
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"not valid JSON: {e}", path=p) from None
    if isinstance(value, dict):
        value = value.get("records") or value.get("tasks") or [value]
    if not isinstance(value, list):
        raise DataError("expected a JSON list of tasks or records", path=p)
    return value
