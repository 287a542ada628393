"""The demo from start to end (``run_demo``): evaluate, build pairs, train, evaluate again, report."""

from __future__ import annotations

import gc
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
from alignkit.pipelines.demo.console import Clock, Progress, Say
from alignkit.pipelines.demo.pairs import build_pairs, mean_or_nan, spread
from alignkit.pipelines.demo.settings import MARKER, DemoError, DemoSettings


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


# ------------------------------------------------------------------------------------------ stages
def evaluate_loaded(model: Any, tokenizer: Any, instructions: list, *, spec: str, name: str,
                    max_new_tokens: int, batch_size: int, say: Say, desc: str) -> dict[str, Any]:
    """Greedy answers to ``instructions`` and their strict pass rates, as one model entry of the
    ``alignkit eval`` results (:func:`alignkit.evaluation.runner.evaluate_models`)."""
    from alignkit.data.render import request_prompt
    from alignkit.evaluation.instructions import score_responses
    from alignkit.generation import generate_with_ids

    t0 = time.perf_counter()
    progress = Progress(say, len(instructions), desc, "prompt")
    gens = generate_with_ids(model, tokenizer, [request_prompt(tokenizer, ins.prompt) for ins in instructions],
                             max_new_tokens=max_new_tokens, batch_size=batch_size, temperature=0.0, seed=0,
                             progress=progress.update)
    progress.close()
    gold = score_responses(instructions, gens.texts)
    details = {d["id"]: d for d in gold.pop("details")}
    lengths = [len(c) for c in gens.completion_ids]
    return {
        "model": str(spec),
        "name": name,
        "gold": gold,
        "completion_tokens": mean_or_nan(lengths),
        "truncated_rate": sum(gens.truncated) / len(gens.truncated),
        "seconds": round(time.perf_counter() - t0, 1),
        "_completions": [
            {"id": ins.id, "prompt": ins.prompt, "completion": text, "tokens": len(cids),
             "constraints": ins.constraints,
             **({"passed": details[ins.id]["passed"], "all": details[ins.id]["all"]}
                if ins.id in details else {})}
            for ins, text, cids in zip(instructions, gens.texts, gens.completion_ids)
        ],
    }


def train_on_pairs(settings: DemoSettings, data: Path, output_dir: Path, max_length: int, batch_size: int):
    """LoRA DPO (or IFT / SFT on the chosen answers) on the pairs file; returns (the engine's RunResult, config)."""
    from alignkit.config import load_config
    from alignkit.engine.trainer import train

    s = settings
    overrides = [
        f"model={s.model}", f"data={data}", f"output_dir={output_dir}", f"max_steps={s.steps}",
        f"batch_size={batch_size}", f"lr={s.lr}", f"lora.r={s.lora_r}", f"lora.alpha={s.lora_alpha}",
        f"max_length={max_length}", f"warmup_steps={max(1, s.steps // 10)}", "save_steps=0", f"seed={s.seed}",
    ]
    if s.method == "dpo":
        from alignkit.methods.dpo import DPO, DPOConfig

        method_cls, config = DPO, load_config(DPOConfig, None, overrides + [f"beta={s.beta}"])
    else:
        from alignkit.methods.ift import IFT, IFTConfig

        plain = ["ift_lambda=0", "drp_gamma=0"] if s.method == "sft" else []  # lambda = gamma = 0 is SFT
        method_cls, config = IFT, load_config(IFTConfig, None, overrides + plain)
    return train(method_cls, config), config


# ----------------------------------------------------------------------------------------- tables
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


def run_demo(settings: DemoSettings, out: TextIO | None = None) -> dict[str, Any]:
    """Run the whole demo; prints stage lines and the before/after table on ``out`` (default stdout) and
    returns the summary written to ``OUTPUT_DIR/demo.json``. Raises :class:`DemoError` for a problem the
    user can fix (and the usual data/config errors of the engine)."""
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
    from alignkit.data.render import request_prompt
    from alignkit.evaluation.instructions import DEFAULT_INSTRUCTIONS
    from alignkit.evaluation.runner import write_results
    from alignkit.evaluation.tables import print_table
    from alignkit.generation import encode_prompt

    label = s.method.upper()
    eval_bs = min(s.gen_batch_size, 16)
    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    say(f"alignkit demo{' --quick' if s.quick else ''}: {s.model}, {label} + LoRA, torch {torch.__version__} "
        f"on {'cuda' if torch.cuda.is_available() else 'cpu'}, {torch.get_num_threads()} thread(s)"
        + (f", load average {load[0]:.1f}" if load else ""))
    say(f"  held-out: {len(test)} of {n_test_all} 'test' prompts (never sampled or trained on); "
        f"training prompts: {len(train_ins)} of {n_train_all} 'train' prompts")
    say(f"  output: {out_dir}")

    # -- 1. the base model on the held-out prompts -----------------------------------------------------
    say(f"\n[1/5] evaluating the base model on {len(test)} held-out prompts "
        f"(greedy, max_new_tokens {s.eval_max_new_tokens})")
    clock.start()
    model = models.load_model(s.model)
    tok = models.load_tokenizer(s.model)
    base = evaluate_loaded(model, tok, test, spec=s.model, name=f"base ({s.model})",
                           max_new_tokens=s.eval_max_new_tokens, batch_size=eval_bs, say=say,
                           desc="base: generating")
    seconds = clock.stop("1_eval_base")
    bg = base["gold"]
    say(f"    base: prompt-level {100 * bg['prompt_level']:.1f}%, instruction-level "
        f"{100 * bg['instruction_level']:.1f}% ({seconds:.0f} s)")

    # -- 2. preference pairs from the model's own samples on the train prompts -------------------------
    say(f"\n[2/5] building preference pairs: {s.candidates} samples x {len(train_ins)} train prompts "
        f"(temperature {s.temperature}, max_new_tokens {s.sample_max_new_tokens}), scored by the constraint "
        "reward")
    clock.start()
    pairs, samples, pstats = build_pairs(model, tok, train_ins, candidates=s.candidates,
                                         temperature=s.temperature, top_p=s.top_p,
                                         max_new_tokens=s.sample_max_new_tokens, rounds=s.rounds, seed=s.seed,
                                         gen_batch_size=s.gen_batch_size, say=say)
    prompt_tokens = max(len(encode_prompt(tok, request_prompt(tok, i.prompt))) for i in train_ins)
    del model
    gc.collect()
    files.write_jsonl(out_dir / "samples.jsonl", samples)
    files.write_jsonl(out_dir / "pairs.jsonl", pairs)
    seconds = clock.stop("2_pairs")
    say(f"    {pstats['pairs']} pairs from {pstats['prompts']} prompts; no pair (all samples scored alike): "
        f"{pstats['no_pair_all_pass']} all passed, {pstats['no_pair_all_fail']} all failed, "
        f"{pstats['no_pair_other_tie']} other ties; samples fully passing: "
        f"{100 * pstats['sample_pass_rate']:.0f}% ({seconds:.0f} s)")
    if not pairs:
        raise DemoError("no preference pairs: every prompt's samples scored the same; try more --candidates, "
                        "--rounds or a higher --temperature")
    batch_size = min(s.batch_size, len(pairs))
    if batch_size < s.batch_size:
        say(f"    note: only {len(pairs)} pairs, so batch size {batch_size} instead of {s.batch_size}")

    # -- 3. training -----------------------------------------------------------------------------------
    what = {"dpo": f"DPO (sigmoid loss, beta {s.beta})", "ift": "IFT on the chosen answers",
            "sft": "SFT on the chosen answers"}[s.method]
    say(f"\n[3/5] training: {what} + LoRA r={s.lora_r}, {s.steps} steps x {batch_size} pairs, lr {s.lr}")
    clock.start()
    result, config = train_on_pairs(s, out_dir / "pairs.jsonl", out_dir,
                                    max_length=prompt_tokens + s.sample_max_new_tokens + 8, batch_size=batch_size)
    seconds = clock.stop("3_train")
    if result.final_dir is None:
        raise DemoError("training was interrupted; nothing to evaluate")
    say(f"    {result.steps} steps, model in {result.final_dir} ({seconds:.0f} s)")

    # -- 4. the trained model on the same held-out prompts ---------------------------------------------
    say(f"\n[4/5] evaluating the trained model on the same {len(test)} held-out prompts")
    clock.start()
    model, tok = models.load_trained(result.final_dir)
    if hasattr(model, "merge_and_unload"):  # LoRA merged for generation: same answers, faster
        model = model.merge_and_unload()
    trained = evaluate_loaded(model, tok, test, spec=str(result.final_dir), name=f"{s.method} ({result.final_dir})",
                              max_new_tokens=s.eval_max_new_tokens, batch_size=eval_bs, say=say,
                              desc=f"{s.method}: generating")
    del model
    gc.collect()
    clock.stop("4_eval_trained")

    # -- 5. table, results files, report ---------------------------------------------------------------
    say("\n[5/5] writing results and the report")
    clock.start()
    fixed, broken = _flips(base, trained)
    rows = before_after_rows(base, trained)
    results = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "prompts": {"file": s.prompts or DEFAULT_INSTRUCTIONS, "split": "test", "n": len(test)},
        "settings": {"max_new_tokens": s.eval_max_new_tokens, "temperature": 0.0, "batch_size": eval_bs,
                     "seed": 0, "limit": s.eval_prompts or None},
        "models": [base, trained],
        "notes": [f"alignkit demo: {s.method} on {len(pairs)} self-generated pairs from the 'train' split; "
                  "evaluated on the 'test' split, never sampled or trained on"],
    }
    write_results(results, out_dir)  # results.json, results.md, completions-1/2-*.jsonl (pops _completions)
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
        "settings": asdict(s),
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
                    "load_average_at_start": list(load) if load else None},
        "held_out": {"split": "test", "prompts": [i.id for i in test]},
        "train_prompts": [i.id for i in train_ins],
        "pairs": pstats,
        "training": {"method": s.method, "steps": result.steps, "batch_size": batch_size,
                     "max_length": config.max_length, "run_dir": str(out_dir)},
        "before": {"prompt_level": bg["prompt_level"], "instruction_level": bg["instruction_level"]},
        "after": {"prompt_level": tg["prompt_level"], "instruction_level": tg["instruction_level"]},
        "improved": tg["prompt_level"] > bg["prompt_level"],
        "fixed": fixed,
        "broken": broken,
        "timings": timings,
        "report": str(report) if report else None,
    }
    (out_dir / "demo.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    say("")
    print_table(["held-out metric", "base", s.method, "change"], rows,
                title=f"alignkit demo: {s.model} before/after {label} on {len(test)} held-out prompts", file=out)
    say("")
    for line in _outcome_lines(s, base, trained, fixed, broken):
        say(line)
    say(f"  {len(pairs)} pairs from {len(train_ins)} train prompts x {pstats['candidates_per_prompt']} samples; "
        "the held-out prompts were never sampled or trained on")
    stages = ", ".join(f"{k[2:].replace('_', ' ')} {v['wall_s']:.0f} s" for k, v in timings.items() if k != "total")
    say(f"  wall time: {stages}; total {timings['total']['wall_s']:.0f} s "
        f"(CPU time of this process: {timings['total']['cpu_s']:.0f} s)")
    say(f"  files: {out_dir}/ (results.md, pairs.jsonl, samples.jsonl, completions-*.jsonl, demo.json, final/)")
    if report:
        say(f"report: {report}")
    return summary
