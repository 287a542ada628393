"""The demo's before/after table, its paired-bootstrap change and the outcome lines."""

from __future__ import annotations

import math
from typing import Any

from alignkit.pipelines.demo.settings import DemoSettings


def _pts(delta: float | None) -> str:
    if delta is None or not math.isfinite(delta):
        return "–"
    return f"{100 * delta:+.1f} pts"


def before_after_rows(base: dict[str, Any], trained: dict[str, Any]) -> list[list[str]]:
    from alignkit.evaluation.tables import fmt, fmt_pct

    bg, tg = base["gold"], trained["gold"]
    n_p, n_i = bg["n_prompts"], bg["n_instructions"]

    def count(rate: float | None, n: int) -> str:
        return f"{round((rate or 0) * n)}/{n}"

    rows = [
        ["gold prompt-level strict", f"{fmt_pct(bg['prompt_level'])} ({count(bg['prompt_level'], n_p)})",
         f"{fmt_pct(tg['prompt_level'])} ({count(tg['prompt_level'], n_p)})",
         _pts(tg["prompt_level"] - bg["prompt_level"])],
        ["gold instruction-level strict",
         f"{fmt_pct(bg['instruction_level'])} ({count(bg['instruction_level'], n_i)})",
         f"{fmt_pct(tg['instruction_level'])} ({count(tg['instruction_level'], n_i)})",
         _pts(tg["instruction_level"] - bg["instruction_level"])],
    ]
    groups = (("seen wording and kinds", None), ("unseen wording (held-out family)", "family"),
              ("unseen kinds (held-out)", "kind"))
    for name, key in groups:
        b = [c.get("all") is True for c in base.get("_completions", []) if c.get("heldout") == key]
        a = [c.get("all") is True for c in trained.get("_completions", []) if c.get("heldout") == key]
        if b and len(a) == len(b) and (key is not None or len(b) < n_p):
            rows.append([f"  {name}", f"{sum(b)}/{len(b)}", f"{sum(a)}/{len(a)}", f"{sum(a) - sum(b):+d}"])
    for t in sorted(set(bg["per_type"]) | set(tg["per_type"])):
        b, a = bg["per_type"].get(t), tg["per_type"].get(t)
        rows.append([f"  {t}", f"{b['passed']}/{b['total']}" if b else "–",
                     f"{a['passed']}/{a['total']}" if a else "–",
                     f"{a['passed'] - b['passed']:+d}" if a and b else "–"])
    rows.append(["completion tokens (mean)", fmt(base["completion_tokens"], 3),
                 fmt(trained["completion_tokens"], 3),
                 f"{trained['completion_tokens'] - base['completion_tokens']:+.1f}"])
    rows.append(["hit max_new_tokens", fmt_pct(base["truncated_rate"]), fmt_pct(trained["truncated_rate"]),
                 _pts(trained["truncated_rate"] - base["truncated_rate"])])
    return rows


def _flips(base: dict[str, Any], trained: dict[str, Any]) -> tuple[list[str], list[str]]:
    b = {c["id"]: c.get("all") for c in base["_completions"]}
    a = {c["id"]: c.get("all") for c in trained["_completions"]}
    fixed = [i for i in b if b[i] is False and a.get(i) is True]
    broken = [i for i in b if b[i] is True and a.get(i) is False]
    return fixed, broken


def _passes(entry: dict[str, Any]) -> list[float]:
    """1.0 / 0.0 per held-out prompt (all its constraints met), in the evaluation's order."""
    return [1.0 if c.get("all") else 0.0 for c in entry["_completions"]]


def change_with_interval(base: dict[str, Any], trained: dict[str, Any], heldout: Any = "all") -> dict[str, Any]:
    """The prompt-level change and its 95 % paired bootstrap interval over the held-out prompts (only
    those of one held-out group when ``heldout`` is None, ``"family"`` or ``"kind"``)."""
    from alignkit.evaluation.stats import paired_bootstrap

    keep = [heldout == "all" or c.get("heldout") == heldout for c in base["_completions"]]
    before = [p for p, k in zip(_passes(base), keep) if k]
    after = [p for p, k in zip(_passes(trained), keep) if k]
    if not before:
        return {"delta": None, "low": None, "high": None, "n": 0}
    delta, lo, hi = paired_bootstrap(before, after)
    return {"delta": delta, "low": lo, "high": hi, "n": len(before)}


def interval_text(ci: dict[str, float]) -> str:
    return f"{100 * ci['delta']:+.1f} pts [{100 * ci['low']:+.1f}, {100 * ci['high']:+.1f}]"


def _outcome_lines(s: DemoSettings, base: dict, trained: dict, fixed: list[str], broken: list[str]) -> list[str]:
    label = s.method.upper()
    bg, tg = base["gold"], trained["gold"]
    n = bg["n_prompts"]
    before, after = round(bg["prompt_level"] * n), round(tg["prompt_level"] * n)
    delta = _pts(tg["prompt_level"] - bg["prompt_level"])
    if after > before:
        first = (f"The {label}-trained model passes {after}/{n} held-out prompts, the base model {before}/{n} "
                 f"({delta}).")
    elif after == before:
        first = f"No change in this run: both models pass {before}/{n} held-out prompts."
    else:
        first = (f"No improvement in this run: the {label}-trained model passes {after}/{n} held-out prompts, "
                 f"the base model {before}/{n} ({delta}).")
    return [first, f"  prompts now passing: {', '.join(fixed) or 'none'}; now failing: {', '.join(broken) or 'none'}"]


