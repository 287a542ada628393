"""``alignkit compare``: "should I fine-tune at all?" answered side by side on the same eval prompts.

Variants, each evaluated by :func:`alignkit.evaluation.runner.evaluate_models` on the same prompts with
greedy decoding: the base model; ICL with each selector and each k (examples from ``train``); the base
with a BPO prompt optimizer; the base with an Aligner corrector; and each trained run directory given.
Per variant: gold prompt-level pass rate (k/n, 95 % Wilson interval), prompt tokens per query (what the
model read, examples included), generated tokens per query (the model's answer plus what the optimizer
and corrector generated), wall seconds per query (model loading included, so small sets overstate it),
and for trained runs their one-off training cost (wall time from the run's ``config.yaml`` to its
``final/``, as the file times say). With ``safety`` each variant is also asked the shipped safety set's test
prompts (or a safety file) and gets its harmful-compliance and over-refusal rates
(:mod:`alignkit.evaluation.safety`). With ``judge`` (any ``--judge`` spec) every other variant's answers are
judged against the base model's, both orders per pair, and get a win rate vs base (ties count half) with a
95 % percentile-bootstrap interval over prompts: the quality column for eval prompts without checkers.
Files: ``compare.json``, ``compare.md``, ``compare.png`` (quality
against generated tokens, when matplotlib is installed).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alignkit import files
from alignkit.evaluation.runner import EvalOptions, evaluate_models
from alignkit.evaluation.stats import paired_bootstrap, wilson_interval
from alignkit.evaluation.tables import fmt, markdown_table


@dataclass
class CompareOptions:
    model: str = "smollm2-135m"
    train: str | None = None
    selectors: Sequence[str] = ("bm25", "jaccard", "embedding")
    ks: Sequence[int] = (1, 4, 8)
    prompt_optimizer: str | None = None
    aligner: str | None = None
    runs: Sequence[str] = ()
    eval: EvalOptions = field(default_factory=EvalOptions)
    safety: str | None = None  # "default" (the shipped set) or a safety prompt file
    judge: str | None = None  # a pairwise judge spec: each variant's win rate vs the base model


@dataclass
class Variant:
    name: str
    model: str
    changes: dict[str, Any]
    run_dir: str | None = None


def variants(opts: CompareOptions) -> list[Variant]:
    out = [Variant("base", opts.model, {})]
    if opts.train:
        for sel in opts.selectors:
            for k in opts.ks:
                out.append(Variant(f"ICL {sel} k={k}", opts.model,
                                   {"icl_examples": opts.train, "icl_selector": sel, "icl_k": k}))
    if opts.prompt_optimizer:
        out.append(Variant("BPO", opts.model, {"prompt_optimizer": opts.prompt_optimizer}))
    if opts.aligner:
        out.append(Variant("Aligner", opts.model, {"aligner": opts.aligner}))
    for run in opts.runs:
        out.append(Variant(f"trained: {Path(run).name}", run, {}, run_dir=run))
    return out


def training_seconds(run_dir: str) -> float | None:
    """Wall time of a run from its ``config.yaml`` to its ``final/alignkit.json`` (file modification times)."""
    root = Path(run_dir)
    start, end = root / "config.yaml", root / "final" / "alignkit.json"
    if not (start.is_file() and end.is_file()):
        return None
    return max(0.0, end.stat().st_mtime - start.stat().st_mtime)


def summarise(v: Variant, entry: dict[str, Any], n: int) -> dict[str, Any]:
    gold = entry["gold"]
    scored = gold["n_prompts"]
    k = round((gold["prompt_level"] or 0.0) * scored)
    lo, hi = wilson_interval(k, scored)
    aids = entry.get("aids", {}).get("per_query", {})
    extra = aids.get("optimizer_tokens", 0.0) + aids.get("aligner_tokens", 0.0)
    row = {"variant": v.name, "model": v.model, **v.changes, "passed": k, "n": scored,
           "pass_rate": k / scored if scored else None, "ci95": [lo, hi] if scored else None,
           "prompt_tokens": entry["prompt_tokens"], "generated_tokens": entry["completion_tokens"] + extra,
           "seconds_per_query": entry["seconds"] / max(n, 1), "icl_examples_used": aids.get("icl_examples")}
    if v.run_dir:
        row["training_seconds"] = training_seconds(v.run_dir)
    return row


OUTCOME_SCORE = {"win": 1.0, "tie": 0.5, "loss": 0.0}


def win_rate_vs_base(prompts: Sequence[Any], answers: Sequence[str], base_answers: Sequence[str],
                     judge: Callable[[Any, str, str], str]) -> dict[str, Any]:
    """The judge's win rate of ``answers`` over ``base_answers`` (both orders per pair, ties and
    position-inconsistent pairs count half) and its 95 % percentile-bootstrap interval over prompts (the
    per-prompt scores 1 / ½ / 0 resampled with replacement)."""
    from alignkit.evaluation.winrate import pairwise_winrate

    wr = pairwise_winrate(prompts, answers, base_answers, judge)
    scores = [OUTCOME_SCORE[o] for o in wr.outcomes]
    _, lo, hi = paired_bootstrap([0.0] * len(scores), scores) if scores else (None, 0.0, 1.0)
    return {**wr.as_dict(), "ci95": [lo, hi]}


def run_compare(opts: CompareOptions, log: Callable[[str], None] | None = None) -> list[dict[str, Any]]:
    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    load_judge = None
    if opts.judge:  # a bad spec fails here, before any model loads
        from alignkit.evaluation.winrate import prepare_judge

        load_judge = prepare_judge(opts.judge, seed=opts.eval.seed, batch_size=opts.eval.scoring_batch_size)
    rows, answers = [], []
    plan = variants(opts)
    for i, v in enumerate(plan, start=1):
        log(f"compare [{i}/{len(plan)}] {v.name}")
        ev = dataclasses.replace(opts.eval, **v.changes)
        res = evaluate_models([v.model], ev, log=lambda m: None)
        answers.append(res["models"][0].get("_completions", []))
        row = summarise(v, res["models"][0], res["prompts"]["n"])
        if opts.safety:
            safe = evaluate_models([v.model], dataclasses.replace(ev, safety=opts.safety, prompts=None, limit=None),
                                   log=lambda m: None)["models"][0]["safety"]
            row["harmful_compliance"], row["over_refusal"] = safe["harmful_compliance"], safe["over_refusal"]
        rows.append(row)
    if load_judge is not None and len(rows) > 1:
        judge = load_judge()
        prompts, base = [c["prompt"] for c in answers[0]], [c["completion"] for c in answers[0]]
        for row, comps in zip(rows[1:], answers[1:]):
            log(f"compare: judging {row['variant']} vs base with {opts.judge} ({len(prompts)} pairs, both orders)")
            row["win_rate_vs_base"] = win_rate_vs_base(prompts, [c["completion"] for c in comps], base, judge)
    return rows


def _rate(r: dict[str, Any] | None) -> str:
    if not r:
        return "–"
    lo, hi = r["ci95"]
    return f"{100 * (r['rate'] or 0):.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]"


def _gold(r: dict[str, Any]) -> str:
    if not r["n"]:
        return "– (no checkers)"
    lo, hi = r["ci95"]
    return f"{100 * (r['pass_rate'] or 0):.1f}% ({r['passed']}/{r['n']}) [{100 * lo:.1f}, {100 * hi:.1f}]"


def _win(r: dict[str, Any]) -> str:
    wr = r.get("win_rate_vs_base")
    if not wr or wr["win_rate"] is None:
        return "–"
    lo, hi = wr["ci95"]
    return (f"{100 * wr['win_rate']:.1f}% ({wr['wins']}W/{wr['ties']}T/{wr['losses']}L) "
            f"[{100 * lo:.1f}, {100 * hi:.1f}]")


def table(rows: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    judged = any("win_rate_vs_base" in r for r in rows)
    safety = any("harmful_compliance" in r for r in rows)
    headers = (["variant", "gold pass rate [95% CI]"] + (["win rate vs base [95% CI]"] if judged else [])
               + ["prompt tok/query", "generated tok/query", "s/query", "training s"]
               + (["harmful compliance [95% CI]", "over-refusal [95% CI]"] if safety else []))
    body = []
    for r in rows:
        train_s = r.get("training_seconds")
        body.append([r["variant"], _gold(r)] + ([_win(r)] if judged else [])
                    + [fmt(r["prompt_tokens"], 4), fmt(r["generated_tokens"], 4), fmt(r["seconds_per_query"], 3),
                       fmt(train_s, 4) if train_s is not None else "–"]
                    + ([_rate(r.get("harmful_compliance")), _rate(r.get("over_refusal"))] if safety else []))
    return headers, body


def quality(r: dict[str, Any]) -> tuple[float, float, float, str] | None:
    """``(value, low, high, label)`` for the plot: the gold pass rate, or the win rate vs base when the
    prompts have no checkers (None when the variant has neither, e.g. the base without checkers)."""
    if r["n"]:
        return r["pass_rate"] or 0.0, r["ci95"][0], r["ci95"][1], "gold prompt-level pass rate (%)"
    wr = r.get("win_rate_vs_base")
    if wr and wr["win_rate"] is not None:
        return wr["win_rate"], wr["ci95"][0], wr["ci95"][1], "judge win rate vs base (%)"
    return None


def write_outputs(rows: Sequence[dict[str, Any]], out_dir: str | Path) -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"compare.json": files.write_json(out / "compare.json", list(rows))}
    headers, body = table(rows)
    paths["compare.md"] = files.write_text(out / "compare.md", markdown_table(headers, body) + "\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return paths
    fig, ax = plt.subplots(figsize=(7, 4.5))
    label = "gold prompt-level pass rate (%)"
    for r in rows:
        q = quality(r)
        if q is None:
            continue
        y, lo, hi, label = q
        ax.errorbar(r["generated_tokens"], 100 * y, yerr=[[100 * (y - lo)], [100 * (hi - y)]], fmt="o", capsize=3)
        ax.annotate(r["variant"], (r["generated_tokens"], 100 * y), fontsize=7, xytext=(3, 3),
                    textcoords="offset points")
    ax.set_xlabel("generated tokens per query")
    ax.set_ylabel(label)
    ax.set_title("alignkit compare")
    fig.tight_layout()
    with files.atomic_path(out / "compare.png") as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
    paths["compare.png"] = out / "compare.png"
    return paths
