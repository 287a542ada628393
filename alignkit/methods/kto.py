"""``alignkit kto``: Kahneman-Tversky optimisation on unpaired (prompt, completion, label) data.

Ethayarajh et al., 2024 (arXiv:2402.01306); the loss is :func:`alignkit.losses.kto_loss`. A paired
preference file is accepted too: each pair becomes a desirable (chosen) and an undesirable (rejected)
example (:func:`alignkit.data.preference_to_unpaired`).

Keys: ``beta`` (0.1), ``desirable_weight`` (1.0), ``undesirable_weight`` (1.0; the paper suggests
weights with w_D * n_D / (w_U * n_U) in [1, 4/3], and a note is printed when the data is outside that
range), ``precompute_ref_log_probs`` (true).

The KL reference point z. Each example gets, once when the data is read, a *mismatched* completion:
examples are put in a random cycle (seeded by ``seed``) and example i borrows the completion of the
next one in the cycle (one with a different prompt where possible), cut to fit ``max_length``. This
is TRL's construction (it shifts completions within shuffled batches once, before training); fixing
the pairs is what lets the reference log-probs of the KL pairs be precomputed and cached like the
others. Once per optimizer step, :meth:`KTO.prepare_step` runs the policy on the KL pairs of every
micro-batch of the step under ``torch.no_grad`` and estimates

    z = max(0, mean over all KL pairs of the step (and of all processes) of (kl_logps - kl_ref_logps)),

detached, the same value for every micro-batch -- so gradient accumulation and several processes give
the same update as one big batch (TRL all-gathers the estimate across processes the same way).
Evaluation batches estimate z per batch. The policy forward on the completions needs gradients; the
KL forward does not, so it runs separately under ``no_grad`` and keeps no activations.

Metrics (TRL's names): ``rewards/chosen`` and ``rewards/rejected``, beta * (logps - ref_logps) averaged
over the desirable / undesirable examples of the step (0 when a step holds none of that kind);
``rewards/margins`` their difference (:meth:`KTO.derive_metrics`); ``logps/chosen``, ``logps/rejected``
(summed response log-probs, same averaging); ``kl`` = z.
"""

from __future__ import annotations

import torch
from pydantic import Field

from alignkit.config import TrainConfig
from alignkit.data import collate_unpaired, load_examples, tokenize_unpaired
from alignkit.data.batching import epoch_generator
from alignkit.engine.method import Method, StepOutput
from alignkit.losses import kto_kl_estimate, kto_loss, kto_rewards
from alignkit.methods.common import SafetyView, forward_label_logps, safety_pairs_field, unwrap
from alignkit.methods.reference import Reference, announce, build_reference, to_device

REF_COLUMNS = ("ref_logps", "kl_ref_logps")
KL_KEYS = ("kl_input_ids", "kl_attention_mask", "kl_labels")
#: how far along the cycle to look for a KL partner with a different prompt
PARTNER_SEARCH = 8


class KTOConfig(TrainConfig):
    """KTO on unpaired preference data (prompt, completion, label); paired files are converted."""

    safety_pairs: SafetyView = safety_pairs_field("safe_first")

    beta: float = Field(0.1, gt=0, description="inverse temperature of the implicit reward")
    desirable_weight: float = Field(1.0, ge=0.0, description="weight of desirable (label true) examples")
    undesirable_weight: float = Field(1.0, ge=0.0, description="weight of undesirable (label false) examples")
    precompute_ref_log_probs: bool = Field(True, description="compute reference log-probs once before training "
                                           "(cached on disk) instead of every step")


def assign_kl_completions(examples: list[dict], seed: int, max_length: int) -> None:
    """Give every example a ``kl_completion_ids``: the completion of the next example in a random
    cycle (seeded), preferring one with a different prompt, cut so prompt + completion fit
    ``max_length``. With a single example it is paired with itself."""
    n = len(examples)
    g = epoch_generator(seed, -1)  # a stream of its own: the global RNG is not touched
    cycle = torch.randperm(n, generator=g).tolist()
    for k, i in enumerate(cycle):
        prompt = examples[i]["prompt_ids"]
        partner = cycle[(k + 1) % n]
        for step in range(1, min(PARTNER_SEARCH, n - 1) + 1):
            j = cycle[(k + step) % n]
            if examples[j]["prompt_ids"] != prompt:
                partner = j
                break
        room = max(1, max_length - len(prompt))
        examples[i]["kl_completion_ids"] = list(examples[partner]["completion_ids"][:room])


class KTO(Method):
    name = "kto"
    config_cls = KTOConfig
    data_kinds = ("unpaired",)
    needs_reference = True

    def __init__(self, config: KTOConfig, tokenizer) -> None:
        super().__init__(config, tokenizer)
        self.reference: Reference | None = None
        self.accelerator = None
        self._example_sets: list[tuple[str, list[dict]]] = []

    # -- data ---------------------------------------------------------------------------------
    def build_examples(self, path: str) -> list[dict]:
        cfg = self.config
        loaded = load_examples(path, self.data_kinds, cfg.skip_invalid, safety_pairs=cfg.safety_pairs)
        examples = tokenize_unpaired(loaded, self.tokenizer, cfg.max_length, cfg.chat_template, cfg.skip_invalid)
        assign_kl_completions(examples, cfg.seed, cfg.max_length)
        self._example_sets.append((str(path), examples))
        return examples

    def example_length(self, example: dict) -> int:
        return len(example["prompt_ids"]) + max(len(example["completion_ids"]), len(example["kl_completion_ids"]))

    def collate(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        pad_id = self.tokenizer.pad_token_id
        batch = collate_unpaired(examples, pad_id)
        kl = collate_unpaired([{"prompt_ids": ex["prompt_ids"], "completion_ids": ex["kl_completion_ids"],
                                "label": False} for ex in examples], pad_id)
        for key in ("input_ids", "attention_mask", "labels"):
            batch[f"kl_{key}"] = kl[key]
        if all(REF_COLUMNS[0] in ex for ex in examples):
            for col in REF_COLUMNS:
                batch[col] = torch.tensor([ex[col] for ex in examples], dtype=torch.float32)
        return batch

    def count_units(self, batch: dict[str, torch.Tensor]) -> int:
        return int(batch["label"].numel())

    def count_tokens(self, batch: dict[str, torch.Tensor]) -> int:
        return int(batch["attention_mask"].sum() + batch["kl_attention_mask"].sum())

    @staticmethod
    def _kl_batch(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"input_ids": batch["kl_input_ids"], "attention_mask": batch["kl_attention_mask"],
                "labels": batch["kl_labels"]}

    # -- reference ----------------------------------------------------------------------------
    def setup(self, model: torch.nn.Module, accelerator) -> None:
        cfg = self.config
        self.accelerator = accelerator
        self._weight_note(accelerator)
        self.reference = build_reference(model, accelerator, precompute=cfg.precompute_ref_log_probs)
        if self.reference.mode != "precomputed":
            announce(f"kto: reference = {self.reference.how}", accelerator)
            return
        for path, examples in self._example_sets:
            self.reference.attach(
                examples, REF_COLUMNS, self._reference_columns, tag="kto",
                id_fields=("prompt_ids", "completion_ids", "kl_completion_ids"),
                lengths=[self.example_length(e) for e in examples],
                batch_size=2 * cfg.batch_size, what=f"examples of {path}")

    def _weight_note(self, accelerator) -> None:
        cfg = self.config
        if not self._example_sets:
            return
        examples = self._example_sets[0][1]
        n_d = sum(1 for e in examples if e["label"])
        n_u = len(examples) - n_d
        if n_d == 0 or n_u == 0:
            announce(f"kto: the training data holds only {'desirable' if n_u == 0 else 'undesirable'} examples",
                     accelerator)
            return
        if cfg.undesirable_weight > 0:
            ratio = cfg.desirable_weight * n_d / (cfg.undesirable_weight * n_u)
            if not 1.0 <= ratio <= 4.0 / 3.0:
                announce(f"kto: desirable_weight * {n_d} / (undesirable_weight * {n_u}) = {ratio:.2f}; the KTO "
                         "paper recommends weights that put this in [1, 4/3]", accelerator)

    def _reference_columns(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        batch = to_device(self.collate(examples), self.accelerator.device)
        ref, _ = self.reference.sequence_logps(batch)
        kl_ref, _ = self.reference.sequence_logps(self._kl_batch(batch))
        return {REF_COLUMNS[0]: ref, REF_COLUMNS[1]: kl_ref}

    def _kl_terms(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Per-pair log-ratio kl_logps - kl_ref_logps of the batch's mismatched pairs, no gradient."""
        kl_batch = self._kl_batch(batch)
        with torch.no_grad():
            logps, _ = forward_label_logps(unwrap(model), kl_batch)
            kl_logps = logps.sum(-1)
        if REF_COLUMNS[1] in batch:
            kl_ref = batch[REF_COLUMNS[1]]
        else:
            kl_ref, _ = self.reference.sequence_logps(kl_batch)
        return kl_logps - kl_ref.to(kl_logps.dtype)

    # -- step ---------------------------------------------------------------------------------
    def prepare_step(self, model, batches, step):
        """One estimate of z for the whole optimizer step (all micro-batches, all processes)."""
        acc = self.accelerator
        total = torch.zeros(2, dtype=torch.float64, device=acc.device)
        with acc.autocast():
            for batch in batches:
                terms = self._kl_terms(model, batch)
                total[0] += terms.double().sum()
                total[1] += terms.numel()
        if acc.num_processes > 1:
            total = acc.reduce(total, reduction="sum")
        z = (total[0] / total[1].clamp(min=1)).clamp(min=0).float()
        for batch in batches:
            batch["kl_z"] = z
        return batches, {"kl": (float(z), 1.0)}

    def derive_metrics(self, metrics: dict[str, float]) -> dict[str, float]:
        """``rewards/margins`` = mean reward of the step's desirable examples minus that of its
        undesirable ones (as TRL, from the reduced means, so exact for any accumulation/processes)."""
        if "rewards/chosen" in metrics and "rewards/rejected" in metrics:
            metrics["rewards/margins"] = metrics["rewards/chosen"] - metrics["rewards/rejected"]
        return metrics

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor], step: int) -> StepOutput:
        cfg = self.config
        token_logps, mask = forward_label_logps(model, batch)
        logps = token_logps.sum(-1)
        if REF_COLUMNS[0] in batch:
            ref = batch[REF_COLUMNS[0]].to(logps.dtype)
        else:
            ref, _ = self.reference.sequence_logps(batch)
            ref = ref.to(logps.dtype)
        metrics: dict[str, tuple[float, float]] = {}
        if "kl_z" in batch:  # training: the step-wide estimate from prepare_step
            kl_logps, kl_ref = batch["kl_z"].reshape(1).to(logps.dtype), logps.new_zeros(1)
        else:  # evaluation: this batch's own estimate
            kl_logps = self._kl_terms(model, batch).to(logps.dtype)
            kl_ref = torch.zeros_like(kl_logps)
            metrics["kl"] = (kto_kl_estimate(kl_logps, kl_ref), 1.0)
        labels = batch["label"].bool()
        losses = kto_loss(logps, ref, labels, kl_logps, kl_ref, beta=cfg.beta,
                          desirable_weight=cfg.desirable_weight, undesirable_weight=cfg.undesirable_weight)

        rewards = kto_rewards(logps, ref, cfg.beta)
        n_d, n_u = int(labels.sum()), int((~labels).sum())
        lp = logps.detach()
        metrics.update({
            "rewards/chosen": (rewards[labels].sum(), n_d),
            "rewards/rejected": (rewards[~labels].sum(), n_u),
            "logps/chosen": (lp[labels].sum(), n_d),
            "logps/rejected": (lp[~labels].sum(), n_u),
        })
        return StepOutput(loss_sum=losses.sum(), metrics=metrics)
