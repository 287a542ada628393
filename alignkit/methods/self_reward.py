"""``alignkit self-reward``: the self-rewarding loop (after Yuan et al. 2024, arXiv 2401.10020).

One model answers, judges its own answers and learns from its judgements::

    M0 --(optional SFT on sft_data + EFT examples from eft_data)--> M_start
    for K in 1..iterations, starting from M = M_start:
        prompts     new prompts: few-shot prompting M with `few_shot` seed prompts (data=), cleaned,
                    de-duplicated and filtered (see alignkit.aifeedback.instructions); new_prompts=0
                    uses the seed prompts themselves
        candidates  `candidates` samples per prompt from M (temperature, top_p)
        scores      M as its own judge (judge=self; or another judge spec) scores each candidate
                    `judge_samples` times, averaged (unparsable samples are left out of the mean)
        pairs       chosen = highest score, rejected = lowest; ties, all-unparsable and identical
                    texts dropped
        model       one DPO run through the normal engine (every DPO key: loss, beta, ...) on the
                    pairs, starting from M with M as the reference -> M_{K}
        summary     pairs kept, drop counts, score histogram, judge parse rate, mean scores, DPO metrics

Directory layout (OUTPUT_DIR = ``output_dir``)::

    config.yaml            resolved SelfRewardConfig
    sft-data.jsonl, sft/   the SFT+EFT stage (only with sft_data or eft_data): data and engine run
    iter-K/prompts.jsonl   {"prompt"}                                     (prompt-only, SPEC 3)
    iter-K/candidates.jsonl {"prompt", "candidates": [...]}
    iter-K/scores.jsonl    {"prompt", "candidates", "scores", "samples", "raw"}
    iter-K/pairs.jsonl     {"prompt", "chosen", "rejected", "chosen_score", "rejected_score"} (preference)
    iter-K/model/          the DPO run directory (config.yaml, metrics.jsonl, final/, checkpoints/)
    iter-K/stages.json     fingerprints of the stages written so far (what resume may reuse)
    iter-K/summary.json    written last: the iteration is finished when it exists
    metrics.jsonl          one row per finished iteration ({"step": K, "pairs": ..., ...})
    summary.json           all iterations; final -> iter-N/model/final (a symlink)

Resume (``resume=true``): finished iterations (``summary.json`` present) are never redone; in the
unfinished one, a stage file is reused only if it exists (every file is written atomically) and its
fingerprint -- the settings it depends on plus the digest of its input file -- matches; the first stage
that does not match is redone together with everything after it. An interrupted DPO run continues from
its newest checkpoint. Without ``resume=true`` an existing run directory is an error.

LoRA across iterations (``lora.r > 0``): each iteration trains a fresh adapter on top of the previous
iteration's model with that adapter merged in (``alignkit.models.load_model`` merges an adapter
directory), so M_K's reference is exactly M_{K-1}. Each ``final/`` stores only the new adapter with its
base recorded as the previous ``final/``; loading it resolves the chain (M0 + merged adapters 1..K-1 +
adapter K). ``lora.merge_on_save=true`` stores full merged weights each iteration instead.

The loop runs in one process (generation, judging and the DPO update take turns on the device).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field

from alignkit.aifeedback import generation, io, judging
from alignkit.aifeedback.eft import build_eft_examples, eft_rows
from alignkit.aifeedback.instructions import prompt_text, synthesize_prompts
from alignkit.aifeedback.pairs import (
    as_chat,
    drop_counts,
    forced_rate,
    histogram,
    mean,
    parse_rate,
    select_pair,
)
from alignkit.config import ConfigError, SFTConfig, TrainConfig, dump_config
from alignkit.methods.dpo import DPOConfig

PROMPT_KINDS = ("prompt", "prompt_completion", "preference", "unpaired")


class SelfRewardConfig(DPOConfig):
    """Self-rewarding loop: the model writes prompts, samples answers, judges them itself and is trained with DPO on its own judgements, for `iterations` rounds."""

    iterations: int = Field(2, ge=1, description="self-rewarding iterations (each one DPO run)")
    candidates: int = Field(4, ge=2, description="responses sampled per prompt")
    judge: str = Field("self", description="judge spec: self (the current model), judge:PATH, "
                       "http(s)://HOST:PORT/v1, rm:PATH or FILE.py:FUNC (see alignkit.judges)")
    judge_samples: int = Field(3, ge=1, description="judge samples per response, averaged")
    judge_temperature: float = Field(0.7, ge=0.0, description="sampling temperature of the judge")
    judge_max_new_tokens: int = Field(256, ge=1, description="judge output length limit")
    judge_force_score: bool = Field(False, description="self/local judges: a sample without a 'Score: N' "
                                    "line gets the judge's most likely score after 'Score:' (small models "
                                    "rarely keep the format)")
    temperature: float = Field(0.7, ge=0.0, description="sampling temperature of the responses")
    top_p: float = Field(0.9, gt=0.0, le=1.0, description="nucleus sampling threshold of the responses")
    max_new_tokens: int = Field(256, ge=1, description="response length limit")
    new_prompts: int = Field(64, ge=0, description="new prompts generated per iteration; 0 uses the seed "
                             "prompts (data=) themselves")
    few_shot: int = Field(8, ge=1, description="seed prompts shown in each prompt-generation request")
    prompt_temperature: float = Field(1.0, ge=0.0, description="sampling temperature of prompt generation")
    prompt_max_new_tokens: int = Field(128, ge=1, description="length limit of a generated prompt")
    prompt_min_words: int = Field(3, ge=1, description="generated prompts with fewer words are dropped")
    prompt_max_words: int = Field(200, ge=1, description="generated prompts with more words are dropped")
    generation_batch_size: int = Field(16, ge=1, description="sequences per generation batch")
    sft_data: str | None = Field(None, description="seed instruction data for the optional SFT stage "
                                 "(prompt-completion, text or messages)")
    eft_data: str | None = Field(None, description="ranked data for EFT examples in the SFT stage: rows "
                                 "prompt, completion, score (0-5)[, justification]")
    sft_max_steps: int = Field(-1, description="optimizer steps of the SFT stage; -1: sft_epochs epochs")
    sft_epochs: float = Field(1.0, gt=0, description="epochs of the SFT stage")
    sft_lr: float | None = Field(None, gt=0, description="learning rate of the SFT stage (default: lr)")


class LoopStopped(RuntimeError):
    """The loop cannot go on (e.g. an iteration yielded no preference pairs); the message says why."""


@dataclass
class SelfRewardResult:
    output_dir: Path
    iterations: int  # finished iterations
    final_dir: Path | None
    summaries: list[dict] = field(default_factory=list)
    interrupted: bool = False


def _log(msg: str) -> None:
    print(f"[self-reward] {msg}", file=sys.stderr, flush=True)


def _load_judge(spec: str, **kwargs: Any) -> Any:
    """The default judge factory (``alignkit.judges.load_judge``); tests replace it with stubs."""
    return judging.load_pointwise(spec, **kwargs)


# ----------------------------------------------------------------------------- sub-configs


def _sub_config(cls: type[TrainConfig], cfg: SelfRewardConfig, **overrides: Any) -> TrainConfig:
    data = cfg.model_dump()
    return cls.model_validate({**{k: data[k] for k in cls.model_fields if k in data}, **overrides})


def dpo_config(cfg: SelfRewardConfig, model: str, pairs: Path, out: Path, resume: bool) -> DPOConfig:
    """The DPO run of one iteration: every TrainConfig/DPO key of ``cfg``, on ``pairs``, from ``model``."""
    return _sub_config(DPOConfig, cfg, model=str(model), data=str(pairs), output_dir=str(out), resume=resume)


def sft_config(cfg: SelfRewardConfig, data: Path, out: Path, resume: bool) -> SFTConfig:
    return _sub_config(SFTConfig, cfg, data=str(data), output_dir=str(out), resume=resume, eval_data=None,
                       max_steps=cfg.sft_max_steps, epochs=cfg.sft_epochs, lr=cfg.sft_lr or cfg.lr)


# ----------------------------------------------------------------------------- engine runs


class _Interrupted(Exception):
    pass


def _engine_run(method_cls: type, config: TrainConfig) -> Path:
    from alignkit.engine.trainer import train

    result = train(method_cls, config)
    if result.interrupted:
        raise _Interrupted
    return Path(result.final_dir)


def _has_checkpoints(run_dir: Path) -> bool:
    from alignkit.engine.checkpoint import list_checkpoints

    return bool(list_checkpoints(run_dir))


def _train_stage(name: str, method_cls: type, make_config, run_dir: Path, fp: str, state: _Stages) -> Path:
    """An engine run as a resumable stage: reused when finished with the same fingerprint, continued
    from its checkpoint when interrupted with the same fingerprint, else (re)started from scratch."""
    final = run_dir / "final"
    if state.valid(name, fp) and final.is_dir():
        return final
    resume = state.get(f"{name}_started") == fp and _has_checkpoints(run_dir)
    if not resume and run_dir.exists():
        shutil.rmtree(run_dir)
    state.mark(f"{name}_started", fp)
    _engine_run(method_cls, make_config(resume))
    state.mark(name, fp)
    return final


# ----------------------------------------------------------------------------- stage bookkeeping


class _Stages:
    """``stages.json``: stage name -> fingerprint of what the stage's file was made from."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.done: dict[str, Any] = io.read_json(path, {}) or {}
        self.redo = False  # once a stage is redone, every later stage is too

    def get(self, name: str) -> Any:
        return self.done.get(name)

    def valid(self, name: str, fp: str, *files: Path) -> bool:
        ok = not self.redo and self.done.get(name) == fp and all(f.exists() for f in files)
        if not ok:
            self.redo = True
        return ok

    def mark(self, name: str, fp: Any) -> None:
        self.done[name] = fp
        io.write_json(self.path, self.done)


# ----------------------------------------------------------------------------- inputs


def load_seed_prompts(path: str | None, skip_invalid: bool = False) -> list:
    if not path:
        raise ConfigError("self-reward needs seed prompts: set data=FILE (a file with a 'prompt' field)")
    from alignkit.data import load_examples

    loaded = load_examples(path, PROMPT_KINDS, skip_invalid)
    return [row["prompt"] for row in loaded.rows]


def build_sft_rows(cfg: SelfRewardConfig) -> list[dict]:
    """The SFT stage's training rows: ``sft_data`` (as given) plus EFT examples from ``eft_data``, in
    one file of ``sft_data``'s kind (EFT rows become ``messages`` rows next to language-modelling data)."""
    from alignkit.data import load_examples

    rows: list[dict] = []
    kind = "prompt_completion"
    if cfg.sft_data:
        loaded = load_examples(cfg.sft_data, ("lm", "prompt_completion"), cfg.skip_invalid)
        kind = loaded.kind
        rows = [dict(r) for r in loaded.rows]
    if cfg.eft_data:
        for ex in build_eft_examples(eft_rows(cfg.eft_data), cfg.chat_template):
            if kind == "prompt_completion":
                rows.append(ex)
            elif cfg.chat_template == "never":
                rows.append({"text": f"{ex['prompt']}\n{ex['completion']}"})
            else:
                rows.append({"messages": ex["prompt"] + ex["completion"]})
    return rows


# ----------------------------------------------------------------------------- one iteration


@dataclass
class _Model:
    """The iteration's current model, loaded on first use (a fully reused iteration loads nothing)."""

    name: str
    trust_remote_code: bool
    model: Any = None
    tokenizer: Any = None

    def get(self) -> tuple[Any, Any]:
        if self.model is None:
            self.model, self.tokenizer = generation.load_generator(self.name, trust_remote_code=self.trust_remote_code)
        return self.model, self.tokenizer

    def free(self) -> None:
        if self.model is not None:
            m, self.model = self.model, None
            generation.release(m)


def _generator(cfg: SelfRewardConfig, cur: _Model):
    """Prompt synthesis calls; a request that used up ``prompt_max_new_tokens`` was cut off: ``None``."""

    def gen(prompts: list, seed: int) -> list[str | None]:
        model, tok = cur.get()
        outs = generation.generate_texts(model, tok, prompts, max_new_tokens=cfg.prompt_max_new_tokens,
                                         temperature=cfg.prompt_temperature, top_p=cfg.top_p, seed=seed,
                                         batch_size=cfg.generation_batch_size, chat_template=cfg.chat_template)
        limit = cfg.prompt_max_new_tokens - 1
        return [None if len(tok(o, add_special_tokens=False)["input_ids"]) >= limit else o for o in outs]

    return gen


def run_iteration(cfg: SelfRewardConfig, k: int, out: Path, start_model: str, start_id: str, seeds: list,
                  judge_factory, log=_log) -> dict:
    """Run (or finish) iteration ``k`` from ``start_model`` (``start_id``: a fingerprint of how that
    model was made, so that files made from an earlier, different model at the same path are not reused);
    returns its summary (also written to ``iter-k/summary.json``). Raises :class:`LoopStopped` when it
    yields too few pairs."""
    from alignkit.methods.dpo import DPO

    it = out / f"iter-{k}"
    it.mkdir(parents=True, exist_ok=True)
    state = _Stages(it / "stages.json")
    cur = _Model(str(start_model), cfg.trust_remote_code)
    base_seed = cfg.seed + 1000 * k
    t0 = time.time()
    keys = cfg.model_dump()

    def settings(*names: str) -> dict:
        return {n: keys[n] for n in names}

    try:
        # -- prompts
        f_prompts = it / "prompts.jsonl"
        fp = io.fingerprint("prompts", start_id, seeds, settings(
            "new_prompts", "few_shot", "prompt_temperature", "prompt_max_new_tokens", "prompt_min_words",
            "prompt_max_words", "top_p", "seed", "chat_template"))
        if state.valid("prompts", fp, f_prompts):
            prompt_rows = io.read_jsonl(f_prompts)
            prompt_stats = state.get("prompt_stats") or {}
            log(f"iteration {k}: reusing {len(prompt_rows)} prompts")
        else:
            if cfg.new_prompts == 0:
                prompts = list(seeds)
                prompt_stats = {"requested": 0, "generated": 0, "kept": len(prompts), "source": "seed prompts"}
            else:
                syn = synthesize_prompts(_generator(cfg, cur), [prompt_text(s) for s in seeds], cfg.new_prompts,
                                         few_shot=cfg.few_shot, seed=base_seed + 1, min_words=cfg.prompt_min_words,
                                         max_words=cfg.prompt_max_words)
                prompts = syn.prompts
                prompt_stats = syn.as_dict()
            prompt_rows = [{"prompt": p} for p in prompts]
            io.write_jsonl(f_prompts, prompt_rows)
            state.done["prompt_stats"] = prompt_stats
            state.mark("prompts", fp)
            log(f"iteration {k}: {len(prompt_rows)} prompts {prompt_stats.get('dropped', '')}")
        prompts = [r["prompt"] for r in prompt_rows]
        if not prompts:
            raise LoopStopped(f"iteration {k} produced no usable prompts ({prompt_stats}); try more seed prompts, "
                              "a higher prompt_temperature, or new_prompts=0 to train on the seed prompts")

        # -- candidates
        f_cands = it / "candidates.jsonl"
        fp = io.fingerprint("candidates", start_id, io.file_digest(f_prompts), settings(
            "candidates", "temperature", "top_p", "max_new_tokens", "seed", "chat_template"))
        if state.valid("candidates", fp, f_cands):
            cand_rows = io.read_jsonl(f_cands)
            log(f"iteration {k}: reusing candidates")
        else:
            model, tok = cur.get()
            cands = generation.sample_candidates(
                model, tok, prompts, cfg.candidates, max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                top_p=cfg.top_p, seed=base_seed + 2, batch_size=cfg.generation_batch_size,
                chat_template=cfg.chat_template)
            cand_rows = [{"prompt": p, "candidates": c} for p, c in zip(prompts, cands)]
            io.write_jsonl(f_cands, cand_rows)
            state.mark("candidates", fp)
            log(f"iteration {k}: sampled {cfg.candidates} candidates for each of {len(prompts)} prompts")

        # -- scores
        f_scores = it / "scores.jsonl"
        fp = io.fingerprint("scores", start_id, io.file_digest(f_cands), settings(
            "judge", "judge_samples", "judge_temperature", "judge_max_new_tokens", "judge_force_score", "seed",
            "chat_template"))
        if state.valid("scores", fp, f_scores):
            score_rows = io.read_jsonl(f_scores)
            log(f"iteration {k}: reusing scores")
        else:
            policy, tok = cur.get() if _is_self(cfg.judge) else (None, None)
            judge = judge_factory(cfg.judge, policy=policy, tokenizer=tok, judge_samples=cfg.judge_samples,
                                  temperature=cfg.judge_temperature, max_new_tokens=cfg.judge_max_new_tokens,
                                  seed=base_seed + 3, force_score=cfg.judge_force_score)
            judged = judging.judge_candidates(judge, [r["prompt"] for r in cand_rows],
                                              [r["candidates"] for r in cand_rows])
            score_rows = [{"prompt": r["prompt"], "candidates": r["candidates"],
                           "scores": [x["score"] for x in j], "samples": [x["samples"] for x in j],
                           "raw": [x["raw"] for x in j]} for r, j in zip(cand_rows, judged)]
            io.write_jsonl(f_scores, score_rows)
            state.mark("scores", fp)
            log(f"iteration {k}: judged {sum(len(r['candidates']) for r in cand_rows)} candidates")
        cur.free()

        # -- pairs
        f_pairs = it / "pairs.jsonl"
        fp = io.fingerprint("pairs", io.file_digest(f_scores), settings("chat_template"))
        pairs, drops = [], []
        for r in score_rows:
            pick = select_pair(r["candidates"], r["scores"])
            if isinstance(pick, str):
                drops.append(pick)
                continue
            i, j = pick
            prompt, chosen = as_chat(r["prompt"], r["candidates"][i], cfg.chat_template)
            _, rejected = as_chat(r["prompt"], r["candidates"][j], cfg.chat_template)
            pairs.append({"prompt": prompt, "chosen": chosen, "rejected": rejected,
                          "chosen_score": r["scores"][i], "rejected_score": r["scores"][j]})
        if not state.valid("pairs", fp, f_pairs):
            io.write_jsonl(f_pairs, pairs)
            state.mark("pairs", fp)
        dropped = drop_counts(drops)
        all_scores = [s for r in score_rows for s in r["scores"]]
        samples = [s for r in score_rows for s in r["samples"]]
        raws = [x for r in score_rows for x in r["raw"]]
        summary: dict[str, Any] = {
            "iteration": k,
            "start_model": str(start_model),
            "prompts": {**prompt_stats, "used": len(prompts)},
            "candidates": sum(len(r["candidates"]) for r in score_rows),
            "empty_candidates": sum(1 for r in score_rows for c in r["candidates"] if not c.strip()),
            "judge": cfg.judge,
            "judge_parse_rate": parse_rate(samples, raws),
            "judge_forced_rate": forced_rate(samples, raws),
            "score_histogram": histogram(all_scores),
            "mean_score": mean(all_scores),
            "mean_chosen_score": mean([p["chosen_score"] for p in pairs]),
            "mean_rejected_score": mean([p["rejected_score"] for p in pairs]),
            "pairs": {"kept": len(pairs), "dropped": dropped},
        }
        step = cfg.batch_size * cfg.grad_accum
        if len(pairs) < step:
            why = ("no preference pairs" if not pairs else
                   f"only {len(pairs)} preference pair(s), fewer than one optimizer step needs "
                   f"(batch_size {cfg.batch_size} x grad_accum {cfg.grad_accum})")
            raise LoopStopped(
                f"iteration {k} yielded {why}: of {len(score_rows)} prompts, {dropped['tie']} had all candidates "
                f"scored equally, {dropped['unparsable']} had fewer than two parsable scores and "
                f"{dropped['identical']} had identical best and worst answers (judge parse rate "
                f"{_pct(summary['judge_parse_rate'])}). Its files are in {it}. Try more prompts (new_prompts=), "
                "more candidates, judge_samples, or a smaller batch_size; rerun with resume=true to keep the "
                f"finished iterations. The last trained model is {start_model}.")

        # -- DPO update
        run_dir = it / "model"
        fp = io.fingerprint("model", start_id, io.file_digest(f_pairs),
                            {k2: v for k2, v in keys.items() if k2 in DPOConfig.model_fields
                             and k2 not in ("output_dir", "resume", "data", "model")})
        log(f"iteration {k}: DPO on {len(pairs)} pairs from {start_model}")
        final = _train_stage("model", DPO, lambda resume: dpo_config(cfg, start_model, f_pairs, run_dir, resume),
                             run_dir, fp, state)
        summary["model"] = str(final.relative_to(out))
        summary["model_id"] = fp
        summary["dpo"] = _last_metrics(run_dir)
        summary["seconds"] = round(time.time() - t0, 1)
        io.write_json(it / "summary.json", summary)
        return summary
    finally:
        cur.free()


def _is_self(spec: str) -> bool:
    from alignkit.judges import parse_judge_spec

    return parse_judge_spec(spec).kind == "self"


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.0f}%"


def _last_metrics(run_dir: Path) -> dict:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return {}
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not rows:
        return {}
    keep = ("step", "loss", "rewards/margins", "rewards/accuracies", "rewards/chosen", "rewards/rejected")
    return {k: rows[-1][k] for k in keep if k in rows[-1]}


# ----------------------------------------------------------------------------- the loop


def _link_final(out: Path, target: Path) -> None:
    link = out / "final"
    tmp = out / f".final-link-{os.getpid()}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    try:
        os.symlink(os.path.relpath(target, out), tmp)
        if link.is_dir() and not link.is_symlink():
            shutil.rmtree(link)
        os.replace(tmp, link)
    except OSError:  # no symlinks here: copy
        if link.is_symlink() or link.is_file():
            link.unlink()
        elif link.exists():
            shutil.rmtree(link)
        shutil.copytree(target, link)


def _metric_row(s: dict) -> dict:
    row = {"step": s["iteration"], "pairs": s["pairs"]["kept"], "prompts": s["prompts"]["used"],
           "judge_parse_rate": s["judge_parse_rate"], "judge_forced_rate": s.get("judge_forced_rate"),
           "mean_score": s["mean_score"],
           "mean_chosen_score": s["mean_chosen_score"], "mean_rejected_score": s["mean_rejected_score"]}
    for k, v in s.get("dpo", {}).items():
        if k != "step":
            row[f"dpo/{k}"] = v
    return {k: v for k, v in row.items() if v is not None and not (isinstance(v, float) and math.isnan(v))}


def run_self_reward(cfg: SelfRewardConfig, *, judge_factory=None, log=_log) -> SelfRewardResult:
    """The whole loop; see the module docstring. ``judge_factory(spec, policy=, tokenizer=,
    judge_samples=, temperature=, max_new_tokens=, seed=)`` returns a pointwise judge (default
    ``alignkit.judges.load_judge``)."""
    factory = judge_factory or _load_judge
    out = Path(cfg.output_dir)
    if not isinstance(cfg.resume, bool):
        raise ConfigError("self-reward takes resume=true or resume=false (it resumes at its last finished "
                          "iteration; a checkpoint path is not used)")
    earlier = (out / "config.yaml").is_file() or any(out.glob("iter-*"))
    if earlier and not cfg.resume:
        raise ConfigError(f"{out} already holds a self-reward run: pass resume=true to continue it, or choose "
                          "another output_dir")
    # inputs first, so that a bad file or judge spec stops the run before any model is loaded
    seeds = load_seed_prompts(cfg.data, cfg.skip_invalid)
    _is_self(cfg.judge)
    sft_rows = build_sft_rows(cfg) if (cfg.sft_data or cfg.eft_data) else None
    if cfg.eval_data:
        from alignkit.data import load_examples

        load_examples(cfg.eval_data, ("preference",), cfg.skip_invalid)
    out.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, out / "config.yaml")
    top = _Stages(out / "stages.json")

    current: str = cfg.model
    current_id = f"model:{cfg.model}"
    summaries: list[dict] = []
    try:
        if sft_rows is not None:
            from alignkit.methods.sft import SFT

            data = out / "sft-data.jsonl"
            fp_data = io.fingerprint("sft-data", sft_rows)
            if not top.valid("sft-data", fp_data, data):
                io.write_jsonl(data, sft_rows)
                top.mark("sft-data", fp_data)
            sft_keys = {k: v for k, v in cfg.model_dump().items()
                        if k in SFTConfig.model_fields and k not in ("output_dir", "resume", "data", "eval_data")}
            fp = io.fingerprint("sft", fp_data, sft_keys, cfg.sft_max_steps, cfg.sft_epochs, cfg.sft_lr)
            if top.get("sft") not in (None, fp) and any(out.glob("iter-*/summary.json")):
                raise ConfigError(f"the SFT stage's settings or data changed since {out} ran its iterations; "
                                  "use a new output_dir")
            log(f"SFT stage: {len(sft_rows)} examples (seed instructions + EFT) on {cfg.model}")
            final = _train_stage("sft", SFT, lambda resume: sft_config(cfg, data, out / "sft", resume),
                                 out / "sft", fp, top)
            current, current_id = str(final), f"sft:{fp}"

        for k in range(1, cfg.iterations + 1):
            done = io.read_json(out / f"iter-{k}" / "summary.json")
            if done is not None:
                log(f"iteration {k}: finished earlier, kept")
            else:
                done = run_iteration(cfg, k, out, current, current_id, seeds, factory, log)
                log(f"iteration {k}: {done['pairs']['kept']} pairs, judge parse rate "
                    f"{_pct(done['judge_parse_rate'])}, mean score {_fmt(done['mean_score'])}; model {done['model']}")
            summaries.append(done)
            current, current_id = str(out / done["model"]), done["model_id"]
            io.write_jsonl(out / "metrics.jsonl", [_metric_row(s) for s in summaries])
    except _Interrupted:
        log(f"interrupted; continue with resume=true (output_dir={out})")
        return SelfRewardResult(out, len(summaries), None, summaries, interrupted=True)
    final = Path(current)
    _link_final(out, final)
    io.write_json(out / "summary.json", {"iterations": summaries, "final": str(final.relative_to(out))})
    return SelfRewardResult(out, len(summaries), out / "final", summaries)


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.2f}"


class SelfReward:
    """Registry entry for ``alignkit self-reward``: a loop over several engine runs, so the command line
    calls :meth:`run_loop` instead of the engine's ``train``."""

    name = "self-reward"
    config_cls = SelfRewardConfig

    @staticmethod
    def run_loop(config: SelfRewardConfig) -> int:
        """Run the loop from the command line; returns the exit code (0 done, 1 stopped early with a
        message, 2 user error, 3 diverged, 130 interrupted)."""
        from alignkit.data import DataError
        from alignkit.engine.checkpoint import ResumeError
        from alignkit.engine.trainer import TrainingDiverged
        from alignkit.models import ModelNotFoundError

        try:
            result = run_self_reward(config)
        except (ConfigError, DataError, ResumeError, ModelNotFoundError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        except TrainingDiverged as e:
            print(f"error: {e}", file=sys.stderr)
            return 3
        except LoopStopped as e:
            print(f"stopped: {e}", file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print(f"interrupted; continue with resume=true (output_dir={config.output_dir})", file=sys.stderr)
            return 130
        if result.interrupted:
            return 130
        print(f"done: {result.iterations} self-rewarding iteration(s); model in {result.final_dir}; "
              f"per-iteration files in {result.output_dir}/iter-K/, metrics in {result.output_dir / 'metrics.jsonl'}")
        return 0
