"""IFEval-format benchmark files, checked with the IFEval / IFBench checkers of ``if-verifiable``.

A row has ``prompt`` (the request, a non-empty string), ``instruction_id_list`` (a non-empty list of
checker ids such as ``"keywords:existence"`` or IFBench's ``"count:word_count_range"``) and ``kwargs``
(a list of dicts, one per id; ``None`` values are dropped, as in the IFEval code; the field may be
left out when no checker takes arguments). ``key`` (or ``id``) names the row. Files are read with
:func:`alignkit.data.io.read_rows` (``.jsonl``, ``.json``, ``.csv``, ``.parquet``, a saved dataset);
a malformed row raises :class:`~alignkit.data.DataError` naming the file, the row and the field.

Scoring follows the IFEval paper (Zhou et al. 2023):

* **strict**: a checker runs on the response as it is (an empty response fails everything);
* **loose**: it also runs on the response with its first line, its last line, or both removed, each
  of these with and without the markdown ``*`` characters (8 variants); any passing variant passes;
* **instruction level**: passed instructions / checked instructions; **prompt level**: prompts whose
  every instruction passed / prompts whose every instruction was checked.

Each rate comes as k/n with a 95 % Wilson interval.

An instruction is **skipped** (counted and listed with the reason, never a crash) when its id is
unknown to the package, its checker rejects the row's kwargs, or it needs NLTK data that is not
installed (punkt / punkt_tab, stopwords, the averaged-perceptron tagger). A skipped instruction
leaves the instruction-level counts, and its prompt leaves the prompt-level counts. Nothing is
downloaded: importing ``if_verifiable.ifbench`` would fetch NLTK data, which this module blocks.

``if-verifiable`` is an optional extra (``pip install 'alignkit[ifeval]'``), imported only when a
file is checked; without it every instruction is reported as skipped with that reason.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alignkit.data.io import DataError, read_rows
from alignkit.evaluation.stats import wilson_interval

__all__ = ["IFEvalRow", "load_ifeval", "loose_variants", "checker_registry", "check_ifeval",
           "IFEVAL_MISSING"]

#: the reason given for every instruction when the package is not installed
IFEVAL_MISSING = ("the optional package if-verifiable is not installed (pip install 'alignkit[ifeval]' "
                  "or pip install if-verifiable)")


@dataclass
class IFEvalRow:
    key: str
    prompt: str
    instruction_ids: list[str]
    kwargs: list[dict[str, Any]]
    row: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def _parse_list(value: Any) -> Any:
    """CSV cells hold JSON text: a list written as a string is decoded."""
    if isinstance(value, str) and value.strip().startswith("["):
        import json

        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def load_ifeval(path: str | Path) -> list[IFEvalRow]:
    """The rows of an IFEval-format file; the first malformed one raises :class:`DataError`."""
    rows = read_rows(path)
    if not rows:
        raise DataError("no rows: an IFEval-format file needs prompt, instruction_id_list and kwargs", path=path)
    out = []
    for row_no, r in rows:
        def bad(fld: str, why: str, row_no: int = row_no) -> DataError:
            return DataError(why, path=path, row=row_no, field=fld)

        prompt = r.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise bad("prompt", "missing" if prompt is None else "expected a non-empty string")
        ids = _parse_list(r.get("instruction_id_list"))
        if ids is None:
            raise bad("instruction_id_list", "missing")
        if not isinstance(ids, list) or not ids or not all(isinstance(x, str) and x.strip() for x in ids):
            raise bad("instruction_id_list", "expected a non-empty list of instruction ids (strings)")
        kwargs = _parse_list(r.get("kwargs"))
        if kwargs is None:
            kwargs = [{} for _ in ids]
        if not isinstance(kwargs, list) or not all(isinstance(k, dict) or k is None for k in kwargs):
            raise bad("kwargs", "expected a list of objects, one per instruction id")
        if len(kwargs) != len(ids):
            raise bad("kwargs", f"{len(kwargs)} entries for {len(ids)} instruction ids; give one object per id")
        kwargs = [{k: v for k, v in (kw or {}).items() if v is not None} for kw in kwargs]
        key = r.get("key", r.get("id", f"row-{row_no}"))
        extra = {k: v for k, v in r.items() if k not in ("prompt", "instruction_id_list", "kwargs")}
        out.append(IFEvalRow(str(key), prompt, [x.strip() for x in ids], kwargs, row_no, extra))
    return out


def loose_variants(response: str) -> list[str]:
    """The IFEval paper's loose variants of a response, the response itself first: all, without the
    first line, without the last line, without both; each as is and with every ``*`` removed."""
    lines = response.split("\n")
    cut = [response, "\n".join(lines[1:]).strip(), "\n".join(lines[:-1]).strip(), "\n".join(lines[1:-1]).strip()]
    out = []
    for text in cut:
        for v in (text, text.replace("*", "")):
            if v not in out:
                out.append(v)
    return out


@contextlib.contextmanager
def _no_downloads() -> Iterator[None]:
    """``nltk.download`` is a no-op inside: ``if_verifiable.ifbench`` downloads NLTK data on import."""
    try:
        import nltk
    except ImportError:
        yield
        return
    original = nltk.download
    nltk.download = lambda *args, **kwargs: False
    try:
        yield
    finally:
        nltk.download = original


_REGISTRY: dict[str, Any] | None = None


def checker_registry() -> dict[str, Any] | None:
    """Instruction id -> checker class, IFEval's then IFBench's; ``None`` without ``if-verifiable``."""
    global _REGISTRY
    if _REGISTRY is None:
        try:
            with _no_downloads():
                from if_verifiable.ifbench.instructions_registry import INSTRUCTION_DICT as ifbench
                from if_verifiable.ifeval.instructions_registry import INSTRUCTION_DICT as ifeval
        except ImportError:
            return None
        _REGISTRY = {**dict(ifbench), **dict(ifeval)}
    return _REGISTRY


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _lookup_reason(err: LookupError) -> str:
    text = _ANSI.sub("", str(err))
    m = re.search(r"Resource\s+'?([\w./-]+?)'?\s+not\s+found", text)
    name = m.group(1) if m else "a resource"
    return (f"needs the NLTK data '{name}', which is not installed (nothing is downloaded; install it with "
            f"python -m nltk.downloader {name})")


class _Skip(Exception):
    pass


def _checker(registry: dict[str, Any], iid: str, kwargs: dict[str, Any], prompt: str) -> Any:
    cls = registry.get(iid)
    if cls is None:
        raise _Skip(f"unknown instruction id '{iid}' (not an IFEval or IFBench checker of if-verifiable)")
    try:
        checker = cls(iid)
        checker.build_description(**kwargs)
        args = checker.get_instruction_args()
        if args and "prompt" in args:
            checker.build_description(prompt=prompt)
    except LookupError as e:
        raise _Skip(_lookup_reason(e)) from None
    except Exception as e:  # noqa: BLE001 - a checker that cannot be built is reported, not fatal
        raise _Skip(f"checker rejected the kwargs {kwargs}: {type(e).__name__}: {e}") from None
    return checker


def _passes(checker: Any, text: str) -> bool:
    return bool(text.strip()) and bool(checker.check_following(text))


def _rate(k: int, n: int) -> dict[str, Any]:
    lo, hi = wilson_interval(k, n)
    return {"k": k, "n": n, "rate": k / n if n else None, "ci95": [lo, hi]}


def check_ifeval(rows: Sequence[IFEvalRow], responses: Sequence[str], registry: dict[str, Any] | None = None,
                 ) -> dict[str, Any]:
    """Strict and loose accuracy at prompt and instruction level, skipped instructions and per-row
    details (``items``). ``registry`` defaults to :func:`checker_registry` (tests pass their own)."""
    if len(rows) != len(responses):
        raise ValueError(f"{len(rows)} IFEval rows but {len(responses)} responses")
    if registry is None:
        registry = checker_registry()
    counts = {"prompt_strict": 0, "prompt_loose": 0, "prompts": 0,
              "instruction_strict": 0, "instruction_loose": 0, "instructions": 0}
    skipped: list[dict[str, Any]] = []
    per_id: dict[str, dict[str, int]] = {}
    items = []
    for row, response in zip(rows, responses):
        response = response or ""
        variants = loose_variants(response)
        results = []
        for iid, kw in zip(row.instruction_ids, row.kwargs):
            try:
                if registry is None:
                    raise _Skip(IFEVAL_MISSING)
                checker = _checker(registry, iid, kw, row.prompt)
                try:
                    strict = _passes(checker, response)
                    loose = strict or any(_passes(checker, v) for v in variants[1:])
                except LookupError as e:
                    raise _Skip(_lookup_reason(e)) from None
                except Exception as e:  # noqa: BLE001
                    raise _Skip(f"checker failed: {type(e).__name__}: {e}") from None
            except _Skip as s:
                skipped.append({"row": row.row, "key": row.key, "instruction_id": iid, "reason": str(s)})
                results.append({"id": iid, "skipped": str(s)})
                continue
            results.append({"id": iid, "strict": strict, "loose": loose})
            d = per_id.setdefault(iid, {"strict": 0, "loose": 0, "n": 0})
            d["strict"] += strict
            d["loose"] += loose
            d["n"] += 1
            counts["instructions"] += 1
            counts["instruction_strict"] += strict
            counts["instruction_loose"] += loose
        checked = [r for r in results if "skipped" not in r]
        complete = len(checked) == len(results)
        if complete:
            counts["prompts"] += 1
            counts["prompt_strict"] += all(r["strict"] for r in checked)
            counts["prompt_loose"] += all(r["loose"] for r in checked)
        items.append({"key": row.key, "row": row.row, "instructions": results,
                      "prompt_strict": all(r["strict"] for r in checked) if complete else None,
                      "prompt_loose": all(r["loose"] for r in checked) if complete else None})
    reasons: dict[str, int] = {}
    for s in skipped:
        reasons[s["reason"]] = reasons.get(s["reason"], 0) + 1
    return {
        "prompt_strict": _rate(counts["prompt_strict"], counts["prompts"]),
        "prompt_loose": _rate(counts["prompt_loose"], counts["prompts"]),
        "instruction_strict": _rate(counts["instruction_strict"], counts["instructions"]),
        "instruction_loose": _rate(counts["instruction_loose"], counts["instructions"]),
        "n_rows": len(rows),
        "prompts_with_skips": len(rows) - counts["prompts"],
        "skipped": {"count": len(skipped), "reasons": reasons, "items": skipped},
        "per_instruction": {k: per_id[k] for k in sorted(per_id)},
        "package": "if-verifiable" if registry is not None else None,
        "items": items,
    }


def _cell(rate: dict[str, Any] | None) -> str:
    if not rate or not rate["n"]:
        return "–" if not rate else "– (0 checked)"
    lo, hi = rate["ci95"]
    return f"{100 * rate['rate']:.1f}% ({rate['k']}/{rate['n']}) [{100 * lo:.1f}%, {100 * hi:.1f}%]"


def table_rows(models: Sequence[dict[str, Any]]) -> list[list[str]]:
    """The ``alignkit eval`` table rows of the models' ``ifeval`` results."""
    labels = [("prompt_strict", "IFEval prompt-level strict"), ("prompt_loose", "IFEval prompt-level loose"),
              ("instruction_strict", "IFEval instruction-level strict"),
              ("instruction_loose", "IFEval instruction-level loose")]
    rows = [[label] + [_cell(m.get("ifeval", {}).get(key)) for m in models] for key, label in labels]
    rows.append(["IFEval instructions skipped"] + [str(m.get("ifeval", {}).get("skipped", {}).get("count", "–"))
                                                   for m in models])
    return rows


def skip_lines(models: Sequence[dict[str, Any]]) -> list[str]:
    """One line per distinct skip reason (the first model's; every model sees the same checkers)."""
    for m in models:
        sk = m.get("ifeval", {}).get("skipped")
        if sk and sk["count"]:
            head = (f"IFEval: {sk['count']} instruction(s) skipped, {m['ifeval']['prompts_with_skips']} prompt(s) "
                    "left out of the prompt-level counts:")
            return [head] + [f"  {n} x {reason}" for reason, n in sorted(sk["reasons"].items(), key=lambda x: -x[1])]
    return []
