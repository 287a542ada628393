"""``alignkit bench grpo``: alignkit's GRPO vs TRL's GRPOTrainer, same model, prompts, reward and sampling.

Both sides: the embedded SmolLM2-135M on CPU (default), LoRA r=16 on all linear layers, 2 prompts x 4
completions per step (TRL: ``per_device_train_batch_size=8, num_generations=4``), 32 new tokens at
temperature 1.0, the shipped ``format.py:word_limit`` reward, ``beta=0`` (no reference), ``loss_type=dapo``,
one optimisation iteration per rollout, gradient checkpointing off on both sides (on on both with
``--gradient-checkpointing``, TRL's default). Each side runs in its own child process; the table gives
whole-process wall time, the training loop's time per step and the peak RSS of each, and their ratios.
``--rollout-dtype bfloat16`` lets alignkit sample from a bf16 copy of the policy (``rollout_dtype``), a
split of training and inference weights that TRL offers only through vLLM on a GPU.
``--prompt-tokens`` fixes the prompts' length, ``--max-new-tokens`` (alias ``--response-tokens``) the
completions' limit; ``--sweep`` runs 64/128/256 new tokens and prints the scaling table. The
compute-bound time (:func:`limits.grpo_flops`) counts sampling (prefill once per prompt, decode steps
at the larger of their compute and weight-reading times), the policy forward and backward over every
completion, from the completion lengths the alignkit side logged.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from alignkit.bench import (
    SWEEP_TOKENS,
    Report,
    add_bound_ratios,
    measure_machine,
    prepare_run,
    print_ratios,
    remeasure_matmul,
    report_bound,
    report_bound_ratios,
    report_sweep,
    run_sides,
    write_data,
)
from alignkit.bench.dpo import TOPICS, text_of_tokens

QUESTIONS = ["What is special about {}?", "Describe {} in a few words.", "Why do people like {}?",
             "Tell me one fact about {}.", "How would you explain {} to a child?"]


def build_prompts(n: int, prompt_tokens: int | None = None, tokenizer=None) -> list[dict]:
    """``n`` short chat prompts (deterministic), one user turn each; with ``prompt_tokens`` each has
    exactly that many tokens of content (the question, then filler sentences)."""
    rows = []
    for i in range(n):
        question = QUESTIONS[i % len(QUESTIONS)].format(TOPICS[i % len(TOPICS)])
        if prompt_tokens:
            question = text_of_tokens(tokenizer, prompt_tokens, random.Random(i), opening=question)
        rows.append({"prompt": [{"role": "user", "content": question}]})
    return rows


def prompt_token_counts(data: str, tokenizer) -> list[int]:
    """Token counts of the prompts in ``data`` as alignkit's GRPO renders them (chat template with the
    generation prompt), in file order."""
    from alignkit.data import load_examples, tokenize_prompts

    return [len(e["prompt_ids"]) for e in tokenize_prompts(load_examples(data, "prompt"), tokenizer, 10**9)]


def completion_rows(mean: float, clipped: float, count: int, max_new: int) -> list[int]:
    """Token counts of ``count`` completions of one step from its logged figures: ``round(clipped·count)``
    of them at ``max_new`` (no EOS), the others sharing the rest of ``round(mean·count)`` tokens as evenly
    as integers allow (an even spread is the least work for a given total)."""
    full = min(count, round(clipped * count))
    rest_rows = count - full
    rest = max(round(mean * count) - full * max_new, rest_rows)
    base, extra = divmod(rest, rest_rows) if rest_rows else (0, 0)
    return [max_new] * full + [base + (1 if i < extra else 0) for i in range(rest_rows)]


def rollout_steps(prompt_lens: list[int], args, side: dict | None) -> list[list[tuple[int, list[int]]]]:
    """Per step, the groups ``(prompt tokens, [completion tokens])`` the FLOP count uses: the prompts in
    file order, ``prompts_per_step`` a step (each prompt is used once; the trainer's shuffled order
    pairs them with other steps' lengths, which changes only the attention cross-terms), the completions
    from the alignkit side's logged ``completion_length`` and ``completions/clipped_ratio`` per step
    (:func:`completion_rows`), or all ``max_new_tokens`` long when that side did not run."""
    G, pps = args.num_generations, args.prompts_per_step
    steps = []
    for s in range(args.steps):
        if side and s < len(side.get("completion_lengths", [])):
            rows = completion_rows(side["completion_lengths"][s], side["clipped"][s], pps * G, args.max_new_tokens)
        else:
            rows = [args.max_new_tokens] * (pps * G)
        prompts = prompt_lens[s * pps:(s + 1) * pps]
        steps.append([(p, rows[j::pps]) for j, p in enumerate(prompts)])
    return steps


def run(args) -> int:
    if not args.sweep:
        run_once(args)
        return 0
    points = []
    for n in SWEEP_TOKENS:
        point = argparse.Namespace(**{**vars(args), "max_new_tokens": n, "sweep": False,
                                      "output_dir": str(Path(args.output_dir) / f"sweep-{n}")})
        points.append(run_once(point))
    report = Report("alignkit bench grpo --sweep")
    report_sweep(report, points, "completion length limit (max new tokens; sampling may stop earlier)")
    out = Path(args.output_dir)
    (out / "sweep.json").write_text(json.dumps(points, indent=2))
    report.write(out / "sweep.md")
    return 0


def run_once(args) -> dict:
    """One bench run (both sides); prints and writes ``bench.json`` / ``bench.md``; returns the figures
    a sweep collects."""
    from alignkit.bench.limits import grpo_flops, shape_of
    from alignkit.models import load_tokenizer, model_config

    tokenizer = load_tokenizer(args.model)
    prompts = build_prompts(args.steps * args.prompts_per_step, args.prompt_tokens, tokenizer)
    data = write_data(args, "prompts.jsonl", prompts)
    prompt_lens = prompt_token_counts(data, tokenizer)
    max_length = max(256, max(prompt_lens) + args.max_new_tokens + 1)  # room for prompt and completion
    settings = {**prepare_run(args, data), "prompts_per_step": args.prompts_per_step,
                "num_generations": args.num_generations, "max_new_tokens": args.max_new_tokens,
                "max_length": max_length, "lr": 1e-5, "temperature": 1.0, "rollout_dtype": args.rollout_dtype,
                "rollout_backend": getattr(args, "rollout", "hf"),
                "bf16": args.bf16, "prompt_tokens": args.prompt_tokens}
    out = Path(args.output_dir)
    completions = args.prompts_per_step * args.num_generations
    report = Report("alignkit bench grpo")
    report.line(f"bench grpo: {args.model}, LoRA r={args.lora_r}, {args.prompts_per_step} prompts x "
                f"{args.num_generations} completions per step, {args.max_new_tokens} new tokens, {args.steps} steps, "
                f"prompts of {sum(prompt_lens) / len(prompt_lens):.1f} tokens on average, "
                f"reward format.py:word_limit, beta 0, loss dapo{', bf16 mixed precision on both' if args.bf16 else ''}"
                + (f"; alignkit samples from a {args.rollout_dtype} copy" if args.rollout_dtype else "")
                + ("; alignkit samples through vllm-server (sampling runs in the server's process: the "
                   "bound and peak RSS leave it out)" if getattr(args, "rollout", "hf") == "vllm-server" else "")
                + "; whole process timed")
    train_dtype = "bfloat16" if args.bf16 else "float32"
    gen_dtype = "bfloat16" if args.bf16 or args.rollout_dtype == "bfloat16" else "float32"
    shape = shape_of(model_config(args.model))
    seq_len = round(sum(prompt_lens) / len(prompt_lens)) + args.max_new_tokens
    machine = measure_machine(report, shape, tokens=completions * seq_len, scored=completions * args.max_new_tokens,
                              seq_len=seq_len, rows=completions, dtypes=(train_dtype, gen_dtype))
    results = run_sides("grpo", settings, out, args.only,
                        after_each=lambda name: remeasure_matmul(report, machine, shape, f"after {name}"))
    figures = dict(results)
    steps = rollout_steps(prompt_lens, args, figures.get("alignkit"))
    element = 2 if gen_dtype == "bfloat16" else 4
    limit = report_bound(report, machine, grpo_flops(shape, steps, args.lora_r, element),
                         grpo_flops(shape, steps, args.lora_r, element, share_prompt=True), train_dtype, gen_dtype)
    if "alignkit" not in figures:
        report.line(f"(completion lengths not logged without the alignkit side: counted at {args.max_new_tokens})")
    add_bound_ratios(results, limit)
    for _, fig in results:
        fig["step_s"] = fig["train_s"] / args.steps
        fig["completions_per_s"] = args.steps * completions / fig["train_s"]
        fig["mean_reward"] = sum(fig["rewards"]) / len(fig["rewards"])
    keys = [("wall_s", "wall s"), ("train_s", "train loop s"), ("step_s", "s / step"),
            ("completions_per_s", "completions/s"), ("peak_rss_mb", "peak RSS MB"), ("bound_ratio", "loop / bound"),
            ("mean_reward", "mean reward")]
    report.table(results, keys)
    report_bound_ratios(report, results)
    extra: dict = {}
    if "alignkit" in figures and "trl" in figures:
        extra = print_ratios(report, figures["alignkit"], figures["trl"], time_key="step_s", time_label="time per step")
    (out / "bench.json").write_text(json.dumps({"settings": settings, "machine": machine, **limit, **figures, **extra},
                                               indent=2))
    report.write(out / "bench.md")
    return {"tokens": args.max_new_tokens, "bound_s": limit["bound"]["total_s"], **figures}
