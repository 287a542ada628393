"""The demo pipeline: evaluate, build preference pairs from the model's own samples, train, evaluate again.

Stages (each prints a stage line, shows a progress bar on a terminal and logs progress lines when piped):

1. **Evaluate the base model** on held-out prompts: the ``test`` split of the shipped instruction set
   (:data:`alignkit.evaluation.DEFAULT_INSTRUCTIONS`), greedy decoding, strict gold pass rates
   (prompt-level and instruction-level), exactly what ``alignkit eval`` reports.
2. **Build preference pairs from the model's own samples** on the ``train`` split prompts: ``candidates``
   samples per prompt (``temperature``), each scored with the verifiable reward
   :func:`alignkit.evaluation.constraints.constraint_reward` (the fraction of the prompt's constraints
   met). Chosen = a best-scoring sample, rejected = a worst-scoring one; a prompt whose samples all
   score the same gives no pair (a tie carries no preference). Ties *within* the best (worst) group
   are broken towards a sample that ended on its own (was cut off by ``max_new_tokens``), then by
   sampling order; empty samples are never used. With ``rounds > 1`` the prompts left without a pair
   are sampled again and their pools grow. Train and test prompts are checked to be disjoint.
3. **Train** with LoRA on those pairs: DPO (``loss=sigmoid``) by default, or IFT on the chosen answers
   (``method="ift"``), or plain SFT on the chosen answers (``method="sft"``: IFT with lambda = 0 and
   gamma = 0, which is exactly SFT, so the three differ only in the objective), through the same engine as ``alignkit dpo`` / ``alignkit ift``; the output
   directory is an ordinary run directory (``config.yaml``, ``metrics.jsonl``, ``final/``, ...).
4. **Evaluate the trained model** on the same held-out prompts with the same settings.
5. **Report**: a before/after table, ``results.json`` / ``results.md`` / ``completions-*.jsonl``
   (the ``alignkit eval`` files), ``report.html`` (training curves and the eval table) and
   ``demo.json`` (settings, pair statistics, figures and wall/CPU time per stage).

Nothing here is tuned on the test prompts' answers: the test split is only generated greedily and
scored, before and after.
"""

from __future__ import annotations

import gc
import json
import math
import os
import platform
import shutil
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, TextIO

__all__ = ["FULL", "QUICK", "DemoError", "DemoSettings", "build_pairs", "choose_pair", "run_demo", "spread"]

MARKER = ".alignkit-demo"  # marks a directory the demo made (and may therefore clear on the next run)
METHODS = ("dpo", "ift", "sft")


class DemoError(RuntimeError):
    """A problem the user can fix (settings, output directory, no preference pairs)."""


@dataclass
class DemoSettings:
    model: str = "smollm2-135m"
    output_dir: str = "runs/demo"
    method: str = "dpo"
    quick: bool = False
    threads: int | None = None  # torch intra-op threads; None: torch's default
    seed: int = 0
    prompts: str | None = None  # instruction file with train and test splits; None: the shipped set
    # evaluation (held-out test split, greedy)
    eval_prompts: int = 32  # 0: all test prompts
    eval_max_new_tokens: int = 160
    # pair building (train split, sampled)
    train_prompts: int = 0  # 0: all train prompts
    candidates: int = 8
    temperature: float = 0.9
    top_p: float = 1.0
    sample_max_new_tokens: int = 160
    rounds: int = 1
    # training
    steps: int = 15
    batch_size: int = 4
    lr: float = 2e-4
    beta: float = 0.1
    lora_r: int = 16
    lora_alpha: float = 32.0
    gen_batch_size: int = 64  # sequences generated together (sampling; evaluation uses at most 16)

    def check(self) -> None:
        if self.method not in METHODS:
            raise DemoError(f"--method must be one of {', '.join(METHODS)}, got {self.method!r}")
        for name in ("eval_max_new_tokens", "candidates", "sample_max_new_tokens", "rounds", "steps",
                     "batch_size", "lora_r", "gen_batch_size"):
            if getattr(self, name) < 1:
                raise DemoError(f"{name.replace('_', '-')} must be at least 1")
        if self.candidates < 2:
            raise DemoError("--candidates must be at least 2 (a pair needs two samples)")
        for name in ("eval_prompts", "train_prompts"):
            if getattr(self, name) < 0:
                raise DemoError(f"{name.replace('_', '-')} must be 0 (all) or more")
        if self.threads is not None and self.threads < 1:
            raise DemoError("--threads must be at least 1")
        if not self.temperature > 0:
            raise DemoError("--temperature must be > 0 (pairs need varied samples)")
        if not 0 < self.top_p <= 1:
            raise DemoError("--top-p must be in (0, 1]")
        if not (self.lr > 0 and self.beta > 0):
            raise DemoError("--lr and --beta must be > 0")


# Presets: the full demo (about 15 minutes on 2 idle CPU cores) and --quick (about 2 minutes).
FULL: dict[str, Any] = {f.name: f.default for f in fields(DemoSettings)
                        if f.name in ("eval_prompts", "eval_max_new_tokens", "train_prompts", "candidates",
                                      "temperature", "sample_max_new_tokens", "rounds", "steps",
                                      "batch_size", "lr", "beta")}
QUICK: dict[str, Any] = {**FULL, "eval_prompts": 16, "eval_max_new_tokens": 96, "train_prompts": 16,
                         "candidates": 4, "sample_max_new_tokens": 96, "steps": 6}


def settings_for(quick: bool = False, **given: Any) -> DemoSettings:
    """The preset (full or quick) with every non-None value of ``given`` on top."""
    values = dict(QUICK if quick else FULL)
    values.update({k: v for k, v in given.items() if v is not None})
    return DemoSettings(quick=quick, **values)


# ----------------------------------------------------------------------------------- small helpers
def spread(items: list, n: int) -> list:
    """``n`` items evenly spread over ``items`` (all of them when ``n`` is 0 or too large), in order."""
    if n <= 0 or n >= len(items):
        return list(items)
    return [items[(i * len(items)) // n] for i in range(n)]


def choose_pair(rewards: list[float], truncated: list[bool], texts: list[str],
                exact: list[bool] | None = None) -> tuple[int, int] | None:
    """(chosen, rejected) indices into the candidates, or None when they all score the same.

    Chosen: a highest-reward candidate, preferring one that ended on its own (not truncated);
    rejected: a lowest-reward one, preferring a truncated one; then the earliest. Empty (blank)
    candidates take no part, nor those whose text does not read back to the sampled tokens
    (``exact[i]`` False).
    """
    usable = [i for i, t in enumerate(texts) if t.strip() and (exact is None or exact[i])]
    if not usable:
        return None
    best = max(rewards[i] for i in usable)
    worst = min(rewards[i] for i in usable)
    if best == worst:
        return None
    chosen = min((i for i in usable if rewards[i] == best), key=lambda i: (bool(truncated[i]), i))
    rejected = min((i for i in usable if rewards[i] == worst), key=lambda i: (not truncated[i], i))
    return chosen, rejected


class _Say:
    """Stage lines on ``out`` (flushed at once, so piped logs stay in order with the progress lines)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out

    def __call__(self, msg: str = "") -> None:
        print(msg, file=self.out, flush=True)


class _Progress:
    """A tqdm bar on a terminal (stderr); without one, a line on ``say`` every ``every`` seconds."""

    def __init__(self, say: _Say, total: int, desc: str, unit: str, every: float = 20.0) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, desc=f"    {desc}", unit=unit, leave=False, disable=None,
                        file=sys.stderr, dynamic_ncols=True)
        self.say, self.total, self.desc, self.unit, self.every = say, total, desc, unit, every
        self.done = 0
        self.t0 = self.last = time.perf_counter()

    def update(self, n: int) -> None:
        self.bar.update(n)
        self.done += n
        now = time.perf_counter()
        if self.bar.disable and (now - self.last >= self.every or self.done >= self.total):
            self.last = now
            self.say(f"    {self.desc}: {self.done}/{self.total} {self.unit}s ({now - self.t0:.0f} s)")

    def close(self) -> None:
        self.bar.close()


def _pair_of(pool: dict[str, list]) -> tuple[int, int] | None:
    return choose_pair(pool["rewards"], pool["truncated"], pool["texts"], pool["exact"])


def reads_back(tokenizer: Any, asked: Any, text: str, completion_ids: list[int], truncated: bool) -> bool:
    """Whether a preference row holding ``(asked, text)`` tokenises to the sampled prompt and completion
    ids (a truncated answer gets the end-of-turn token a row always ends with). False for the rare
    sample whose decoded text re-tokenises differently (a non-canonical token split)."""
    from alignkit.data.render import conversational_row, render_prompt
    from alignkit.data.tokenize import tokenize_completion

    prompt, completion = conversational_row(asked, text)
    try:
        p_ids, c_ids = tokenize_completion(tokenizer, prompt, completion)
    except ValueError:  # empty after tokenisation, or a template that cannot split it
        return False
    want = list(completion_ids) + ([tokenizer.eos_token_id] if truncated else [])
    return p_ids == render_prompt(tokenizer, asked).ids and c_ids == want


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")


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
                    max_new_tokens: int, batch_size: int, say: _Say, desc: str) -> dict[str, Any]:
    """Greedy answers to ``instructions`` and their strict pass rates, as one model entry of the
    ``alignkit eval`` results (:func:`alignkit.evaluation.runner.evaluate_models`)."""
    from alignkit.evaluation.instructions import score_responses
    from alignkit.evaluation.metrics import generate_with_ids

    t0 = time.perf_counter()
    progress = _Progress(say, len(instructions), desc, "prompt")
    gens = generate_with_ids(model, tokenizer, [ins.prompt for ins in instructions],
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
        "completion_tokens": _mean(lengths),
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


def build_pairs(model: Any, tokenizer: Any, instructions: list, *, candidates: int, temperature: float,
                top_p: float, max_new_tokens: int, rounds: int, seed: int, gen_batch_size: int,
                say: _Say | None = None) -> tuple[list[dict], list[dict], dict[str, Any]]:
    """Sample ``candidates`` answers per prompt, score them with the constraint reward and pair the best
    with the worst (see :func:`choose_pair`). Returns ``(pairs, samples, stats)``: ``pairs`` are
    preference rows (``prompt``, ``chosen``, ``rejected`` and bookkeeping fields), ``samples`` one row
    per prompt with every candidate and its reward."""
    from alignkit.data.render import conversational_row, request_prompt
    from alignkit.evaluation.constraints import constraint_reward
    from alignkit.models import encode_prompt, sample_completions

    say = say or _Say(sys.stderr)
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    # sampled as a user turn; the pairs are written in the same (conversational) form, so that DPO
    # trains on the tokens that were sampled
    asked = {ins.id: request_prompt(tokenizer, ins.prompt) for ins in instructions}
    encoded = {k: encode_prompt(tokenizer, p) for k, p in asked.items()}
    pools: dict[str, dict[str, list]] = {ins.id: {"texts": [], "rewards": [], "truncated": [], "ids": [],
                                                  "exact": []} for ins in instructions}
    per_batch = max(1, gen_batch_size // candidates)
    pending = list(instructions)
    rounds_run = 0
    t0 = time.perf_counter()
    for r in range(rounds):
        if not pending:
            break
        rounds_run += 1
        label = f"round {r + 1}/{rounds}: sampling" if rounds > 1 else "sampling"
        progress = _Progress(say, len(pending) * candidates, label, "sample")
        for start in range(0, len(pending), per_batch):
            chunk = pending[start:start + per_batch]
            rollout = sample_completions(model, [encoded[ins.id] for ins in chunk], pad_id=pad, eos_id=eos,
                                         max_new_tokens=max_new_tokens, temperature=temperature,
                                         top_p=top_p, num_generations=candidates,
                                         generator_seed=seed + 100_003 * r + start)
            texts = [tokenizer.decode(ids, skip_special_tokens=True) for ids in rollout.completion_ids]
            cons = [ins.constraints for ins in chunk for _ in range(candidates)]
            rewards = constraint_reward([ins.prompt for ins in chunk for _ in range(candidates)], texts,
                                        constraints=cons)
            for j, ins in enumerate(chunk):
                pool = pools[ins.id]
                sl = slice(j * candidates, (j + 1) * candidates)
                pool["texts"] += texts[sl]
                pool["rewards"] += [float(x) for x in rewards[sl]]
                pool["truncated"] += [bool(x) for x in rollout.truncated[sl].tolist()]
                pool["ids"] += rollout.completion_ids[sl]
                pool["exact"] += [reads_back(tokenizer, asked[ins.id], t, ids, bool(tr)) for t, ids, tr in
                                  zip(texts[sl], rollout.completion_ids[sl], rollout.truncated[sl].tolist())]
            progress.update(len(texts))
        progress.close()
        pending = [ins for ins in pending if _pair_of(pools[ins.id]) is None]

    pairs: list[dict] = []
    samples: list[dict] = []
    all_pass = all_fail = other_ties = 0
    for ins in instructions:
        pool = pools[ins.id]
        picked = _pair_of(pool)
        samples.append({
            "id": ins.id, "prompt": ins.prompt, "constraints": ins.constraints, "prompt_ids": encoded[ins.id],
            "candidates": [{"text": t, "reward": rw, "truncated": tr, "ids": ids, "exact": ex}
                           for t, rw, tr, ids, ex in zip(pool["texts"], pool["rewards"], pool["truncated"],
                                                         pool["ids"], pool["exact"])],
            "chosen": picked[0] if picked else None, "rejected": picked[1] if picked else None,
        })
        if picked is None:
            rewards = pool["rewards"]
            if rewards and min(rewards) == 1.0:
                all_pass += 1
            elif rewards and max(rewards) == 0.0:
                all_fail += 1
            else:
                other_ties += 1
            continue
        c, rj = picked
        prompt, chosen = conversational_row(asked[ins.id], pool["texts"][c])
        _, rejected = conversational_row(asked[ins.id], pool["texts"][rj])
        pairs.append({"prompt": prompt, "chosen": chosen, "rejected": rejected,
                      "id": ins.id, "chosen_reward": pool["rewards"][c], "rejected_reward": pool["rewards"][rj]})
    all_rewards = [x for pool in pools.values() for x in pool["rewards"]]
    stats = {
        "prompts": len(instructions),
        "candidates_per_prompt": candidates,
        "rounds_run": rounds_run,
        "samples": len(all_rewards),
        "mean_reward": _mean(all_rewards),
        "sample_pass_rate": _mean([float(x == 1.0) for x in all_rewards]),
        "truncated_rate": _mean([float(t) for pool in pools.values() for t in pool["truncated"]]),
        "not_read_back": sum(not e for pool in pools.values() for e in pool["exact"]),
        "pairs": len(pairs),
        "no_pair_all_pass": all_pass,
        "no_pair_all_fail": all_fail,
        "no_pair_other_tie": other_ties,
        "mean_margin": _mean([p["chosen_reward"] - p["rejected_reward"] for p in pairs]),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    return pairs, samples, stats


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


class _Clock:
    """Wall and CPU time per stage (CPU time of this process, all its threads)."""

    def __init__(self) -> None:
        self.stages: dict[str, dict[str, float]] = {}
        self.t0, self.c0 = time.perf_counter(), time.process_time()
        self.t, self.c = self.t0, self.c0

    def start(self) -> None:
        self.t, self.c = time.perf_counter(), time.process_time()

    def stop(self, name: str) -> float:
        self.stages[name] = {"wall_s": round(time.perf_counter() - self.t, 1),
                             "cpu_s": round(time.process_time() - self.c, 1)}
        return self.stages[name]["wall_s"]

    def total(self) -> dict[str, dict[str, float]]:
        return {**self.stages, "total": {"wall_s": round(time.perf_counter() - self.t0, 1),
                                         "cpu_s": round(time.process_time() - self.c0, 1)}}


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
    say = _Say(out)
    clock = _Clock()
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
    prompt_tokens = max(len(models.encode_prompt(tok, request_prompt(tok, i.prompt))) for i in train_ins)
    del model
    gc.collect()
    _write_jsonl(out_dir / "samples.jsonl", samples)
    _write_jsonl(out_dir / "pairs.jsonl", pairs)
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
