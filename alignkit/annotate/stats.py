"""``alignkit annotate stats``: counts, speed, inter-annotator agreement, position bias, judge agreement.

* agreement: each annotator's label per task (``A``/``B``/``tie``/``both_bad`` for pairs, ``best:i``
  or ``both_bad`` for rankings; skips left out); Cohen's kappa averaged over annotator pairs with
  tasks in common, and Fleiss' kappa over tasks with two or more labels;
* position bias: the share of decisive pairwise judgements that picked the answer shown on the left
  (0.5 without bias; with its 95 % Wilson interval);
* with a judge (a ``judge=`` / ``reward=`` spec, :func:`alignkit.scoring.load_pairwise_judge`): on each
  exported majority pair, whether the judge prefers the annotators' chosen answer.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from typing import Any

from alignkit.annotate.agreement import fleiss_kappa, mean_pairwise_cohen
from alignkit.annotate.db import Store
from alignkit.annotate.export import preference_rows
from alignkit.evaluation.stats import wilson_interval


def _label(j: dict[str, Any]) -> str | None:
    if j["choice"] == "skip":
        return None
    if j["choice"] == "rank":
        return f"best:{j['ranking'][0]}"
    return j["choice"]


def compute_stats(store: Store, judge: Any = None) -> dict[str, Any]:
    """Everything ``stats`` prints, as a dict (``judge``: an object with ``compare(prompts, a, b)``)."""
    judged = list(store.iter_judgements())
    counts = store.counts()
    choices = Counter(j["choice"] for j in judged)
    speed: dict[str, list[float]] = defaultdict(list)
    labels: dict[str, dict[int, str]] = defaultdict(dict)
    per_task: dict[int, list[str]] = defaultdict(list)
    for j in judged:
        speed[j["annotator"]].append(max(0.0, j["created_at"] - j["shown_at"]))
        label = _label(j)
        if label is not None:
            labels[j["annotator"]][j["task_id"]] = label
            per_task[j["task_id"]].append(label)
    annotators = {name: {"judgements": len(times), "median_seconds": round(statistics.median(times), 2),
                         "per_hour": round(3600 / statistics.median(times), 1) if statistics.median(times) > 0 else None}
                  for name, times in sorted(speed.items())}
    cohen, pairs = mean_pairwise_cohen(labels)
    decisive = [j for j in judged if j["choice"] in ("A", "B") and j["shown_position"] is not None]
    left = sum(j["shown_position"] == 0 for j in decisive)
    low, high = wilson_interval(left, len(decisive))
    out: dict[str, Any] = {
        "counts": {**counts, "by_choice": dict(choices),
                   "tasks_judged": len(per_task), "tasks_with_2plus": sum(len(v) >= 2 for v in per_task.values())},
        "annotators": annotators,
        "agreement": {"cohen_kappa_mean": cohen, "cohen_pairs": pairs, "fleiss_kappa": fleiss_kappa(list(per_task.values()))},
        "position_bias": {"decisive": len(decisive), "left_rate": left / len(decisive) if decisive else None,
                          "interval95": [low, high]},
    }
    if judge is not None:
        out["judge"] = judge_agreement(judged, judge)
    return out


def judge_agreement(judged: list[dict[str, Any]], judge: Any) -> dict[str, Any]:
    """How often ``judge`` prefers the annotators' majority answer on the exported pairs."""
    rows, _ = preference_rows(judged)
    if not rows:
        return {"pairs": 0, "agree_rate": None, "judge_ties": 0, "interval95": [0.0, 1.0]}
    verdicts = judge.compare([r["prompt"] for r in rows], [r["chosen"] for r in rows], [r["rejected"] for r in rows])
    agree = sum(v == "A" for v in verdicts)
    low, high = wilson_interval(agree, len(rows))
    return {"judge": getattr(judge, "name", str(judge)), "pairs": len(rows), "agree_rate": agree / len(rows),
            "judge_ties": sum(v == "tie" for v in verdicts), "interval95": [low, high]}


def _num(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def format_stats(s: dict[str, Any]) -> str:
    c = s["counts"]
    lines = [f"tasks {c['tasks']}, annotators {c['annotators']}, judgements {c['judgements']} "
             f"({', '.join(f'{k} {v}' for k, v in sorted(c['by_choice'].items())) or 'none'})",
             f"tasks judged {c['tasks_judged']}, by two or more annotators {c['tasks_with_2plus']}", "",
             f"{'annotator':<24} {'judged':>7} {'median s':>9} {'per hour':>9}"]
    for name, a in s["annotators"].items():
        lines.append(f"{name:<24} {a['judgements']:>7} {a['median_seconds']:>9} {_num(a['per_hour'], 1):>9}")
    g, p = s["agreement"], s["position_bias"]
    lines += ["", f"Cohen's kappa (mean over {g['cohen_pairs']} annotator pairs): {_num(g['cohen_kappa_mean'])}",
              f"Fleiss' kappa (tasks with 2+ labels): {_num(g['fleiss_kappa'])}",
              f"position bias: left answer picked in {_num(p['left_rate'])} of {p['decisive']} decisive pairwise "
              f"judgements (95% interval {_num(p['interval95'][0])}-{_num(p['interval95'][1])}; 0.5 = no bias)"]
    if "judge" in s:
        j = s["judge"]
        lines.append(f"judge {j.get('judge', '')}: agrees with the annotators' majority on {_num(j['agree_rate'])} of "
                     f"{j['pairs']} pairs (95% interval {_num(j['interval95'][0])}-{_num(j['interval95'][1])}), "
                     f"ties {j['judge_ties']}")
    return "\n".join(lines)
