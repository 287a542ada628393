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
    iter-K/prompts.jsonl   {"prompt"}                                     (prompt-only)
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

from alignkit.pipelines.self_reward.config import LoopStopped, SelfRewardConfig, SelfRewardResult
from alignkit.pipelines.self_reward.loop import SelfReward, run_self_reward

__all__ = ["LoopStopped", "SelfReward", "SelfRewardConfig", "SelfRewardResult", "run_self_reward"]
