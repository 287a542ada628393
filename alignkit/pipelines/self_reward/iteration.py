"""One iteration of the loop: prompts -> candidates -> scores -> pairs -> DPO, each stage resumable."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from alignkit import files
from alignkit.aifeedback import judging
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
from alignkit.generation import texts as generation
from alignkit.methods.dpo import DPOConfig
from alignkit.pipelines.self_reward.config import LoopStopped, SelfRewardConfig, dpo_config
from alignkit.pipelines.self_reward.stages import StageModel, Stages, prompt_generator, train_stage


def _log(msg: str) -> None:
    print(f"[self-reward] {msg}", file=sys.stderr, flush=True)


def run_iteration(cfg: SelfRewardConfig, k: int, out: Path, start_model: str, start_id: str, seeds: list,
                  judge_factory, log=_log) -> dict:
    """Run (or finish) iteration ``k`` from ``start_model`` (``start_id``: a fingerprint of how that
    model was made, so that files made from an earlier, different model at the same path are not reused);
    returns its summary (also written to ``iter-k/summary.json``). Raises :class:`LoopStopped` when it
    yields too few pairs."""
    from alignkit.methods.dpo import DPO

    it = out / f"iter-{k}"
    it.mkdir(parents=True, exist_ok=True)
    state = Stages(it / "stages.json")
    cur = StageModel(str(start_model), cfg.trust_remote_code)
    base_seed = cfg.seed + 1000 * k
    t0 = time.time()
    keys = cfg.model_dump()

    def settings(*names: str) -> dict:
        return {n: keys[n] for n in names}

    try:
        # -- prompts
        f_prompts = it / "prompts.jsonl"
        fp = files.fingerprint("prompts", start_id, seeds, settings(
            "new_prompts", "few_shot", "prompt_temperature", "prompt_max_new_tokens", "prompt_min_words",
            "prompt_max_words", "top_p", "seed", "chat_template"))
        if state.valid("prompts", fp, f_prompts):
            prompt_rows = files.read_jsonl(f_prompts)
            prompt_stats = state.get("prompt_stats") or {}
            log(f"iteration {k}: reusing {len(prompt_rows)} prompts")
        else:
            if cfg.new_prompts == 0:
                prompts = list(seeds)
                prompt_stats = {"requested": 0, "generated": 0, "kept": len(prompts), "source": "seed prompts"}
            else:
                syn = synthesize_prompts(prompt_generator(cfg, cur), [prompt_text(s) for s in seeds], cfg.new_prompts,
                                         few_shot=cfg.few_shot, seed=base_seed + 1, min_words=cfg.prompt_min_words,
                                         max_words=cfg.prompt_max_words)
                prompts = syn.prompts
                prompt_stats = syn.as_dict()
            prompt_rows = [{"prompt": p} for p in prompts]
            files.write_jsonl(f_prompts, prompt_rows)
            state.done["prompt_stats"] = prompt_stats
            state.mark("prompts", fp)
            log(f"iteration {k}: {len(prompt_rows)} prompts {prompt_stats.get('dropped', '')}")
        prompts = [r["prompt"] for r in prompt_rows]
        if not prompts:
            raise LoopStopped(f"iteration {k} produced no usable prompts ({prompt_stats}); try more seed prompts, "
                              "a higher prompt_temperature, or new_prompts=0 to train on the seed prompts")

        # -- candidates
        f_cands = it / "candidates.jsonl"
        fp = files.fingerprint("candidates", start_id, files.file_digest(f_prompts), settings(
            "candidates", "temperature", "top_p", "max_new_tokens", "seed", "chat_template"))
        if state.valid("candidates", fp, f_cands):
            cand_rows = files.read_jsonl(f_cands)
            log(f"iteration {k}: reusing candidates")
        else:
            model, tok = cur.get()
            cands = generation.sample_candidates(
                model, tok, prompts, cfg.candidates, max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                top_p=cfg.top_p, seed=base_seed + 2, batch_size=cfg.generation_batch_size,
                chat_template=cfg.chat_template)
            cand_rows = [{"prompt": p, "candidates": c} for p, c in zip(prompts, cands)]
            files.write_jsonl(f_cands, cand_rows)
            state.mark("candidates", fp)
            log(f"iteration {k}: sampled {cfg.candidates} candidates for each of {len(prompts)} prompts")

        # -- scores
        f_scores = it / "scores.jsonl"
        fp = files.fingerprint("scores", start_id, files.file_digest(f_cands), settings(
            "judge", "judge_samples", "judge_temperature", "judge_max_new_tokens", "judge_force_score", "seed",
            "chat_template"))
        if state.valid("scores", fp, f_scores):
            score_rows = files.read_jsonl(f_scores)
            log(f"iteration {k}: reusing scores")
        else:
            policy, tok = cur.get() if is_self_judge(cfg.judge) else (None, None)
            judge = judge_factory(cfg.judge, policy=policy, tokenizer=tok, judge_samples=cfg.judge_samples,
                                  temperature=cfg.judge_temperature, max_new_tokens=cfg.judge_max_new_tokens,
                                  seed=base_seed + 3, force_score=cfg.judge_force_score)
            judged = judging.judge_candidates(judge, [r["prompt"] for r in cand_rows],
                                              [r["candidates"] for r in cand_rows])
            score_rows = [{"prompt": r["prompt"], "candidates": r["candidates"],
                           "scores": [x["score"] for x in j], "samples": [x["samples"] for x in j],
                           "raw": [x["raw"] for x in j]} for r, j in zip(cand_rows, judged)]
            files.write_jsonl(f_scores, score_rows)
            state.mark("scores", fp)
            log(f"iteration {k}: judged {sum(len(r['candidates']) for r in cand_rows)} candidates")
        cur.free()

        # -- pairs
        f_pairs = it / "pairs.jsonl"
        fp = files.fingerprint("pairs", files.file_digest(f_scores), settings("chat_template"))
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
            files.write_jsonl(f_pairs, pairs)
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
                f"{pct(summary['judge_parse_rate'])}). Its files are in {it}. Try more prompts (new_prompts=), "
                "more candidates, judge_samples, or a smaller batch_size; rerun with resume=true to keep the "
                f"finished iterations. The last trained model is {start_model}.")

        # -- DPO update
        run_dir = it / "model"
        fp = files.fingerprint("model", start_id, files.file_digest(f_pairs),
                            {k2: v for k2, v in keys.items() if k2 in DPOConfig.model_fields
                             and k2 not in ("output_dir", "resume", "data", "model")})
        log(f"iteration {k}: DPO on {len(pairs)} pairs from {start_model}")
        final = train_stage("model", DPO, lambda resume: dpo_config(cfg, start_model, f_pairs, run_dir, resume),
                             run_dir, fp, state)
        summary["model"] = str(final.relative_to(out))
        summary["model_id"] = fp
        summary["dpo"] = _last_metrics(run_dir)
        summary["seconds"] = round(time.time() - t0, 1)
        files.write_json(it / "summary.json", summary)
        return summary
    finally:
        cur.free()


def is_self_judge(spec: str) -> bool:
    from alignkit.scoring import parse_judge_spec

    return parse_judge_spec(spec).kind == "self"


def pct(x: float | None) -> str:
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
