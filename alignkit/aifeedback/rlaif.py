"""RLAIF preference pairs: candidates sampled from one model, judged by another.

With a pointwise judge (``alignkit.judges.load_judge``): every candidate is scored (``judge_samples``
samples averaged) and the pair is (highest, lowest). With a pairwise judge
(``alignkit.judges.load_pairwise_judge``, which asks both orders): the candidates of a prompt meet in
a round robin (a win counts 1, a tie 0.5) and the pair is (most wins, fewest wins). Ties, unparsable
verdicts and identical texts yield no pair (see :func:`alignkit.aifeedback.pairs.select_pair`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from alignkit.aifeedback import judging
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


@dataclass
class RlaifOptions:
    candidates: int = 4
    max_new_tokens: int = 256
    temperature: float = 0.7
    top_p: float = 0.9
    seed: int = 0
    batch_size: int = 8
    chat_template: str = "auto"


def rlaif_pairs(prompts: list, model: Any, tokenizer: Any, judge: Any, options: RlaifOptions,
                pairwise: bool = False) -> tuple[list[dict], dict]:
    o = options
    cands = generation.sample_candidates(model, tokenizer, prompts, o.candidates, max_new_tokens=o.max_new_tokens,
                                         temperature=o.temperature, top_p=o.top_p, seed=o.seed,
                                         batch_size=o.batch_size, chat_template=o.chat_template)
    stats: dict[str, Any] = {"prompts": len(prompts), "candidates": sum(len(c) for c in cands),
                             "empty_candidates": sum(1 for c in cands for x in c if not x.strip())}
    if pairwise:
        scores = judging.pairwise_wins(judge, prompts, cands)
    else:
        judged = judging.judge_candidates(judge, prompts, cands)
        scores = [[x["score"] for x in row] for row in judged]
        samples, raws = [x["samples"] for row in judged for x in row], [x["raw"] for row in judged for x in row]
        stats["judge_parse_rate"] = parse_rate(samples, raws)
        stats["judge_forced_rate"] = forced_rate(samples, raws)
        stats["score_histogram"] = histogram([s for row in scores for s in row])
        stats["mean_score"] = mean([s for row in scores for s in row])
    rows, drops = [], []
    for p, c, s in zip(prompts, cands, scores):
        pick = select_pair(c, s)
        if isinstance(pick, str):
            drops.append(pick)
            continue
        i, j = pick
        prompt, chosen = as_chat(p, c[i], o.chat_template)
        _, rejected = as_chat(p, c[j], o.chat_template)
        rows.append({"prompt": prompt, "chosen": chosen, "rejected": rejected,
                     "chosen_score": s[i], "rejected_score": s[j]})
    stats["dropped"] = drop_counts(drops)
    stats["kept"] = len(rows)
    return rows, stats
