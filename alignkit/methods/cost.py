"""``alignkit cost``: Safe RLHF's cost model (Dai et al. 2023), a scalar head that scores harm.

Data (:func:`alignkit.data.safety.load_cost_rows`): safety preference rows (PKU-SafeRLHF layout: the pair
ordered by ``safer_response_id``, safety flags from ``is_response_*_safe``) and/or safety label rows
(``prompt``, ``response``, ``is_safe``). Per pair, with costs C_w of the more harmful response and C_l of
the other (one forward over the pair's sequences)::

    loss = -log sigma(C_w - C_l) - log sigma(s_w C_w) - log sigma(s_l C_l)     s = +1 unsafe, -1 safe

and per labelled response ``-log sigma(s C)`` alone (:mod:`alignkit.losses.safety`). So a cost > 0 means
"unsafe", < 0 "safe", and a higher cost "more harmful". A loss unit is a row (a pair or a response).

Metrics: ``accuracy`` (pairs with C_w > C_l), ``sign_accuracy`` (responses whose cost has the sign of
their label), ``costs/unsafe`` and ``costs/safe`` (mean cost of each); ``eval_*`` on ``eval_data``.

The model is the reward model's (:mod:`alignkit.methods.rm`: ``*ForSequenceClassification``, LoRA with a
fully trained head); ``final/alignkit.json`` says ``"trained_as": "cost"``. Use it as
``cost=costmodel:PATH`` (safe-grpo) or ``eval --safety --safety-judge costmodel:PATH``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from alignkit.config import TrainConfig
from alignkit.data import pad, tokenize_preference, tokenize_unpaired
from alignkit.data.safety import load_cost_rows, rows_of_kind
from alignkit.engine.method import StepOutput
from alignkit.losses import cost_model_loss, cost_sign_loss
from alignkit.methods.common import record_trained_as
from alignkit.methods.rm import RM
from alignkit.reward_model import sequence_rewards

TRAINED_AS = "cost"


class CostConfig(TrainConfig):
    """Cost model (Safe RLHF): Bradley-Terry on harmfulness pairs plus the sign term, on safety data."""


class Cost(RM):
    name = "cost"
    config_cls = CostConfig
    data_kinds = ("preference", "unpaired")

    # -- data ---------------------------------------------------------------------------------
    def build_examples(self, path: str) -> list[dict]:
        """Rows -> ``{"prompt_ids", "responses": [ids, ...], "unsafe": [bool, ...], "row"}``; a pair lists the
        more harmful response first."""
        cfg = self.config
        loaded = load_cost_rows(path, cfg.skip_invalid)
        by_row = dict(zip(loaded.row_numbers, loaded.rows))
        examples = []
        pairs = rows_of_kind(loaded, "preference")
        if pairs is not None:
            for ex in tokenize_preference(pairs, self.tokenizer, cfg.max_length, cfg.chat_template, cfg.skip_invalid):
                row = by_row[ex["row"]]
                examples.append({"prompt_ids": ex["prompt_ids"], "responses": [ex["chosen_ids"], ex["rejected_ids"]],
                                 "unsafe": [bool(row["chosen_unsafe"]), bool(row["rejected_unsafe"])],
                                 "row": ex["row"]})
        singles = rows_of_kind(loaded, "unpaired")
        if singles is not None:
            for ex in tokenize_unpaired(singles, self.tokenizer, cfg.max_length, cfg.chat_template, cfg.skip_invalid):
                examples.append({"prompt_ids": ex["prompt_ids"], "responses": [ex["completion_ids"]],
                                 "unsafe": [bool(ex["label"])], "row": ex["row"]})
        examples.sort(key=lambda e: e["row"])
        return examples

    def example_length(self, example: dict) -> int:
        return len(example["prompt_ids"]) + max(len(r) for r in example["responses"])

    def collate(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        """``input_ids``/``attention_mask`` [N, T] of every response (a pair's two in a row), ``unsafe`` [N],
        ``harmful``/``harmless`` [P] (indices of each pair's responses) and ``single`` [S] (unpaired ones)."""
        seqs, unsafe, harmful, harmless, single = [], [], [], [], []
        for ex in examples:
            start = len(seqs)
            seqs += [ex["prompt_ids"] + r for r in ex["responses"]]
            unsafe += ex["unsafe"]
            if len(ex["responses"]) == 2:
                harmful.append(start)
                harmless.append(start + 1)
            else:
                single.append(start)
        return {"input_ids": pad(seqs, self.pad_id), "attention_mask": pad([[1] * len(s) for s in seqs], 0),
                "unsafe": torch.tensor(unsafe, dtype=torch.bool), "harmful": torch.tensor(harmful, dtype=torch.long),
                "harmless": torch.tensor(harmless, dtype=torch.long), "single": torch.tensor(single, dtype=torch.long)}

    def count_units(self, batch: dict[str, torch.Tensor]) -> int:
        return int(batch["harmful"].numel() + batch["single"].numel())

    # -- loss ---------------------------------------------------------------------------------
    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor], step: int) -> StepOutput:
        costs = sequence_rewards(model, batch["input_ids"], batch["attention_mask"])
        unsafe = batch["unsafe"].to(costs.device)
        hi, lo, one = (batch[k].to(costs.device) for k in ("harmful", "harmless", "single"))
        loss_sum = costs.new_zeros(())
        if hi.numel():
            loss_sum = loss_sum + cost_model_loss(costs[hi], costs[lo], unsafe[hi], unsafe[lo]).sum()
        if one.numel():
            loss_sum = loss_sum + cost_sign_loss(costs[one], unsafe[one]).sum()
        with torch.no_grad():
            c = costs.detach()
            n_unsafe, n_safe = float(unsafe.sum()), float((~unsafe).sum())
            metrics = {
                "sign_accuracy": (float(((c > 0) == unsafe).float().sum()), float(c.numel())),
                "costs/unsafe": (float(c[unsafe].sum()), n_unsafe),
                "costs/safe": (float(c[~unsafe].sum()), n_safe),
            }
            if hi.numel():
                metrics["accuracy"] = (float((c[hi] > c[lo]).float().sum()), float(hi.numel()))
        return StepOutput(loss_sum=loss_sum, metrics={k: v for k, v in metrics.items() if v[1] > 0})

    def save_final(self, model: torch.nn.Module, tokenizer: Any, final_dir: Path, config: TrainConfig) -> None:
        """The reward-model files, with ``"trained_as": "cost"`` added to ``alignkit.json``."""
        super().save_final(model, tokenizer, final_dir, config)
        record_trained_as(final_dir, TRAINED_AS)
