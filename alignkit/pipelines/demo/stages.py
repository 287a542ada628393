"""Stages of the demo: evaluate a model on the held-out prompts, train on pairs (or prompts), and one
on-policy iteration (sample and pair, train, evaluate)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from alignkit import files
from alignkit.pipelines.demo.console import Clock, Progress, Say
from alignkit.pipelines.demo.pairs import build_pairs, mean_or_nan, passing_answers
from alignkit.pipelines.demo.settings import DemoError, DemoSettings, eval_dtype, work_dtype


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
             "constraints": ins.constraints, "heldout": ins.heldout,
             **({"passed": details[ins.id]["passed"], "all": details[ins.id]["all"]}
                if ins.id in details else {})}
            for ins, text, cids in zip(instructions, gens.texts, gens.completion_ids)
        ],
    }


def train_on_pairs(settings: DemoSettings, data: Path, output_dir: Path, max_length: int, batch_size: int,
                   start_model: str | None = None, seed: int | None = None):
    """LoRA training on the pairs file (DPO, KTO, or IFT / SFT on the chosen answers) or, for ``grpo``, on
    the prompts file with the constraint reward, from ``start_model`` (default: the settings' model;
    an adapter directory is merged into its base, so the reference of iteration k is the iteration
    k-1 model). Returns (the engine's RunResult, config)."""
    from alignkit.config import load_config
    from alignkit.engine.trainer import train

    s = settings
    overrides = [
        f"model={start_model or s.model}", f"data={data}", f"output_dir={output_dir}", f"max_steps={s.steps}",
        f"batch_size={batch_size}", f"lr={s.lr}", f"lora.r={s.lora_r}", f"lora.alpha={s.lora_alpha}",
        f"max_length={max_length}", f"warmup_steps={max(1, s.steps // 10)}", "save_steps=0",
        f"seed={s.seed if seed is None else seed}", f"lora.base_dtype={work_dtype(s)}",
    ]
    if s.method == "dpo":
        from alignkit.methods.dpo import DPO, DPOConfig

        rpo = [f"rpo_alpha={s.rpo_alpha}"] if s.rpo_alpha > 0 else []
        # one row per batch, no padding: 1.4x faster steps on the demo's pairs, the same loss (README, "DPO")
        method_cls, config = DPO, load_config(DPOConfig, None, overrides + [f"beta={s.beta}", "padding_free=true"] + rpo)
    elif s.method == "kto":
        from alignkit.methods.kto import KTO, KTOConfig

        method_cls, config = KTO, load_config(KTOConfig, None, overrides + [f"beta={s.beta}"])
    elif s.method == "grpo":
        from alignkit.methods.grpo import GRPO, GRPOConfig

        method_cls, config = GRPO, load_config(GRPOConfig, None, overrides + [
            "reward=alignkit.evaluation.constraints:constraint_reward", f"num_generations={s.candidates}",
            f"max_new_tokens={s.sample_max_new_tokens}", f"temperature={s.temperature}", f"top_p={s.top_p}"]
            + (["rollout_dtype=bfloat16"] if work_dtype(s) == "bfloat16" else []))
    elif s.method == "sft":
        from alignkit.config import SFTConfig
        from alignkit.methods.sft import SFT

        method_cls, config = SFT, load_config(SFTConfig, None, overrides)
    else:
        from alignkit.methods.ift import IFT, IFTConfig

        method_cls, config = IFT, load_config(IFTConfig, None, overrides)
    return train(method_cls, config), config


def iteration(s: DemoSettings, k: int, seed: int, run_dir: Path, current: str, train_ins: list, test: list,
               say: Say, clock: Clock, tag: str, evaluate: bool = True) -> dict[str, Any]:
    """One on-policy iteration (a training stage) from the model ``current``: sample and pair (or, for
    GRPO, write the prompts), train into ``run_dir`` with ``s.method``, and (``evaluate``) evaluate the
    result on the held-out prompts (``"eval"`` is None otherwise)."""
    from alignkit import models
    from alignkit.data.render import conversational_row, request_prompt
    from alignkit.generation import encode_prompt
    from alignkit.hardware import release_memory

    eval_bs = s.eval_batch_size
    # training answers sampled in the work dtype (bf16 ~1.65x faster than fp32 with AMX)
    model, tok = models.load_for_generation(current, work_dtype(s))
    prompt_tokens = max(len(encode_prompt(tok, request_prompt(tok, i.prompt))) for i in train_ins)
    max_length = prompt_tokens + s.sample_max_new_tokens + 8
    pstats: dict[str, Any] = {}
    clock.start()
    if s.method == "grpo":
        say(f"\n[2/5]{tag} GRPO needs no pairs: {len(train_ins)} train prompts, {s.candidates} samples each per "
            "step, scored by the constraint reward during training")
        data = run_dir / "prompts.jsonl"
        files.write_jsonl(data, [{"id": i.id, "prompt": request_prompt(tok, i.prompt), "constraints": i.constraints}
                                 for i in train_ins])
        batch_size = min(s.batch_size, len(train_ins))
    else:
        say(f"\n[2/5]{tag} building preference pairs: {s.candidates} samples x {len(train_ins)} train prompts "
            f"(temperature {s.temperature}, max_new_tokens {s.sample_max_new_tokens}), scored by the constraint "
            "reward")
        pairs, samples, pstats = build_pairs(model, tok, train_ins, candidates=s.candidates,
                                             temperature=s.temperature, top_p=s.top_p,
                                             max_new_tokens=s.sample_max_new_tokens, rounds=s.rounds,
                                             seed=seed + 1000 * (k - 1), gen_batch_size=s.gen_batch_size,
                                             pairs_per_prompt=s.pairs_per_prompt, min_margin=s.min_margin,
                                             repairs=s.repairs, say=say)
        files.write_jsonl(run_dir / "samples.jsonl", samples)
        data = files.write_jsonl(run_dir / "pairs.jsonl", pairs)
        if s.method == "sft":  # SFT trains on answers that pass (sampled, else repaired), one per prompt
            good = passing_answers(samples)
            pstats["sft_answers"] = len(good)
            pstats["sft_repaired"] = sum(1 for row, _ in good if row.get("repairs") or row.get("spare_repair"))
            data = files.write_jsonl(run_dir / "sft.jsonl", [
                dict(zip(("prompt", "completion"), conversational_row(request_prompt(tok, row["prompt"]), text)))
                for row, text in good])
            trained_texts = [text for _, text in good]
            say(f"    SFT on {len(good)} answers that pass every constraint ({pstats['sft_repaired']} repaired)")
            if not good:
                raise DemoError("no answer passes its constraints (none sampled, none repaired): nothing to train "
                                "SFT on; try --repairs 1 or more --candidates")
        else:
            trained_texts = [p["chosen"][-1]["content"] for p in pairs if p.get("repaired")]
        fixed = f" ({pstats['repair_pairs']} of them repaired answers)" if s.repairs else ""
        ties = ("" if s.candidates < 2 else  # one sample per prompt: no sample pairs, so no ties to count
                f"; no pair (all samples scored alike): {pstats['no_pair_all_pass']} all passed, "
                f"{pstats['no_pair_all_fail']} all failed, {pstats['no_pair_other_tie']} other ties")
        say(f"    {pstats['pairs']} pairs{fixed} from {pstats['prompts']} prompts{ties}; samples fully passing: "
            f"{100 * pstats['sample_pass_rate']:.0f}% ({clock.elapsed():.0f} s)")
        if not pairs and s.method != "sft":
            raise DemoError("no preference pairs: every prompt's samples scored the same; try more --candidates, "
                            "--rounds or a higher --temperature")
        # an edit can be longer than any sample: size max_length by the texts this run trains on
        longest = max((len(tok(t, add_special_tokens=False).input_ids) for t in trained_texts), default=0)
        n_examples = pstats.get("sft_answers", len(pairs))
        max_length = max(max_length, prompt_tokens + longest + 8)
        batch_size = min(s.batch_size, n_examples)
        if batch_size < s.batch_size:
            say(f"    note: only {n_examples} examples, so batch size {batch_size} instead of {s.batch_size}")
    del model
    release_memory()  # the heap after sampling slows every later allocation (hardware.release_memory)
    clock.stop(f"2_pairs{tag}")

    what = {"dpo": f"DPO (sigmoid loss, beta {s.beta})", "kto": f"KTO (beta {s.beta})",
            "ift": "IFT on the chosen answers", "sft": "SFT on the passing answers",
            "grpo": f"GRPO ({s.candidates} samples per prompt, constraint reward)"}[s.method]
    unit = {"grpo": "prompts", "sft": "answers"}.get(s.method, "pairs")
    say(f"\n[3/5]{tag} training: {what} + LoRA r={s.lora_r}, {s.steps} steps x {batch_size} {unit}, lr {s.lr}, "
        f"from {current}")
    clock.start()
    result, config = train_on_pairs(s, data, run_dir, max_length=max_length, batch_size=batch_size,
                                    start_model=None if current == s.model else current, seed=seed)
    release_memory()
    seconds = clock.stop(f"3_train{tag}")
    if result.final_dir is None:
        raise DemoError("training was interrupted; nothing to evaluate")
    say(f"    {result.steps} steps, model in {result.final_dir} ({seconds:.0f} s)")

    out = {"iteration": k, "method": s.method, "seed": seed, "pairs": pstats, "eval": None,
           "final_dir": str(result.final_dir), "steps": result.steps, "batch_size": batch_size,
           "max_length": config.max_length, "run_dir": str(run_dir)}
    if not evaluate:
        return out
    say(f"\n[4/5]{tag} evaluating the trained model on the same {len(test)} held-out prompts")
    clock.start()
    model, tok = models.load_for_generation(str(result.final_dir), eval_dtype(s))
    trained = evaluate_loaded(model, tok, test, spec=str(result.final_dir),
                              name=f"{s.method}{tag} ({result.final_dir})", max_new_tokens=s.eval_max_new_tokens,
                              batch_size=eval_bs, say=say, desc=f"{s.method}{tag}: generating")
    del model
    release_memory()
    clock.stop(f"4_eval_trained{tag}")
    return {**out, "eval": trained}


