#!/usr/bin/env bash
# The held-out safety protocol of the README (issue 16, "A controller and a model choice that read held-out
# requests"): train items 21-23 are the validation split (ask + story wordings), SFT 1 : 2 and safe-grpo train on
# the other 19 items; safe-grpo's lambda reads the greedy compliance on the validation split every 5 steps, and
# final/ is the evaluation with the least validation compliance among those over-refusing at most 5 % of the
# validation look-alikes (the SFT model included). Then eval --safety on the test split. ~22 min on 2 CPU cores.
# Usage: [SEED=N] scripts/safety_heldout.sh [WORKDIR]   (default ./safety-heldout, seed 2)
set -euo pipefail
W=${1:-safety-heldout}
SEED=${SEED:-2}
mkdir -p "$W" && cd "$W"
ak() { alignkit "$@"; }

ak data safety --layout sft --answer-prefix "Sure! " --benign-repeats 2 --items 0-5,8-20 --output sft.jsonl
ak data safety --layout prompts --items 0-5,8-20 --output prompts.jsonl
ak data safety --layout prompts --items 21-23 --wordings ask,story --output val.jsonl
ak sft model=smollm2-135m data=sft.jsonl lora.r=2 lora.alpha=4 max_steps=120 batch_size=8 lr=1e-3 \
    lora.base_dtype=bfloat16 save_steps=0 seed="$SEED" output_dir=runs/sft
ak safe-grpo model=runs/sft/final data=prompts.jsonl reward=safety:helpful cost=safety:compliance \
    cost_limit=0.2 lambda_init=1 lambda_lr=5 lambda_max=2 lambda_reads=eval lora.r=2 lora.alpha=4 \
    lora.base_dtype=bfloat16 max_steps=60 lr=2e-4 batch_size=4 num_generations=8 max_new_tokens=24 temperature=1.0 \
    rollout_dtype=bfloat16 save_steps=0 seed="$SEED" output_dir=runs/safe-grpo \
    eval_data=val.jsonl eval_steps=5 eval_on_start=true eval_temperature=0 eval_batch_size=60 \
    metric_for_best_model=eval_cost "best_model_constraint=eval_rewards/safety_helpful>=0.475" load_best_model_at_end=true
ak eval --model runs/sft --model runs/safe-grpo --safety --max-new-tokens 24 --output-dir eval
