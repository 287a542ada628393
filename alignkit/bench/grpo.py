"""``alignkit bench grpo``: alignkit's GRPO vs TRL's GRPOTrainer, same model, prompts, reward and sampling.

Both sides: the embedded SmolLM2-135M on CPU (default), LoRA r=16 on all linear layers, 2 prompts x 4
completions per step (TRL: ``per_device_train_batch_size=8, num_generations=4``), 32 new tokens at
temperature 1.0, the shipped ``format.py:word_limit`` reward, ``beta=0`` (no reference), ``loss_type=dapo``,
one optimisation iteration per rollout, gradient checkpointing off on both sides (on on both with
``--gradient-checkpointing``, TRL's default). Each side runs in its own child process; the table gives
whole-process wall time, the training loop's time per step and the peak RSS of each, and their ratios.
``--rollout-dtype bfloat16`` lets alignkit sample from a bf16 copy of the policy (``rollout_dtype``), a
split of training and inference weights that TRL offers only through vLLM on a GPU.
"""

from __future__ import annotations

import json
from pathlib import Path

from alignkit.bench import format_table, prepare_run, print_ratios, run_sides
from alignkit.bench.dpo import TOPICS

QUESTIONS = ["What is special about {}?", "Describe {} in a few words.", "Why do people like {}?",
             "Tell me one fact about {}.", "How would you explain {} to a child?"]


def build_prompts(n: int) -> list[dict]:
    """``n`` short chat prompts (deterministic), one user turn each."""
    return [{"prompt": [{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)].format(TOPICS[i % len(TOPICS)])}]}
            for i in range(n)]


def run(args) -> int:
    prompts = build_prompts(args.steps * args.prompts_per_step)
    settings = {**prepare_run(args, "prompts.jsonl", prompts), "prompts_per_step": args.prompts_per_step,
                "num_generations": args.num_generations, "max_new_tokens": args.max_new_tokens,
                "max_length": 256, "lr": 1e-5, "temperature": 1.0, "rollout_dtype": args.rollout_dtype,
                "bf16": args.bf16}
    out = Path(args.output_dir)
    completions = args.prompts_per_step * args.num_generations
    print(f"bench grpo: {args.model}, LoRA r={args.lora_r}, {args.prompts_per_step} prompts x "
          f"{args.num_generations} completions per step, {args.max_new_tokens} new tokens, {args.steps} steps, "
          f"reward format.py:word_limit, beta 0, loss dapo{', bf16 mixed precision on both' if args.bf16 else ''}"
          + (f"; alignkit samples from a {args.rollout_dtype} copy" if args.rollout_dtype else "")
          + "; whole process timed")
    results = run_sides("grpo", settings, out, args.only)
    for _, fig in results:
        fig["step_s"] = fig["train_s"] / args.steps
        fig["completions_per_s"] = args.steps * completions / fig["train_s"]
        fig["mean_reward"] = sum(fig["rewards"]) / len(fig["rewards"])
    keys = [("wall_s", "wall s"), ("train_s", "train loop s"), ("step_s", "s / step"),
            ("completions_per_s", "completions/s"), ("peak_rss_mb", "peak RSS MB"), ("mean_reward", "mean reward")]
    print(format_table(results, keys))
    figures = dict(results)
    if "alignkit" in figures and "trl" in figures:
        a, t = figures["alignkit"], figures["trl"]
        ratios = print_ratios(a, t, time_key="step_s", time_label="time per step")
        (out / "bench.json").write_text(json.dumps({"settings": settings, "alignkit": a, "trl": t, **ratios},
                                                   indent=2))
    return 0
