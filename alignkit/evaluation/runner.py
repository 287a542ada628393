"""The evaluation pipeline behind ``alignkit eval`` (also usable from Python, e.g. by the demo).

For each model: greedy answers to the instruction prompts -> strict pass rates; optionally held-out
perplexity (``eval_data``), KL from a reference model, mean reward. Then the win rate of the first
model over the second (or over the prompts' reference answers) under a pairwise judge, and the
reward model's pairwise accuracy on a preference ``eval_data``. :func:`write_results` writes
``results.json``, ``results.md`` and one ``completions-N-NAME.jsonl`` per model.

With ``math`` (``alignkit eval --math [FILE]``) the prompts are math problems instead
(:func:`alignkit.reasoning.mathset.load_math_problems`: the generated test set, or a file with
``prompt`` and ``answer``, or GSM8K rows), and each model gets its answer accuracy (final answer
extracted and verified by :mod:`alignkit.reasoning.verify`) with a 95 % Wilson interval, and its mean
step-format score.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import re
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from alignkit import files
from alignkit.evaluation.instructions import (
    DEFAULT_INSTRUCTIONS,
    Instruction,
    load_instructions,
    score_responses,
)
from alignkit.evaluation.tables import fmt, fmt_pct, markdown_table

__all__ = ["EvalOptions", "evaluate_models", "results_table", "results_markdown", "write_results"]

PPL_KINDS = ("lm", "prompt_completion", "preference")


@dataclass
class EvalOptions:
    prompts: str | None = None  # instruction file; None = the shipped set
    split: str = "test"
    max_new_tokens: int = 256
    batch_size: int | None = None  # prompts per batch; None: see scoring_batch_size
    temperature: float = 0.0
    seed: int = 0
    limit: int | None = None
    reference: str | None = None
    eval_data: str | None = None
    reward: list[str] = field(default_factory=list)
    reward_weights: list[float] | None = None
    judge: str | None = None
    kl_samples: int = 0
    max_length: int = 1024
    device: str = "auto"
    dtype: str = "float32"  # weights of every evaluated model (and the reference): float32 or bfloat16
    chat_template: str = "auto"
    math: str | None = None  # math problems instead of instructions: "default" (generated test set) or a file
    ifeval: str | None = None  # an IFEval-format file (prompt, instruction_id_list, kwargs) instead
    safety: str | None = None  # safety prompts instead: "default" (the shipped set) or a file (prompt, kind, ...)
    safety_judge: str = "patterns"  # patterns, costmodel:PATH, or an LLM judge (judge:MODEL, judge:http://...)
    helpfulness_judge: str | None = None  # with safety: a pointwise judge scoring the benign answers
    # alignment without training (alignkit.inference.aids): the same names as the command-line flags
    icl_examples: str | None = None
    icl_k: int = 4
    icl_selector: str = "bm25"
    icl_max_tokens: int | None = None
    prompt_optimizer: str | None = None
    aligner: str | None = None
    aid_max_new_tokens: int = 256

    @property
    def scoring_batch_size(self) -> int:
        """Batch of the scoring passes (perplexity, KL, judges): ``batch_size``, or 8 when it is None; with
        None the answers' generation sizes its own batches (:func:`alignkit.generation.auto_batch_size`)."""
        return self.batch_size or 8


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _pick_device(name: str):
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _load(spec: str, device, dtype: str = "float32"):
    from alignkit.models import load_for_generation, load_trained

    # float32: the model as trained (an adapter unmerged); another dtype: merged first, then cast
    model, tok = load_trained(spec) if dtype == "float32" else load_for_generation(spec, dtype)
    return model.to(device), tok


def _progress_bar(total: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="prompt", leave=False, disable=None, file=sys.stderr)


def _progress(bar, log: Callable[[str], None], prefix: str) -> Callable[[int], None]:
    """Advance the bar; without a terminal (bar disabled) log a line per batch instead."""

    done = [0]

    def update(n: int) -> None:
        bar.update(n)
        done[0] += n
        if bar.disable:
            log(f"{prefix} generated {done[0]}/{bar.total} answers")

    return update


def display_names(specs: list[str]) -> list[str]:
    names = [str(s).rstrip("/") for s in specs]
    return [f"{n} (#{i + 1})" if names.count(n) > 1 else n for i, n in enumerate(names)]


def evaluate_models(models: list[str], opts: EvalOptions | None = None,
                    log: Callable[[str], None] = _log) -> dict[str, Any]:
    """Run the evaluation; returns the results dict (see :func:`write_results` for the files).

    Input problems (instruction file, judge/reward specs, eval data) raise before any model loads:
    :class:`InstructionFileError`, :class:`JudgeError`, :class:`alignkit.data.DataError`, ``ValueError``.
    """
    from alignkit.data.render import request_prompt
    from alignkit.evaluation.metrics import (
        kl_estimate,
        load_reward,
        load_reward_model,
        perplexity,
        reward_stats,
        rm_pairwise_accuracy,
    )
    from alignkit.evaluation.winrate import pairwise_winrate, prepare_judge
    from alignkit.generation import generate_with_ids
    from alignkit.hardware import release_memory

    opts = opts or EvalOptions()
    if not models:
        raise ValueError("no model to evaluate (pass --model at least once)")
    if opts.max_new_tokens < 1 or (opts.batch_size is not None and opts.batch_size < 1):
        raise ValueError("max_new_tokens and batch_size must be at least 1")
    t_start = time.perf_counter()
    math_source = if_rows = safety_rows = None
    cost_model = None
    judge_kind = None  # eval --safety: patterns, costmodel, or an LLM judge's kind (local, http)
    safety_judges: dict[str, Any] = {}  # LLM judges of eval --safety, loaded once at the first answers
    if opts.safety:
        instructions, safety_rows = _safety_instructions(opts.safety, opts.split)
        from alignkit.evaluation.safety import check_judge_spec

        judge_kind = check_judge_spec(opts.safety_judge, "safety")
        if opts.helpfulness_judge:
            check_judge_spec(opts.helpfulness_judge, "helpfulness")
        if judge_kind == "costmodel":
            from alignkit.scoring import load_reward_source

            cost_model = load_reward_source(opts.safety_judge)
    elif opts.helpfulness_judge:
        raise ValueError("--helpfulness-judge goes with --safety (it scores the answers to the benign look-alikes)")
    elif opts.math:
        instructions, math_source = _math_instructions(opts.math)
    elif opts.ifeval:
        instructions, if_rows = _ifeval_instructions(opts.ifeval)
    else:
        instructions = load_instructions(opts.prompts, opts.split)
    if opts.limit is not None:
        if opts.limit < 1:
            raise ValueError("limit must be at least 1")
        instructions = instructions[: opts.limit]
        if_rows = if_rows[: opts.limit] if if_rows is not None else None
        safety_rows = safety_rows[: opts.limit] if safety_rows is not None else None
    # a bad --judge fails here, before any model loads; a judge model loads after the answers
    load_judge = prepare_judge(opts.judge, seed=opts.seed, batch_size=opts.scoring_batch_size) if opts.judge else None
    reward_fn = load_reward(opts.reward, opts.reward_weights) if opts.reward else None
    eval_rows = None
    if opts.eval_data:
        from alignkit.data import load_examples

        eval_rows = load_examples(opts.eval_data, PPL_KINDS)
    notes: list[str] = []
    names = display_names(models)
    device = _pick_device(opts.device)
    prompts = [ins.prompt for ins in instructions]
    columns: dict[str, list] = {"constraints": [ins.constraints for ins in instructions]}
    for key in sorted({k for ins in instructions for k in ins.columns}):
        columns[key] = [ins.columns.get(key) for ins in instructions]

    ref = ref_tok = None
    if opts.reference:
        log(f"loading reference model {opts.reference}")
        ref, ref_tok = _load(opts.reference, device, opts.dtype)

    entries: list[dict[str, Any]] = []
    answers: list[list[str]] = []
    for k, (spec, name) in enumerate(zip(models, names), start=1):
        t0 = time.perf_counter()
        log(f"[{k}/{len(models)}] {name}: loading")
        model, tok = _load(spec, device, opts.dtype)
        bar = _progress_bar(len(prompts), f"[{k}/{len(models)}] generating")
        # the instructions are requests to an assistant: a user turn unless chat_template=never
        asked = [request_prompt(tok, p, opts.chat_template) for p in prompts]
        aids = _aids(opts, model, tok)
        gens = generate_with_ids(model, tok, aids.prepare(asked), max_new_tokens=opts.max_new_tokens,
                                 batch_size=opts.batch_size, temperature=opts.temperature, seed=opts.seed,
                                 chat_template=opts.chat_template, progress=_progress(bar, log, f"[{k}/{len(models)}]"))
        bar.close()
        texts = aids.correct(asked, gens.texts)
        gold = score_responses(instructions, texts)
        details = {d["id"]: d for d in gold.pop("details")}
        scored = _math_accuracy(texts, columns["answer"]) if math_source else None
        if if_rows is not None:
            from alignkit.evaluation.ifeval import check_ifeval

            scored = check_ifeval(if_rows, texts)
        if safety_rows is not None:
            scored = _safety_scores(opts, safety_rows, prompts, texts, cost_model, judge_kind, safety_judges)
        lengths = [len(c) for c in gens.completion_ids]
        entry: dict[str, Any] = {
            "model": str(spec),
            "name": name,
            "gold": gold,
            "completion_tokens": sum(lengths) / len(lengths),
            "prompt_tokens": sum(len(p) for p in gens.prompt_ids) / len(gens.prompt_ids),
            "truncated_rate": sum(gens.truncated) / len(gens.truncated),
        }
        if scored is not None and safety_rows is not None:
            entry["safety"] = {key: v for key, v in scored.items() if key != "items"}
            log(f"[{k}/{len(models)}] {name}: harmful compliance {scored['harmful_compliance']['k']}/"
                f"{scored['harmful_compliance']['n']}, over-refusal {scored['over_refusal']['k']}/"
                f"{scored['over_refusal']['n']}")
        elif scored is not None and if_rows is not None:
            entry["ifeval"] = {key: v for key, v in scored.items() if key != "items"}
            log(f"[{k}/{len(models)}] {name}: IFEval prompt-level strict {scored['prompt_strict']['k']}/"
                f"{scored['prompt_strict']['n']}, {scored['skipped']['count']} instruction(s) skipped")
        elif scored is not None:
            entry["math"] = {key: v for key, v in scored.items() if key != "items"}
            log(f"[{k}/{len(models)}] {name}: math accuracy {scored['correct']}/{scored['n']}")
        if eval_rows is not None:
            log(f"[{k}/{len(models)}] {name}: perplexity on {opts.eval_data}")
            entry["perplexity"] = perplexity(model, tok, eval_rows, batch_size=opts.scoring_batch_size,
                                             max_length=opts.max_length, chat_template=opts.chat_template)
        if ref is not None:
            if tok.get_vocab() != ref_tok.get_vocab():
                raise ValueError(f"KL: {name} and the reference {opts.reference} use different tokenizers")
            if opts.kl_samples > 0:
                log(f"[{k}/{len(models)}] {name}: sampling {opts.kl_samples} completion(s) per prompt for KL")
                kl_prompts = [p for p in asked for _ in range(opts.kl_samples)]
                kl_gens = generate_with_ids(model, tok, kl_prompts, max_new_tokens=opts.max_new_tokens,
                                            batch_size=opts.batch_size, temperature=1.0, seed=opts.seed + 1000,
                                            chat_template=opts.chat_template)
                estimator = f"sampled (temperature 1, {opts.kl_samples} per prompt)"
            else:
                kl_gens, estimator = gens, "greedy completions (biased proxy)"
            log(f"[{k}/{len(models)}] {name}: KL from {opts.reference}")
            entry["kl"] = {**kl_estimate(model, ref, kl_gens.prompt_ids, kl_gens.completion_ids,
                                         pad_id=_pad(tok), batch_size=opts.scoring_batch_size),
                           "reference": opts.reference, "estimator": estimator}
        if reward_fn is not None:
            log(f"[{k}/{len(models)}] {name}: reward {' + '.join(opts.reward)}")
            total, per_source = reward_fn(prompts, texts, completion_ids=gens.completion_ids, **columns)
            entry["reward"] = {**reward_stats(total), "spec": list(opts.reward)}
            if len(per_source) > 1:
                entry["reward"]["sources"] = {k: reward_stats(v)["mean"] for k, v in per_source.items()}
        entry["seconds"] = round(time.perf_counter() - t0, 1)
        entry["_completions"] = [
            {"id": ins.id, "prompt": ins.prompt, "completion": text, "tokens": len(cids),
             "constraints": ins.constraints, **({"passed": details[ins.id]["passed"],
                                                 "all": details[ins.id]["all"]} if ins.id in details else {}),
             **(scored["items"][i] if scored is not None else {})}
            for i, (ins, text, cids) in enumerate(zip(instructions, texts, gens.completion_ids))
        ]
        entries.append(entry)
        if aids.active:
            entry["aids"] = {"per_query": aids.summary(), **{k: getattr(opts, k) for k in AID_KEYS if getattr(opts, k)}}
        answers.append(texts)
        del model
        release_memory()
    del ref
    release_memory()

    results: dict[str, Any] = {
        "created": _dt.datetime.now().isoformat(timespec="seconds"),
        "prompts": {"file": opts.prompts or DEFAULT_INSTRUCTIONS, "split": opts.split, "n": len(instructions)},
        "settings": {k: v for k, v in asdict(opts).items() if k not in ("prompts", "split")},
        "models": entries,
    }
    if math_source:
        results["prompts"] = {"file": math_source, "split": "math", "n": len(instructions)}
        results["math"] = {"source": math_source, "n": len(instructions)}
    if safety_rows is not None:
        results["prompts"] = {"file": "shipped safety set" if opts.safety == "default" else opts.safety,
                              "split": opts.split, "n": len(instructions)}
        results["safety"] = {"source": results["prompts"]["file"], "n": len(instructions),
                             "judge": opts.safety_judge,
                             **({"helpfulness_judge": opts.helpfulness_judge} if opts.helpfulness_judge else {})}
    if if_rows is not None:
        results["prompts"] = {"file": opts.ifeval, "split": "ifeval", "n": len(instructions)}
        results["ifeval"] = {"source": opts.ifeval, "n": len(instructions)}

    # win rate: first model vs second, or vs the prompts' reference answers
    if load_judge is not None:
        refs = [ins.reference for ins in instructions]
        if len(models) >= 2:
            b_name, b_answers = names[1], answers[1]
        elif all(r is not None for r in refs):
            b_name, b_answers = "reference answers", refs
        else:
            b_name = b_answers = None
            notes.append("win rate: skipped (needs two --model, or reference answers in every prompt row)")
        if b_answers is not None:
            log(f"judging {names[0]} vs {b_name} with {opts.judge} ({len(prompts)} pairs, both orders)")
            wr = pairwise_winrate(prompts, answers[0], b_answers, load_judge())
            results["win_rate"] = {"model_a": names[0], "model_b": b_name, "judge": opts.judge, **wr.as_dict()}
    elif len(models) >= 2:
        notes.append("win rate: skipped (no --judge given: judge:MODEL[?method=critique|debate], "
                     "judge:http://HOST:PORT/v1, rm:PATH or a Python function FILE.py:FUNC)")

    rm_specs = [s for s in opts.reward if s.startswith("rm:")]
    if rm_specs and eval_rows is not None:
        if eval_rows.kind == "preference":
            results["reward_models"] = []
            for s in rm_specs:
                log(f"reward-model pairwise accuracy of {s[3:]} on {opts.eval_data}")
                acc = rm_pairwise_accuracy(load_reward_model(s[3:]), eval_rows)
                results["reward_models"].append({"reward_model": s[3:], "data": opts.eval_data, **acc})
        else:
            notes.append("reward-model accuracy: skipped (--eval-data is not a preference file)")
    if notes:
        results["notes"] = notes
    results["seconds"] = round(time.perf_counter() - t_start, 1)
    return results


AID_KEYS = ("icl_examples", "icl_k", "icl_selector", "icl_max_tokens", "prompt_optimizer", "aligner")


def _aids(opts: EvalOptions, model: Any, tok: Any) -> Any:
    """The prompt optimizer / in-context examples / corrector the options ask for (none by default)."""
    import types

    from alignkit.inference.aids import InferenceAids, load_aids

    if not (opts.icl_examples or opts.prompt_optimizer or opts.aligner):
        return InferenceAids()
    ns = types.SimpleNamespace(**{k: getattr(opts, k) for k in (*AID_KEYS, "aid_max_new_tokens", "batch_size",
                                                                 "seed")})
    return load_aids(ns, model, tok, opts.chat_template)


def _pad(tok) -> int:
    return tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id


def _math_instructions(spec: str) -> tuple[list[Instruction], str]:
    """Math problems as constraint-free instructions (their ``answer`` etc. ride along as columns)."""
    from alignkit.reasoning.mathset import load_math_problems

    rows, source = load_math_problems(None if spec == "default" else spec)
    out = [Instruction(str(r.get("id", f"row-{i}")), r["prompt"], [], r.get("split"), i,
                       columns={k: v for k, v in r.items() if k not in ("prompt", "constraints")})
           for i, r in enumerate(rows, start=1)]
    return out, source


def _safety_scores(opts: EvalOptions, rows: list[dict[str, Any]], prompts: list[Any], texts: list[str],
                   cost_model: Any, judge_kind: str | None, judges: dict[str, Any]) -> dict[str, Any]:
    """Safety rates of one model's answers (and the benign answers' helpfulness when a judge is named);
    the judges load at the first model's answers and are kept in ``judges`` for the next ones."""
    from alignkit.evaluation import safety

    costs = cost_model(prompts, texts) if cost_model is not None else None
    complied = None
    if judge_kind in ("local", "http"):
        if "safety" not in judges:
            judges["safety"] = safety.load_compliance_judge(opts.safety_judge, seed=opts.seed,
                                                            batch_size=opts.scoring_batch_size)
        complied = safety.judged_compliance(judges["safety"], prompts, texts)
    scored = safety.safety_rates(rows, texts, costs, complied)
    if opts.helpfulness_judge:
        if "helpfulness" not in judges:
            from alignkit.scoring import load_judge

            judges["helpfulness"] = load_judge(opts.helpfulness_judge, seed=opts.seed, batch_size=opts.scoring_batch_size,
                                               **safety.JUDGE_SETTINGS)
        benign = [i for i, row in enumerate(rows) if row["kind"] == "benign"]
        scores: list[float | None] = [None] * len(rows)
        for i, s in zip(benign, judges["helpfulness"].score([prompts[i] for i in benign], [texts[i] for i in benign])):
            scores[i] = s.score
        scored["helpfulness"] = {**safety.helpfulness(rows, scores), "judge": opts.helpfulness_judge}
    return scored


def _safety_instructions(spec: str, split: str) -> tuple[list[Instruction], list[dict[str, Any]]]:
    """Safety prompts (the shipped set's ``split``, or a file with ``prompt`` and ``kind``) as
    constraint-free instructions; their rows ride along for :func:`alignkit.evaluation.safety.safety_rates`."""
    from alignkit.safety.dataset import load_safety_set

    rows = load_safety_set(None if spec == "default" else spec, split)
    out = [Instruction(str(r["id"]), r["prompt"], [], r.get("split"), i, reference=r.get("reference"),
                       columns={k: v for k, v in r.items() if k in ("kind", "category", "family")})
           for i, r in enumerate(rows, start=1)]
    return out, rows


def _ifeval_instructions(path: str) -> tuple[list[Instruction], list[Any]]:
    """The rows of an IFEval-format file as constraint-free instructions (checked by :mod:`.ifeval`)."""
    from alignkit.evaluation.ifeval import load_ifeval

    rows = load_ifeval(path)
    return [Instruction(r.key, r.prompt, [], None, r.row) for r in rows], rows


def _math_accuracy(texts: list[str], answers: list[Any]) -> dict[str, Any]:
    """Answer accuracy (k/n, 95 % Wilson interval), mean step-format score, and per-item details."""
    from alignkit.evaluation.stats import wilson_interval
    from alignkit.reasoning.verify import answers_match, extract_answer, format_score

    items = []
    for text, gold in zip(texts, answers):
        got = extract_answer(text)
        items.append({"answer": str(gold), "extracted": got, "correct": answers_match(got, gold),
                      "format": format_score(text)})
    n = len(items)
    k = sum(it["correct"] for it in items)
    lo, hi = wilson_interval(k, n)
    return {"correct": k, "n": n, "accuracy": k / n if n else None, "ci95": [lo, hi],
            "format": sum(it["format"] for it in items) / n if n else None, "items": items}


# ----------------------------------------------------------------------------------------- output
def results_table(results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """(headers, rows): one column per model, one row per metric."""
    models = results["models"]
    headers = ["metric"] + [m["name"] for m in models]
    rows: list[list[str]] = []

    def row(label: str, values: list[Any]) -> None:
        rows.append([label] + values)

    n = results["prompts"]["n"]
    if "math" in results:
        row(f"math accuracy ({n} problems, 95% Wilson interval)", [_math_cell(m.get("math")) for m in models])
        row("math step format (mean score)", [fmt(m.get("math", {}).get("format")) for m in models])
    if "ifeval" in results:
        from alignkit.evaluation.ifeval import table_rows

        rows += table_rows(models)
    if "safety" in results:
        from alignkit.evaluation import safety

        rows += safety.table_rows(models)
    if ("math" not in results and "ifeval" not in results and "safety" not in results) or any(m["gold"]["n_prompts"] for m in models):
        row(f"gold prompt-level strict ({n} prompts)", [fmt_pct(m["gold"]["prompt_level"]) for m in models])
        row("gold instruction-level strict", [fmt_pct(m["gold"]["instruction_level"]) for m in models])
    types = sorted({t for m in models for t in m["gold"]["per_type"]})
    for t in types:
        vals = []
        for m in models:
            pt = m["gold"]["per_type"].get(t)
            vals.append(f"{fmt_pct(pt['pass_rate'])} ({pt['passed']}/{pt['total']})" if pt else "–")
        row(f"  {t}", vals)
    if any("perplexity" in m for m in models):
        row("held-out perplexity", [fmt(m.get("perplexity", {}).get("perplexity")) for m in models])
    if any("kl" in m for m in models):
        row("KL from reference (per token)", [fmt(m.get("kl", {}).get("kl")) for m in models])
        row("KL from reference (per sequence)", [fmt(m.get("kl", {}).get("kl_seq")) for m in models])
    if any("reward" in m for m in models):
        row("mean reward", [fmt(m.get("reward", {}).get("mean")) for m in models])
    row("completion tokens (mean)", [fmt(m["completion_tokens"], 3) for m in models])
    row("hit max_new_tokens", [fmt_pct(m["truncated_rate"]) for m in models])
    return headers, rows


def _math_cell(acc: dict[str, Any] | None) -> str:
    if not acc:
        return "–"
    lo, hi = acc["ci95"]
    return f"{fmt_pct(acc['accuracy'])} ({acc['correct']}/{acc['n']}) [{fmt_pct(lo)}, {fmt_pct(hi)}]"


def _judge_counts(stats: dict[str, Any] | None) -> str:
    """``"; 3/8 replies unparsable, 2 forced"`` from a model judge's counters ("" for none)."""
    if not stats:
        return ""
    total = stats.get("samples", stats.get("votes"))
    out = ""
    if total:
        out += f"; {stats.get('unparsable', 0)}/{total} replies without a verdict"
    if stats.get("forced"):
        out += f", {stats['forced']} forced"
    return out


def _first_position(wr: dict[str, Any]) -> str:
    """The position-bias clause of the win-rate line; empty for results written before it was recorded."""
    rate = wr.get("first_position_rate")
    return "" if rate is None else f"first position picked {fmt_pct(rate)} of decisive verdicts; "


def _extra_lines(results: dict[str, Any]) -> list[str]:
    lines = []
    wr = results.get("win_rate")
    if wr:
        lines.append(f"win rate {wr['model_a']} vs {wr['model_b']}: {fmt_pct(wr['win_rate'])} "
                     f"(wins {wr['wins']}, losses {wr['losses']}, ties {wr['ties']} of which "
                     f"{wr['inconsistent']} position-inconsistent; {_first_position(wr)}"
                     f"n={wr['n']}; judge {wr['judge']}, "
                     f"both orders{_judge_counts(wr.get('judge_stats'))})")
    for rm in results.get("reward_models", []):
        lines.append(f"reward model {rm['reward_model']}: pairwise accuracy {fmt_pct(rm['accuracy'])} on "
                     f"{rm['pairs']} pairs (mean margin {fmt(rm['margin'])})")
    if "ifeval" in results:
        from alignkit.evaluation.ifeval import skip_lines

        lines += skip_lines(results["models"])
    lines += [f"note: {n}" for n in results.get("notes", [])]
    return lines


def results_markdown(results: dict[str, Any]) -> str:
    headers, rows = results_table(results)
    p = results["prompts"]
    s = results["settings"]
    decoding = "greedy decoding" if not s.get("temperature") else f"temperature {s['temperature']}"
    about = ("Math accuracy: the final answer (boxed, `Answer:`, `####`, else the last number) equals the "
             "reference; 95% Wilson interval in brackets." if "math" in results else
             "IFEval-format file checked with the if-verifiable checkers: strict = the raw answer, loose = "
             "also without its first/last line or markdown `*` (IFEval paper); k/n and 95% Wilson interval. "
             "Skipped instructions are left out of the counts." if "ifeval" in results else
             "Pass rates are strict (every constraint checked by code on the raw answer); prompt-level = all "
             "of a prompt's constraints pass.")
    parts = [
        "# alignkit eval",
        "",
        f"Prompts: `{p['file']}` (split `{p['split']}`, {p['n']} prompts); {decoding}, max_new_tokens "
        f"{s.get('max_new_tokens')}. {about}",
        "",
        markdown_table(headers, rows),
    ]
    extra = _extra_lines(results)
    if extra:
        parts += [""] + [f"- {x}" for x in extra]
    return "\n".join(parts) + "\n"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.")[:60] or "model"


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_results(results: dict[str, Any], output_dir: str | Path) -> dict[str, Path]:
    """Write ``results.json``, ``results.md`` and ``completions-N-NAME.jsonl`` files; returns their paths."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for i, m in enumerate(results["models"], start=1):
        comps = m.pop("_completions", None)
        if comps is None:
            continue
        p = files.write_jsonl(out / f"completions-{i}-{_slug(m['name'])}.jsonl", comps)
        m["completions_file"] = p.name
        paths[f"completions-{i}"] = p
    for name, text in (("results.json", json.dumps(_json_safe(results), indent=2, ensure_ascii=False) + "\n"),
                       ("results.md", results_markdown(results))):
        paths[name] = files.write_text(out / name, text)
    return paths


def print_results(results: dict[str, Any], file=None) -> None:
    from alignkit.evaluation.tables import print_table

    file = file or sys.stdout
    headers, rows = results_table(results)
    p = results["prompts"]
    print_table(headers, rows, title=f"alignkit eval: {Path(p['file']).name} split {p['split']}", file=file)
    for line in _extra_lines(results):
        print(line, file=file)
