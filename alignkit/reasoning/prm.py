"""Process reward models: step-wise data (TRL's layout), step scores, and ``reward=prm:PATH``.

A PRM here is the same one-label sequence-classification model that ``alignkit rm`` trains
(:mod:`alignkit.reward_model`: the causal LM's body and a linear ``score`` head), used as a
token-classification head: the head's logit at every token, read at each step's separator position
(:mod:`alignkit.reasoning.steps`), is the log-odds that the solution is still on a right track after
that step. ``p_k = sigmoid(logit_k)``.

Data (TRL's stepwise layout): ``prompt`` (string or chat messages), ``completions`` (a non-empty list of
non-empty step strings) and ``labels`` (a list of booleans, one per step). A row whose lists differ in
length, whose labels are not booleans, or with an empty step is a malformed row (file, row, field).

Scoring a completion (``reward=prm:PATH``, :class:`ProcessRewardModel`): its steps are the non-empty lines
(:func:`alignkit.reasoning.steps.split_steps`), tokenised as in training; the reward aggregates the step
probabilities: ``min`` (default) or ``prod``. A completion with no step scores 0.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import torch

from alignkit.data.io import DataError, iter_records
from alignkit.data.render import render_prompt, row_mode
from alignkit.data.schema import LoadedRows, check_text_field
from alignkit.reasoning.steps import encode_steps, split_steps
from alignkit.reward_model import RewardModel, load_reward_model, reward_head

__all__ = ["AGGREGATES", "ProcessRewardModel", "load_process_reward_model", "read_stepwise", "token_scores",
           "tokenize_stepwise"]

AGGREGATES = ("min", "prod")
IGNORE = -100.0


def _check_steps(row: dict, path: Any, row_no: int) -> tuple[list[str], list[bool]]:
    steps, labels = row.get("completions"), row.get("labels")
    if steps is None:
        raise DataError("missing (a list of step strings)", path=path, row=row_no, field="completions")
    if not isinstance(steps, (list, tuple)) or not steps:
        raise DataError("expected a non-empty list of step strings", path=path, row=row_no, field="completions")
    for i, s in enumerate(steps, start=1):
        if not isinstance(s, str) or not s.strip():
            raise DataError(f"step {i}: expected a non-empty string, got {s!r}", path=path, row=row_no,
                            field="completions")
    if labels is None:
        raise DataError("missing (a list of booleans, one per step)", path=path, row=row_no, field="labels")
    if not isinstance(labels, (list, tuple)):
        raise DataError(f"expected a list of booleans, got {type(labels).__name__}", path=path, row=row_no,
                        field="labels")
    if len(labels) != len(steps):
        raise DataError(f"{len(labels)} labels for {len(steps)} steps in 'completions' (one label per step)",
                        path=path, row=row_no, field="labels")
    for i, v in enumerate(labels, start=1):
        if not isinstance(v, bool):
            raise DataError(f"label {i}: expected true or false, got {v!r}", path=path, row=row_no, field="labels")
    return [s.strip() for s in steps], list(labels)


def read_stepwise(path: str | os.PathLike, skip_invalid: bool = False) -> LoadedRows:
    """Validated step-wise rows (``prompt``, ``completions``, ``labels``) of a data file."""
    rows, numbers, errors = [], [], []
    for row_no, rec in iter_records(path):
        try:
            if isinstance(rec, DataError):
                raise rec
            prompt = check_text_field(rec, "prompt", path=path, row_no=row_no)
            steps, labels = _check_steps(rec, path, row_no)
        except DataError as err:
            if not skip_invalid:
                raise
            errors.append(err)
            continue
        rows.append({**rec, "prompt": prompt, "completions": steps, "labels": labels})
        numbers.append(row_no)
    if not rows:
        raise DataError("no valid rows" + (f"; the first error was: {errors[0]}" if errors else ""), path=path)
    return LoadedRows(path=str(path), kind="stepwise", rows=rows, row_numbers=numbers, skipped=len(errors),
                      errors=errors)


def _prompt_ids(tokenizer: Any, prompt: Any, chat_template: str) -> list[int]:
    return render_prompt(tokenizer, prompt, row_mode(chat_template, prompt)).ids


def tokenize_stepwise(loaded: LoadedRows, tokenizer: Any, max_length: int, chat_template: str = "auto",
                      skip_invalid: bool = False) -> list[dict]:
    """Step-wise rows -> ``{"input_ids", "step_positions", "step_labels", "row"}``: prompt ids then the
    steps (:func:`alignkit.reasoning.steps.encode_steps`); positions index ``input_ids``. Steps past
    ``max_length`` are dropped; a row with no step left is malformed."""
    out = []
    for row_no, row in loaded:
        try:
            p_ids = _prompt_ids(tokenizer, row["prompt"], chat_template)
            s_ids, ends = encode_steps(tokenizer, row["completions"])
            ids = p_ids + s_ids
            keep = [k for k, e in enumerate(ends) if len(p_ids) + e < max_length]
            if not keep:
                raise DataError(f"prompt leaves no room for the first step after truncation ({len(p_ids)} prompt "
                                f"tokens, max_length {max_length})", path=loaded.path, row=row_no, field="prompt")
        except DataError as err:
            err = err.with_location(loaded.path, row_no)
            if not skip_invalid:
                raise err from None
            loaded.record_skip(err)
            continue
        last = len(p_ids) + ends[keep[-1]]
        out.append({"input_ids": ids[:last + 1], "step_positions": [len(p_ids) + ends[k] for k in keep],
                    "step_labels": [int(row["labels"][k]) for k in keep], "row": row_no})
    if not out:
        raise DataError(f"no valid rows left after tokenising ({loaded.skipped} skipped)", path=loaded.path)
    return out


def token_scores(model: torch.nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The head's logit at every position: [N, T] float32 (the model called through its own, possibly
    wrapped, ``forward``; the head applied to the final hidden states)."""
    out = model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True, use_cache=False)
    return reward_head(model)(out.hidden_states[-1]).squeeze(-1).float()


def aggregate(probs: Sequence[float], how: str) -> float:
    """``min`` or ``prod`` of step probabilities (0 for no steps)."""
    if not probs:
        return 0.0
    if how == "min":
        return float(min(probs))
    if how == "prod":
        return float(math.prod(probs))
    raise ValueError(f"unknown aggregate {how!r}; expected one of {', '.join(AGGREGATES)}")


class ProcessRewardModel:
    """A trained PRM (``alignkit prm``'s output) that scores completions step by step."""

    def __init__(self, reward_model: RewardModel, aggregate: str = "min", batch_size: int = 8) -> None:
        if aggregate not in AGGREGATES:
            raise ValueError(f"unknown aggregate {aggregate!r}; expected one of {', '.join(AGGREGATES)}")
        self.rm = reward_model
        self.aggregate = aggregate
        self.batch_size = batch_size

    @torch.no_grad()
    def step_probabilities(self, prompts: Sequence[Any], completions: Sequence[str]) -> list[list[float]]:
        """Per completion, the probability of each of its steps (an empty list for no steps)."""
        rm, tok = self.rm, self.rm.tokenizer
        encoded = []
        for prompt, text in zip(prompts, completions):
            p_ids = _prompt_ids(tok, prompt, rm.chat_template)
            steps = split_steps(text)
            s_ids, ends = encode_steps(tok, steps) if steps else ([], [])
            pos = [len(p_ids) + e for e in ends if len(p_ids) + e < rm.max_length]
            encoded.append(((p_ids + s_ids)[:rm.max_length], pos))
        result: list[list[float]] = [[] for _ in encoded]
        todo = [i for i, (_, pos) in enumerate(encoded) if pos]
        for start in range(0, len(todo), self.batch_size):
            idx = todo[start:start + self.batch_size]
            width = max(len(encoded[i][0]) for i in idx)
            ids = torch.full((len(idx), width), rm.pad_token_id, dtype=torch.long)
            mask = torch.zeros((len(idx), width), dtype=torch.long)
            for r, i in enumerate(idx):
                seq = encoded[i][0]
                ids[r, :len(seq)] = torch.tensor(seq)
                mask[r, :len(seq)] = 1
            logits = token_scores(rm.model, ids.to(rm.device), mask.to(rm.device)).cpu()
            for r, i in enumerate(idx):
                result[i] = torch.sigmoid(logits[r, encoded[i][1]]).tolist()
        return result

    def score(self, prompts: Sequence[Any], completions: Sequence[str]) -> list[float]:
        """The aggregated step probability of each completion."""
        return [aggregate(p, self.aggregate) for p in self.step_probabilities(prompts, completions)]


def load_process_reward_model(path: str | os.PathLike, aggregate: str = "min", **kwargs: Any) -> ProcessRewardModel:
    """Load what ``alignkit prm`` wrote (a run directory or its ``final/``); ``kwargs`` go to
    :func:`alignkit.reward_model.load_reward_model` (device, dtype, max_length, chat_template)."""
    return ProcessRewardModel(load_reward_model(path, **kwargs), aggregate)
