"""Instruction backtranslation (after Li et al. 2023, "Self-Alignment with Instruction Backtranslation").

For each unlabelled text (a candidate *response*): the model is asked which instruction the text answers
(self-augmentation), then a rater (the same model by default) grades the (instruction, text) pair from
1 to 5 with a final ``Score: N`` line (self-curation, parsed by ``alignkit.judges.parse_score`` with
``low=1, high=5``). Pairs scoring at least ``threshold`` become prompt-completion rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from alignkit.aifeedback import judging
from alignkit.aifeedback.instructions import clean_generated_prompt
from alignkit.aifeedback.pairs import as_chat, histogram, mean
from alignkit.aifeedback.prompts import instruction_from_response_prompt, rate_pair_prompt
from alignkit.generation import texts as generation


@dataclass
class BacktranslateOptions:
    threshold: float = 4.0
    max_new_tokens: int = 64
    temperature: float = 0.0
    rate_samples: int = 1
    rate_temperature: float = 0.7
    rate_max_new_tokens: int = 128
    seed: int = 0
    batch_size: int = 8
    chat_template: str = "auto"


def backtranslate(texts: list[str], model: Any, tokenizer: Any, options: BacktranslateOptions,
                  rater: tuple[Any, Any] | None = None) -> tuple[list[dict], dict]:
    """Returns the kept rows (``prompt``, ``completion``, ``score``) and statistics."""
    o = options
    raw = generation.generate_texts(model, tokenizer, [instruction_from_response_prompt(t) for t in texts],
                                    max_new_tokens=o.max_new_tokens, temperature=o.temperature, seed=o.seed,
                                    batch_size=o.batch_size, chat_template=o.chat_template)
    instructions = [clean_generated_prompt(r) for r in raw]
    todo = [i for i, ins in enumerate(instructions) if ins]
    r_model, r_tok = rater or (model, tokenizer)
    samples: dict[int, list[float | None]] = {i: [] for i in todo}
    rate_prompts = [rate_pair_prompt(instructions[i], texts[i]) for i in todo]
    for s in range(o.rate_samples if todo else 0):
        temp = 0.0 if o.rate_samples == 1 else o.rate_temperature
        outs = generation.generate_texts(r_model, r_tok, rate_prompts, max_new_tokens=o.rate_max_new_tokens,
                                         temperature=temp, seed=o.seed + 1 + s, batch_size=o.batch_size,
                                         chat_template=o.chat_template)
        for i, out in zip(todo, outs):
            samples[i].append(judging.parse_score(out, low=1, high=5))
    rows, scores = [], []
    stats = {"texts": len(texts), "empty_instruction": len(texts) - len(todo), "unparsable": 0,
             "below_threshold": 0, "kept": 0}
    for i in todo:
        score = mean(samples[i])
        scores.append(score)
        if score is None:
            stats["unparsable"] += 1
        elif score < o.threshold:
            stats["below_threshold"] += 1
        else:
            prompt, completion = as_chat(instructions[i], texts[i], o.chat_template)
            rows.append({"prompt": prompt, "completion": completion, "score": score})
    stats["kept"] = len(rows)
    flat = [v for i in todo for v in samples[i]]
    stats["rating_parse_rate"] = (sum(v is not None for v in flat) / len(flat)) if flat else None
    stats["score_histogram"] = {k: v for k, v in histogram(scores, 1, 5).items()}
    return rows, stats
