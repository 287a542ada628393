#!/usr/bin/env bash
# The reasoning recipe of the README (issue 17, part 7): SFT warm-up on the reference solutions -> GRPO
# with math:answer -> Step-DPO (from step-pairs) or one MCTS-DPO iteration; each stage evaluated on the
# generated held-out set (100 test problems, 2-3 steps, level 1). Takes about 50 minutes on 2 CPU cores.
# Usage: scripts/reasoning_recipe.sh [WORKDIR]   (default ./reasoning-recipe)
set -euo pipefail
W=${1:-reasoning-recipe}
mkdir -p "$W" && cd "$W"
ak() { alignkit "$@"; }
ev() { ak eval --model "$1" --math --batch-size 20 --max-new-tokens 256 --output-dir "eval-$2"; }

ak data math --n 1000 --steps 2-3 --level 1 --split train --seed 0 --output math-train.jsonl
ak data math --n 300 --steps 3-4 --level 1-2 --split train --seed 1 --output math-hard.jsonl
ak data math --n 40 --steps 3 --level 1 --split train --seed 3 --output math-mid.jsonl
ev smollm2-135m base

# stage 1: SFT on the reference solutions (one epoch, LoRA merged so the next stage starts from it)
ak sft model=smollm2-135m data=math-train.jsonl chat_template=always lora.r=32 lora.alpha=64 \
    lora.merge_on_save=true lr=1e-3 warmup_ratio=0.05 batch_size=8 max_steps=125 output_dir=runs/sft
ev runs/sft sft

# stage 2: GRPO with the verifier (answer) and a small format reward
ak grpo model=runs/sft data=math-train.jsonl chat_template=always "reward=[math:answer, math:format]" \
    "reward_weights=[1.0, 0.2]" num_generations=8 batch_size=4 max_new_tokens=128 lora.r=16 lora.alpha=32 \
    lora.merge_on_save=true lr=1e-4 max_steps=30 rollout_dtype=bfloat16 output_dir=runs/grpo
ev runs/grpo grpo

# stage 3a: Step-DPO on first-wrong-step pairs located by Monte-Carlo continuations
ak data step-pairs --model runs/grpo --data math-hard.jsonl --limit 60 --samples 4 --rollouts 2 \
    --batch-size 16 --max-new-tokens 160 --chat-template always --output steps.jsonl
ak step-dpo model=runs/grpo data=steps.jsonl lora.r=16 lora.alpha=32 lora.merge_on_save=true beta=0.1 \
    lr=1e-4 batch_size=4 epochs=2 output_dir=runs/stepdpo
ev runs/stepdpo stepdpo

# stage 3b (instead of 3a): one MCTS-DPO iteration
ak mcts-dpo model=runs/grpo data=math-mid.jsonl max_prompts=12 iterations=1 simulations=6 branching=3 \
    rollouts=2 step_max_new_tokens=40 max_new_tokens=128 chat_template=always lora.r=16 lora.alpha=32 \
    lora.merge_on_save=true beta=0.1 lr=1e-4 batch_size=4 epochs=2 output_dir=runs/mcts
ev runs/mcts mcts
