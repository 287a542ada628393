#!/usr/bin/env bash
# The safety recipe of the README (issue 16): SFT on the safe-first answers of the shipped train split
# ("Sure! "-prefixed helpful answers, benign rows twice, LoRA r=2) -> safe-grpo (reward safety:helpful,
# cost safety:compliance, cost_limit 0.2, lambda learned) -> eval --safety on the test split. Settings chosen
# on a validation split of train items 21-23 (see the README). About 13 minutes on 2 CPU cores.
# Usage: [SEED=N] scripts/safety_recipe.sh [WORKDIR]   (default ./safety-recipe, seed 42)
set -euo pipefail
W=${1:-safety-recipe}
mkdir -p "$W" && cd "$W"
ak() { alignkit "$@"; }

ak data safety --layout sft --answer-prefix "Sure! " --benign-repeats 2 --output sft.jsonl
ak data safety --layout prompts --output prompts.jsonl
ak sft model=smollm2-135m data=sft.jsonl lora.r=2 lora.alpha=4 max_steps=120 batch_size=8 lr=1e-3 \
    lora.base_dtype=bfloat16 save_steps=0 seed=${SEED:-42} output_dir=runs/sft
ak safe-grpo model=runs/sft/final data=prompts.jsonl reward=safety:helpful cost=safety:compliance \
    cost_limit=0.2 lambda_init=1 lambda_lr=1.0 lambda_max=2 lora.r=2 lora.alpha=4 lora.base_dtype=bfloat16 \
    max_steps=60 lr=1e-4 batch_size=4 num_generations=8 max_new_tokens=24 temperature=1.0 \
    rollout_dtype=bfloat16 save_steps=0 seed=${SEED:-42} output_dir=runs/safe-grpo
ak eval --model runs/sft --model runs/safe-grpo --safety --max-new-tokens 24 --output-dir eval
