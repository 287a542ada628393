"""``alignkit prm``: a process reward model trained on step-wise labels (TRL's stepwise layout).

Data: rows ``prompt``, ``completions`` (the steps, a list of strings) and ``labels`` (one boolean per
step: is the solution still right after this step), e.g. what ``alignkit data prm-labels`` writes
(Math-Shepherd labels from Monte-Carlo rollouts). Reading and tokenising: :mod:`alignkit.reasoning.prm`;
the step rule (each step is tokenised as ``step + "\\n"``; its separator position is its last token):
:mod:`alignkit.reasoning.steps`.

Model: the reward model of ``alignkit rm`` (a one-label ``*ForSequenceClassification`` on the base, LoRA
with the head fully trained), used as a token-classification head: logit z_k at the separator position
of step k. Loss, per step (a loss unit is a step; other tokens take no loss)::

    loss_k = BCE(sigmoid(z_k), y_k) = -(y_k log sigmoid(z_k) + (1 - y_k) log(1 - sigmoid(z_k)))

Metrics: ``step_accuracy`` (fraction of steps with (z_k > 0) == y_k), ``first_error_accuracy`` (fraction of
solutions whose first predicted bad step, or "none", is their first labelled bad step, or "none"; after
ProcessBench's first-error task), ``step_positive_rate`` (fraction of steps predicted good), with
``eval_`` versions on ``eval_data``. ``final/`` loads with :func:`alignkit.reasoning.prm.load_process_reward_model`
and as ``reward=prm:PATH`` in grpo / ppo / online-dpo / sppo.
"""

from __future__ import annotations

import torch

from alignkit.config import TrainConfig
from alignkit.data import pad
from alignkit.engine.method import StepOutput
from alignkit.losses import step_bce_loss
from alignkit.methods.rm import RM
from alignkit.reasoning.prm import IGNORE, read_stepwise, token_scores, tokenize_stepwise


class PRMConfig(TrainConfig):
    """Process reward model: a token head scored at each step separator, BCE on step labels (prompt, completions, labels)."""


def first_error(labels: list[int]) -> int:
    """Index of the first 0 in ``labels``; ``len(labels)`` when there is none."""
    return next((k for k, y in enumerate(labels) if not y), len(labels))


class PRM(RM):
    name = "prm"
    config_cls = PRMConfig
    data_kinds = ("stepwise",)

    def build_examples(self, path: str) -> list[dict]:
        cfg = self.config
        loaded = read_stepwise(path, cfg.skip_invalid)
        return tokenize_stepwise(loaded, self.tokenizer, cfg.max_length, cfg.chat_template, cfg.skip_invalid)

    def example_length(self, example: dict) -> int:
        return len(example["input_ids"])

    def collate(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        ids = pad([ex["input_ids"] for ex in examples], self.pad_id)
        mask = pad([[1] * len(ex["input_ids"]) for ex in examples], 0)
        labels = torch.full(ids.shape, IGNORE, dtype=torch.float32)
        for r, ex in enumerate(examples):
            labels[r, ex["step_positions"]] = torch.tensor(ex["step_labels"], dtype=torch.float32)
        return {"input_ids": ids, "attention_mask": mask, "step_labels": labels}

    def count_units(self, batch: dict[str, torch.Tensor]) -> int:
        return int((batch["step_labels"] != IGNORE).sum())

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor], step: int) -> StepOutput:
        logits = token_scores(model, batch["input_ids"], batch["attention_mask"])
        labels = batch["step_labels"].to(logits.device)
        at = labels != IGNORE
        losses = step_bce_loss(logits[at], labels[at])
        with torch.no_grad():
            pred = (logits > 0).float()
            n_steps = float(at.sum())
            right = float(((pred == labels) & at).sum())
            positive = float((pred * at).sum())
            first_right = 0.0
            for r in range(labels.shape[0]):
                cols = at[r].nonzero().squeeze(1)
                y = labels[r, cols].long().tolist()
                p = pred[r, cols].long().tolist()
                first_right += float(first_error(y) == first_error(p))
        n_rows = float(labels.shape[0])
        return StepOutput(loss_sum=losses.sum(), metrics={
            "step_accuracy": (right, n_steps), "first_error_accuracy": (first_right, n_rows),
            "step_positive_rate": (positive, n_steps)})
