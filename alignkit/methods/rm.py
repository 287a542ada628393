"""``alignkit rm``: a scalar reward model trained with the Bradley-Terry loss on preference pairs.

Per pair, with rewards r_c (chosen) and r_r (rejected) from one forward pass over the ``[2B, T]``
batch (chosen rows first, :func:`alignkit.data.collate_preference`)::

    loss = -log sigma(r_c - r_r - m)  [+ c * (r_c + r_r)^2]

* ``m``: the data's ``margin`` column, used automatically when the file has one (a number per row:
  how much better chosen is, as in Llama 2's reward model). Every row of such a file needs one; a
  missing or non-numeric margin is a malformed row (file, row, field ``margin``). Without the column
  m = 0. The eval file's margins are used for ``eval_loss`` the same way, if it has them.
* ``c``: ``center_rewards_coefficient`` (default off), TRL's auxiliary term that pulls rewards
  towards zero mean (Eisenstein et al., 2023).
* weak labels: a file with a ``weak_prob`` column (a weak supervisor's probability, 0-1, that ``chosen``
  is better; :mod:`alignkit.pipelines.weak_to_strong` writes it) trains on those soft labels instead,
  with ``aux_alpha`` weighting Burns et al.'s auxiliary confidence term
  (:func:`alignkit.losses.weak_to_strong_loss`); every row then needs one, as for ``margin``.

A loss unit is a pair. Metrics, each a mean over pairs: ``accuracy`` (fraction with r_c > r_r;
``eval_accuracy`` on ``eval_data``), ``rewards/chosen``, ``rewards/rejected``, ``rewards/margins``
(r_c - r_r).

The model (:func:`alignkit.reward_model.build_reward_model`) is ``AutoModelForSequenceClassification``
with one label on the base named by ``model`` (SmolLM2 / tiny-random: ``LlamaForSequenceClassification``
with the causal LM's body weights and a new score head). The reward is read at the last real token
of each sequence (its end-of-turn / EOS token); see :mod:`alignkit.reward_model` for why alignkit
reads it itself and why the tokenizer gets a pad token distinct from EOS (SmolLM2: ``<|endoftext|>``).

LoRA (``lora.r > 0``): peft ``task_type=SEQ_CLS``; LoRA on the body's linear layers and the score
head fully trainable (peft ``modules_to_save``). ``final/`` then holds ``adapter_model.safetensors``
(LoRA weights + score head), ``adapter_config.json``, the tokenizer and ``alignkit.json`` naming the
base model; load it with :func:`alignkit.reward_model.load_reward_model` or ``alignkit score``.
``lora.merge_on_save=true`` writes a merged full model instead. Full fine-tuning writes a model that
``AutoModelForSequenceClassification.from_pretrained(final)`` loads as it is.
"""

from __future__ import annotations

import math

import torch
from pydantic import Field

from alignkit.config import TrainConfig
from alignkit.data import DataError, LoadedRows, collate_preference, load_examples, tokenize_preference
from alignkit.engine.method import Method, StepOutput
from alignkit.losses import bradley_terry_loss, reward_centering_term, weak_to_strong_loss
from alignkit.methods.common import SafetyView, safety_pairs_field
from alignkit.reward_model import ensure_distinct_pad, sequence_rewards

MARGIN = "margin"
WEAK = "weak_prob"


class RMConfig(TrainConfig):
    """Reward model: a scalar head trained with the Bradley-Terry loss on preference pairs (margin column optional)."""

    safety_pairs: SafetyView = safety_pairs_field("helpful")

    center_rewards_coefficient: float | None = Field(
        None, ge=0.0, description="weight of the (r_c + r_r)^2 term that centres rewards on 0; None disables")
    aux_alpha: float = Field(0.0, ge=0.0, le=1.0, description="with a weak_prob column: weight of the auxiliary "
                             "confidence term (Burns et al. 2023)")


def _parse_margin(value, path: str, row_no: int, name: str = MARGIN) -> float:
    if value is None:
        raise DataError(f"missing (other rows of this file have a {name})", path=path, row=row_no, field=name)
    if isinstance(value, bool):
        number = None
    elif isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = None
    else:
        number = None
    if number is None or not math.isfinite(number):
        raise DataError(f"expected a finite number, got {value!r}", path=path, row=row_no, field=name)
    if name == WEAK and not 0.0 <= number <= 1.0:
        raise DataError(f"expected a probability between 0 and 1, got {value!r}", path=path, row=row_no, field=name)
    return number


def read_margins(loaded: LoadedRows, skip_invalid: bool, name: str = MARGIN
                 ) -> tuple[LoadedRows, dict[int, float] | None]:
    """The ``name`` column (``margin`` or ``weak_prob``) of each row (by row number) when the file has it,
    else ``None``. Rows with a bad value raise :class:`DataError`, or are dropped and counted under
    ``skip_invalid``."""
    if not any(row.get(name) is not None for row in loaded.rows):
        return loaded, None
    margins: dict[int, float] = {}
    keep_rows, keep_numbers, keep_kinds = [], [], []
    for row_no, row, kind in loaded.with_kinds():
        try:
            margins[row_no] = _parse_margin(row.get(name), loaded.path, row_no, name)
        except DataError as err:
            if not skip_invalid:
                raise
            loaded.record_skip(err)
            continue
        keep_rows.append(row)
        keep_numbers.append(row_no)
        keep_kinds.append(kind)
    if not keep_rows:
        raise DataError(f"no valid rows: every row has a bad {name}; the first error was: {loaded.errors[-1]}",
                        path=loaded.path)
    out = LoadedRows(path=loaded.path, kind=loaded.kind, rows=keep_rows, row_numbers=keep_numbers,
                     skipped=loaded.skipped, errors=loaded.errors, kinds=keep_kinds)
    return out, margins


class RM(Method):
    name = "rm"
    config_cls = RMConfig
    data_kinds = ("preference",)

    def __init__(self, config: RMConfig, tokenizer) -> None:
        super().__init__(config, tokenizer)
        # in place: the engine saves this same tokenizer into final/, so the pad token travels with the model
        self.pad_id = ensure_distinct_pad(tokenizer)

    # -- data ---------------------------------------------------------------------------------
    def build_examples(self, path: str) -> list[dict]:
        cfg = self.config
        loaded = load_examples(path, self.data_kinds, cfg.skip_invalid, safety_pairs=cfg.safety_pairs)
        loaded, margins = read_margins(loaded, cfg.skip_invalid)
        loaded, weak = read_margins(loaded, cfg.skip_invalid, WEAK)
        examples = tokenize_preference(loaded, self.tokenizer, cfg.max_length, chat_template=cfg.chat_template,
                                       skip_invalid=cfg.skip_invalid)
        for column, values in ((MARGIN, margins), (WEAK, weak)):
            if values is not None:
                for ex in examples:
                    ex[column] = values[ex["row"]]
        return examples

    def example_length(self, example: dict) -> int:
        return len(example["prompt_ids"]) + max(len(example["chosen_ids"]), len(example["rejected_ids"]))

    def collate(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        batch = collate_preference(examples, self.pad_id)
        del batch["labels"]  # a reward model takes no token labels
        for column in (MARGIN, WEAK):
            if all(column in ex for ex in examples):
                batch[column] = torch.tensor([ex[column] for ex in examples], dtype=torch.float32)
        return batch

    def count_units(self, batch: dict[str, torch.Tensor]) -> int:
        return batch["input_ids"].shape[0] // 2

    # -- model --------------------------------------------------------------------------------
    def build_model(self) -> torch.nn.Module:
        from alignkit.models import enable_checkpointing
        from alignkit.reward_model import build_reward_model, peft_quietly

        cfg = self.config
        model = build_reward_model(cfg.model, self.pad_id, trust_remote_code=cfg.trust_remote_code)
        enable_checkpointing(model, cfg.gradient_checkpointing)
        if cfg.lora.enabled:
            from peft import LoraConfig, get_peft_model

            # SEQ_CLS: peft keeps the score head fully trainable (modules_to_save) and saves it with the adapter
            lora = LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                              target_modules=cfg.lora.target_modules, task_type="SEQ_CLS")
            model = peft_quietly(get_peft_model, model, lora)
        return model

    # -- loss ---------------------------------------------------------------------------------
    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor], step: int) -> StepOutput:
        rewards = sequence_rewards(model, batch["input_ids"], batch["attention_mask"])
        pairs = rewards.shape[0] // 2
        chosen, rejected = rewards[:pairs], rewards[pairs:]
        if WEAK in batch:
            per_pair = weak_to_strong_loss(chosen, rejected, batch[WEAK].to(chosen.device), self.config.aux_alpha)
        else:
            per_pair = bradley_terry_loss(chosen, rejected, batch.get(MARGIN))
        coef = self.config.center_rewards_coefficient
        if coef:
            per_pair = per_pair + coef * reward_centering_term(chosen, rejected)
        with torch.no_grad():
            sums = torch.stack([(chosen > rejected).float().sum(), chosen.sum(), rejected.sum(),
                                (chosen - rejected).sum()]).tolist()
        names = ("accuracy", "rewards/chosen", "rewards/rejected", "rewards/margins")
        return StepOutput(loss_sum=per_pair.sum(), metrics={k: (v, pairs) for k, v in zip(names, sums)})
