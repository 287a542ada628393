"""The demo from start to end (``run_demo``): evaluate, build pairs, train, evaluate again, report."""

from __future__ import annotations

import json
import math
import os
import platform
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

from alignkit import files
from alignkit.pipelines.demo.console import Clock, Say
from alignkit.pipelines.demo.pairs import spread
from alignkit.pipelines.demo.settings import (
    MARKER,
    DemoError,
    DemoSettings,
    eval_dtype,
    stage_settings,
    work_dtype,
)
from alignkit.pipelines.demo.stages import evaluate_loaded, iteration
from alignkit.pipelines.demo.tables import (
    _flips,
    _outcome_lines,
    before_after_rows,
    change_with_interval,
    interval_text,
)


def prepare_output_dir(path: str | Path) -> Path:
    """Create the demo directory; clear it when an earlier demo made it, refuse anything else non-empty."""
    out = Path(path)
    if out.exists():
        if not out.is_dir():
            raise DemoError(f"--output-dir {out} exists and is not a directory")
        if any(out.iterdir()):
            if not (out / MARKER).is_file():
                raise DemoError(f"--output-dir {out} is not empty and was not made by alignkit demo; "
                                "choose another directory (the demo clears its own directory on each run)")
            shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("made by alignkit demo; cleared and rewritten by the next demo run here\n")
    return out


# ------------------------------------------------------------------------------------------- main
def _check_disjoint(train: list, test: list) -> None:
    def text(p: Any) -> str:
        return p if isinstance(p, str) else json.dumps(p, sort_keys=True)

    shared_ids = {i.id for i in train} & {i.id for i in test}
    shared_prompts = {text(i.prompt) for i in train} & {text(i.prompt) for i in test}
    if shared_ids or shared_prompts:
        what = sorted(shared_ids)[:3] or [p[:60] for p in sorted(shared_prompts)[:3]]
        raise DemoError(f"the train and test splits share prompts ({', '.join(map(str, what))}); the demo "
                        "measures on prompts it never trained on, so the splits must be disjoint")


def _load_prompts(s: DemoSettings) -> tuple[list, list, int, int]:
    """(held-out test prompts, train prompts, size of each split) after the disjointness check."""
    from alignkit.evaluation.instructions import DEFAULT_INSTRUCTIONS, load_instructions

    test_all = load_instructions(s.prompts, "test")
    train_all = load_instructions(s.prompts, "train")
    if not test_all or not train_all:
        raise DemoError(f"{s.prompts or DEFAULT_INSTRUCTIONS}: needs rows in both a 'train' and a 'test' split")
    _check_disjoint(train_all, test_all)
    test = [i for i in spread(test_all, s.eval_prompts) if i.constraints]
    train = [i for i in spread(train_all, s.train_prompts) if i.constraints]
    if not test or not train:
        raise DemoError("the demo needs prompts with constraints in both splits")
    return test, train, len(test_all), len(train_all)


def run_demo(settings: DemoSettings, out: TextIO | None = None) -> dict[str, Any]:
    """Run the whole demo; prints stage lines and the before/after table on ``out`` (default stdout) and
    returns the summary written to ``OUTPUT_DIR/demo.json``. Raises :class:`DemoError` for a problem the
    user can fix (and the usual data/config errors of the engine).

    ``iterations`` > 1: iteration k samples from (and trains on top of) the iteration k-1 model, in
    ``OUTPUT_DIR/iter-k/`` (iteration 1 in ``OUTPUT_DIR`` itself). ``seeds`` > 1: the iterations are
    repeated with seeds ``seed, seed+1, ...`` in ``OUTPUT_DIR/seed-S/``; the table is the first seed's and
    the gain is reported as mean and spread over the seeds."""
    s = settings
    s.check()
    out = out or sys.stdout
    say = Say(out)
    clock = Clock()
    test, train_ins, n_test_all, n_train_all = _load_prompts(s)
    out_dir = prepare_output_dir(s.output_dir)

    import torch

    if s.threads is not None:
        torch.set_num_threads(s.threads)
    from alignkit import models
    from alignkit.evaluation.instructions import DEFAULT_INSTRUCTIONS
    from alignkit.evaluation.runner import write_results
    from alignkit.evaluation.tables import print_table
    from alignkit.hardware import release_memory

    label = s.method.upper()
    eval_bs = s.eval_batch_size
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    say(f"alignkit demo{' --quick' if s.quick else ''}: {s.model}, {label} + LoRA, torch {torch.__version__} "
        f"on {'cuda' if torch.cuda.is_available() else 'cpu'}, {torch.get_num_threads()} thread(s)"
        + (f", load average {load[0]:.1f}" if load else ""))
    say(f"  sampling and the frozen LoRA base in {work_dtype(s)}, adapters float32, evaluation {eval_dtype(s)}")
    say(f"  held-out: {len(test)} of {n_test_all} 'test' prompts (never sampled or trained on); "
        f"training prompts: {len(train_ins)} of {n_train_all} 'train' prompts; "
        + (f"stages: {' then '.join(s.methods)}" if len(s.methods) > 1 else f"{s.iterations} iteration(s)")
        + (f", {s.seeds} seeds" if s.seeds > 1 else ""))
    say(f"  output: {out_dir}")

    # -- 1. the base model on the held-out prompts (greedy: the same for every seed) --------------------
    say(f"\n[1/5] evaluating the base model on {len(test)} held-out prompts "
        f"(greedy, max_new_tokens {s.eval_max_new_tokens})")
    clock.start()
    model, tok = models.load_for_generation(s.model, eval_dtype(s))
    base = evaluate_loaded(model, tok, test, spec=s.model, name=f"base ({s.model})",
                           max_new_tokens=s.eval_max_new_tokens, batch_size=eval_bs, say=say,
                           desc="base: generating")
    del model
    release_memory()
    seconds = clock.stop("1_eval_base")
    bg = base["gold"]
    say(f"    base: prompt-level {100 * bg['prompt_level']:.1f}%, instruction-level "
        f"{100 * bg['instruction_level']:.1f}% ({seconds:.0f} s)")

    # -- 2-4. on-policy iterations (per seed) ----------------------------------------------------------
    # one settings object per iteration: --iterations repeats one method (each evaluated); several methods
    # (sft+dpo) are stages, each from the previous stage's model, evaluated at the end only
    stages = stage_settings(s)
    plan = stages if len(stages) > 1 else [s] * s.iterations
    runs: list[list[dict[str, Any]]] = []
    for si in range(s.seeds):
        seed = s.seed + si
        seed_dir = out_dir if s.seeds == 1 else out_dir / f"seed-{seed}"
        current, its = s.model, []
        for k, sk in enumerate(plan, start=1):
            run_dir = seed_dir if k == 1 else seed_dir / f"iter-{k}"
            tag = "".join([f" stage {k}/{len(plan)} ({sk.method})" if len(stages) > 1 else
                           f" iteration {k}/{len(plan)}" if len(plan) > 1 else "",
                           f" seed {seed}" if s.seeds > 1 else ""])
            it = iteration(sk, k, seed, run_dir, current, spread(train_ins, sk.train_prompts), test, say, clock, tag,
                           evaluate=len(stages) == 1 or k == len(plan))
            if it["eval"] is not None:
                it["change"] = change_with_interval(base, it["eval"])
                tg = it["eval"]["gold"]
                say(f"    {s.method}{tag}: prompt-level {100 * tg['prompt_level']:.1f}%, change "
                    f"{interval_text(it['change'])} (95% paired bootstrap over {len(test)} prompts)")
            its.append(it)
            current = it["final_dir"]
        runs.append(its)
    first = runs[0]
    trained = first[-1]["eval"]

    # -- 5. table, results files, report ---------------------------------------------------------------
    say("\n[5/5] writing results and the report")
    clock.start()
    fixed, broken = _flips(base, trained)
    rows = before_after_rows(base, trained)
    groups = {name: change_with_interval(base, trained, key)
              for name, key in (("seen", None), ("unseen_wording", "family"), ("unseen_kind", "kind"))}
    ci = first[-1]["change"]
    rows.insert(1, ["  change, 95% paired bootstrap", "", "", f"[{100 * ci['low']:+.1f}, {100 * ci['high']:+.1f}]"])
    gains = [its[-1]["change"]["delta"] for its in runs]
    seeds_summary = None
    if s.seeds > 1:
        mean = sum(gains) / len(gains)
        spread_sd = math.sqrt(sum((g - mean) ** 2 for g in gains) / (len(gains) - 1))
        seeds_summary = {"gains": gains, "mean": mean, "sd": spread_sd}
    pair_count = sum(it["pairs"].get("pairs", 0) for it in first)
    results = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "prompts": {"file": s.prompts or DEFAULT_INSTRUCTIONS, "split": "test", "n": len(test)},
        "settings": {"max_new_tokens": s.eval_max_new_tokens, "temperature": 0.0, "batch_size": eval_bs,
                     "seed": 0, "limit": s.eval_prompts or None},
        "models": [base] + [it["eval"] for it in first if it["eval"] is not None],
        "notes": [f"alignkit demo: {s.method}, {len(plan)} on-policy iteration(s) from the 'train' split "
                  f"({pair_count} self-generated pairs in all); evaluated on the 'test' split, never sampled or "
                  "trained on"],
    }
    for its in runs[1:]:  # the other seeds' evaluations keep their completions out of results.json
        for it in its:
            if it["eval"] is not None:
                it["eval"].pop("_completions", None)
    write_results(results, out_dir)  # results.json, results.md, completions-*.jsonl (pops _completions)
    report = None
    try:
        from alignkit.report import write_run_report

        report = write_run_report(out_dir)  # training curves + the eval table from results.json
    except ImportError:  # pragma: no cover - matplotlib missing
        pass
    clock.stop("5_report")
    timings = clock.total()

    tg = trained["gold"]
    summary = {
        "settings": {**asdict(s), "work_dtype": work_dtype(s), "eval_dtype_used": eval_dtype(s)},
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
                    "load_average_at_start": list(load) if load else None},
        "held_out": {"split": "test", "prompts": [i.id for i in test]},
        "train_prompts": [i.id for i in train_ins],
        "pairs": first[0]["pairs"],
        "iterations": [{"iteration": it["iteration"], "method": it["method"], "pairs": it["pairs"],
                        "steps": it["steps"], "final_dir": it["final_dir"],
                        **({"change": it["change"], "prompt_level": it["eval"]["gold"]["prompt_level"],
                            "instruction_level": it["eval"]["gold"]["instruction_level"]}
                           if it["eval"] is not None else {})} for it in first],
        "seeds": seeds_summary,
        "training": {"method": s.method, "steps": first[-1]["steps"], "batch_size": first[-1]["batch_size"],
                     "max_length": first[-1]["max_length"], "run_dir": str(out_dir)},
        "before": {"prompt_level": bg["prompt_level"], "instruction_level": bg["instruction_level"]},
        "after": {"prompt_level": tg["prompt_level"], "instruction_level": tg["instruction_level"]},
        "change": ci,
        "change_by_group": groups,
        "improved": tg["prompt_level"] > bg["prompt_level"],
        "fixed": fixed,
        "broken": broken,
        "timings": timings,
        "report": str(report) if report else None,
    }
    files.write_json(out_dir / "demo.json", summary)

    say("")
    print_table(["held-out metric", "base", s.method, "change"], rows,
                title=f"alignkit demo: {s.model} before/after {label} on {len(test)} held-out prompts", file=out)
    say("")
    for line in _outcome_lines(s, base, trained, fixed, broken):
        say(line)
    for name, g in groups.items():
        if g["n"] and g["n"] < ci["n"]:
            say(f"  {name.replace('_', ' ')} prompts ({g['n']}): change {interval_text(g)}")
    if len(plan) > 1 and len(stages) == 1:
        say("  per iteration: " + "; ".join(f"{it['iteration']}: {100 * it['eval']['gold']['prompt_level']:.1f}% "
                                             f"({interval_text(it['change'])})" for it in first))
    if seeds_summary:
        say(f"  over {s.seeds} seeds: change {100 * seeds_summary['mean']:+.1f} pts on average, sd "
            f"{100 * seeds_summary['sd']:.1f} pts ({', '.join(f'{100 * g:+.1f}' for g in gains)})")
    for it, sk in zip(first, plan):
        p, where = it["pairs"], f" (stage {it['iteration']})" if len(stages) > 1 else ""
        prompts = len(spread(train_ins, sk.train_prompts))
        if sk.method == "sft":
            say(f"  SFT{where} on {p.get('sft_answers', 0)} passing answers ({p.get('sft_repaired', 0)} repaired by "
                f"code) from {prompts} train prompts x {sk.candidates} sample(s)")
        elif sk.method != "grpo":
            say(f"  {sk.method.upper()}{where}: {p.get('pairs', 0)} pairs from {prompts} train prompts x "
                f"{sk.candidates} samples")
    say("  the held-out prompts were never sampled or trained on")
    stage_times = ", ".join(f"{k[2:].replace('_', ' ')} {v['wall_s']:.0f} s" for k, v in timings.items()
                            if k != "total")
    say(f"  wall time: {stage_times}; total {timings['total']['wall_s']:.0f} s "
        f"(CPU time of this process: {timings['total']['cpu_s']:.0f} s)")
    say(f"  files: {out_dir}/ (results.md, pairs.jsonl, samples.jsonl, completions-*.jsonl, demo.json, final/)")
    if report:
        say(f"report: {report}")
    return summary
