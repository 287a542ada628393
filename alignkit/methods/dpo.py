"""``alignkit dpo``: direct preference optimisation and its family on (prompt, chosen, rejected) pairs.

``loss=`` selects the objective (formulas and papers in :func:`alignkit.losses.preference_loss`):

=========  ==========================================================  =========
``loss``   objective                                                   reference
=========  ==========================================================  =========
sigmoid    DPO; ``label_smoothing`` > 0 gives conservative DPO          yes
hinge      SLiC hinge  relu(1 - beta * h)                               yes
ipo        IPO, per-token averaged log-ratios                           yes
robust     robust DPO under label noise ``label_smoothing``             yes
simpo      SimPO, length-normalised margin minus ``gamma``              none
orpo       ORPO, chosen NLL + ``lam`` * odds-ratio term                 none
=========  ==========================================================  =========

``rpo_alpha`` (off by default) adds ``rpo_alpha`` times the per-token averaged NLL of the chosen
response to any of them (RPO; :func:`alignkit.losses.nll_term`), logged as ``nll_loss``.

Defaults and recommendations: ``beta=0.1`` for every loss (TRL's DPO default). SimPO's paper uses
much larger values, ``beta`` 2.0-2.5 with ``gamma / beta`` about 0.5; ``gamma`` defaults to 0.5 (TRL's
``simpo_gamma``). ORPO's weight ``lam`` defaults to 0.1 (TRL's ORPO ``beta``). ``lr`` keeps the engine
default 2e-5, which suits LoRA; for full fine-tuning TRL's 1e-6 to 5e-7 is the usual choice.

Chosen and rejected share their prompt's forward (``share_prompt=true``, the default): each pair's
prompt runs through the model once and both answers run on its KV cache, for the policy (with
gradients) and the reference alike (:func:`alignkit.methods.common.pair_sequence_logps`); where that
cannot be done (DDP/FSDP wrappers, Hugging Face gradient checkpointing) or with ``share_prompt=false``,
:func:`alignkit.data.collate_preference` stacks them into one ``[2B, T]`` forward (chosen rows first).
``padding_free=true`` lays each micro-batch out as one row, ``prompt | chosen | rejected`` per pair
(:func:`alignkit.data.collate_preference_tree`): each prompt runs once, each answer attends to its prompt
and itself only (:func:`alignkit.models.segment_attention.tree_attention`), and no position is padding.
Log-probs are computed chunkwise from the hidden states, never as full logits. A loss unit is a
pair: the engine divides the summed per-pair losses by the number of pairs in the global batch.

The reference (:mod:`alignkit.methods.reference`): precomputed once and cached on disk by default
(``precompute_ref_log_probs=true``), else the LoRA policy with adapters disabled, else one frozen copy;
the reference-free losses (simpo, orpo) build none at all.

Metrics (TRL's names), each a mean over pairs: ``rewards/chosen`` = beta * (c - c_ref),
``rewards/rejected`` = beta * (r - r_ref), ``rewards/margins`` (their difference),
``rewards/accuracies`` (fraction with chosen reward > rejected reward), ``logps/chosen`` and
``logps/rejected`` (summed response log-probs c, r), plus ``nll_loss`` with ``rpo_alpha``. For the
reference-free losses the rewards are beta * (per-token average log-prob), as TRL's CPO trainer logs
them; the ``logps/*`` metrics stay sums for every loss.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, model_validator

from alignkit.config import TrainConfig
from alignkit.data import collate_preference, collate_preference_tree, load_examples, tokenize_preference
from alignkit.engine.method import Method, StepOutput
from alignkit.losses import REFERENCE_FREE, nll_term, preference_loss, preference_rewards
from alignkit.methods.common import SafetyView, pair_sequence_logps, safety_pairs_field
from alignkit.methods.reference import Reference, announce, build_reference, to_device
from alignkit.models.segment_attention import use_segment_attention

REF_COLUMNS = ("ref_chosen_logps", "ref_rejected_logps")


class DPOConfig(TrainConfig):
    """Direct preference optimisation and its family (loss=sigmoid|hinge|ipo|robust|simpo|orpo)."""

    safety_pairs: SafetyView = safety_pairs_field("safe_first")

    loss: Literal["sigmoid", "hinge", "ipo", "robust", "simpo", "orpo"] = Field(
        "sigmoid", description="preference objective; simpo and orpo need no reference model")
    beta: float = Field(0.1, gt=0, description="inverse temperature of the implicit reward (not used by orpo)")
    label_smoothing: float = Field(0.0, ge=0.0, lt=0.5, description="sigmoid/robust: assumed label noise")
    gamma: float = Field(0.5, description="simpo: target reward margin")
    lam: float = Field(0.1, ge=0.0, description="orpo: weight of the odds-ratio term")
    rpo_alpha: float | None = Field(None, ge=0.0, description="weight of the chosen NLL added to the loss (RPO); "
                                    "None disables")
    precompute_ref_log_probs: bool = Field(True, description="compute reference log-probs once before training "
                                           "(cached on disk) instead of every step")
    share_prompt: bool = Field(True, description="run each pair's prompt once, both answers on its KV cache "
                               "(policy and reference forwards); false: the plain [2B, T] forward of both rows")
    padding_free: bool = Field(False, description="each micro-batch as one row, prompt | chosen | rejected per pair, "
                               "no padding; each prompt runs once and each answer attends to its prompt only")

    @model_validator(mode="after")
    def _check(self) -> DPOConfig:
        if self.label_smoothing and self.loss not in ("sigmoid", "robust"):
            raise ValueError(f"label_smoothing is used by loss=sigmoid and loss=robust only, not loss={self.loss}")
        return self


class DPO(Method):
    name = "dpo"
    config_cls = DPOConfig
    data_kinds = ("preference",)
    needs_reference = True

    def __init__(self, config: DPOConfig, tokenizer) -> None:
        super().__init__(config, tokenizer)
        self.reference: Reference | None = None
        self._example_sets: list[tuple[str, list[dict]]] = []

    @property
    def reference_free(self) -> bool:
        return self.config.loss in REFERENCE_FREE

    # -- data ---------------------------------------------------------------------------------
    def build_examples(self, path: str) -> list[dict]:
        cfg = self.config
        loaded = load_examples(path, self.data_kinds, cfg.skip_invalid, safety_pairs=cfg.safety_pairs)
        examples = tokenize_preference(loaded, self.tokenizer, cfg.max_length, cfg.chat_template, cfg.skip_invalid)
        self._example_sets.append((str(path), examples))
        return examples

    def example_length(self, example: dict) -> int:
        return len(example["prompt_ids"]) + max(len(example["chosen_ids"]), len(example["rejected_ids"]))

    def _collate_pairs(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        if self.config.padding_free:
            return collate_preference_tree(examples, self.tokenizer.pad_token_id)
        return collate_preference(examples, self.tokenizer.pad_token_id, shared=self.config.share_prompt)

    def collate(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        batch = self._collate_pairs(examples)
        if all(REF_COLUMNS[0] in ex for ex in examples):
            for col in REF_COLUMNS:
                batch[col] = torch.tensor([ex[col] for ex in examples], dtype=torch.float32)
        return batch

    def count_units(self, batch: dict[str, torch.Tensor]) -> int:
        return batch["input_ids"].shape[0] // 2

    # -- reference ----------------------------------------------------------------------------
    def setup(self, model: torch.nn.Module, accelerator) -> None:
        cfg = self.config
        if cfg.padding_free:
            use_segment_attention(model)
        if self.reference_free:
            self.reference = None
            announce(f"dpo loss={cfg.loss}: reference free, no reference model is loaded or run", accelerator)
            return
        self.reference = build_reference(model, accelerator, precompute=cfg.precompute_ref_log_probs)
        if self.reference.mode != "precomputed":
            announce(f"dpo loss={cfg.loss}: reference = {self.reference.how}", accelerator)
            return
        for path, examples in self._example_sets:
            self.reference.attach(
                examples, REF_COLUMNS, self._reference_columns, tag="dpo",
                id_fields=("prompt_ids", "chosen_ids", "rejected_ids"),
                lengths=[self.example_length(e) for e in examples],
                batch_size=2 * cfg.batch_size, what=f"pairs of {path}")

    def _reference_columns(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        share = self.config.share_prompt
        batch = to_device(self._collate_pairs(examples), self.reference.accelerator.device)
        logps, _ = self.reference.sequence_logps(batch, share_prompt=share)
        B = len(examples)
        return {REF_COLUMNS[0]: logps[:B], REF_COLUMNS[1]: logps[B:]}

    # -- loss ---------------------------------------------------------------------------------
    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor], step: int) -> StepOutput:
        cfg = self.config
        logps, lengths = pair_sequence_logps(model, batch, cfg.share_prompt)
        B = logps.shape[0] // 2
        chosen, rejected = logps[:B], logps[B:]
        c_len, r_len = lengths[:B], lengths[B:]

        ref_c = ref_r = None
        if not self.reference_free:
            if REF_COLUMNS[0] in batch:
                ref_c, ref_r = batch[REF_COLUMNS[0]], batch[REF_COLUMNS[1]]
            else:
                ref, _ = self.reference.sequence_logps(batch, share_prompt=cfg.share_prompt)
                ref_c, ref_r = ref[:B], ref[B:]
            ref_c, ref_r = ref_c.to(chosen.dtype), ref_r.to(chosen.dtype)

        losses, metrics = dpo_family_loss(cfg, chosen, rejected, ref_c, ref_r, c_len, r_len)
        return StepOutput(loss_sum=losses.sum(), metrics=metrics)


def dpo_family_loss(cfg: DPOConfig, chosen: torch.Tensor, rejected: torch.Tensor, ref_c: torch.Tensor | None,
                    ref_r: torch.Tensor | None, c_len: torch.Tensor, r_len: torch.Tensor, weight: float = 1.0
                    ) -> tuple[torch.Tensor, dict[str, tuple[float, float]]]:
    """Per-pair losses [B] of ``cfg.loss`` (plus RPO's NLL term with ``rpo_alpha``) and TRL's metrics
    (``rewards/*``, ``logps/*``, ``nll_loss``) as (sum, count) pairs, each pair counting ``weight``.
    Reference-free losses report length-normalised implicit rewards. Shared by DPO and online DPO."""
    B = chosen.shape[0]
    losses = preference_loss(cfg.loss, chosen, rejected, ref_c, ref_r, c_len, r_len, beta=cfg.beta,
                             label_smoothing=cfg.label_smoothing, gamma=cfg.gamma, lam=cfg.lam)
    n = float(B) * weight
    metrics: dict[str, tuple[float, float]] = {}
    if cfg.rpo_alpha is not None:
        nll = nll_term(chosen, c_len)
        losses = losses + cfg.rpo_alpha * nll
        metrics["nll_loss"] = (float(nll.detach().sum()) * weight, n)
    if ref_c is None or ref_r is None:
        zeros = torch.zeros_like(chosen)
        r_c, r_r = preference_rewards(chosen / c_len.clamp(min=1), rejected / r_len.clamp(min=1),
                                      zeros, zeros, cfg.beta)
    else:
        r_c, r_r = preference_rewards(chosen, rejected, ref_c, ref_r, cfg.beta)
    r_c, r_r = r_c.detach().float(), r_r.detach().float()
    metrics.update({
        "rewards/chosen": (float(r_c.sum()) * weight, n),
        "rewards/rejected": (float(r_r.sum()) * weight, n),
        "rewards/margins": (float((r_c - r_r).sum()) * weight, n),
        "rewards/accuracies": (float((r_c > r_r).float().sum()) * weight, n),
        "logps/chosen": (float(chosen.detach().sum()) * weight, n),
        "logps/rejected": (float(rejected.detach().sum()) * weight, n),
    })
    return losses, metrics
